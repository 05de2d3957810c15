"""`GET /community/leaderboard`: weekly savings ranks from the mart, served from sorted sets.

Alice owns hh-1, Bob hh-2; the mart has a week of six households (one without a baseline).
Residents must see other households only as pseudonyms; the sets are rebuilt after a refresh.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from hems.settings import RedisSettings, Settings
from hems.stores.cache import RedisCache, bump_marts_version, get_cache, marts_version
from tests.serving.conftest import Account, write_marts

WEEK = dt.date(2025, 7, 7)  # a Monday
BOARD = [  # household, region, building type, saved ratio (None: no baseline yet)
    ("hh-1", "Seoul", "apartment", 0.05),
    ("hh-2", "Busan", "apartment", 0.20),
    ("hh-3", "Seoul", "detached", 0.12),
    ("hh-4", "Seoul", "apartment", -0.03),
    ("hh-5", "Busan", "detached", 0.08),
    ("hh-6", "Seoul", "apartment", None),
]


def _write(settings: Settings, board: list[tuple] = BOARD, week: dt.date = WEEK) -> None:
    write_marts(
        settings,
        households=[
            {
                "household_id": h,
                "household_name": f"Secret name {h}",
                "region": r,
                "building_type": b,
                "residents": 2,
            }
            for h, r, b, _ in board
        ],
        leaderboard=[
            {
                "household_id": h,
                "week_start": week,
                "region": r,
                "building_type": b,
                "metered_days": 7,
                "kwh": 70.0,
                "baseline_kwh": None if ratio is None else 70.0 / (1 - ratio),
                "saved_kwh": None if ratio is None else 70.0 / (1 - ratio) - 70.0,
                "saved_ratio": ratio,
            }
            for h, r, b, ratio in board
        ],
    )


@pytest.fixture
def client(embedded_api: Settings, accounts: dict[str, Account]) -> Iterator[TestClient]:
    from serving.main import create_app

    _write(embedded_api)
    with TestClient(create_app()) as c:
        yield c


def _board(client: TestClient, who: Account, **params: object) -> dict:
    r = client.get("/community/leaderboard", params={"week": str(WEEK), **params}, headers=who.headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_ranks_by_savings_and_pseudonymizes_others_for_residents(
    client: TestClient, accounts: dict[str, Account]
) -> None:
    body = _board(client, accounts["alice"], household_id="hh-1")
    assert body["week_start"] == str(WEEK) and body["scope"] == "all"
    assert body["total"] == 5  # hh-6 has no baseline: not ranked
    assert [e["saved_pct"] for e in body["items"]] == [20.0, 12.0, 8.0, 5.0, -3.0]
    assert [e["rank"] for e in body["items"]] == [1, 2, 3, 4, 5]
    mine = [e for e in body["items"] if e["mine"]]
    assert [e["household"] for e in mine] == ["hh-1"]
    assert body["me"] == {**mine[0], "rank": 4}
    others = [e["household"] for e in body["items"] if not e["mine"]]
    assert all(re.fullmatch(r"anon-[0-9a-f]{10}", h) for h in others)
    assert len(set(others)) == 4
    text = client.get(
        "/community/leaderboard", params={"week": str(WEEK)}, headers=accounts["alice"].headers
    ).text
    for h, *_ in BOARD[1:]:  # never another household's id or name, anywhere in the answer
        assert h not in text and h not in str(body)
    assert "Secret name" not in text
    # stable, and not a plain hash anyone could recompute from guessed ids
    assert _board(client, accounts["alice"])["items"][0]["household"] == body["items"][0]["household"]
    assert body["items"][0]["household"] != "anon-" + hashlib.sha256(b"hh-2").hexdigest()[:10]


def test_analysts_see_ids(client: TestClient, accounts: dict[str, Account]) -> None:
    body = _board(client, accounts["analyst"])
    assert [e["household"] for e in body["items"]] == ["hh-2", "hh-3", "hh-5", "hh-1", "hh-4"]
    assert not any(e["mine"] for e in body["items"])


def test_scopes_region_and_building_type(client: TestClient, accounts: dict[str, Account]) -> None:
    region = _board(client, accounts["alice"], scope="region", household_id="hh-1")
    assert region["group"] == "Seoul" and region["total"] == 3
    assert [e["saved_pct"] for e in region["items"]] == [12.0, 5.0, -3.0]
    assert region["me"]["rank"] == 2 and region["me"]["household"] == "hh-1"
    busan = _board(client, accounts["analyst"], scope="region", region="Busan")
    assert [e["household"] for e in busan["items"]] == ["hh-2", "hh-5"]
    detached = _board(client, accounts["bob"], scope="building_type", building_type="detached", limit=1)
    assert detached["total"] == 2 and len(detached["items"]) == 1 and detached["me"] is None
    page2 = _board(
        client, accounts["bob"], scope="building_type", building_type="detached", limit=1, offset=1
    )
    assert page2["items"][0]["rank"] == 2 and page2["items"][0]["saved_pct"] == 8.0
    assert _board(client, accounts["alice"], scope="region", region="Jeju")["total"] == 0


def test_default_week_is_the_newest(client: TestClient, accounts: dict[str, Account]) -> None:
    r = client.get("/community/leaderboard", headers=accounts["alice"].headers)
    assert r.json()["week_start"] == str(WEEK)
    mid_week = _board(client, accounts["alice"], week=str(WEEK + dt.timedelta(days=3)))
    assert mid_week["week_start"] == str(WEEK) and mid_week["total"] == 5
    assert _board(client, accounts["alice"], week=str(WEEK - dt.timedelta(days=7)))["total"] == 0


def test_refresh_rebuilds_the_sets(
    client: TestClient, accounts: dict[str, Account], embedded_api: Settings
) -> None:
    before = _board(client, accounts["analyst"])
    changed = [(h, r, b, 0.5 if h == "hh-4" else ratio) for h, r, b, ratio in BOARD]
    _write(embedded_api, changed)
    assert _board(client, accounts["analyst"]) == before  # served from the sets until a refresh
    bump_marts_version(get_cache(embedded_api))
    after = _board(client, accounts["analyst"])
    assert after["items"][0]["household"] == "hh-4" and after["marts_version"] != before["marts_version"]


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"scope": "street"}, 422),
        ({"scope": "region"}, 422),  # which region?
        ({"limit": 0}, 422),
        ({"limit": 101}, 422),
        ({"offset": -1}, 422),
        ({"week": "2025-13-01"}, 422),
        ({"week": "1990-01-01"}, 422),
        ({"household_id": "hh-2"}, 404),  # Bob's: not Alice's to name
        ({"household_id": "nope"}, 404),
        ({"household_id": "bad id!"}, 422),
    ],
)
def test_bad_requests(client: TestClient, accounts: dict[str, Account], params: dict, status: int) -> None:
    r = client.get("/community/leaderboard", params=params, headers=accounts["alice"].headers)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "anon-" not in r.text and "items" not in r.json()


def test_anonymous_gets_401(client: TestClient) -> None:
    assert client.get("/community/leaderboard").status_code == 401


@pytest.mark.stack
def test_sorted_sets_in_redis(
    client: TestClient, accounts: dict[str, Account], embedded_api: Settings, redis_prefix: str
) -> None:
    """Stack profile: the week is ZADDed once per scope and group and read with ZREVRANGE."""
    import redis

    from serving.deps import cache_dep

    cache = RedisCache(RedisSettings(key_prefix=redis_prefix))
    client.app.dependency_overrides[cache_dep] = lambda: cache  # type: ignore[attr-defined]
    version = bump_marts_version(cache)
    assert marts_version(cache) == version
    body = _board(client, accounts["analyst"], scope="region", region="Seoul")
    assert [e["household"] for e in body["items"]] == ["hh-3", "hh-1", "hh-4"]
    raw = redis.Redis()
    key = f"{redis_prefix}leaderboard:{version}:{WEEK}:region:Seoul"
    assert raw.zrevrange(key, 0, -1, withscores=True) == [(b"hh-3", 0.12), (b"hh-1", 0.05), (b"hh-4", -0.03)]
    assert 0 < raw.ttl(key) <= 24 * 3600
    assert raw.zcard(f"{redis_prefix}leaderboard:{version}:{WEEK}:all") == 5
    resident = _board(client, accounts["alice"], household_id="hh-1")
    assert resident["me"]["rank"] == 4 and resident["items"][0]["household"].startswith("anon-")
    # a refresh: new keys, rebuilt lazily on the next request
    _write(embedded_api, [(h, r, b, 0.9 if h == "hh-4" else x) for h, r, b, x in BOARD])
    newer = bump_marts_version(cache)
    assert _board(client, accounts["analyst"])["items"][0]["household"] == "hh-4"
    assert raw.exists(f"{redis_prefix}leaderboard:{newer}:{WEEK}:meta")
