"""Incentive assets end to end on the embedded profile: two Julys a year apart, simulated, landed and
built; then cashback and weather-normalized rewards for July 2025 and a demand-response event,
checked by the blocking payout checks and paid into the ledger — twice, to prove it pays once."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from hems.settings import Settings, get_settings
from hems.stores import appdb
from hems.stores.warehouse import get_warehouse
from ingest.history import simulate_history
from orchestration.defs.incentives.checks import payout_findings
from orchestration.defs.incentives.partitions import dr_event_key, parse_dr_event
from transforms.rewards import CASHBACK_PROGRAM, DR_PROGRAM, GENERIC_PROGRAM

pytestmark = pytest.mark.slow

HOUSEHOLDS = 4
JULY_2024, JULY_2025 = date(2024, 7, 1), date(2025, 7, 1)
EVENT = dr_event_key(date(2025, 7, 22), 17, 20)  # a Tuesday; 10 weekdays of July before it


@pytest.fixture(scope="module")
def paid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    import os

    from orchestration.lib.runner import run_energy_pipeline, run_incentive_pipeline

    data_dir = tmp_path_factory.mktemp("incentives") / "var"
    saved = {k: os.environ.get(k) for k in ("HEMS_PROFILE", "HEMS_DATA_DIR")}
    os.environ.update({"HEMS_PROFILE": "local", "HEMS_DATA_DIR": str(data_dir)})
    get_settings.cache_clear()
    try:
        settings = get_settings()
        for start in (JULY_2024, JULY_2025):
            simulate_history(settings, households=HOUSEHOLDS, days=31, start=start, seed=5)
            run_energy_pipeline(start, date(start.year, 7, 31), settings)
        first = run_incentive_pipeline([JULY_2025], [EVENT], settings)
        second = run_incentive_pipeline([JULY_2025], [EVENT], settings)
        yield {"settings": settings, "first": first, "second": second}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()


def _rows(settings: Settings, sql: str) -> list[dict]:
    with appdb.get_engine(settings.app_database_url).connect() as con:
        return [dict(r._mapping) for r in con.execute(sa.text(sql))]


def test_every_household_gets_a_result_per_program_and_period(paid) -> None:
    rewards = _rows(
        paid["settings"],
        "select r.household_id, p.code, r.period, r.status, r.reason, r.reward_krw, r.baseline_kwh "
        "from rewards r join reward_programs p on p.id = r.program_id",
    )
    by_program: dict[tuple[str, str], list[dict]] = {}
    for r in rewards:
        by_program.setdefault((r["code"], r["period"]), []).append(r)
    assert set(by_program) == {
        (CASHBACK_PROGRAM, "2025-07"),
        (GENERIC_PROGRAM, "2025-07"),
        (DR_PROGRAM, EVENT),
    }
    for rows in by_program.values():
        assert len(rows) == HOUSEHOLDS
    # cashback has its baseline (July 2024) for every household
    assert all(
        r["baseline_kwh"] and r["baseline_kwh"] > 100 for r in by_program[(CASHBACK_PROGRAM, "2025-07")]
    )
    # CalTRACK needs a year of daily history: disqualified, with the reason, and nothing paid
    for r in by_program[(GENERIC_PROGRAM, "2025-07")]:
        assert r["status"] == "not_qualified" and r["reward_krw"] == 0
        assert r["reason"]
    # the DR event has a CBL from 10 July weekdays for everyone
    assert all(r["baseline_kwh"] and r["baseline_kwh"] > 0 for r in by_program[(DR_PROGRAM, EVENT)])


def test_the_ledger_pays_what_the_rewards_say_and_only_once(paid) -> None:
    settings = paid["settings"]
    ledger = _rows(settings, "select household_id, entry_type, points from points_ledger")
    rewards = _rows(settings, "select household_id, reward_krw from rewards")
    assert sum(r["points"] for r in ledger) == sum(int(r["reward_krw"]) for r in rewards)
    assert all(r["entry_type"] == "accrual" for r in ledger)
    # the second run of the same partitions found nothing new to pay
    assert paid["second"].paid_krw == paid["first"].paid_krw
    assert (
        len(ledger) == len({(r["household_id"], r["points"]) for r in ledger})
        or len(ledger) <= 3 * HOUSEHOLDS
    )


def test_payout_checks_ran_blocking_and_passed(paid) -> None:
    checks = paid["first"].checks
    names = {k.split(":")[-1] for k in checks}
    assert "fit_for_payout" in names
    assert sum(1 for k in checks if k.endswith("fit_for_payout")) == 3
    assert all(checks.values()), checks


def test_settlement_exports_verify(paid) -> None:
    exports = Path(paid["settings"].data_dir) / "exports"
    files = sorted(exports.rglob("*.csv"))
    assert len(files) == 3
    for csv_path in files:
        line = csv_path.with_name(csv_path.name + ".sha256").read_text().split()
        assert line[0] == hashlib.sha256(csv_path.read_bytes()).hexdigest()
        table = pl.read_csv(csv_path)
        assert table.height == HOUSEHOLDS + 1  # one row per household and the totals row


def test_long_reading_gap_between_the_years_is_not_counted(paid) -> None:
    daily = get_warehouse(paid["settings"]).query(
        "select date, grid_consumption_kwh from marts.energy_usage_daily order by date"
    )
    assert daily["date"].max() == date(2025, 7, 31)
    assert daily["grid_consumption_kwh"].max() < 100  # type: ignore[operator]
    assert daily.filter(pl.col("date").is_between(date(2024, 8, 2), date(2025, 6, 29))).height == 0


def test_payout_findings_flag_what_must_not_be_paid() -> None:
    base = {
        "household_id": ["a", "b", "c", "d"],
        "status": ["qualified"] * 4,
        "actual_kwh": [300.0] * 4,
        "savings_pct": [5.0] * 4,
        "reward_krw": [900, 1000, 1100, 1000],
        "coverage": [1.0] * 4,
    }
    assert not any(payout_findings(pl.DataFrame(base)).values())
    cases = {
        "paid_without_qualified_baseline": {
            "status": ["qualified", "not_qualified", "qualified", "qualified"]
        },
        "paid_without_actual_usage": {"actual_kwh": [300.0, None, 300.0, 300.0]},
        "paid_with_missing_days": {"coverage": [1.0, 0.5, 1.0, 1.0]},
        "paid_savings_above_plausible": {"savings_pct": [5.0, 95.0, 5.0, 5.0]},
        "reward_outliers": {"reward_krw": [900, 1000, 1100, 500_000]},
        "negative_rewards": {"reward_krw": [900, -10, 1100, 1000]},
    }
    for finding, change in cases.items():
        found = payout_findings(pl.DataFrame({**base, **change}))
        assert found[finding] == 1, finding


def test_dr_event_keys_are_checked() -> None:
    assert parse_dr_event("2025-07-22T17-20").hours == (17, 18, 19)
    for bad in ("2025-07-22", "2025-07-22T20-17", "2025-07-22T17-25", "22-07-2025T17-20"):
        with pytest.raises(ValueError, match="DR event key"):
            parse_dr_event(bad)
