"""The request path's shortcuts answer exactly what the full path answers.

- cached dashboards answered by the pure-ASGI fast path (embedded cache and real Redis) have the
  bodies, headers, log lines and metrics of the FastAPI route, and everything it must not answer
  (someone else's household, bad or unusual queries, misses, overrides) goes on to the route;
- the household row is read once for concurrent requests;
- the small Redis client pipelines, loads scripts, reports errors and timeouts as redis-py does;
- the access log is written by a thread when nothing else handles it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Iterator
from datetime import date

import pytest
from fastapi.testclient import TestClient

from hems.settings import RedisSettings, Settings
from hems.stores import appdb
from hems.stores.cache import RedisCache, bump_marts_version
from serving.fast_path import DashboardHitFastPath
from tests.serving.conftest import Account

PARAMS = {"household_id": "hh-1", "start": "2025-07-01", "end": "2025-07-10"}


@pytest.fixture
def fast_hits(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records, per dashboard request, whether the fast path answered it."""
    seen: list[bool] = []
    original = DashboardHitFastPath._hit

    async def spy(self: DashboardHitFastPath, scope: dict) -> bytes | None:
        body = await original(self, scope)
        seen.append(body is not None)
        return body

    monkeypatch.setattr(DashboardHitFastPath, "_hit", spy)
    return seen


@pytest.fixture
def client(embedded_api: Settings, accounts: dict[str, Account]) -> Iterator[TestClient]:
    from serving.main import create_app

    appdb.upsert_energy_usage_daily(
        [
            {"household_id": "hh-1", "date": date(2025, 7, d), "total_consumption_kwh": 10.0 + d}
            for d in range(1, 11)
        ],
        url=embedded_api.app_database_url,
    )
    with TestClient(create_app(), headers=accounts["alice"].headers) as c:
        yield c


def _same_answer(miss: object, hit: object) -> None:
    assert miss.status_code == hit.status_code == 200  # type: ignore[attr-defined]
    assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("miss", "hit")  # type: ignore[attr-defined]
    assert hit.content == miss.content  # type: ignore[attr-defined]
    for header in ("content-type", "x-ratelimit-limit", "vary"):
        assert hit.headers[header] == miss.headers[header]  # type: ignore[attr-defined]
    assert int(hit.headers["x-ratelimit-remaining"]) == int(miss.headers["x-ratelimit-remaining"]) - 1  # type: ignore[attr-defined]
    assert hit.headers["x-request-id"] and hit.headers["x-request-id"] != miss.headers["x-request-id"]  # type: ignore[attr-defined]


def test_a_hit_is_the_routes_answer_logged_and_counted_alike(
    client: TestClient, fast_hits: list[bool], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="hems.api.access"):
        miss = client.get("/dashboard/energy", params=PARAMS)
        hit = client.get("/dashboard/energy", params=PARAMS, headers={"X-Request-ID": "fast-1"})
    assert fast_hits == [False, True]
    _same_answer(miss, hit)
    assert hit.headers["x-request-id"] == "fast-1"
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "hems.api.access"]
    assert [(x["route"], x["status"]) for x in lines] == [("/dashboard/energy", 200)] * 2
    assert lines[1]["request_id"] == "fast-1" and lines[1]["who"] == lines[0]["who"]
    metrics = client.get("/metrics").text
    assert 'hems_api_requests_total{method="GET",route="/dashboard/energy",status="200"} 2.0' in metrics


def test_what_the_fast_path_must_not_answer_goes_to_the_route(
    client: TestClient, accounts: dict[str, Account], fast_hits: list[bool]
) -> None:
    client.get("/dashboard/energy", params=PARAMS)  # cached now
    bob = accounts["bob"].headers
    assert client.get("/dashboard/energy", params=PARAMS, headers=bob).status_code == 404
    assert (
        client.get("/dashboard/energy", params=PARAMS, headers={"Authorization": "Bearer x.y.z"}).status_code
        == 401
    )
    assert client.get("/dashboard/energy", params={**PARAMS, "start": "2025-07-11"}).status_code == 422
    assert client.get("/dashboard/energy", params={**PARAMS, "start": "2025-7-1"}).status_code == 422
    assert client.get("/dashboard/energy", params={**PARAMS, "household_id": "hh 1"}).status_code == 422
    assert client.get("/dashboard/energy", params={**PARAMS, "household_id": "hh-404"}).status_code == 404
    unusual = client.get("/dashboard/energy", params={**PARAMS, "extra": "1"})  # the route ignores it
    assert unusual.status_code == 200 and unusual.headers["x-cache"] == "hit"
    assert fast_hits == [False] * 8
    # the analyst reaches every household, through the fast path too
    analyst = client.get("/dashboard/energy", params=PARAMS, headers=accounts["analyst"].headers)
    assert analyst.status_code == 200 and fast_hits[-1] is True


def test_overrides_and_refreshes_go_to_the_route(client: TestClient, fast_hits: list[bool]) -> None:
    from hems.stores.cache import get_cache
    from serving.deps import cache_dep

    first = client.get("/dashboard/energy", params=PARAMS)
    bump_marts_version(get_cache())
    again = client.get("/dashboard/energy", params=PARAMS)
    assert (
        again.headers["x-cache"] == "miss" and again.json()["marts_version"] != first.json()["marts_version"]
    )
    client.app.dependency_overrides[cache_dep] = lambda: get_cache()  # type: ignore[attr-defined]
    assert client.get("/dashboard/energy", params=PARAMS).headers["x-cache"] == "hit"
    assert fast_hits == [False, False, False]


@pytest.mark.stack
def test_redis_hits_are_the_routes_answer(
    client: TestClient, fast_hits: list[bool], redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stack profile's cache: the answer read back in one script call, as stored bytes."""
    cache = RedisCache(RedisSettings(key_prefix=redis_prefix))
    monkeypatch.setattr("serving.deps.get_cache", lambda: cache)  # the route's cache
    monkeypatch.setattr("serving.fast_path.get_cache", lambda: cache)  # the fast path's
    miss = client.get("/dashboard/energy", params=PARAMS)
    hit = client.get("/dashboard/energy", params=PARAMS)
    assert fast_hits == [False, True]
    _same_answer(miss, hit)
    assert hit.json()["today"]["date"] and hit.json()["marts_version"] == "0"
    version = bump_marts_version(cache)
    fresh = client.get("/dashboard/energy", params=PARAMS)
    assert fresh.headers["x-cache"] == "miss" and fresh.json()["marts_version"] == version
    assert client.get("/dashboard/energy", params=PARAMS).json()["marts_version"] == version
    assert fast_hits == [False, True, False, True]


def test_concurrent_requests_read_a_household_once(
    embedded_api: Settings, accounts: dict[str, Account], monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving import deps

    reads: list[str] = []
    original = deps.lookup_household

    def counting(engine: object, household_id: str) -> object:
        reads.append(household_id)
        return original(engine, household_id)  # type: ignore[arg-type]

    monkeypatch.setattr(deps, "lookup_household", counting)
    deps.recent_households.clear()

    async def burst() -> list[object]:
        engine = deps.app_engine()
        return await asyncio.gather(*(deps.recent_household(engine, "hh-1") for _ in range(20)))

    refs = asyncio.run(burst())
    assert reads == ["hh-1"] and {r.id for r in refs} == {"hh-1"}  # type: ignore[attr-defined]


# --- request-path scripts over redis.asyncio -------------------------------------------------


@pytest.mark.stack
def test_loop_script_loads_itself_runs_concurrently_and_reports_errors(redis_prefix: str) -> None:
    import redis

    from serving.redis_scripts import LoopScript

    conn = {"host": "127.0.0.1", "port": 6379}
    # a script new to the server (its source names the test's prefix): the first call meets NOSCRIPT
    echo = LoopScript(
        conn,
        f"-- {redis_prefix}\nreturn {{KEYS[1], ARGV[1], tonumber(ARGV[2]) + 1, redis.call('GET', KEYS[1])}}",
    )
    failing = LoopScript(conn, "return redis.error_reply('nope')")
    key = redis_prefix + "k"
    redis.Redis().set(key, b"v\r\nwith crlf")

    async def run() -> None:
        replies = await asyncio.gather(*(echo([key], [f"a{i}", i]) for i in range(200)))
        assert replies == [[key.encode(), f"a{i}".encode(), i + 1, b"v\r\nwith crlf"] for i in range(200)]
        with pytest.raises(redis.exceptions.ResponseError, match="nope"):
            await failing([], [])

    asyncio.run(run())
    asyncio.run(run())  # a second event loop gets its own client


def test_loop_script_reports_a_dead_or_silent_server() -> None:
    import redis

    from serving.redis_scripts import LoopScript

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = int(s.getsockname()[1])
    with pytest.raises(redis.exceptions.ConnectionError):
        asyncio.run(LoopScript({"host": "127.0.0.1", "port": dead}, "return 1")([], []))
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = int(silent.getsockname()[1])
        script = LoopScript({"host": "127.0.0.1", "port": port}, "return 1", timeout_s=0.2)
        with pytest.raises(redis.exceptions.TimeoutError):
            asyncio.run(script([], []))


# --- the access log writer -------------------------------------------------------------------


def test_access_log_is_written_by_a_thread_when_unhandled(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from serving.middleware import access_log, start_log_writer

    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # as under uvicorn: no root handler
    monkeypatch.setattr(access_log, "level", logging.NOTSET)
    stop = start_log_writer()
    assert stop is not None and start_log_writer() is None  # one writer per process
    try:
        client.get("/health", headers={"X-Request-ID": "written-1"})
    finally:
        stop()
    lines = [json.loads(x) for x in capfd.readouterr().err.splitlines() if x.startswith('{"ts"')]
    assert [(x["request_id"], x["route"], x["status"]) for x in lines] == [("written-1", "/health", 200)]
    assert not access_log.handlers


def test_when_only_today_expired_the_marts_part_is_still_a_hit(
    client: TestClient, fast_hits: list[bool]
) -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from hems.stores.cache import get_cache

    first = client.get("/dashboard/energy", params=PARAMS)
    today = datetime.now(ZoneInfo("Asia/Seoul")).date()
    assert get_cache().delete(f"dashboard:today:hh-1:{today.isoformat()}") == 1  # a minute later
    again = client.get("/dashboard/energy", params=PARAMS)
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("miss", "hit")
    assert again.content == first.content and fast_hits == [False, False]


def test_concurrent_misses_of_one_answer_build_it_once(
    embedded_api: Settings, accounts: dict[str, Account], monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from hems.stores.cache import get_cache
    from serving.api.routes import dashboard
    from serving.deps import app_engine

    builds: list[str] = []

    def slow_build(query: object, cache: object, engine: object) -> tuple[bytes, bool]:
        builds.append(query.household_id)  # type: ignore[attr-defined]
        time.sleep(0.2)
        return b'{"built":1}', False

    monkeypatch.setattr(dashboard, "_build", slow_build)
    same = dashboard._Query("hh-1", "Asia/Seoul", date(2025, 7, 1), date(2025, 7, 10), date(2025, 7, 11))
    other = dashboard._Query("hh-2", "Asia/Seoul", date(2025, 7, 1), date(2025, 7, 10), date(2025, 7, 11))

    async def burst() -> list[tuple[bytes, bool]]:
        cache, engine = get_cache(), app_engine()
        calls = [dashboard._build_once(same, cache, engine) for _ in range(10)]
        return await asyncio.gather(*calls, dashboard._build_once(other, cache, engine))

    answers = asyncio.run(burst())
    assert sorted(builds) == ["hh-1", "hh-2"] and set(answers) == {(b'{"built":1}', False)}
