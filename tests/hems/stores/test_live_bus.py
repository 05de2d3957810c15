"""The live bus on both implementations: Redis pub/sub (real server) and in-process queues."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from hems.settings import Profile, RedisSettings, Settings
from hems.stores.live_bus import InProcessLiveBus, LiveBus, RedisLiveBus, get_live_bus


@pytest.fixture(params=["redis", "in_process"])
def bus(request: pytest.FixtureRequest) -> Iterator[LiveBus]:
    if request.param == "redis":
        prefix = request.getfixturevalue("redis_prefix")
        made: LiveBus = RedisLiveBus(RedisSettings(key_prefix=prefix))
    else:
        made = InProcessLiveBus()
    yield made
    made.close()


async def _next(sub: object, timeout: float = 5.0) -> dict:
    return await asyncio.wait_for(sub.__anext__(), timeout)  # type: ignore[attr-defined]


def test_roundtrip_from_another_thread_reaches_only_that_household(bus: LiveBus) -> None:
    async def main() -> list[dict]:
        async with bus.subscribe("hh-1") as sub, bus.subscribe("hh-1") as twin:
            loop = asyncio.get_running_loop()
            # the ingest side publishes from its own (non-async) thread
            await loop.run_in_executor(None, bus.publish, "hh-2", {"n": 0})
            await loop.run_in_executor(
                None, bus.publish_many, [("hh-1", {"n": 1}), ("hh-2", {"n": 2}), ("hh-1", {"n": 3})]
            )
            got = [await _next(sub), await _next(sub)]
            assert [await _next(twin), await _next(twin)] == got
            return got

    assert asyncio.run(main()) == [{"n": 1}, {"n": 3}]


def test_slow_consumer_drops_oldest_and_never_blocks_publish(bus: LiveBus) -> None:
    async def main() -> tuple[float, list[int], int]:
        async with bus.subscribe("hh-1", max_queue=5) as sub:
            loop = asyncio.get_running_loop()

            def flood() -> float:
                started = time.perf_counter()
                for i in range(2_000):
                    bus.publish("hh-1", {"i": i})
                return time.perf_counter() - started

            elapsed = await loop.run_in_executor(None, flood)
            # nobody consumed meanwhile; wait for the last message to be queued, then drain
            deadline = time.monotonic() + 5
            seen: list[int] = []
            while time.monotonic() < deadline and (not seen or seen[-1] != 1_999):
                await asyncio.sleep(0.05)
                while not sub._queue.empty():  # type: ignore[union-attr]
                    seen.append((await _next(sub))["i"])
            return elapsed, seen, sub.dropped

    elapsed, seen, dropped = asyncio.run(main())
    assert elapsed < 5.0
    assert seen[-1] == 1_999  # the newest always survives
    assert seen == sorted(seen) and len(seen) <= 5 + 5  # bounded: ~max_queue kept, oldest dropped
    assert dropped >= 2_000 - len(seen) - 5


def test_closing_ends_iteration_and_unsubscribes() -> None:
    bus = InProcessLiveBus()

    async def main() -> None:
        sub = bus.subscribe("hh-1")
        waiter = asyncio.ensure_future(sub.__anext__())
        await asyncio.sleep(0.01)  # the first __anext__ subscribes
        assert bus.subscriber_count("hh-1") == 1
        await sub.aclose()
        with pytest.raises(StopAsyncIteration):
            await waiter
        assert bus.subscriber_count("hh-1") == 0

    asyncio.run(main())
    # a subscriber whose loop has ended is dropped by the next publish instead of failing it
    stale = bus.subscribe("hh-1")
    asyncio.run(stale.start())
    threading.Thread(target=bus.publish, args=("hh-1", {"x": 1})).start()
    time.sleep(0.1)
    bus.publish("hh-1", {"x": 2})
    assert bus.subscriber_count("hh-1") == 0


def test_bad_payloads_are_refused(bus: LiveBus) -> None:
    with pytest.raises(ValueError, match="household_id"):
        bus.publish("", {"a": 1})
    with pytest.raises(TypeError, match="dict"):
        bus.publish("hh-1", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        bus.publish("hh-1", {"a": object()})


def test_factory_follows_the_profile(redis_prefix: str) -> None:
    assert isinstance(get_live_bus(Settings(profile=Profile.local)), InProcessLiveBus)
    assert get_live_bus(Settings(profile=Profile.local)) is get_live_bus(Settings(profile=Profile.local))
    stack = get_live_bus(Settings(profile=Profile.stack, redis={"key_prefix": redis_prefix}))
    assert isinstance(stack, RedisLiveBus) and stack.channel("hh-1") == f"{redis_prefix}live:hh-1"
