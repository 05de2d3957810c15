"""Community challenges: list with filters, join, progress against kWh and percent goals, results."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from hems.settings import Settings
from hems.stores import appdb
from hems.stores.appdb.models import Challenge
from tests.serving.conftest import Account

TODAY = dt.datetime.now(ZoneInfo("Asia/Seoul")).date()
D = dt.timedelta


@pytest.fixture
def client(embedded_api: Settings, accounts: dict[str, Account]) -> Iterator[TestClient]:
    """Challenges: 1 active kWh cap (started 4 days ago, 10 days), 2 ended percent goal (7 days,
    ended 14 days ago), 3 upcoming. Usage: hh-1 10 kWh/day, hh-2 12 kWh/day over the last 30 days."""
    from serving.main import create_app

    url = embedded_api.app_database_url
    with appdb.session_scope(url) as s:
        s.add_all(
            [
                Challenge(
                    code="cap",
                    title="100 kWh in 10 days",
                    goal_kwh=100.0,
                    starts_on=TODAY - D(4),
                    ends_on=TODAY + D(5),
                ),
                Challenge(
                    code="pct",
                    title="10% less",
                    goal_pct=10.0,
                    starts_on=TODAY - D(20),
                    ends_on=TODAY - D(14),
                ),
                Challenge(
                    code="soon", title="later", goal_kwh=50.0, starts_on=TODAY + D(10), ends_on=TODAY + D(20)
                ),
            ]
        )
    rows = []
    for back in range(1, 31):
        day = TODAY - D(back)
        # hh-1 used 10/day, but only 8/day during the percent challenge (20% less than baseline)
        in_pct = TODAY - D(20) <= day <= TODAY - D(14)
        rows.append({"household_id": "hh-1", "date": day, "total_consumption_kwh": 8.0 if in_pct else 10.0})
        rows.append({"household_id": "hh-2", "date": day, "total_consumption_kwh": 12.0})
    appdb.upsert_energy_usage_daily(rows, url=url)
    with TestClient(create_app()) as c:
        yield c


def test_list_and_filters(client: TestClient, accounts: dict[str, Account]) -> None:
    h = accounts["alice"].headers
    page = client.get("/community/challenges", headers=h).json()
    assert [(c["code"], c["status"]) for c in page["items"]] == [
        ("pct", "ended"),
        ("cap", "active"),
        ("soon", "upcoming"),
    ]
    assert page["total"] == 3
    assert [
        c["code"]
        for c in client.get("/community/challenges", params={"status": "active"}, headers=h).json()["items"]
    ] == ["cap"]
    window = {"start": str(TODAY + D(6)), "end": str(TODAY + D(30))}
    assert [
        c["code"] for c in client.get("/community/challenges", params=window, headers=h).json()["items"]
    ] == ["soon"]
    assert (
        client.get(
            "/community/challenges", params={"start": "2025-02-01", "end": "2025-01-01"}, headers=h
        ).status_code
        == 422
    )
    assert client.get("/community/challenges", params={"status": "paused"}, headers=h).status_code == 422
    assert client.get("/community/challenges").status_code == 401


def test_join_progress_and_results(client: TestClient, accounts: dict[str, Account]) -> None:
    alice, bob = accounts["alice"].headers, accounts["bob"].headers
    first = client.post("/community/challenges/1/join", params={"household_id": "hh-1"}, headers=alice)
    assert first.status_code == 201 and first.json()["household_id"] == "hh-1"
    assert (
        client.post(
            "/community/challenges/1/join", params={"household_id": "hh-1"}, headers=alice
        ).status_code
        == 200
    )
    assert (
        client.post("/community/challenges/1/join", params={"household_id": "hh-2"}, headers=bob).status_code
        == 201
    )
    assert client.get("/community/challenges", headers=alice).json()["items"][1]["participants"] == 2

    # 4 finished days so far (today is not in the marts yet): 40 kWh of a 100 kWh cap over 10 days
    p = client.get("/community/challenges/1/progress", params={"household_id": "hh-1"}, headers=alice).json()
    assert (p["days_total"], p["days_with_data"], p["used_kwh"], p["goal_kwh"]) == (10, 4, 40.0, 100.0)
    assert p["progress_pct"] == 40.0 and p["projected_kwh"] == 100.0 and p["on_track"] is True
    assert p["met"] is None and p["status"] == "active"
    bob_p = client.get(
        "/community/challenges/1/progress", params={"household_id": "hh-2"}, headers=bob
    ).json()
    assert bob_p["projected_kwh"] == 120.0 and bob_p["on_track"] is False

    results = client.get("/community/challenges/1/results", headers=alice).json()
    assert results["total"] == 2 and results["status"] == "active"
    assert [(s["rank"], s["household_id"], s["mine"]) for s in results["items"]] == [
        (1, "hh-1", True),
        (2, None, False),
    ]
    assert results["items"][1]["used_kwh"] == 48.0  # bob's numbers, not bob's id
    analyst = client.get("/community/challenges/1/results", headers=accounts["analyst"].headers).json()
    assert [s["household_id"] for s in analyst["items"]] == ["hh-1", "hh-2"]


def test_percent_goal_against_own_baseline(
    client: TestClient, accounts: dict[str, Account], embedded_api: Settings
) -> None:
    # ended challenges cannot be joined any more; the operator enrolled both households earlier
    assert (
        client.post(
            "/community/challenges/2/join", params={"household_id": "hh-1"}, headers=accounts["alice"].headers
        ).status_code
        == 409
    )
    with appdb.session_scope(embedded_api.app_database_url) as s:
        s.add_all([appdb.ChallengeParticipant(challenge_id=2, household_id=h) for h in ("hh-1", "hh-2")])
    p = client.get(
        "/community/challenges/2/progress", params={"household_id": "hh-1"}, headers=accounts["alice"].headers
    ).json()
    # baseline: 7 days before the start at 10 kWh/day; goal 70 × 0.9 = 63; used 7 × 8 = 56
    assert (p["baseline_kwh_per_day"], p["goal_kwh"], p["used_kwh"], p["met"]) == (10.0, 63.0, 56.0, True)
    results = client.get("/community/challenges/2/results", headers=accounts["admin"].headers).json()
    assert [(s["household_id"], s["met"]) for s in results["items"]] == [("hh-1", True), ("hh-2", False)]


def test_progress_errors(client: TestClient, accounts: dict[str, Account]) -> None:
    alice = accounts["alice"].headers
    not_joined = client.get(
        "/community/challenges/1/progress", params={"household_id": "hh-1"}, headers=alice
    )
    assert not_joined.status_code == 404 and "has not joined" in not_joined.json()["detail"]
    assert (
        client.get(
            "/community/challenges/99/progress", params={"household_id": "hh-1"}, headers=alice
        ).status_code
        == 404
    )
    assert client.get("/community/challenges/99/results", headers=alice).status_code == 404
    assert (
        client.post(
            "/community/challenges/99/join", params={"household_id": "hh-1"}, headers=alice
        ).status_code
        == 404
    )
    assert client.get("/community/challenges/1/progress", headers=alice).status_code == 422
