"""Cached answers read from Redis on the event loop, in one round trip, as the stored JSON bytes.

Why: a cached dashboard is three cache reads (the marts version, the marts part under that
version, today's part). Through the synchronous :class:`~hems.stores.cache.RedisCache` they are
three blocking round trips in a thread-pool hop, which under 64 concurrent connections left the
worker mostly waiting on threads; here they are one ``EVALSHA`` on the worker's event loop
(:class:`serving.redis_scripts.LoopScript`), and the values come back as the bytes
:meth:`Cache.set_json` stored (no decode and re-encode to answer).

Reads only: writes (and every in-process cache) stay with :mod:`hems.stores.cache`, whose key
layout (``key_prefix`` + key, values as JSON, the marts version under ``version:marts``) this
module follows.
"""

from __future__ import annotations

from typing import cast

import orjson
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hems.errors import ServiceUnavailable
from hems.stores.cache import _VERSION_PREFIX, MARTS, REDIS_FIX, RedisCache
from serving.redis_scripts import LoopScript

#: KEYS[1] the version key. ARGV[1], ARGV[2]: the versioned key before and after the version;
#: ARGV[3..]: further keys read alongside. Returns {version, versioned value, further values...}
#: with "" for absent values (stored values are JSON, never empty). Atomic: the value is the one
#: stored under the version that was current at that instant.
_VERSIONED_GET_LUA = """
local raw = redis.call('GET', KEYS[1])
local version = '0'
if raw then version = tostring(cjson.decode(raw)) end
local out = {version, redis.call('GET', ARGV[1] .. version .. ARGV[2]) or ''}
for i = 3, #ARGV do out[#out + 1] = redis.call('GET', ARGV[i]) or '' end
return out
"""

_VERSION_MARK = "\x00version\x00"


class AsyncCacheReader:
    """Reads of one :class:`RedisCache`'s keys over ``redis.asyncio`` (a client per event loop),
    with the same address, database and credentials."""

    def __init__(self, cache: RedisCache) -> None:
        kwargs = cache.client.connection_pool.connection_kwargs
        self.prefix, self.address = cache.prefix, cache.address
        connection = {
            k: kwargs[k]
            for k in ("host", "port", "db", "username", "password", "socket_connect_timeout")
            if k in kwargs
        }
        self._script = LoopScript(connection, _VERSIONED_GET_LUA, timeout_s=5.0)

    async def marts_get(
        self, key_template: str, *others: str
    ) -> tuple[str, bytes | None, list[bytes | None]]:
        """(marts version, the value of ``key_template`` with ``{version}`` filled in, the values of
        ``others``) — values as stored (JSON bytes), None when absent."""
        before, _, after = key_template.replace("{version}", _VERSION_MARK, 1).partition(_VERSION_MARK)
        try:
            result = await self._script(
                keys=[self.prefix + _VERSION_PREFIX + MARTS],
                args=[self.prefix + before, after, *(self.prefix + k for k in others)],
            )
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise ServiceUnavailable("Redis", self.address, REDIS_FIX, exc) from None
        version, value, *rest = result
        return (
            version.decode() if isinstance(version, bytes) else str(version),
            value or None,
            [v or None for v in rest],
        )


def async_reader(cache: RedisCache) -> AsyncCacheReader:
    """The reader of ``cache`` (made once per cache instance; the profile's cache is process-wide)."""
    reader = cache.__dict__.get("_hems_async_reader")
    if reader is None:
        reader = cache.__dict__["_hems_async_reader"] = AsyncCacheReader(cache)
    return cast(AsyncCacheReader, reader)


def splice_object(obj: bytes, key: str, value: bytes) -> bytes:
    """The JSON object ``obj`` with ``key: value`` appended (``value`` already JSON), without
    decoding: ``{"a":1}`` + ``today`` → ``{"a":1,"today":…}``. ``obj`` must be a non-empty
    JSON object without ``key`` (callers store it so)."""
    return obj[:-1] + b"," + orjson.dumps(key) + b":" + value + b"}"
