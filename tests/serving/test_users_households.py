"""Profile, households (list, create, one, devices), notifications: behaviour and validation."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from hems.settings import Settings
from hems.stores import appdb
from hems.stores.appdb.models import Notification
from ingest.device_state import DeviceStateTracker
from tests.serving.conftest import Account, make_account


@pytest.fixture
def client(embedded_api: Settings, accounts: dict[str, Account]) -> Iterator[TestClient]:
    from serving.main import create_app

    with TestClient(create_app()) as c:
        yield c


def test_profile_get_and_put(client: TestClient, embedded_api: Settings) -> None:
    carol = make_account(embedded_api, "carol@example.kr", phone="010-1111-2222", address="Busan")
    me = client.get("/users/profile", headers=carol.headers).json()
    assert (me["email"], me["phone"], me["address"], me["role"]) == (
        "carol@example.kr",
        "010-1111-2222",
        "Busan",
        "resident",
    )

    r = client.put(
        "/users/profile", json={"phone": "+82 10-9999-8888", "full_name": "Carol"}, headers=carol.headers
    )
    assert r.status_code == 200, r.text
    assert (r.json()["phone"], r.json()["address"], r.json()["full_name"]) == (
        "+82 10-9999-8888",
        "Busan",
        "Carol",
    )
    cleared = client.put("/users/profile", json={"address": None}, headers=carol.headers).json()
    assert cleared["address"] is None and cleared["phone"] == "+82 10-9999-8888"
    with appdb.get_engine(embedded_api.app_database_url).connect() as conn:
        raw = conn.execute(
            sa.text("SELECT phone_encrypted FROM users WHERE id = :i"), {"i": carol.id}
        ).scalar_one()
    assert b"9999" not in raw

    for bad in ({"phone": "nope"}, {"email": "x@y.kr"}, {"role": "admin"}):  # role/email not editable
        assert client.put("/users/profile", json=bad, headers=carol.headers).status_code == 422


def test_profile_of_a_deleted_account_is_401(client: TestClient, embedded_api: Settings) -> None:
    dave = make_account(embedded_api, "dave@example.kr")
    with appdb.get_engine(embedded_api.app_database_url).begin() as conn:
        conn.execute(sa.text("DELETE FROM users WHERE id = :i"), {"i": dave.id})
    assert client.get("/users/profile", headers=dave.headers).status_code == 401


def test_create_and_get_households(client: TestClient, accounts: dict[str, Account]) -> None:
    alice = accounts["alice"].headers
    r = client.post(
        "/households", json={"name": "cabin", "region": "Gangwon", "building_type": "detached"}, headers=alice
    )
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["id"].startswith("hh-") and made["user_id"] == accounts["alice"].id
    assert made["building_type"] == "detached" and made["timezone"] == "Asia/Seoul"
    assert client.get(f"/households/{made['id']}", headers=alice).json() == made
    assert client.get(f"/households/{made['id']}", headers=accounts["bob"].headers).status_code == 404

    named = client.post(
        "/households", json={"id": "hh-alice-2", "has_pv": True, "pv_kwp": 3.5}, headers=alice
    )
    assert named.status_code == 201 and named.json()["pv_kwp"] == 3.5
    assert client.post("/households", json={"id": "hh-alice-2"}, headers=alice).status_code == 409
    assert client.post("/households", json={"id": "hh-2"}, headers=alice).status_code == 409

    page = client.get("/households", params={"limit": 2, "offset": 1}, headers=alice).json()
    assert page["total"] == 3 and page["limit"] == 2 and page["offset"] == 1
    everything = [h["id"] for h in client.get("/households", headers=alice).json()["items"]]
    assert everything == sorted(["hh-1", "hh-alice-2", made["id"]])
    assert [h["id"] for h in page["items"]] == everything[1:3]
    assert client.get("/households", params={"region": "Gangwon"}, headers=alice).json()["total"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"id": "bad id!"},
        {"timezone": "Mars/Olympus"},
        {"building_type": "castle"},
        {"residents": 0},
        {"area_m2": -1},
        {"unknown": 1},
    ],
)
def test_create_household_validation(client: TestClient, accounts: dict[str, Account], body: dict) -> None:
    r = client.post("/households", json=body, headers=accounts["alice"].headers)
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")


def test_only_admins_create_for_others(client: TestClient, accounts: dict[str, Account]) -> None:
    bob_id = accounts["bob"].id
    for who in ("alice", "analyst"):
        assert (
            client.post("/households", json={"user_id": bob_id}, headers=accounts[who].headers).status_code
            == 403
        )
    r = client.post(
        "/households", json={"id": "hh-for-bob", "user_id": bob_id}, headers=accounts["admin"].headers
    )
    assert r.status_code == 201 and r.json()["user_id"] == bob_id
    assert client.get("/households/hh-for-bob", headers=accounts["bob"].headers).status_code == 200
    assert (
        client.post("/households", json={"user_id": 999_999}, headers=accounts["admin"].headers).status_code
        == 422
    )


def test_devices_with_status(
    client: TestClient, accounts: dict[str, Account], embedded_api: Settings
) -> None:
    url = embedded_api.app_database_url
    appdb.upsert_devices(
        [
            {
                "id": "hh-1-meter",
                "household_id": "hh-1",
                "device_type": "smart_meter",
                "manufacturer": "LS",
                "protocol": "mqtt",
            },
            {"id": "hh-1-plug", "household_id": "hh-1", "device_type": "smart_plug", "protocol": "http"},
        ],
        url=url,
    )
    tracker = DeviceStateTracker.from_settings(embedded_api)
    tracker.on_status("hh-1", "hh-1-meter", "online", dt.datetime.now(dt.UTC))
    tracker.on_status("hh-1", "hh-1-sensor", "online", dt.datetime.now(dt.UTC))
    alice = accounts["alice"].headers
    page = client.get("/households/hh-1/devices", headers=alice).json()
    assert page["total"] == 3
    by_id = {d["device_id"]: d for d in page["items"]}
    assert by_id["hh-1-meter"]["status"] == "online" and by_id["hh-1-meter"]["manufacturer"] == "LS"
    assert by_id["hh-1-plug"]["status"] == "unknown" and by_id["hh-1-plug"]["registered"]
    assert by_id["hh-1-sensor"]["status"] == "online"  # first seen by ingest (which registers it)
    plugs = client.get("/households/hh-1/devices", params={"device_type": "smart_plug"}, headers=alice).json()
    assert [d["device_id"] for d in plugs["items"]] == ["hh-1-plug"]
    second = client.get("/households/hh-1/devices", params={"limit": 1, "offset": 1}, headers=alice).json()
    assert [d["device_id"] for d in second["items"]] == ["hh-1-plug"] and second["total"] == 3


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"offset": -1}, {"limit": "x"}])
def test_pagination_bounds(client: TestClient, accounts: dict[str, Account], params: dict) -> None:
    assert client.get("/households", params=params, headers=accounts["alice"].headers).status_code == 422


def test_notifications(client: TestClient, accounts: dict[str, Account], embedded_api: Settings) -> None:
    alice, bob = accounts["alice"], accounts["bob"]
    day = dt.datetime(2025, 7, 1, 9, tzinfo=dt.UTC)
    with appdb.session_scope(embedded_api.app_database_url) as s:
        s.add_all(
            [
                Notification(user_id=alice.id, kind="welcome", title="hello", created_at=day),
                Notification(
                    household_id="hh-1",
                    kind="device_offline",
                    title="meter offline",
                    payload={"device_id": "hh-1-meter"},
                    created_at=day + dt.timedelta(days=1),
                ),
                Notification(household_id="hh-2", kind="device_offline", title="bob's", created_at=day),
                Notification(user_id=bob.id, kind="welcome", title="bob", created_at=day),
            ]
        )
    page = client.get("/notifications", headers=alice.headers).json()
    assert [n["title"] for n in page["items"]] == ["meter offline", "hello"] and page["total"] == 2
    note_id = page["items"][0]["id"]

    read = client.post(f"/notifications/{note_id}/read", headers=alice.headers)
    assert read.status_code == 200 and read.json()["read_at"] is not None
    again = client.post(f"/notifications/{note_id}/read", headers=alice.headers).json()
    assert again["read_at"] == read.json()["read_at"]  # idempotent
    assert [
        n["title"]
        for n in client.get("/notifications", params={"unread": True}, headers=alice.headers).json()["items"]
    ] == ["hello"]
    assert (
        client.get("/notifications", params={"since": "2025-07-02"}, headers=alice.headers).json()["total"]
        == 1
    )
    assert (
        client.get("/notifications", params={"until": "2025-07-01"}, headers=alice.headers).json()["total"]
        == 1
    )
    assert (
        client.get("/notifications", params={"household_id": "hh-1"}, headers=alice.headers).json()["total"]
        == 1
    )
    assert (
        client.get(
            "/notifications", params={"since": "2025-07-03", "until": "2025-07-01"}, headers=alice.headers
        ).status_code
        == 422
    )

    bobs = client.get("/notifications", headers=bob.headers).json()["items"]
    assert {n["title"] for n in bobs} == {"bob's", "bob"}
    # someone else's notification: 404, and it stays unread
    assert client.post(f"/notifications/{bobs[0]['id']}/read", headers=alice.headers).status_code == 404
    assert client.post(f"/notifications/{note_id}/read", headers=accounts["admin"].headers).status_code == 404
    assert client.post("/notifications/0/read", headers=alice.headers).status_code == 422
    assert all(
        n["read_at"] is None for n in client.get("/notifications", headers=bob.headers).json()["items"]
    )
