"""Realtime routes on the embedded profile: latest readings, device status, the live WebSocket."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import polars as pl
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from hems.settings import Settings
from ingest.device_state import DeviceStateTracker
from tests.serving.conftest import Account

T0 = dt.datetime(2025, 7, 1, 10, 0, tzinfo=dt.UTC)


def meter(ts: dt.datetime, power: float) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ts": [ts],
            "household_id": ["hh-1"],
            "device_id": ["hh-1-meter"],
            "device_type": ["smart_meter"],
            "power_w": [power],
        }
    ).with_columns(pl.col("ts").cast(pl.Datetime("ms", "UTC")))


@pytest.fixture
def app_env(
    embedded_api: Settings, accounts: dict[str, Account]
) -> Iterator[tuple[TestClient, DeviceStateTracker]]:
    """A client authenticated as an analyst (reaches every household; scoping: test_authorization)."""
    from serving.main import create_app

    tracker = DeviceStateTracker.from_settings(embedded_api)
    with TestClient(create_app(), headers=accounts["analyst"].headers) as client:
        client.token = accounts["analyst"].token  # type: ignore[attr-defined]
        yield client, tracker


def test_latest_and_status(app_env: tuple[TestClient, DeviceStateTracker]) -> None:
    client, tracker = app_env
    tracker.observe(meter(T0, 750.0))
    body = client.get("/households/hh-1/readings/latest").json()
    assert body["by_type"]["smart_meter"]["power_w"] == 750.0
    assert body["devices"][0]["status"] == "online"
    assert client.get("/households/hh-2/readings/latest").json()["devices"] == []

    status = client.get("/households/hh-1/devices/status").json()
    assert [(d["device_id"], d["status"], d["registered"]) for d in status] == [
        ("hh-1-meter", "online", True)
    ]


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/households/nope/readings/latest", 404),
        ("/households/nope/devices/status", 404),
        ("/households/bad%20id;/readings/latest", 422),
    ],
)
def test_bad_households_get_problem_details(
    app_env: tuple[TestClient, DeviceStateTracker], path: str, code: int
) -> None:
    r = app_env[0].get(path)
    assert r.status_code == code
    assert r.headers["content-type"].startswith("application/problem+json")


def test_websocket_sends_snapshot_then_updates(app_env: tuple[TestClient, DeviceStateTracker]) -> None:
    client, tracker = app_env
    tracker.observe(meter(T0, 500.0))
    with client.websocket_connect(
        "/ws/households/hh-1/readings", subprotocols=["bearer", client.token]
    ) as ws:  # type: ignore[attr-defined]
        assert ws.accepted_subprotocol == "bearer"
        snapshot = ws.receive_json()
        assert snapshot["type"] == "snapshot"
        assert snapshot["by_type"]["smart_meter"]["power_w"] == 500.0
        # published from this (non-async) thread, as the ingest pipeline does
        tracker.observe(meter(T0 + dt.timedelta(minutes=1), 520.0))
        update = ws.receive_json()
        assert update["type"] == "readings" and update["household_id"] == "hh-1"
        assert [(r["device_id"], r["power_w"]) for r in update["readings"]] == [("hh-1-meter", 520.0)]
        tracker.on_status("hh-1", "hh-1-meter", "offline", T0 + dt.timedelta(minutes=2))
        status = ws.receive_json()
        assert status["type"] == "status" and status["devices"][0]["status"] == "offline"
    # the client left: its subscription is gone
    bus = tracker.live_bus
    assert bus is not None
    for _ in range(50):
        if bus.subscriber_count("hh-1") == 0:  # type: ignore[attr-defined]
            break
        time.sleep(0.02)
    assert bus.subscriber_count("hh-1") == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("household_id", ["nope", "bad%20id;"])
def test_websocket_unknown_household_closes_4404(
    app_env: tuple[TestClient, DeviceStateTracker], household_id: str
) -> None:
    path = f"/ws/households/{household_id}/readings?token={app_env[0].token}"  # type: ignore[attr-defined]
    with app_env[0].websocket_connect(path) as ws, pytest.raises(WebSocketDisconnect) as closed:
        ws.receive_json()
    assert closed.value.code == 4404
