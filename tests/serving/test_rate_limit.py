"""Rate limit: exactly 100 requests per 15 minutes per user, the 101st is a 429 with Retry-After —
in-process (embedded profile) and in real Redis (stack profile, throwaway key prefix)."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
import redis
from fastapi.testclient import TestClient

from hems.settings import Profile, Settings
from serving.rate_limit import MemoryRateLimiter, RateLimiter, RedisRateLimiter, rate_limiter_for
from tests.serving.conftest import Account
from tests.support import require_service


def _client(limiter: RateLimiter | None = None) -> TestClient:
    from serving.main import create_app

    return TestClient(create_app(rate_limiter=limiter))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _exactly_100_then_429(client: TestClient, accounts: dict[str, Account]) -> None:
    alice = accounts["alice"].headers
    for n in range(1, 101):
        r = client.get("/households/hh-1", headers=alice)
        assert r.status_code == 200, (n, r.text)
        assert r.headers["x-ratelimit-remaining"] == str(100 - n)
    refused = client.get("/households/hh-1", headers=alice)
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert 1 <= int(refused.headers["retry-after"]) <= 900
    body = refused.json()
    assert body["status"] == 429 and "more than 100 requests in 15 minutes" in body["detail"]
    assert body["request_id"] == refused.headers["x-request-id"]
    # per user: bob and anonymous callers (per IP) still get through; probes are never limited
    assert client.get("/households/hh-2", headers=accounts["bob"].headers).status_code == 200
    assert client.get("/households").status_code == 401
    assert client.get("/health").status_code == 200
    # a forged token does not borrow a quota: it counts against the caller's address
    forged = client.get("/households", headers={"Authorization": "Bearer forged.token.here"})
    assert forged.status_code == 401 and forged.headers["x-ratelimit-remaining"] == "98"


def test_in_process_limit_is_exact(embedded_api: Settings, accounts: dict[str, Account]) -> None:
    assert isinstance(rate_limiter_for(embedded_api), MemoryRateLimiter)
    with _client() as client:
        _exactly_100_then_429(client, accounts)


@pytest.mark.stack
def test_redis_limit_is_exact(
    embedded_api: Settings, accounts: dict[str, Account], redis_prefix: str
) -> None:
    host, port = require_service("redis")
    stack = embedded_api.model_copy(
        update={
            "profile": Profile.stack,
            "redis": embedded_api.redis.model_copy(
                update={"host": host, "port": port, "key_prefix": redis_prefix}
            ),
        }
    )
    limiter = rate_limiter_for(stack)
    assert isinstance(limiter, RedisRateLimiter)
    with _client(limiter) as client:
        _exactly_100_then_429(client, accounts)
    keys = {k.decode() for k in redis.Redis(host=host, port=port).scan_iter(match=redis_prefix + "*")}
    assert f"{redis_prefix}ratelimit:user:{accounts['alice'].id}" in keys
    assert f"{redis_prefix}ratelimit:ip:testclient" in keys


@pytest.mark.stack
def test_redis_window_slides(embedded_api: Settings, redis_prefix: str) -> None:
    host, port = require_service("redis")
    settings = embedded_api.model_copy(
        update={
            "redis": embedded_api.redis.model_copy(
                update={"host": host, "port": port, "key_prefix": redis_prefix}
            )
        }
    )
    limiter = RedisRateLimiter(settings, limit=2, window_s=0.5)

    async def run() -> None:
        assert (await limiter.hit("u")).allowed
        await asyncio.sleep(0.2)
        assert (await limiter.hit("u")).allowed
        refused = await limiter.hit("u")
        assert not refused.allowed and 0.2 < refused.retry_after_s <= 0.3  # when the first hit leaves
        assert (await limiter.hit("other")).allowed
        await asyncio.sleep(refused.retry_after_s + 0.02)
        again = await limiter.hit("u")
        assert again.allowed and again.remaining == 0  # one slot freed; the second hit still counts
        assert not (await limiter.hit("u")).allowed

    asyncio.run(run())


def test_memory_window_slides() -> None:
    now = [0.0]
    limiter = MemoryRateLimiter(limit=3, window_s=10.0, clock=lambda: now[0])
    for t in (0.0, 1.0, 2.0):
        now[0] = t
        assert limiter.hit_sync("u").allowed
    now[0] = 3.0
    refused = limiter.hit_sync("u")
    assert not refused.allowed and refused.retry_after_s == pytest.approx(7.0)
    now[0] = 9.99
    assert not limiter.hit_sync("u").allowed  # refused hits are not counted...
    now[0] = 10.0
    assert limiter.hit_sync("u").allowed  # ...so the caller is back exactly when the oldest hit leaves
    assert not limiter.hit_sync("u").allowed


@pytest.mark.parametrize(("limit", "window"), [(0, 10.0), (1, 0.0)])
def test_limiter_rejects_nonsense(limit: int, window: float) -> None:
    with pytest.raises(ValueError):
        MemoryRateLimiter(limit, window)


def test_redis_down_falls_back_to_in_process(embedded_api: Settings, accounts: dict[str, Account]) -> None:
    dead = embedded_api.model_copy(
        update={"redis": embedded_api.redis.model_copy(update={"port": _closed_port()})}
    )
    limiter = RedisRateLimiter(dead, 2, 900)
    with _client(limiter) as client:
        started = time.perf_counter()
        codes = [
            client.get("/households/hh-1", headers=accounts["alice"].headers).status_code for _ in range(3)
        ]
        elapsed = time.perf_counter() - started
        metrics = client.get("/metrics").text
    assert codes == [200, 200, 429]  # still limited, per worker
    assert limiter.errors == 1  # the breaker keeps later requests off the dead Redis...
    assert elapsed < 3  # ...so they do not each wait for a connection attempt
    assert "hems_api_rate_limit_redis_errors 1.0" in metrics
