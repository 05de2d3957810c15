"""Incentive routes: rewards, points balance and history, redemption, settlements, programs.

The data is written the way the pipeline writes it: program rows from the rule seeds
(``upsert_programs(load_programs().rules)``) and results through ``ledger.record_rewards``.
Alice owns hh-1, Bob hh-2.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import polars as pl
import pytest
from fastapi.testclient import TestClient

from hems.settings import Settings
from hems.stores import appdb
from tests.serving.conftest import Account
from transforms import ledger
from transforms.rewards import CASHBACK_PROGRAM, DR_PROGRAM, REWARD_SCHEMA, load_programs

POSTED = dt.datetime(2025, 8, 1, 1, 0, tzinfo=dt.UTC)


def reward_rows(rows: list[dict]) -> pl.DataFrame:
    """A frame in the ledger's input contract (transforms.ledger docstring / REWARD_SCHEMA)."""
    full = [
        {
            "program_code": CASHBACK_PROGRAM,
            "baseline_kwh": 300.0,
            "actual_kwh": 300.0,
            "savings_kwh": 0.0,
            "savings_pct": 0.0,
            "reward_krw": 0,
            "points": 0,
            "reason": None,
            **r,
        }
        for r in rows
    ]
    return pl.DataFrame(full, schema=REWARD_SCHEMA)


def seed_incentives(settings: Settings) -> None:
    engine = appdb.get_engine(settings.app_database_url)
    ledger.upsert_programs(engine, load_programs().rules)
    ledger.record_rewards(
        engine,
        reward_rows(
            [
                {
                    "household_id": "hh-1",
                    "period": "2025-07",
                    "actual_kwh": 270.0,
                    "savings_kwh": 30.0,
                    "savings_pct": 10.0,
                    "reward_krw": 2400,
                    "points": 2400,
                    "status": "qualified",
                },
                {
                    "household_id": "hh-1",
                    "period": "2025-08",
                    "status": "not_qualified",
                    "reason": "no baseline: fewer than 12 months of history",
                },
                {
                    "household_id": "hh-1",
                    "program_code": DR_PROGRAM,
                    "period": "2025-08-14T17-20",
                    "savings_kwh": 1.5,
                    "reward_krw": 1950,
                    "points": 1950,
                    "status": "qualified",
                },
                {
                    "household_id": "hh-2",
                    "period": "2025-07",
                    "actual_kwh": 310.0,
                    "savings_kwh": -10.0,
                    "savings_pct": -3.3,
                    "status": "no_savings",
                    "reason": "used more than the baseline",
                },
            ]
        ),
        at=POSTED,
    )


@pytest.fixture
def client(embedded_api: Settings, accounts: dict[str, Account]) -> Iterator[TestClient]:
    from serving.main import create_app

    seed_incentives(embedded_api)
    with TestClient(create_app()) as c:
        yield c


def test_rewards_with_reasons_and_filters(client: TestClient, accounts: dict[str, Account]) -> None:
    alice = accounts["alice"].headers
    body = client.get("/households/hh-1/rewards", headers=alice).json()
    assert body["total"] == 3
    assert [(r["program_code"], r["period"]) for r in body["items"]] == [
        (DR_PROGRAM, "2025-08-14T17-20"),
        (CASHBACK_PROGRAM, "2025-08"),
        (CASHBACK_PROGRAM, "2025-07"),
    ]
    july = body["items"][2]
    assert (july["baseline_kwh"], july["actual_kwh"], july["savings_kwh"]) == (300.0, 270.0, 30.0)
    assert (july["points"], july["paid"], july["status"], july["kind"]) == (
        2400,
        True,
        "qualified",
        "cashback",
    )
    august = body["items"][1]
    assert august["paid"] is False and august["reason"] == "no baseline: fewer than 12 months of history"
    only = client.get(
        "/households/hh-1/rewards",
        params={"period_from": "2025-08", "period_to": "2025-08", "program": CASHBACK_PROGRAM},
        headers=alice,
    ).json()
    assert [r["period"] for r in only["items"]] == ["2025-08"]
    july_dr = client.get("/households/hh-1/rewards", params={"period_to": "2025-07"}, headers=alice).json()
    assert [r["period"] for r in july_dr["items"]] == ["2025-07"]
    qualified = client.get("/households/hh-1/rewards", params={"status": "qualified"}, headers=alice).json()
    assert qualified["total"] == 2
    page = client.get("/households/hh-1/rewards", params={"limit": 1, "offset": 1}, headers=alice).json()
    assert page["total"] == 3 and [r["period"] for r in page["items"]] == ["2025-08"]


@pytest.mark.parametrize(
    "params",
    [
        {"period_from": "2025-7"},
        {"period_from": "2025-13"},
        {"period_to": "July"},
        {"period_from": "2025-08", "period_to": "2025-07"},
        {"status": "paid"},
        {"program": "bad code!"},
        {"limit": 0},
    ],
)
def test_rewards_bad_filters(client: TestClient, accounts: dict[str, Account], params: dict) -> None:
    r = client.get("/households/hh-1/rewards", params=params, headers=accounts["alice"].headers)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")


def test_balance_and_history(client: TestClient, accounts: dict[str, Account]) -> None:
    alice = accounts["alice"].headers
    assert client.get("/households/hh-1/points", headers=alice).json()["balance"] == 4350
    assert client.get("/households/hh-2/points", headers=accounts["bob"].headers).json()["balance"] == 0
    history = client.get("/households/hh-1/points/history", headers=alice).json()
    assert history["total"] == 2
    assert sorted(e["points"] for e in history["items"]) == [1950, 2400]
    assert {e["entry_type"] for e in history["items"]} == {"accrual"}
    page = client.get("/households/hh-1/points/history", params={"limit": 1}, headers=alice).json()
    assert page["total"] == 2 and len(page["items"]) == 1
    # posted 2025-08-01 01:00 UTC = 10:00 in Seoul: the household's local day
    on_day = client.get(
        "/households/hh-1/points/history", params={"start": "2025-08-01", "end": "2025-08-01"}, headers=alice
    ).json()
    assert on_day["total"] == 2
    before = client.get("/households/hh-1/points/history", params={"end": "2025-07-31"}, headers=alice).json()
    assert before == {"items": [], "total": 0, "limit": 20, "offset": 0}
    bad = client.get(
        "/households/hh-1/points/history", params={"start": "2025-08-02", "end": "2025-08-01"}, headers=alice
    )
    assert bad.status_code == 422
    assert client.get("/households/hh-1/points/history?start=yesterday", headers=alice).status_code == 422


def _redeem(client: TestClient, who: Account, hh: str, points: object, key: str | None, **extra: object):
    headers = {**who.headers, **({"Idempotency-Key": key} if key is not None else {})}
    return client.post(f"/households/{hh}/points/redeem", json={"points": points, **extra}, headers=headers)


def test_redemption_is_idempotent(client: TestClient, accounts: dict[str, Account]) -> None:
    alice = accounts["alice"]
    first = _redeem(client, alice, "hh-1", 1000, "order-7", note="coffee voucher")
    assert first.status_code == 201, first.text
    assert first.json()["points"] == -1000 and first.json()["balance_after"] == 3350
    assert first.json()["replayed"] is False and first.json()["idempotency_key"] == "order-7"
    again = _redeem(client, alice, "hh-1", 1000, "order-7", note="coffee voucher")
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"] and again.json()["replayed"] is True
    assert client.get("/households/hh-1/points", headers=alice.headers).json()["balance"] == 3350
    other = _redeem(client, alice, "hh-1", 500, "order-7")  # same key, different request
    assert other.status_code == 422 and "already used" in other.json()["detail"]
    # keys are per household: the same key for another household is another redemption
    admin = accounts["admin"]
    bob_hh = _redeem(client, admin, "hh-1", 50, "shared-key")
    assert bob_hh.status_code == 201
    history = client.get("/households/hh-1/points/history", headers=alice.headers).json()
    assert [e["entry_type"] for e in history["items"][:2]] == ["redemption", "redemption"]


def test_insufficient_balance_is_a_409_problem(client: TestClient, accounts: dict[str, Account]) -> None:
    r = _redeem(client, accounts["alice"], "hh-1", 5000, "too-much")
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert (body["balance"], body["requested"], body["status"]) == (4350, 5000, 409)
    assert body["request_id"] and body["instance"] == "/households/hh-1/points/redeem"
    assert client.get("/households/hh-1/points", headers=accounts["alice"].headers).json()["balance"] == 4350


@pytest.mark.parametrize(
    ("points", "key", "status"),
    [
        (100, None, 400),  # no Idempotency-Key
        (100, "", 400),
        (100, "has space", 400),
        (100, "k" * 101, 400),
        (-5, "neg", 422),
        (0, "zero", 422),
        (1.5, "frac", 422),
        ("ten", "text", 422),
        (10**9, "huge", 422),
    ],
)
def test_redemption_bad_input(
    client: TestClient, accounts: dict[str, Account], points: object, key: str | None, status: int
) -> None:
    r = _redeem(client, accounts["alice"], "hh-1", points, key)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert client.get("/households/hh-1/points", headers=accounts["alice"].headers).json()["balance"] == 4350


def test_redemption_unknown_field_refused(client: TestClient, accounts: dict[str, Account]) -> None:
    assert _redeem(client, accounts["alice"], "hh-1", 10, "x1", household_id="hh-2").status_code == 422


def test_who_may_redeem(client: TestClient, accounts: dict[str, Account]) -> None:
    assert _redeem(client, accounts["bob"], "hh-1", 10, "b1").status_code == 404  # not Bob's
    assert _redeem(client, accounts["analyst"], "hh-1", 10, "a1").status_code == 403
    assert _redeem(client, accounts["admin"], "hh-1", 10, "r1").status_code == 201
    assert client.post("/households/hh-1/points/redeem", json={"points": 1}).status_code == 401


def test_settlements_for_staff(
    client: TestClient, accounts: dict[str, Account], embedded_api: Settings
) -> None:
    totals = ledger.settle_month(appdb.get_engine(embedded_api.app_database_url), CASHBACK_PROGRAM, "2025-07")
    analyst = accounts["analyst"].headers
    listing = client.get("/settlements", headers=analyst).json()
    assert listing["total"] == 1
    one = client.get(f"/settlements/{CASHBACK_PROGRAM}/2025-07", headers=accounts["admin"].headers).json()
    assert listing["items"][0] == one
    assert (one["households"], one["households_paid"], one["points"]) == (2, 1, 2400)
    assert one["reward_krw"] == totals.reward_krw == 2400 and one["revision"] == 1
    assert one["savings_kwh"] == pytest.approx(20.0)
    filtered = client.get("/settlements", params={"period_from": "2025-08"}, headers=analyst).json()
    assert filtered["total"] == 0
    assert client.get(f"/settlements/{CASHBACK_PROGRAM}/2025-08", headers=analyst).status_code == 404
    assert client.get(f"/settlements/{CASHBACK_PROGRAM}/July", headers=analyst).status_code == 422
    assert client.get("/settlements", params={"period_to": "2025-99"}, headers=analyst).status_code == 422
    for resident in ("alice", "bob"):
        assert client.get("/settlements", headers=accounts[resident].headers).status_code == 403
        assert (
            client.get(
                f"/settlements/{CASHBACK_PROGRAM}/2025-07", headers=accounts[resident].headers
            ).status_code
            == 403
        )


def test_programs_for_any_signed_in_user(client: TestClient, accounts: dict[str, Account]) -> None:
    body = client.get("/programs", headers=accounts["alice"].headers).json()
    codes = {p["code"]: p for p in body["items"]}
    assert set(codes) == {r.program_code for r in load_programs().rules}
    cashback = codes[CASHBACK_PROGRAM]
    assert cashback["kind"] == "cashback" and cashback["rules"]["min_savings_pct"] == 3.0
    assert [b["krw_per_kwh"] for b in cashback["bands"]][:4] == [30.0, 60.0, 80.0, 100.0]
    assert codes[DR_PROGRAM]["bands"] == [] and codes[DR_PROGRAM]["rules"]["dr_krw_per_kwh"] == 1300.0
    assert (
        client.get("/programs", params={"active_on": "2020-01-01"}, headers=accounts["bob"].headers).json()[
            "total"
        ]
        == 0
    )
    assert client.get("/programs").status_code == 401
    assert client.get("/programs?active_on=soon", headers=accounts["bob"].headers).status_code == 422
