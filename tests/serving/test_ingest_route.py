"""`POST /ingest/readings` on the embedded profile: valid readings land, bad ones come back by index."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from hems.settings import Settings, get_settings
from hems.stores.raw_store import get_raw_store
from ingest.quarantine import Quarantine
from tests.serving.conftest import Account


@pytest.fixture
def client(embedded_api: Settings, accounts: dict[str, Account]) -> Iterator[TestClient]:
    """Posting as an admin (any household); who may post what: test_ingest_authorization below."""
    from serving.main import create_app

    with TestClient(create_app(), headers=accounts["admin"].headers) as c:
        yield c


def test_batch_writes_valid_and_reports_errors_by_index(client: TestClient) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    base = {"household_id": "hh-1", "device_id": "hh-1-meter", "device_type": "smart_meter"}
    body = [
        {**base, "ts": now.isoformat(), "power_w": 500.0, "energy_import_kwh": 10.0},
        {**base, "ts": int((now - timedelta(minutes=1)).timestamp() * 1000), "fields": {"power_kw": 0.25}},
        {**base, "ts": now.isoformat(), "voltage_v": 400.0},
        {"device_id": "x", "device_type": "smart_meter", "ts": now.isoformat(), "power_w": 1.0},
        "not a reading",
    ]
    resp = client.post("/ingest/readings", json=body)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert (out["received"], out["written"], out["rejected"]) == (5, 2, 3)
    assert [(e["index"], e["reason"]) for e in out["errors"]] == [
        (2, "out_of_range:voltage_v"),
        (3, "missing_field:household_id"),
        (4, "not_an_object"),
    ]
    stored = get_raw_store(get_settings()).read_readings(now - timedelta(hours=1), now + timedelta(hours=1))
    assert sorted(stored["power_w"].to_list()) == [250.0, 500.0]  # kW normalized to W
    counts = Quarantine(get_settings().app_database_url).counts_by_reason()
    assert counts == {"out_of_range:voltage_v": 1, "missing_field:household_id": 1, "not_an_object": 1}


@pytest.mark.parametrize("body", [b'{"household_id": "hh-1"}', b"not json", b"42"])
def test_body_that_is_not_a_list_is_a_422_problem(client: TestClient, body: bytes) -> None:
    resp = client.post("/ingest/readings", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 422
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["status"] == 422


def test_too_many_readings_is_413(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEMS_INGEST__HTTP_MAX_READINGS", "3")
    get_settings.cache_clear()  # settings are read once per process; this test changes one
    resp = client.post("/ingest/readings", json=[{}] * 4)
    assert resp.status_code == 413
    assert "at most 3" in resp.json()["detail"]


def test_ingest_authorization(client: TestClient, accounts: dict[str, Account]) -> None:
    """A resident writes only their own households' readings; an analyst writes nothing."""
    now = datetime.now(UTC).replace(microsecond=0).isoformat()

    def reading(hh: object, **extra: object) -> dict:
        return {
            "household_id": hh,
            "device_id": "dev-1",
            "device_type": "smart_meter",
            "ts": now,
            "power_w": 1.0,
            **extra,
        }

    body = [
        reading("hh-1"),  # alice's
        reading("hh-2"),  # bob's
        {"device_id": "dev-1", "device_type": "smart_meter", "ts": now, "fields": {"household_id": "hh-2"}},
        reading(2),  # not a string: could be coerced into someone's id, so refused
        {"device_id": "dev-1", "device_type": "smart_meter", "ts": now, "power_w": 1.0},  # no household
    ]
    resp = client.post("/ingest/readings", json=body, headers=accounts["alice"].headers)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert (out["received"], out["written"], out["rejected"]) == (5, 1, 4)
    assert [(e["index"], e["reason"]) for e in out["errors"]] == [
        (1, "forbidden:household_id"),
        (2, "forbidden:household_id"),
        (3, "forbidden:household_id"),
        (4, "missing_field:household_id"),
    ]
    assert Quarantine(get_settings().app_database_url).counts_by_reason() == {"missing_field:household_id": 1}

    analyst = client.post("/ingest/readings", json=[reading("hh-1")], headers=accounts["analyst"].headers)
    assert analyst.status_code == 403
    assert analyst.headers["content-type"].startswith("application/problem+json")
    anonymous = client.post("/ingest/readings", json=[reading("hh-1")], headers={"Authorization": ""})
    assert anonymous.status_code == 401
