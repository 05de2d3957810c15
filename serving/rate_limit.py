"""Sliding-window rate limiting: Redis (stack profile, shared by every API worker) or in-process.

A window is a log of hit times (a Redis sorted set scored by the server's clock in µs). A hit
is recorded only when it is allowed, so a client that keeps hammering after its 100th request
is let in again exactly when its oldest counted request leaves the window — which is what
``Retry-After`` tells it.
"""

from __future__ import annotations

import collections
import itertools
import logging
import math
import secrets
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from hems.settings import Profile, Settings
from hems.stores.redis_client import redis_connection_kwargs
from serving.redis_scripts import LoopScript

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    #: seconds until one more request is allowed (0 when allowed)
    retry_after_s: float


class RateLimiter(ABC):
    def __init__(self, limit: int, window_s: float) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError(f"limit must be >= 1 and window positive, got {limit}, {window_s}")
        self.limit, self.window_s = limit, window_s

    @abstractmethod
    async def hit(self, who: str) -> Decision:
        """Count one request of ``who`` if the window has room."""


class MemoryRateLimiter(RateLimiter):
    """One process (embedded profile): a deque of monotonic hit times per caller."""

    _SWEEP_EVERY = 4096

    def __init__(self, limit: int, window_s: float, clock: Any = time.monotonic) -> None:
        super().__init__(limit, window_s)
        self._clock = clock
        self._hits: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()  # TestClient and threads may call from several loops
        self._calls = 0

    async def hit(self, who: str) -> Decision:
        return self.hit_sync(who)

    def hit_sync(self, who: str) -> Decision:
        now = self._clock()
        cutoff = now - self.window_s
        with self._lock:
            self._calls += 1
            if self._calls % self._SWEEP_EVERY == 0:
                for key in [k for k, d in self._hits.items() if not d or d[-1] <= cutoff]:
                    del self._hits[key]
            hits = self._hits.setdefault(who, collections.deque())
            while hits and hits[0] <= cutoff:
                hits.popleft()
            if len(hits) < self.limit:
                hits.append(now)
                return Decision(True, self.limit, self.limit - len(hits), 0.0)
            return Decision(False, self.limit, 0, hits[0] + self.window_s - now)


# KEYS[1] window; ARGV window µs, limit, unique member. Returns {allowed, count, retry_after µs}.
_HIT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
  return {1, count + 1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, count, tonumber(oldest[2]) + window - now}
"""


class RedisRateLimiter(RateLimiter):
    """Every API worker shares the windows; the script runs atomically on Redis's clock.

    When Redis fails, this worker limits in-process (:class:`MemoryRateLimiter`) and leaves
    Redis alone for ``breaker_s`` seconds, so an outage neither lifts the limit nor makes every
    request wait for a connection attempt. ``errors`` counts the failures (exported as a metric).

    The script runs over ``redis.asyncio`` with one client per event loop
    (:class:`serving.redis_scripts.LoopScript`); 1 s to answer, then the fallback.
    """

    def __init__(self, settings: Settings, limit: int, window_s: float, breaker_s: float = 5.0) -> None:
        super().__init__(limit, window_s)
        self.redis_settings = settings.redis
        self.prefix = settings.redis.key_prefix + settings.api.rate_limit_key_prefix
        self.fallback = MemoryRateLimiter(limit, window_s)
        self.breaker_s = breaker_s
        self.errors = 0
        self._down_until = 0.0
        # window members must be unique: a random tag per limiter (process) and a counter, which
        # costs less per request than a uuid4 (an os.urandom call)
        self._member_tag = secrets.token_hex(8) + "-"
        self._members = itertools.count()
        self._script = LoopScript(redis_connection_kwargs(settings.redis), _HIT_LUA, timeout_s=1.0)

    async def hit(self, who: str) -> Decision:
        if time.monotonic() < self._down_until:
            return self.fallback.hit_sync(who)
        window_us = max(1, round(self.window_s * 1_000_000))
        try:
            member = f"{self._member_tag}{next(self._members)}"
            result = await self._script(keys=[self.prefix + who], args=[window_us, self.limit, member])
        except RedisError as exc:
            self.errors += 1
            self._down_until = time.monotonic() + self.breaker_s
            log.warning("rate limiting in-process for %.0f s: Redis failed (%s)", self.breaker_s, exc)
            return self.fallback.hit_sync(who)
        allowed, count, retry_us = result
        if int(allowed):
            return Decision(True, self.limit, max(self.limit - int(count), 0), 0.0)
        return Decision(False, self.limit, 0, max(int(retry_us), 0) / 1_000_000)


def rate_limiter_for(settings: Settings) -> RateLimiter:
    """Redis in the stack profile, in-process when embedded."""
    limit, window = settings.api.rate_limit_requests, settings.api.rate_limit_window_s
    if settings.profile is Profile.stack:
        return RedisRateLimiter(settings, limit, window)
    return MemoryRateLimiter(limit, window)


def retry_after_header(seconds: float) -> str:
    """Whole seconds, rounded up, at least 1 (RFC 9110 delay-seconds)."""
    return str(max(1, math.ceil(seconds)))
