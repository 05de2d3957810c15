"""`GET /dashboard/energy` on the embedded profile: history from the app DB, today from the raw store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from fastapi.testclient import TestClient

from hems.settings import Settings
from hems.stores import appdb
from hems.stores.raw_store import get_raw_store
from tests.serving.conftest import Account

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
