"""The live bus: a household's new readings, fanned out to whoever watches it (WebSocket clients).

Why a bus rather than polling the cache: apps want each update as it lands, and the ingest worker
and the API are different processes in the stack profile, so Redis pub/sub carries the messages
(channel ``<key_prefix>live:<household_id>``). The embedded profile runs everything in one
process, so an in-process bus with asyncio queues does the same without a server.

Delivery is best effort and never blocks the publisher: every subscriber has a bounded queue
that drops its *oldest* message when full, so a slow client falls behind on history, never on
the latest value, and never slows ingest. Payloads are JSON (encoded once per publish).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import orjson

from hems.errors import ServiceUnavailable
from hems.stores.profile_instances import ProfileInstances
from hems.stores.redis_client import redis_connection_kwargs

if TYPE_CHECKING:
    from hems.settings import RedisSettings, Settings

log = logging.getLogger(__name__)

#: messages a subscriber may have waiting before the oldest is dropped
DEFAULT_MAX_QUEUE = 256

_CLOSED = object()  # queue sentinel: the subscription ended


def _encode(household_id: str, payload: dict[str, Any]) -> bytes:
    if not isinstance(household_id, str) or not household_id:
        raise ValueError(f"household_id must be a non-empty string, got {household_id!r}")
    if not isinstance(payload, dict):
        raise TypeError(f"a live payload is a dict, got {type(payload).__name__}")
    return orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS)


class Subscription(ABC):
    """One subscriber's stream: an async iterator of payload dicts, and an async context manager.

    Use ``async with bus.subscribe(h) as sub`` when nothing may be missed between subscribing and
    the first read (the WebSocket sends a snapshot in between); plain ``async for`` also works and
    subscribes on the first iteration. ``dropped`` counts messages lost to a full queue.
    """

    def __init__(self, household_id: str, max_queue: int) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, got {max_queue}")
        self.household_id = household_id
        self.max_queue = max_queue
        self.dropped = 0
        self._queue: asyncio.Queue[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._error: BaseException | None = None

    async def start(self) -> Subscription:
        """Subscribe now; when this returns, every later publish reaches this subscriber."""
        if self._queue is None:
            self._loop = asyncio.get_running_loop()
            self._queue = asyncio.Queue()
            await self._open()
        return self

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._queue is not None:
            await self._close()
            self._queue.put_nowait(_CLOSED)  # wake a reader still waiting in __anext__

    async def __aenter__(self) -> Subscription:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        await self.start()
        assert self._queue is not None
        if self._closed and self._queue.empty():
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is _CLOSED:
            self._closed = True
            if self._error is not None:
                raise self._error
            raise StopAsyncIteration
        return orjson.loads(item)  # type: ignore[no-any-return]

    def _offer(self, item: Any) -> None:
        """Enqueue on the subscriber's loop, dropping the oldest message when full."""
        assert self._queue is not None
        if item is not _CLOSED and self._queue.qsize() >= self.max_queue:
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(item)

    def _end(self, error: BaseException | None = None) -> None:
        self._error = error
        self._offer(_CLOSED)

    @abstractmethod
    async def _open(self) -> None: ...

    @abstractmethod
    async def _close(self) -> None: ...


class LiveBus(ABC):
    @abstractmethod
    def publish(self, household_id: str, payload: dict[str, Any]) -> None:
        """Send one payload to the household's subscribers; never waits for them. Thread-safe."""

    def publish_many(self, items: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Several publishes (Redis: one pipelined round trip)."""
        for household_id, payload in items:
            self.publish(household_id, payload)

    @abstractmethod
    def subscribe(self, household_id: str, *, max_queue: int = DEFAULT_MAX_QUEUE) -> Subscription:
        """A stream of the household's payloads published after the subscription starts."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (no-op by default)."""


# --- in-process ------------------------------------------------------------------------------


class InProcessLiveBus(LiveBus):
    """Subscribers' queues live on their event loops; publishers on any thread hand messages over
    with ``loop.call_soon_threadsafe`` (ingest runs in worker threads, WebSockets on the loop)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[str, set[_InProcessSubscription]] = {}

    def publish(self, household_id: str, payload: dict[str, Any]) -> None:
        self._deliver(household_id, _encode(household_id, payload))

    def _deliver(self, household_id: str, data: bytes) -> None:
        with self._lock:
            subscribers = list(self._subscribers.get(household_id, ()))
        for sub in subscribers:
            loop = sub._loop
            try:
                assert loop is not None
                loop.call_soon_threadsafe(sub._offer, data)
            except RuntimeError:  # its loop is closed: the subscriber is gone
                self._remove(sub)

    def subscribe(self, household_id: str, *, max_queue: int = DEFAULT_MAX_QUEUE) -> Subscription:
        _encode(household_id, {})
        return _InProcessSubscription(self, household_id, max_queue)

    def subscriber_count(self, household_id: str) -> int:
        with self._lock:
            return len(self._subscribers.get(household_id, ()))

    def _add(self, sub: _InProcessSubscription) -> None:
        with self._lock:
            self._subscribers.setdefault(sub.household_id, set()).add(sub)

    def _remove(self, sub: _InProcessSubscription) -> None:
        with self._lock:
            subs = self._subscribers.get(sub.household_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subscribers[sub.household_id]


class _InProcessSubscription(Subscription):
    def __init__(self, bus: InProcessLiveBus, household_id: str, max_queue: int) -> None:
        super().__init__(household_id, max_queue)
        self._bus = bus

    async def _open(self) -> None:
        self._bus._add(self)

    async def _close(self) -> None:
        self._bus._remove(self)


# --- Redis -----------------------------------------------------------------------------------


class RedisLiveBus(LiveBus):
    """Redis pub/sub: publish with the sync client (ingest threads), subscribe with redis.asyncio.

    Each subscription has its own connection and a reader task that moves messages into the
    bounded queue, so a slow consumer drops old messages here instead of filling Redis's output
    buffer (which would get the connection killed by ``client-output-buffer-limit pubsub``).
    """

    def __init__(self, settings: RedisSettings) -> None:
        import redis

        self.settings = settings
        self.prefix = settings.key_prefix
        self.address = f"{settings.host}:{settings.port}"
        self._errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
        self.client = redis.Redis(**redis_connection_kwargs(settings), socket_timeout=5)

    def channel(self, household_id: str) -> str:
        return f"{self.prefix}live:{household_id}"

    def unavailable(self, exc: BaseException) -> ServiceUnavailable:
        from hems.stores.cache import REDIS_FIX

        return ServiceUnavailable("Redis", self.address, REDIS_FIX, exc)

    def publish(self, household_id: str, payload: dict[str, Any]) -> None:
        data = _encode(household_id, payload)
        try:
            self.client.publish(self.channel(household_id), data)
        except self._errors as exc:
            raise self.unavailable(exc) from None

    def publish_many(self, items: Iterable[tuple[str, dict[str, Any]]]) -> None:
        encoded = [(self.channel(h), _encode(h, p)) for h, p in items]
        if not encoded:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for channel, data in encoded:
                pipe.publish(channel, data)
            pipe.execute()
        except self._errors as exc:
            raise self.unavailable(exc) from None

    def subscribe(self, household_id: str, *, max_queue: int = DEFAULT_MAX_QUEUE) -> Subscription:
        _encode(household_id, {})
        return _RedisSubscription(self, household_id, max_queue)

    def close(self) -> None:
        self.client.close()


class _RedisSubscription(Subscription):
    def __init__(self, bus: RedisLiveBus, household_id: str, max_queue: int) -> None:
        super().__init__(household_id, max_queue)
        self._bus = bus
        self._client: Any = None
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None

    async def _open(self) -> None:
        import redis.asyncio as aioredis

        # no read timeout: a subscriber waits on the channel for as long as the client listens
        self._client = aioredis.Redis(**redis_connection_kwargs(self._bus.settings))
        self._pubsub = self._client.pubsub()
        channel = self._bus.channel(self.household_id)
        try:
            await self._pubsub.subscribe(channel)
            # wait for the confirmation: from here on every publish reaches us
            while True:
                msg = await self._pubsub.get_message(timeout=5.0)
                if msg is None:
                    raise TimeoutError(f"no SUBSCRIBE confirmation for {channel}")
                if msg["type"] == "subscribe":
                    break
        except (*self._bus._errors, TimeoutError, OSError) as exc:
            await self._release()
            raise self._bus.unavailable(exc) from None
        self._reader = asyncio.create_task(self._read(), name=f"live-bus-reader:{channel}")

    async def _read(self) -> None:
        try:
            async for msg in self._pubsub.listen():
                if msg["type"] == "message":
                    self._offer(msg["data"])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # connection lost: end the stream with a clear error
            self._end(self._bus.unavailable(exc))
            return
        self._end()

    async def _close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self._release()

    async def _release(self) -> None:
        try:
            if self._pubsub is not None:
                await self._pubsub.aclose()
            if self._client is not None:
                await self._client.aclose()
        except Exception:  # closing a broken connection must not mask the caller's outcome
            log.debug("closing a live-bus subscription failed", exc_info=True)


# --- factory ---------------------------------------------------------------------------------

_instances: ProfileInstances[LiveBus] = ProfileInstances(RedisLiveBus, InProcessLiveBus)


def get_live_bus(settings: Settings | None = None) -> LiveBus:
    """Redis pub/sub in ``stack``; one process-wide in-process bus in ``local``."""
    return _instances.get(settings)
