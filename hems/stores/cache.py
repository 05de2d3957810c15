"""The cache: one small interface, Redis (stack) and in-process memory (embedded).

What the platform keeps here (DESIGN §1, §6): latest reading per device/household and device
last_seen (hashes of JSON), leaderboards (sorted sets), rate-limit counters (sliding windows),
and cached JSON answers with a TTL. Nothing here is the system of record: losing the cache
loses nothing that the stores cannot rebuild.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import orjson

from hems.errors import ServiceUnavailable
from hems.stores.profile_instances import ProfileInstances
from hems.stores.redis_client import redis_connection_kwargs

if TYPE_CHECKING:
    from hems.settings import RedisSettings, Settings

REDIS_FIX = "start it with `hems services up` (or set HEMS_PROFILE=local for the in-process cache)"


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)


def _check_ttl(ttl_s: float | None) -> None:
    if ttl_s is not None and ttl_s <= 0:
        raise ValueError(f"ttl_s must be positive, got {ttl_s}")


class Cache(ABC):
    """Keys are plain strings; implementations may namespace them (Redis: ``key_prefix``)."""

    @abstractmethod
    def get_json(self, key: str) -> Any | None:
        """The value stored by :meth:`set_json`, or None when absent or expired."""

    @abstractmethod
    def set_json(self, key: str, value: Any, ttl_s: float | None = None) -> None:
        """Store a JSON-serializable value, expiring after ``ttl_s`` seconds when given."""

    @abstractmethod
    def delete(self, *keys: str) -> int:
        """Delete keys of any kind; returns how many existed."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every key starting with ``prefix``; returns how many."""

    @abstractmethod
    def hset_json(self, key: str, mapping: dict[str, Any]) -> None:
        """Set fields of a hash (e.g. latest reading per device of a household), values as JSON."""

    @abstractmethod
    def hgetall_json(self, key: str) -> dict[str, Any]:
        """All fields of a hash, decoded ({} when absent)."""

    @abstractmethod
    def zadd(self, key: str, mapping: dict[str, float]) -> None:
        """Set member scores of a sorted set (leaderboards)."""

    @abstractmethod
    def ztop(self, key: str, n: int, offset: int = 0) -> list[tuple[str, float]]:
        """Members by score, highest first (ties: member descending, as Redis ZREVRANGE)."""

    @abstractmethod
    def zrank_desc(self, key: str, member: str) -> int | None:
        """0-based rank with the highest score first; None when not a member."""

    @abstractmethod
    def incr_window(self, key: str, window_s: float) -> int:
        """Record one hit and return the hits within the last ``window_s`` seconds (rate limits)."""

    @abstractmethod
    def ping(self) -> None:
        """Raise :class:`~hems.errors.ServiceUnavailable` when the cache cannot be reached."""

    @abstractmethod
    def zrange_by_score(self, key: str, min_score: float, max_score: float) -> list[tuple[str, float]]:
        """Members with ``min_score <= score <= max_score``, lowest score first (due-date sweeps)."""

    @abstractmethod
    def zrem(self, key: str, *members: str) -> int:
        """Remove members of a sorted set; returns how many were members."""

    def hset_json_many(self, items: Mapping[str, Mapping[str, Any]]) -> None:
        """Set fields of several hashes; Redis does it in one pipelined round trip (batch writers)."""
        for key, mapping in items.items():
            self.hset_json(key, dict(mapping))

    def hgetall_json_many(self, keys: Sequence[str]) -> list[dict[str, Any]]:
        """:meth:`hgetall_json` of several keys, in order; Redis: one pipelined round trip."""
        return [self.hgetall_json(key) for key in keys]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (no-op by default)."""

    def hget_json_many(self, key: str, fields: Sequence[str]) -> list[Any | None]:
        """Values of some fields of a hash, in order (None when absent); Redis: one HMGET."""
        stored = self.hgetall_json(key)
        return [stored.get(f) for f in fields]

    def zreplace(self, key: str, mapping: Mapping[str, float], ttl_s: float | None = None) -> None:
        """Replace a sorted set's members at once (readers see the old set or the new one),
        expiring after ``ttl_s``; an empty mapping deletes the set."""
        self.delete(key)
        self.zadd(key, dict(mapping))

    def hreplace_json(self, key: str, mapping: Mapping[str, Any], ttl_s: float | None = None) -> None:
        """Replace a hash's fields at once (values as JSON), expiring after ``ttl_s``."""
        self.delete(key)
        self.hset_json(key, dict(mapping))

    def read_version(self, name: str) -> str:
        """The current token of a named version (``"0"`` before the first bump)."""
        value = self.get_json(_VERSION_PREFIX + name)
        return "0" if value is None else str(value)

    def bump_version(self, name: str) -> str:
        """Move a named version to a new unique token, which every reader sees next; returns it."""
        token = _new_version_token()
        self.set_json(_VERSION_PREFIX + name, token)
        return token


# --- Redis ------------------------------------------------------------------------------------

# Atomic sliding window on the server's clock, so API workers on different hosts agree.
_INCR_WINDOW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
return redis.call('ZCARD', KEYS[1])
"""


class RedisCache(Cache):
    """Redis via redis-py; every key is prefixed with ``settings.key_prefix``."""

    def __init__(self, settings: RedisSettings) -> None:
        import redis
        from redis.backoff import ExponentialWithJitterBackoff
        from redis.retry import Retry

        self.prefix = settings.key_prefix
        self.address = f"{settings.host}:{settings.port}"
        self._errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
        self.client = redis.Redis(
            **redis_connection_kwargs(settings),
            socket_timeout=5,
            health_check_interval=30,
            # Fail within a second when Redis is down rather than redis-py's default ~10 retries.
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 2),
        )
        self._incr_window = self.client.register_script(_INCR_WINDOW_LUA)

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except self._errors as exc:
            raise ServiceUnavailable("Redis", self.address, REDIS_FIX, exc) from None

    def _k(self, key: str) -> str:
        return self.prefix + key

    def get_json(self, key: str) -> Any | None:
        with self._guard():
            raw = self.client.get(self._k(key))
        return None if raw is None else orjson.loads(raw)

    def set_json(self, key: str, value: Any, ttl_s: float | None = None) -> None:
        _check_ttl(ttl_s)
        px = None if ttl_s is None else max(1, round(ttl_s * 1000))
        with self._guard():
            self.client.set(self._k(key), _dumps(value), px=px)

    def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        with self._guard():
            return int(self.client.delete(*(self._k(k) for k in keys)))

    def delete_prefix(self, prefix: str) -> int:
        pattern = _glob_escape(self._k(prefix)) + "*"
        deleted = 0
        with self._guard():
            batch: list[bytes] = []
            for key in self.client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    deleted += int(self.client.unlink(*batch))
                    batch.clear()
            if batch:
                deleted += int(self.client.unlink(*batch))
        return deleted

    def hset_json(self, key: str, mapping: dict[str, Any]) -> None:
        if not mapping:
            return
        with self._guard():
            self.client.hset(self._k(key), mapping={f: _dumps(v) for f, v in mapping.items()})

    def hgetall_json(self, key: str) -> dict[str, Any]:
        with self._guard():
            raw = self.client.hgetall(self._k(key))
        return {_text(f): orjson.loads(v) for f, v in cast(dict[bytes, bytes], raw).items()}

    def zadd(self, key: str, mapping: dict[str, float]) -> None:
        if not mapping:
            return
        with self._guard():
            self.client.zadd(self._k(key), {m: float(s) for m, s in mapping.items()})

    def ztop(self, key: str, n: int, offset: int = 0) -> list[tuple[str, float]]:
        if n <= 0:
            return []
        with self._guard():
            rows = self.client.zrevrange(self._k(key), offset, offset + n - 1, withscores=True)
        return [(_text(m), float(s)) for m, s in cast(list[tuple[bytes, float]], rows)]

    def zrank_desc(self, key: str, member: str) -> int | None:
        with self._guard():
            rank = self.client.zrevrank(self._k(key), member)
        return None if rank is None else int(cast(int, rank))

    def zrange_by_score(self, key: str, min_score: float, max_score: float) -> list[tuple[str, float]]:
        with self._guard():
            rows = self.client.zrangebyscore(self._k(key), min_score, max_score, withscores=True)
        return [(_text(m), float(s)) for m, s in cast(list[tuple[bytes, float]], rows)]

    def zrem(self, key: str, *members: str) -> int:
        if not members:
            return 0
        with self._guard():
            return int(cast(int, self.client.zrem(self._k(key), *members)))

    def hset_json_many(self, items: Mapping[str, Mapping[str, Any]]) -> None:
        items = {k: m for k, m in items.items() if m}
        if not items:
            return
        with self._guard():
            pipe = self.client.pipeline(transaction=False)
            for key, mapping in items.items():
                pipe.hset(self._k(key), mapping={f: _dumps(v) for f, v in mapping.items()})
            pipe.execute()

    def hgetall_json_many(self, keys: Sequence[str]) -> list[dict[str, Any]]:
        if not keys:
            return []
        with self._guard():
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(self._k(key))
            raws = pipe.execute()
        return [{_text(f): orjson.loads(v) for f, v in cast(dict[bytes, bytes], raw).items()} for raw in raws]

    def hget_json_many(self, key: str, fields: Sequence[str]) -> list[Any | None]:
        if not fields:
            return []
        with self._guard():
            raws = cast(list[bytes | None], self.client.hmget(self._k(key), list(fields)))
        return [None if raw is None else orjson.loads(raw) for raw in raws]

    def zreplace(self, key: str, mapping: Mapping[str, float], ttl_s: float | None = None) -> None:
        _check_ttl(ttl_s)
        with self._guard():
            pipe = self.client.pipeline(transaction=True)  # MULTI/EXEC: no reader sees a half set
            pipe.delete(self._k(key))
            if mapping:
                pipe.zadd(self._k(key), {m: float(s) for m, s in mapping.items()})
                if ttl_s is not None:
                    pipe.pexpire(self._k(key), max(1, round(ttl_s * 1000)))
            pipe.execute()

    def hreplace_json(self, key: str, mapping: Mapping[str, Any], ttl_s: float | None = None) -> None:
        _check_ttl(ttl_s)
        with self._guard():
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(self._k(key))
            if mapping:
                pipe.hset(self._k(key), mapping={f: _dumps(v) for f, v in mapping.items()})
                if ttl_s is not None:
                    pipe.pexpire(self._k(key), max(1, round(ttl_s * 1000)))
            pipe.execute()

    def incr_window(self, key: str, window_s: float) -> int:
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        window_us = max(1, round(window_s * 1_000_000))
        with self._guard():
            count = self._incr_window(keys=[self._k(key)], args=[window_us, uuid.uuid4().hex])
        return int(cast(int, count))

    def ping(self) -> None:
        with self._guard():
            self.client.ping()

    def close(self) -> None:
        self.client.close()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _glob_escape(text: str) -> str:
    """SCAN MATCH is a glob: escape its metacharacters so a prefix matches only itself."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


# --- in-process ------------------------------------------------------------------------------


class MemoryCache(Cache):
    """In-process cache for the embedded profile: thread-safe, TTLs honoured (lazily + sweeps).

    Values are stored as JSON bytes, so callers get copies and the same serialization errors
    as with Redis.
    """

    _SWEEP_EVERY = 1024

    def __init__(self, shared_dir: Path | None = None) -> None:
        self._lock = threading.RLock()
        self._data: dict[str, Any] = {}
        self._expires: dict[str, float] = {}
        self._ops = 0
        #: where named versions live: the pipeline that bumps them runs in another process, so
        #: they are small files there (None: in this process only, like every other key)
        self.shared_dir = shared_dir
        self._versions: dict[str, tuple[tuple[int, int], str]] = {}

    # Each helper below expects self._lock to be held.
    def _live(self, key: str) -> Any | None:
        deadline = self._expires.get(key)
        if deadline is not None and deadline <= time.monotonic():
            self._data.pop(key, None)
            self._expires.pop(key, None)
            return None
        return self._data.get(key)

    def _typed(self, key: str, kind: type) -> Any | None:
        value = self._live(key)
        if value is not None and not isinstance(value, kind):
            raise TypeError(f"cache key {key!r} holds a {type(value).__name__}, not a {kind.__name__}")
        return value

    def _tick(self) -> None:
        self._ops += 1
        if self._ops % self._SWEEP_EVERY == 0:
            now = time.monotonic()
            for key in [k for k, d in self._expires.items() if d <= now]:
                self._data.pop(key, None)
                self._expires.pop(key, None)

    def get_json(self, key: str) -> Any | None:
        with self._lock:
            raw = self._typed(key, bytes)
        return None if raw is None else orjson.loads(raw)

    def set_json(self, key: str, value: Any, ttl_s: float | None = None) -> None:
        _check_ttl(ttl_s)
        raw = _dumps(value)
        with self._lock:
            self._tick()
            self._data[key] = raw
            if ttl_s is None:
                self._expires.pop(key, None)
            else:
                self._expires[key] = time.monotonic() + ttl_s

    def delete(self, *keys: str) -> int:
        with self._lock:
            found = 0
            for key in keys:
                found += self._live(key) is not None
                self._data.pop(key, None)
                self._expires.pop(key, None)
            return found

    def delete_prefix(self, prefix: str) -> int:
        with self._lock:
            return self.delete(*[k for k in list(self._data) if k.startswith(prefix)])

    def hset_json(self, key: str, mapping: dict[str, Any]) -> None:
        encoded = {f: _dumps(v) for f, v in mapping.items()}
        if not encoded:
            return
        with self._lock:
            self._tick()
            current = self._typed(key, dict)
            if current is None:
                current = self._data[key] = {}
            current.update(encoded)

    def hgetall_json(self, key: str) -> dict[str, Any]:
        with self._lock:
            raw = dict(self._typed(key, dict) or {})
        return {f: orjson.loads(v) for f, v in raw.items()}

    def zadd(self, key: str, mapping: dict[str, float]) -> None:
        if not mapping:
            return
        with self._lock:
            self._tick()
            zset = self._typed(key, _SortedSet)
            if zset is None:
                zset = self._data[key] = _SortedSet()
            for member, score in mapping.items():
                zset.add(member, float(score))

    def ztop(self, key: str, n: int, offset: int = 0) -> list[tuple[str, float]]:
        if n <= 0:
            return []
        with self._lock:
            zset = self._typed(key, _SortedSet)
            return [] if zset is None else zset.top(n, offset)

    def zrank_desc(self, key: str, member: str) -> int | None:
        with self._lock:
            zset = self._typed(key, _SortedSet)
            return None if zset is None else zset.rank_desc(member)

    def zrange_by_score(self, key: str, min_score: float, max_score: float) -> list[tuple[str, float]]:
        with self._lock:
            zset = self._typed(key, _SortedSet)
            return [] if zset is None else zset.range_by_score(min_score, max_score)

    def zrem(self, key: str, *members: str) -> int:
        with self._lock:
            zset = self._typed(key, _SortedSet)
            return 0 if zset is None else sum(zset.remove(m) for m in members)

    def incr_window(self, key: str, window_s: float) -> int:
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        with self._lock:
            self._tick()
            now = time.monotonic()
            hits = self._typed(key, _Window)
            if hits is None:
                hits = self._data[key] = _Window()
            hits.drop_until(now - window_s)
            hits.append(now)
            self._expires[key] = now + window_s
            return len(hits)

    def ping(self) -> None:
        return None

    def zreplace(self, key: str, mapping: Mapping[str, float], ttl_s: float | None = None) -> None:
        _check_ttl(ttl_s)
        zset = _SortedSet()
        for member, score in mapping.items():
            zset.add(member, float(score))
        self._swap(key, zset if mapping else None, ttl_s)

    def hreplace_json(self, key: str, mapping: Mapping[str, Any], ttl_s: float | None = None) -> None:
        _check_ttl(ttl_s)
        self._swap(key, {f: _dumps(v) for f, v in mapping.items()} or None, ttl_s)

    def _swap(self, key: str, value: Any | None, ttl_s: float | None) -> None:
        with self._lock:
            self._tick()
            self._data.pop(key, None)
            self._expires.pop(key, None)
            if value is not None:
                self._data[key] = value
                if ttl_s is not None:
                    self._expires[key] = time.monotonic() + ttl_s

    def _version_file(self, name: str) -> Path | None:
        if self.shared_dir is None:
            return None
        return self.shared_dir / ("version_" + "".join(c if c.isalnum() else "_" for c in name))

    def read_version(self, name: str) -> str:
        path = self._version_file(name)
        if path is None:
            return super().read_version(name)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return "0"
        stamp = (stat.st_mtime_ns, stat.st_ino)
        known = self._versions.get(name)
        if known is not None and known[0] == stamp:
            return known[1]  # a stat per request, a read only when the file was replaced
        token = path.read_text(encoding="ascii").strip() or "0"
        self._versions[name] = (stamp, token)
        return token

    def bump_version(self, name: str) -> str:
        path = self._version_file(name)
        if path is None:
            return super().bump_version(name)
        token = _new_version_token()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(token, encoding="ascii")
        os.replace(tmp, path)  # atomic: readers see the old token or the new one
        return token


class _Window(list[float]):
    """Ascending hit times of one sliding window."""

    def drop_until(self, cutoff: float) -> None:
        del self[: bisect.bisect_right(self, cutoff)]


class _SortedSet:
    """Member → score, plus a list ordered like Redis (score, member) for ranks and ranges."""

    def __init__(self) -> None:
        self.scores: dict[str, float] = {}
        self.order: list[tuple[float, str]] = []

    def add(self, member: str, score: float) -> None:
        old = self.scores.get(member)
        if old is not None:
            del self.order[bisect.bisect_left(self.order, (old, member))]
        self.scores[member] = score
        bisect.insort(self.order, (score, member))

    def remove(self, member: str) -> bool:
        score = self.scores.pop(member, None)
        if score is None:
            return False
        del self.order[bisect.bisect_left(self.order, (score, member))]
        return True

    def range_by_score(self, low: float, high: float) -> list[tuple[str, float]]:
        start = bisect.bisect_left(self.order, (low, ""))
        out = []
        for score, member in self.order[start:]:
            if score > high:
                break
            out.append((member, score))
        return out

    def top(self, n: int, offset: int) -> list[tuple[str, float]]:
        end = len(self.order) - offset
        start = max(0, end - n)
        return [(m, s) for s, m in reversed(self.order[start:end])] if end > 0 else []

    def rank_desc(self, member: str) -> int | None:
        score = self.scores.get(member)
        if score is None:
            return None
        return len(self.order) - 1 - bisect.bisect_left(self.order, (score, member))


# --- factory ---------------------------------------------------------------------------------


def _local_cache() -> MemoryCache:
    from hems.settings import get_settings

    return MemoryCache(shared_dir=get_settings().data_dir / "cache")


_instances: ProfileInstances[Cache] = ProfileInstances(RedisCache, _local_cache)


def get_cache(settings: Settings | None = None) -> Cache:
    """The cache for the profile: Redis in ``stack``, one process-wide MemoryCache in ``local``."""
    return _instances.get(settings)


# --- versions of derived data ----------------------------------------------------------------

_VERSION_PREFIX = "version:"
MARTS = "marts"


def _new_version_token() -> str:
    return f"{time.time_ns():x}-{uuid.uuid4().hex[:8]}"


def marts_version(cache: Cache) -> str:
    """The token of the current marts refresh. Answers cached from the marts (dashboard,
    leaderboard) put it in their keys, so a refresh makes every earlier answer unreachable at
    once; they then expire by their TTL. ``"0"`` until the pipeline first publishes."""
    return cache.read_version(MARTS)


def bump_marts_version(cache: Cache) -> str:
    """Call when the marts (and their copies in the app database) have been refreshed."""
    return cache.bump_version(MARTS)
