"""Process-wide instances of a store chosen by profile: one per Redis address, or one in-process.

The cache and the live bus both need this: in ``stack`` every caller with the same Redis
address and key prefix shares one client (and its connection pool); in ``local`` every caller
in the process shares one in-memory instance, which is what makes it a cache or a bus at all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from hems.settings import Profile, RedisSettings, Settings, get_settings

T = TypeVar("T")


class ProfileInstances(Generic[T]):
    def __init__(self, redis_factory: Callable[[RedisSettings], T], local_factory: Callable[[], T]) -> None:
        self._redis_factory, self._local_factory = redis_factory, local_factory
        self._lock = threading.Lock()
        self._local: T | None = None
        self._redis: dict[tuple[str, int, int, str], T] = {}

    def get(self, settings: Settings | None = None) -> T:
        settings = settings or get_settings()
        with self._lock:
            if settings.profile is Profile.stack:
                r = settings.redis
                ident = (r.host, r.port, r.db, r.key_prefix)
                if ident not in self._redis:
                    self._redis[ident] = self._redis_factory(r)
                return self._redis[ident]
            if self._local is None:
                self._local = self._local_factory()
            return self._local
