"""The SQL bill marts equal the Python calculator, and the duckdb and postgres targets agree.

One small fleet — a household per kWh value, three metered days in each grid month — is landed
through the real warehouse classes and built with ``dbt build`` (seeds, models, data tests and
the dbt unit tests) on a temporary DuckDB file and a throwaway PostgreSQL database.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from hems.contracts import ENERGY_CONSUMPTION, conform
from hems.domain.tariff import daily_costs, kepco_bill, metered_kwh
from hems.settings import Profile, Settings
from hems.stores.warehouse import get_warehouse
from orchestration.lib.environment import DBT_PROJECT_DIR, dbt_env
from tests.support import require_service, unique_name

pytestmark = pytest.mark.slow

SEOUL = ZoneInfo("Asia/Seoul")
# around every fund-rate change, summer (Jul–Aug), winter super-user months and a plain month
MONTHS = ["2024-06", "2024-07", "2025-01", "2025-04", "2025-06", "2025-07", "2025-08", "2025-12", "2026-02"]
# tier edges of both seasons, the super-user threshold, and a fractional, half-Wh-free value
KWH = ["0", "200", "201", "300", "301", "400", "401", "450", "451", "1000", "1200", "777.777"]
SPLIT = (Decimal("0.4"), Decimal("0.6"))  # day 1 and day 2 of the month; day 3 adds nothing
MART_KEYS = {
    "fct_bills_monthly": "household_id, billing_month",
    "int_household_days_billed": "household_id, date",
}


def _household(kwh: str) -> str:
    return "hh_" + kwh.replace(".", "_")


def _readings() -> pl.DataFrame:
    """Meter registers at local midnight of days 1–4 of each month: days 1 and 2 use 0.4 K and 0.6 K."""
    rows: list[dict[str, Any]] = []
    for kwh in KWH:
        register = 1000.0
        for month in MONTHS:
            first = date.fromisoformat(month + "-01")
            steps = [Decimal(0), *(Decimal(kwh) * s for s in SPLIT), Decimal(0)]
            for day, step in enumerate(steps):
                register += float(step)
                local = datetime.combine(first + timedelta(days=day), datetime.min.time(), SEOUL)
                rows.append(
                    {
                        "ts": local.astimezone(UTC),
                        "household_id": _household(kwh),
                        "device_id": _household(kwh) + "_meter",
                        "device_type": "smart_meter",
                        "energy_import_kwh": register,
                        "energy_export_kwh": 0.0,
                    }
                )
    return conform(pl.DataFrame(rows), ENERGY_CONSUMPTION.schema)


def _build(settings: Settings, work: Path) -> dict[str, list[dict[str, Any]]]:
    frame = _readings()
    start, end = frame["ts"].min(), frame["ts"].max()
    get_warehouse(settings).land_readings(frame, start, end + timedelta(seconds=1))  # type: ignore[operator]
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "dbt"),
            "build",
            "--select",
            "+fct_bills_monthly",
            "+energy_usage_daily",
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
            "--target-path",
            str(work / "target"),
            "--log-path",
            str(work / "logs"),
        ],
        env={**os.environ, **dbt_env(settings)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    sql = {name: f"select * from marts.{name} order by {keys}" for name, keys in MART_KEYS.items()}
    sql["int_household_days_billed"] = sql["int_household_days_billed"].replace("marts.", "intermediate.")
    sql["energy_usage_daily"] = (
        "select household_id, date, cost_krw from marts.energy_usage_daily order by 1, 2"
    )
    if settings.profile is Profile.stack:
        import psycopg
        from psycopg.rows import dict_row

        pg = settings.postgres
        with psycopg.connect(pg.url(pg.warehouse_database, driver="postgresql"), row_factory=dict_row) as con:
            return {name: con.execute(q).fetchall() for name, q in sql.items()}  # type: ignore[arg-type]
    import duckdb

    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        out = {}
        for name, q in sql.items():
            cur = con.execute(q)
            cols = [d[0] for d in cur.description]
            out[name] = [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
        return out


@pytest.fixture(scope="module")
def duckdb_marts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    work = tmp_path_factory.mktemp("bill_marts_duckdb")
    return _build(Settings(profile=Profile.local, data_dir=work / "var"), work)


@pytest.fixture(scope="module")
def postgres_marts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, list[dict[str, Any]]]]:
    import psycopg

    host, port = require_service("postgresql")
    name = unique_name()
    admin = f"postgresql://postgres@{host}:{port}/postgres"
    with psycopg.connect(admin, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    try:
        settings = Settings(
            profile=Profile.stack, postgres={"host": host, "port": port, "warehouse_database": name}
        )
        yield _build(settings, tmp_path_factory.mktemp("bill_marts_postgres"))
    finally:
        with psycopg.connect(admin, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_monthly_bills_equal_the_python_calculator(duckdb_marts: dict[str, list[dict[str, Any]]]) -> None:
    bills = {(r["household_id"], f"{r['billing_month']:%Y-%m}"): r for r in duckdb_marts["fct_bills_monthly"]}
    # a reading gap of under meter_gap_spread_max_days between two fixture months is spread over the
    # days between them (0 kWh here, as the register did not move), which bills those months too
    assert {month for _, month in bills} >= set(MONTHS)
    assert all(bills[k]["kwh"] == 0 for k in bills if k[1] not in MONTHS)
    for kwh in KWH:
        for month in MONTHS:
            row, bill = bills[(_household(kwh), month)], kepco_bill(kwh, month)
            blocks = {b.block: b for b in bill.blocks if not b.is_super_user}
            expected = {
                "kwh": bill.kwh,
                "season": bill.season,
                "tier": bill.tier,
                "base_charge_krw": bill.base_charge,
                **{f"block{n}_kwh": blocks[n].kwh for n in (1, 2, 3)},
                **{f"block{n}_krw": blocks[n].amount for n in (1, 2, 3)},
                "super_user_kwh": bill.super_user_kwh,
                "super_user_krw": bill.super_user_charge,
                "energy_charge_krw": bill.energy_charge,
                "climate_environment_krw": bill.climate_charge,
                "fuel_cost_adjustment_krw": bill.fuel_charge,
                "subtotal_krw": bill.subtotal,
                "vat_krw": bill.vat,
                "power_industry_fund_rate": bill.fund_rate,
                "power_industry_fund_krw": bill.fund,
                "total_krw": bill.total,
            }
            assert {k: row[k] for k in expected} == expected, (kwh, month)


def test_daily_costs_are_the_month_to_date_bill_difference(
    duckdb_marts: dict[str, list[dict[str, Any]]],
) -> None:
    days: dict[tuple[str, str], list[Decimal]] = {}
    for r in duckdb_marts["int_household_days_billed"]:
        days.setdefault((r["household_id"], f"{r['date']:%Y-%m}"), []).append(r["cost_krw"])
    published = {(r["household_id"], r["date"]): r["cost_krw"] for r in duckdb_marts["energy_usage_daily"]}
    for kwh in KWH:
        for month in MONTHS:
            costs = days[(_household(kwh), month)]
            # days 3 (and 4, when the next month's first reading closes its interval) add 0 kWh
            series = [metered_kwh(Decimal(kwh) * s) for s in SPLIT] + [Decimal(0)] * (len(costs) - 2)
            assert costs == daily_costs(series, month), (kwh, month)
            assert sum(costs) == kepco_bill(sum(series), month).total
            first = date.fromisoformat(month + "-01")
            assert [published[(_household(kwh), first + timedelta(days=d))] for d in range(len(costs))] == [
                float(c) for c in costs
            ]


def test_duckdb_and_postgres_targets_give_identical_bills(
    duckdb_marts: dict[str, list[dict[str, Any]]], postgres_marts: dict[str, list[dict[str, Any]]]
) -> None:
    for name in duckdb_marts:
        assert postgres_marts[name] == duckdb_marts[name], name
