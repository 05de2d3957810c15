"""Lua scripts on the request path (rate limit, cached reads) over ``redis.asyncio``.

Why one small wrapper: a ``redis.asyncio`` client belongs to the event loop it first ran on, and
a server has one loop while test clients may start several, so each loop gets its own client.
Scripts go out as ``EVALSHA`` and are loaded on ``NOSCRIPT`` (redis-py's ``register_script``).
A call that takes longer than ``timeout_s`` raises redis-py's ``TimeoutError``; a refused
connection its ``ConnectionError``; callers turn those into a fallback or a 503.

Pool: a plain pool sized well above a worker's concurrent requests (``max_connections``, 512),
because redis-py's default of 100 fails a burst with ``MaxConnectionsError``, and its
``BlockingConnectionPool`` starved waiters past their timeout here (64 tasks on 32 connections:
"No connection available" within 1 s) and cost more CPU per call.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript


class LoopScript:
    """One Lua script, callable as ``await script(keys, args)`` from any event loop."""

    def __init__(
        self, connection: dict[str, Any], source: str, timeout_s: float = 1.0, max_connections: int = 512
    ) -> None:
        self.connection, self.source, self.timeout_s = connection, source, timeout_s
        self.max_connections = max_connections
        self._scripts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncScript] = (
            weakref.WeakKeyDictionary()
        )

    def _script(self) -> AsyncScript:
        loop = asyncio.get_running_loop()
        script = self._scripts.get(loop)
        if script is None:
            pool = ConnectionPool(
                **self.connection,
                max_connections=self.max_connections,
                socket_timeout=self.timeout_s,
                retry=Retry(NoBackoff(), 1),  # one quick retry, then the caller's fallback
            )
            client = Redis(connection_pool=pool)
            script = self._scripts[loop] = client.register_script(self.source)
        return script

    async def __call__(self, keys: list[str], args: list[Any]) -> Any:
        return await self._script()(keys=keys, args=args)


__all__ = ["LoopScript"]
