"""`GET /dashboard/energy` on the embedded profile: history from the app DB, today from the raw store,
similar homes from the warehouse marts, the answer cached under the marts version."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from fastapi.testclient import TestClient

from hems.settings import Settings
from hems.stores import appdb
from hems.stores.cache import bump_marts_version, get_cache
from hems.stores.raw_store import get_raw_store
from tests.serving.conftest import Account, write_marts

SEOUL = ZoneInfo("Asia/Seoul")


@pytest.fixture
def client(embedded_api: Settings, accounts: dict[str, Account]) -> Iterator[TestClient]:
    """Alice owns hh-1 (with history and today's readings) and, for these tests, hh-2 (empty)."""
    from serving.main import create_app

    settings = embedded_api
    url = settings.app_database_url
    appdb.upsert_households([{"id": "hh-2", "user_id": accounts["alice"].id}], url=url)
    appdb.upsert_energy_usage_daily(
        [
            {
                "household_id": "hh-1",
                "date": date(2025, 7, d),
                "total_consumption_kwh": 10.0 + d,
                "peak_usage_kwh": 4.0,
                "mid_usage_kwh": 3.0,
                "off_peak_usage_kwh": 3.0 + d,
                "carbon_emission_kg": (10.0 + d) * 0.4173,
                "grid_consumption_kwh": 10.0 + d,
                "solar_generation_kwh": 1.0,
                "cost_krw": 100.0 * d,
            }
            for d in range(1, 11)
        ],
        url=url,
    )
    # today so far: 61 minutes of meter readings from local midnight, 0.01 kWh per minute
    midnight = datetime.combine(datetime.now(SEOUL).date(), datetime.min.time(), SEOUL)
    get_raw_store(settings).write_readings(
        pl.DataFrame(
            {
                "ts": [midnight + timedelta(minutes=i) for i in range(61)],
                "household_id": "hh-1",
                "device_id": "hh-1-meter",
                "device_type": "smart_meter",
                "power_w": 600.0,
                "energy_import_kwh": [500.0 + i * 0.01 for i in range(61)],
            }
        )
    )
    yield TestClient(create_app(), headers=accounts["alice"].headers)


def test_history_totals_and_today(client: TestClient) -> None:
    r = client.get(
        "/dashboard/energy", params={"household_id": "hh-1", "start": "2025-07-03", "end": "2025-07-05"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert [d["date"] for d in body["daily"]] == ["2025-07-03", "2025-07-04", "2025-07-05"]
    assert body["totals"]["total_kwh"] == pytest.approx(13 + 14 + 15)
    assert body["totals"]["tou_share"]["peak"] == pytest.approx(12 / 42)
    assert body["today"]["import_kwh"] == pytest.approx(0.60)
    assert body["today"]["latest_power_w"] == pytest.approx(600.0)


def test_household_without_data_gets_empty_history(client: TestClient) -> None:
    body = client.get("/dashboard/energy", params={"household_id": "hh-2"}).json()
    assert body["daily"] == []
    assert body["totals"]["total_kwh"] == 0
    assert body["today"]["import_kwh"] is None


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"household_id": "nope"}, 404),
        ({}, 422),
        ({"household_id": "hh 1; drop"}, 422),
        ({"household_id": "hh-1", "start": "2025-13-01"}, 422),
        ({"household_id": "hh-1", "start": "2025-07-05", "end": "2025-07-01"}, 422),
        ({"household_id": "hh-1", "start": "2015-01-01", "end": "2025-01-01"}, 422),
    ],
)
def test_bad_requests_get_problem_details(client: TestClient, params: dict, status: int) -> None:
    r = client.get("/dashboard/energy", params=params)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"]


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200, ready.text
    assert set(ready.json()["checks"]) == {"app_database", "raw_store", "cache"}


SIMILAR = [  # hh-1 and three homes like it (Seoul apartments, 3-4 residents), and two that differ
    ("hh-1", "Seoul", "apartment", 3),
    ("hh-a", "Seoul", "apartment", 4),
    ("hh-b", "Seoul", "apartment", 3),
    ("hh-c", "Seoul", "apartment", 4),
    ("hh-d", "Busan", "apartment", 3),
    ("hh-e", "Seoul", "apartment", 1),
]
PER_DAY = {"hh-1": 12.0, "hh-a": 10.0, "hh-b": 14.0, "hh-c": 16.0, "hh-d": 1.0, "hh-e": 2.0}


def _marts(settings: Settings, scale: float = 1.0) -> None:
    write_marts(
        settings,
        households=[
            {
                "household_id": h,
                "household_name": f"name {h}",
                "region": r,
                "building_type": b,
                "residents": n,
            }
            for h, r, b, n in SIMILAR
        ],
        daily=[
            {"household_id": h, "date": date(2025, 7, d), "total_consumption_kwh": kwh * scale}
            for h, kwh in PER_DAY.items()
            for d in range(1, 11)
        ],
    )


def test_cost_carbon_and_similar_homes(client: TestClient, embedded_api: Settings) -> None:
    _marts(embedded_api)
    body = client.get(
        "/dashboard/energy", params={"household_id": "hh-1", "start": "2025-07-01", "end": "2025-07-10"}
    ).json()
    totals = body["totals"]
    assert totals["cost_krw"] == pytest.approx(100 * sum(range(1, 11)))
    assert totals["carbon_kg"] == pytest.approx(sum(10 + d for d in range(1, 11)) * 0.4173)
    assert totals["solar_kwh"] == pytest.approx(10.0)
    assert body["daily"][0]["cost_krw"] == 100.0
    similar = body["similar_homes"]
    # hh-d (Busan) and hh-e (1 resident) are not similar; median of 10, 14, 16 is 14
    assert similar["households"] == 3
    assert similar["median_daily_kwh"] == pytest.approx(14.0)
    assert similar["your_daily_kwh"] == pytest.approx(12.0)
    assert (similar["rank"], similar["of"]) == (2, 4)
    assert similar["residents_band"] == "3-4" and similar["region"] == "Seoul"
    assert similar["vs_median_pct"] == pytest.approx((12 - 14) / 14 * 100, abs=0.01)
    assert "name hh-a" not in client.get("/dashboard/energy", params={"household_id": "hh-1"}).text


def test_without_the_warehouse_the_dashboard_still_answers(client: TestClient) -> None:
    r = client.get(
        "/dashboard/energy", params={"household_id": "hh-1", "start": "2025-07-01", "end": "2025-07-10"}
    )
    assert r.status_code == 200
    assert r.json()["similar_homes"] is None and len(r.json()["daily"]) == 10


def test_cached_answer_changes_only_when_the_marts_are_refreshed(
    client: TestClient, embedded_api: Settings
) -> None:
    _marts(embedded_api)
    params = {"household_id": "hh-1", "start": "2025-07-01", "end": "2025-07-10"}
    first = client.get("/dashboard/energy", params=params)
    assert first.headers["x-cache"] == "miss"
    # the pipeline rewrites the data: the cached answer stands until it says it has refreshed
    appdb.upsert_energy_usage_daily(
        [{"household_id": "hh-1", "date": date(2025, 7, 1), "total_consumption_kwh": 99.0}],
        url=embedded_api.app_database_url,
    )
    _marts(embedded_api, scale=2.0)
    again = client.get("/dashboard/energy", params=params)
    assert again.headers["x-cache"] == "hit"
    assert again.json()["totals"] == first.json()["totals"]
    assert again.json()["similar_homes"] == first.json()["similar_homes"]
    version = bump_marts_version(get_cache(embedded_api))  # what app_energy_usage_daily does last
    fresh = client.get("/dashboard/energy", params=params)
    assert fresh.headers["x-cache"] == "miss"
    assert fresh.json()["marts_version"] == version != first.json()["marts_version"]
    assert fresh.json()["daily"][0]["total_kwh"] == 99.0
    assert fresh.json()["similar_homes"]["median_daily_kwh"] == pytest.approx(28.0)
    assert client.get("/dashboard/energy", params=params).headers["x-cache"] == "hit"


def test_marts_version_is_shared_across_processes(embedded_api: Settings) -> None:
    """Embedded: the pipeline runs in another process, so the version lives in a file both see."""
    import subprocess
    import sys

    from hems.stores.cache import MemoryCache, marts_version

    cache = get_cache(embedded_api)
    assert isinstance(cache, MemoryCache)
    before = marts_version(cache)
    code = (
        "from hems.stores.cache import bump_marts_version, get_cache; print(bump_marts_version(get_cache()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert marts_version(cache) == out.stdout.strip() != before
