"""Points ledger and settlement against real SQLite files and a real throwaway PostgreSQL database."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import subprocess
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from hems.errors import HemsError
from hems.stores import appdb
from hems.stores.appdb.models import Settlement
from transforms import ledger

UTC = dt.UTC
CASHBACK = "kepco-cashback-2024"
DR = "kpx-dr-2025"
PROGRAMS = [
    {
        "code": CASHBACK,
        "name": "에너지캐시백",
        "kind": "cashback",
        "rules": {"bands": [[0.03, 30], [0.05, 60], [0.10, 80], [0.20, 100]], "cap_pct": 0.30},
        "effective_from": dt.date(2024, 1, 1),
    },
    {"code": DR, "name": "국민DR", "kind": "demand_response", "effective_from": "2025-01-01"},
]
HOUSEHOLDS = [f"hh-{i:04d}" for i in range(1, 6)]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'app.sqlite3'}"
    yield url
    appdb.dispose_engine(url)


@pytest.fixture
def pg_url(postgres_database: str) -> Iterator[str]:
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{postgres_database}"
    yield url
    appdb.dispose_engine(url)  # before the fixture drops the database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.stack)])
def engine(request: pytest.FixtureRequest) -> Engine:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    appdb.migrate(url)
    appdb.upsert_households([{"id": hh} for hh in HOUSEHOLDS], url)
    ledger.upsert_programs(appdb.get_engine(url), PROGRAMS)
    return appdb.get_engine(url)


def frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """A rewards frame in the calculator's contract; each row gives household, points and maybe more."""
    full = []
    for r in rows:
        points = r.get("points", 0)
        full.append(
            {
                "household_id": r["household_id"],
                "program_code": r.get("program_code", CASHBACK),
                "period": r.get("period", "2025-07"),
                "baseline_kwh": r.get("baseline_kwh", 300.0),
                "actual_kwh": r.get("actual_kwh", 300.0 - points / 60),
                "savings_kwh": r.get("savings_kwh", points / 60),
                "savings_pct": r.get("savings_pct", points / 60 / 3),
                "reward_krw": r.get("reward_krw", points),
                "points": points,
                "status": r.get("status", "qualified" if points else "no_savings"),
                "reason": r.get("reason"),
            }
        )
    return pl.DataFrame(
        full,
        schema={
            "household_id": pl.String,
            "program_code": pl.String,
            "period": pl.String,
            "baseline_kwh": pl.Float64,
            "actual_kwh": pl.Float64,
            "savings_kwh": pl.Float64,
            "savings_pct": pl.Float64,
            "reward_krw": pl.Int64,
            "points": pl.Int64,
            "status": pl.String,
            "reason": pl.String,
        },
    )


def ledger_rows(engine: Engine, household_id: str | None = None) -> list[dict[str, Any]]:
    table = appdb.PointsLedger.__table__
    stmt = sa.select(table).order_by(table.c.id)
    if household_id:
        stmt = stmt.where(table.c.household_id == household_id)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(stmt).mappings()]


def count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def assert_chains(engine: Engine) -> None:
    """Every household's balance_after is the running sum of its points in id order, never below 0."""
    running: dict[str, int] = {}
    for row in ledger_rows(engine):
        running[row["household_id"]] = running.get(row["household_id"], 0) + row["points"]
        assert row["balance_after"] == running[row["household_id"]], row
        assert row["balance_after"] >= 0, row


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


# --------------------------------------------------------------------------- accrual


def test_rerunning_a_period_never_pays_twice(engine: Engine) -> None:
    july = frame(
        [
            {"household_id": "hh-0001", "points": 1800},
            {"household_id": "hh-0002", "points": 600},
            {"household_id": "hh-0003", "points": 0, "status": "not_qualified", "reason": "baseline R² 0.41"},
        ]
    )
    first = ledger.record_rewards(engine, july)
    assert (first.rows, first.accruals, first.adjustments, first.unchanged) == (3, 2, 0, 1)
    assert first.points_accrued == 2400

    for _ in range(2):
        again = ledger.record_rewards(engine, july)
        assert (again.accruals, again.adjustments, again.unchanged, again.points_accrued) == (0, 0, 3, 0)

    assert [ledger.balance(engine, hh) for hh in ("hh-0001", "hh-0002", "hh-0003")] == [1800, 600, 0]
    assert count(engine, "points_ledger") == 2
    assert count(engine, "rewards") == 3
    keys = {r["idempotency_key"] for r in ledger_rows(engine)}
    assert keys == {f"accrual:{CASHBACK}:hh-0001:2025-07", f"accrual:{CASHBACK}:hh-0002:2025-07"}
    with engine.connect() as conn:
        reason = conn.execute(sa.text("SELECT reason FROM rewards WHERE household_id = 'hh-0003'")).scalar()
    assert reason == "baseline R² 0.41"

    # Another period and another program are separate keys: they pay.
    august = frame(
        [
            {"household_id": "hh-0001", "period": "2025-08", "points": 300},
            {"household_id": "hh-0001", "program_code": DR, "period": "DR-2025-08-12-01", "points": 50},
        ]
    )
    assert ledger.record_rewards(engine, august).accruals == 2
    assert ledger.balance(engine, "hh-0001") == 2150
    assert_chains(engine)


def test_changed_result_appends_the_difference_as_an_adjustment(engine: Engine) -> None:
    hh = "hh-0001"
    ledger.record_rewards(engine, frame([{"household_id": hh, "points": 1000}]))
    before = ledger_rows(engine)

    late_data = ledger.record_rewards(engine, frame([{"household_id": hh, "points": 1200}]))
    assert (late_data.accruals, late_data.adjustments, late_data.points_accrued) == (0, 1, 200)
    corrected = ledger.record_rewards(engine, frame([{"household_id": hh, "points": 900}]))
    assert (corrected.adjustments, corrected.points_accrued) == (1, -300)
    assert ledger.record_rewards(engine, frame([{"household_id": hh, "points": 900}])).adjustments == 0

    rows = ledger_rows(engine)
    assert rows[: len(before)] == before  # earlier entries untouched: append-only
    assert [(r["entry_type"], r["points"], r["balance_after"]) for r in rows] == [
        ("accrual", 1000, 1000),
        ("adjustment", 200, 1200),
        ("adjustment", -300, 900),
    ]
    assert [r["idempotency_key"] for r in rows[1:]] == [
        f"adjustment:{CASHBACK}:{hh}:2025-07:1",
        f"adjustment:{CASHBACK}:{hh}:2025-07:2",
    ]
    assert rows[2]["note"] == "result changed: 1200 -> 900 points"
    with engine.connect() as conn:
        krw = conn.execute(sa.text("SELECT reward_krw FROM rewards WHERE household_id = :h"), {"h": hh})
        assert krw.scalar() == pytest.approx(900)

    # Disqualified on re-run: the points come back off.
    ledger.record_rewards(engine, frame([{"household_id": hh, "points": 0, "status": "not_qualified"}]))
    assert ledger.balance(engine, hh) == 0
    assert count(engine, "rewards") == 1
    assert_chains(engine)


def test_a_bulk_frame_is_chunked_and_stays_idempotent(engine: Engine) -> None:
    ids = [f"bulk-{i:05d}" for i in range(ledger.IN_CHUNK + 1_500)]  # crosses the IN-list chunk size
    appdb.upsert_households([{"id": hh} for hh in ids], engine.url.render_as_string(hide_password=False))
    points = [(i % 7) * 60 for i in range(len(ids))]
    rows = frame([{"household_id": hh, "points": p} for hh, p in zip(ids, points, strict=True)])
    first = ledger.record_rewards(engine, rows)
    assert first.accruals == sum(1 for p in points if p) and first.points_accrued == sum(points)
    assert ledger.record_rewards(engine, rows).points_accrued == 0

    changed = rows.with_columns(
        points=pl.when(pl.col("household_id").is_in(ids[-10:])).then(pl.col("points") + 5).otherwise("points")
    ).with_columns(reward_krw=pl.col("points"), status=pl.lit("qualified"))
    again = ledger.record_rewards(engine, changed)
    assert again.points_accrued == 50 and again.accruals + again.adjustments == 10
    assert count(engine, "points_ledger") == first.accruals + 10
    assert count(engine, "rewards") == len(ids)


def test_concurrent_runs_of_the_same_period_accrue_once(engine: Engine) -> None:
    rows = frame([{"household_id": hh, "points": 100 * (i + 1)} for i, hh in enumerate(HOUSEHOLDS)])
    summaries = run_together(6, lambda _: ledger.record_rewards(engine, rows))
    assert all(not isinstance(s, BaseException) for s in summaries), summaries
    assert sum(s.accruals for s in summaries) == len(HOUSEHOLDS)
    assert count(engine, "points_ledger") == len(HOUSEHOLDS)
    assert [ledger.balance(engine, hh) for hh in HOUSEHOLDS] == [100, 200, 300, 400, 500]
    assert_chains(engine)


def test_a_lost_idempotency_race_retries_from_fresh_state(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = frame([{"household_id": "hh-0001", "points": 700}])
    ledger.record_rewards(engine, rows)
    # The next run reads the ledger as it was before the first run committed (what a process
    # that read without the lock would see), so its insert hits the unique key and must retry.
    real_earned, calls = ledger._earned, []

    def stale_then_real(conn: sa.Connection, keys: Any) -> pl.DataFrame:
        calls.append(1)
        return real_earned(conn, []) if len(calls) == 1 else real_earned(conn, keys)

    monkeypatch.setattr(ledger, "_earned", stale_then_real)
    summary = ledger.record_rewards(engine, rows)
    assert (summary.attempts, summary.accruals, summary.points_accrued) == (2, 0, 0)
    assert count(engine, "points_ledger") == 1
    assert ledger.balance(engine, "hh-0001") == 700


# --------------------------------------------------------------------------- redemption


def test_redeem_insufficient_balance_is_a_clear_error_and_writes_nothing(engine: Engine) -> None:
    ledger.record_rewards(engine, frame([{"household_id": "hh-0001", "points": 100}]))
    with pytest.raises(ledger.InsufficientPoints, match="hh-0001 has 100 points, cannot redeem 150") as err:
        ledger.redeem(engine, "hh-0001", 150, "order-1")
    assert isinstance(err.value, HemsError) and (err.value.balance, err.value.requested) == (100, 150)
    with pytest.raises(ledger.InsufficientPoints, match="has 0 points"):
        ledger.redeem(engine, "hh-0002", 1, "order-2")
    assert count(engine, "points_ledger") == 1

    with pytest.raises(ledger.UnknownHousehold, match="hh-9999"):
        ledger.redeem(engine, "hh-9999", 1, "order-3")
    for bad in (0, -5, 1.5, True):
        with pytest.raises(ledger.LedgerError, match="positive integer"):
            ledger.redeem(engine, "hh-0001", bad, "order-4")  # type: ignore[arg-type]
    with pytest.raises(ledger.LedgerError, match="idempotency key is required"):
        ledger.redeem(engine, "hh-0001", 10, " ")
    assert count(engine, "points_ledger") == 1


def test_redeem_is_idempotent_on_its_key(engine: Engine) -> None:
    ledger.record_rewards(engine, frame([{"household_id": "hh-0001", "points": 100}]))
    first = ledger.redeem(engine, "hh-0001", 40, "order-1", "coffee voucher")
    again = ledger.redeem(engine, "hh-0001", 40, "order-1", "coffee voucher")
    assert (first.replayed, again.replayed) == (False, True)
    assert (again.id, again.points, again.balance_after) == (first.id, -40, 60)
    assert first.note == "coffee voucher" and first.entry_type is appdb.LedgerEntryType.redemption
    assert ledger.balance(engine, "hh-0001") == 60

    with pytest.raises(ledger.IdempotencyConflict, match="already used to redeem 40 points"):
        ledger.redeem(engine, "hh-0001", 50, "order-1")
    ledger.record_rewards(engine, frame([{"household_id": "hh-0002", "points": 100}]))
    with pytest.raises(ledger.IdempotencyConflict, match="household hh-0001"):
        ledger.redeem(engine, "hh-0002", 40, "order-1")
    assert count(engine, "points_ledger") == 3


def test_concurrent_redemptions_never_overdraw(engine: Engine) -> None:
    ledger.record_rewards(engine, frame([{"household_id": "hh-0001", "points": 100}]))
    results = run_together(8, lambda i: ledger.redeem(engine, "hh-0001", 30, f"order-{i}"))
    paid = [r for r in results if isinstance(r, ledger.LedgerEntry)]
    refused = [r for r in results if isinstance(r, ledger.InsufficientPoints)]
    assert (len(paid), len(refused)) == (3, 5), results
    assert sorted(r.balance_after for r in paid) == [10, 40, 70]
    assert ledger.balance(engine, "hh-0001") == 10
    assert_chains(engine)


def test_redemptions_and_an_accrual_run_interleave_correctly(engine: Engine) -> None:
    ledger.record_rewards(engine, frame([{"household_id": hh, "points": 100} for hh in HOUSEHOLDS]))
    september = frame([{"household_id": hh, "period": "2025-09", "points": 50} for hh in HOUSEHOLDS])

    def work(i: int) -> object:
        if i == 0:
            return ledger.record_rewards(engine, september)
        return ledger.redeem(engine, HOUSEHOLDS[i % len(HOUSEHOLDS)], 20, f"o-{i}")

    results = run_together(6, work)
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert sum(ledger.balance(engine, hh) for hh in HOUSEHOLDS) == 5 * 150 - 5 * 20
    assert_chains(engine)


# --------------------------------------------------------------------------- expiry, history


def test_expiry_is_fifo_with_hand_computed_numbers(engine: Engine) -> None:
    hh = "hh-0001"

    def accrue(period: str, points: int, when: dt.datetime) -> None:
        ledger.record_rewards(
            engine, frame([{"household_id": hh, "period": period, "points": points}]), at=when
        )

    accrue("2023-12", 1000, at(2024, 1, 15))  # lot A
    accrue("2024-02", 500, at(2024, 3, 10))  # lot B
    ledger.redeem(engine, hh, 1200, "r1", at=at(2024, 6, 1))  # FIFO: all of A, 200 of B -> B keeps 300
    accrue("2024-08", 800, at(2024, 9, 1))  # lot C; balance 1100

    # Cutoff 2024-01-20: only A has matured, and it is fully spent.
    early = ledger.expire_points(engine, at(2025, 1, 20), validity_months=12)
    assert (early.cutoff, early.points_expired, early.households) == (at(2024, 1, 20), 0, 0)

    # Cutoff 2024-03-10 (inclusive): A + B matured = 1500, consumed 1200 -> the 300 left of B expire.
    due = ledger.expire_points(engine, dt.date(2025, 3, 10), validity_months=12)
    assert (due.points_expired, due.households) == (300, 1)
    assert ledger.balance(engine, hh) == 800
    assert ledger.expire_points(engine, dt.date(2025, 3, 10), validity_months=12).points_expired == 0

    ledger.redeem(engine, hh, 100, "r2", at=at(2025, 4, 1))  # taken from C: 700 left
    # Cutoff 2024-09-01: 2300 matured, 1200 + 300 + 100 consumed -> 700 expire, balance 0.
    late = ledger.expire_points(engine, at(2025, 9, 1), validity_months=12)
    assert late.points_expired == 700
    assert ledger.balance(engine, hh) == 0
    expiries = [r for r in ledger_rows(engine, hh) if r["entry_type"] == "expiry"]
    assert [(r["points"], r["balance_after"]) for r in expiries] == [(-300, 800), (-700, 0)]
    assert_chains(engine)

    # A longer validity keeps the points: nothing has matured yet at 24 months.
    ledger.record_rewards(engine, frame([{"household_id": "hh-0002", "points": 90}]), at=at(2024, 2, 1))
    assert ledger.expire_points(engine, at(2025, 9, 1), validity_months=24).points_expired == 0
    with pytest.raises(ledger.LedgerError, match="validity_months"):
        ledger.expire_points(engine, at(2025, 9, 1), validity_months=0)


def test_history_pages_and_filters_newest_first(engine: Engine) -> None:
    hh = "hh-0001"
    for month in range(1, 6):
        rows = frame([{"household_id": hh, "period": f"2025-{month:02d}", "points": 10 * month}])
        ledger.record_rewards(engine, rows, at=at(2025, month + 1, 1))
    ledger.redeem(engine, hh, 25, "r1", "gift card", at=at(2025, 7, 1))

    entries = ledger.history(engine, hh)
    assert [e.points for e in entries] == [-25, 50, 40, 30, 20, 10]
    assert entries[1].program_code == CASHBACK and entries[0].program_code is None
    assert entries[0].created_at == at(2025, 7, 1)
    assert [e.points for e in ledger.history(engine, hh, limit=2, offset=1)] == [50, 40]
    window = ledger.history(engine, hh, start=at(2025, 3, 1), end=at(2025, 5, 1))
    assert [e.period for e in window] == ["2025-03", "2025-02"]
    assert ledger.history(engine, "hh-0002") == []
    with pytest.raises(ledger.LedgerError, match="limit"):
        ledger.history(engine, hh, limit=0)
    with pytest.raises(ledger.LedgerError, match="must be after start"):
        ledger.history(engine, hh, start=at(2025, 5, 1), end=at(2025, 3, 1))
    with pytest.raises(ledger.UnknownHousehold):
        ledger.history(engine, "hh-9999")
    with pytest.raises(ledger.UnknownHousehold):
        ledger.balance(engine, "hh-9999")


# --------------------------------------------------------------------------- settlement


def test_settlement_and_export_file(engine: Engine, tmp_path: Path) -> None:
    rows = frame(
        [
            {"household_id": "hh-0001", "points": 1800, "savings_kwh": 18.25, "baseline_kwh": 310.5},
            {"household_id": "hh-0002", "points": 640, "savings_kwh": 10.667},
            {"household_id": "hh-0003", "points": 0, "status": "not_qualified", "savings_kwh": None},
        ]
    )
    ledger.record_rewards(engine, rows)
    ledger.record_rewards(engine, frame([{"household_id": "hh-0004", "period": "2025-08", "points": 99}]))

    totals = ledger.settle_month(engine, CASHBACK, "2025-07")
    assert (totals.households, totals.households_paid, totals.points, totals.reward_krw) == (3, 2, 2440, 2440)
    assert totals.savings_kwh == pytest.approx(28.917) and totals.revision == 1

    out = tmp_path / "exports" / "nested"
    paths = ledger.export_settlement(engine, CASHBACK, "2025-07", out)
    assert paths.csv.name == f"settlement_{CASHBACK}_2025-07.csv"
    with paths.csv.open(newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == list(ledger.EXPORT_COLUMNS)
    households, total = table[:-1], table[-1]
    assert [r["household_id"] for r in households] == ["hh-0001", "hh-0002", "hh-0003"]
    assert all(r["record_type"] == "household" for r in households) and total["record_type"] == "total"
    assert households[0]["baseline_kwh"] == "310.500" and households[2]["savings_kwh"] == ""
    for column in ("reward_krw", "points"):
        assert int(total[column]) == sum(int(r[column]) for r in households)
    for column in ("baseline_kwh", "actual_kwh", "savings_kwh"):
        assert Decimal(total[column]) == sum(Decimal(r[column] or 0) for r in households)
    assert (int(total["points"]), Decimal(total["savings_kwh"])) == (2440, Decimal("28.917"))

    data = paths.csv.read_bytes()
    assert paths.sha256.read_text() == f"{hashlib.sha256(data).hexdigest()}  {paths.csv.name}\n"
    check = subprocess.run(["sha256sum", "-c", paths.sha256.name], cwd=out, capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.strip() == f"{paths.csv.name}: OK", check
    assert sorted(p.name for p in out.iterdir()) == [paths.csv.name, paths.sha256.name]  # no temp files

    with engine.connect() as conn:
        stored = conn.execute(sa.select(Settlement.__table__)).mappings().one()
    assert (stored["export_sha256"], stored["points"], stored["revision"]) == (paths.checksum, 2440, 1)

    # Same data: same bytes, same checksum, same revision. Late data: revision 2, new totals.
    assert ledger.export_settlement(engine, CASHBACK, "2025-07", out).checksum == paths.checksum
    ledger.record_rewards(engine, frame([{"household_id": "hh-0002", "points": 700}]))
    redone = ledger.export_settlement(engine, CASHBACK, "2025-07", out)
    assert (redone.settlement.points, redone.settlement.revision) == (2500, 2)
    assert redone.checksum != paths.checksum
    tampered = paths.csv.read_text().replace("1800", "1900")
    paths.csv.write_text(tampered)
    assert (
        subprocess.run(["sha256sum", "-c", paths.sha256.name], cwd=out, capture_output=True).returncode != 0
    )

    with pytest.raises(ledger.LedgerError, match="no rewards recorded for period 2025-01"):
        ledger.settle_month(engine, CASHBACK, "2025-01")
    with pytest.raises(ledger.UnknownProgram, match="nope"):
        ledger.export_settlement(engine, "nope", "2025-07", out)


# --------------------------------------------------------------------------- bad input


def _bad_frames() -> list[tuple[str, Callable[[pl.DataFrame], Any], type[Exception], str]]:
    return [
        (
            "missing column",
            lambda f: f.drop("points"),
            ledger.InvalidRewardFrame,
            r"missing column\(s\) \['points'\]",
        ),
        (
            "negative points",
            lambda f: f.with_columns(points=pl.lit(-5, pl.Int64)),
            ledger.InvalidRewardFrame,
            "points must not be negative",
        ),
        (
            "unknown program",
            lambda f: f.with_columns(program_code=pl.lit("no-such-program")),
            ledger.UnknownProgram,
            "no-such-program",
        ),
        (
            "unknown household",
            lambda f: f.with_columns(household_id=pl.col("household_id").replace("hh-0002", "hh-9999")),
            ledger.UnknownHousehold,
            "hh-9999",
        ),
        ("duplicate key", lambda f: pl.concat([f, f]), ledger.InvalidRewardFrame, "duplicate"),
        (
            "points without qualifying",
            lambda f: f.with_columns(status=pl.lit("no_savings")),
            ledger.InvalidRewardFrame,
            "only a 'qualified' row",
        ),
        (
            "unknown status",
            lambda f: f.with_columns(status=pl.lit("maybe")),
            ledger.InvalidRewardFrame,
            "status must be one of",
        ),
        (
            "fractional points",
            lambda f: f.with_columns(points=pl.lit(10.5)),
            ledger.InvalidRewardFrame,
            "whole numbers",
        ),
        (
            "text points",
            lambda f: f.with_columns(points=pl.lit("10")),
            ledger.InvalidRewardFrame,
            "must be an integer",
        ),
        (
            "null period",
            lambda f: f.with_columns(period=pl.lit(None, pl.String)),
            ledger.InvalidRewardFrame,
            "period is missing",
        ),
        (
            "empty household",
            lambda f: f.with_columns(household_id=pl.lit(" ")),
            ledger.InvalidRewardFrame,
            "household_id must be non-empty",
        ),
        ("not a frame", lambda f: f.to_dicts(), ledger.InvalidRewardFrame, "polars DataFrame"),
    ]


def test_bad_frames_are_refused_and_write_nothing(engine: Engine) -> None:
    good = frame([{"household_id": "hh-0001", "points": 60}, {"household_id": "hh-0002", "points": 120}])
    for case, mutate, error, message in _bad_frames():  # one database for all cases: setup is the cost
        with pytest.raises(error, match=message) as err:
            ledger.record_rewards(engine, mutate(good))
        assert isinstance(err.value, HemsError), case
        assert "\n" not in str(err.value), case
        assert (count(engine, "rewards"), count(engine, "points_ledger")) == (0, 0), case
    assert ledger.record_rewards(engine, good).accruals == 2  # the unmutated frame is fine


def test_program_configuration_upserts_by_code(engine: Engine) -> None:
    ids = ledger.program_ids(engine, [CASHBACK, DR])
    updated = {**PROGRAMS[0], "name": "에너지캐시백 (2025)", "effective_to": dt.date(2025, 12, 31)}
    assert ledger.upsert_programs(engine, [updated]) == {CASHBACK: ids[CASHBACK]}
    with appdb.session_scope(engine.url.render_as_string(hide_password=False)) as s:
        program = s.scalars(sa.select(appdb.RewardProgram).where(appdb.RewardProgram.code == CASHBACK)).one()
        assert (program.name, program.effective_to, program.rules["cap_pct"]) == (
            "에너지캐시백 (2025)",
            dt.date(2025, 12, 31),
            0.30,
        )
    assert count(engine, "reward_programs") == 2
    with pytest.raises(ledger.LedgerError, match="kind 'lottery'"):
        ledger.upsert_programs(engine, [{**PROGRAMS[0], "kind": "lottery"}])
    with pytest.raises(ledger.LedgerError, match=r"effective_to .* is before"):
        ledger.upsert_programs(engine, [{**PROGRAMS[0], "effective_to": "2023-01-01"}])
    with pytest.raises(ledger.UnknownProgram, match="missing"):
        ledger.program_ids(engine, ["missing"])


@dataclasses.dataclass(frozen=True)
class RuleRow:
    """Shaped like the rewards calculator's program rule rows (one per version)."""

    program_code: str
    kind: str
    effective_from: dt.date
    effective_to: dt.date | None
    min_savings_pct: float
    dr_krw_per_kwh: float | None


def test_versioned_rule_rows_become_one_program(engine: Engine) -> None:
    rows = [
        RuleRow("kpx_citizen_dr", "demand_response", dt.date(2025, 1, 1), None, 0.0, 1500.0),
        RuleRow("kpx_citizen_dr", "demand_response", dt.date(2024, 1, 1), dt.date(2024, 12, 31), 0.0, 1300.0),
    ]
    ids = ledger.upsert_programs(engine, rows)
    with appdb.session_scope(engine.url.render_as_string(hide_password=False)) as s:
        program = s.get(appdb.RewardProgram, ids["kpx_citizen_dr"])
        assert (program.name, program.kind, program.effective_from, program.effective_to) == (
            "kpx_citizen_dr",
            appdb.ProgramKind.demand_response,
            dt.date(2024, 1, 1),
            None,
        )
        assert [v["dr_krw_per_kwh"] for v in program.rules["versions"]] == [1300.0, 1500.0]
        assert program.rules["versions"][0]["effective_to"] == "2024-12-31"
    clash = dataclasses.replace(rows[1], kind="generic")
    with pytest.raises(ledger.LedgerError, match="disagree on kind"):
        ledger.upsert_programs(engine, [rows[0], clash])


# --------------------------------------------------------------------------- helpers


def run_together(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``n`` threads released at once; results or the exceptions raised."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results
