"""Warehouse landing is idempotent per range, and serving reads never wait for the pipeline."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import duckdb
import polars as pl
import pytest

from hems.errors import HemsError
from hems.settings import Settings
from hems.stores.warehouse import DuckDBWarehouse, PostgresWarehouse, get_warehouse

DAY = datetime(2025, 7, 1, tzinfo=UTC)


def _frame(day: datetime, n: int = 10, offset: float = 0.0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ts": [day + timedelta(minutes=i) for i in range(n)],
            "household_id": "hh-1",
            "device_id": "hh-1-meter",
            "device_type": "smart_meter",
            "power_consumption": [100.0 + offset] * n,
            "energy_import_kwh": [1.0 + i / 100 for i in range(n)],
        }
    ).with_columns(
        *[
            pl.lit(None, dtype=pl.Float64).alias(c)
            for c in ("energy_export_kwh", "voltage", "current", "power_factor", "solar_generation")
        ],
        pl.col("ts").cast(pl.Datetime("ms", "UTC")),
    )


def _count(wh, day: datetime) -> int:
    return int(
        wh.query(
            "SELECT count(*) AS n FROM raw.energy_readings WHERE ts >= $a AND ts < $b",
            {"a": day, "b": day + timedelta(days=1)},
        )["n"][0]
    )


def _both(wh) -> None:
    wh.land_readings(_frame(DAY), DAY, DAY + timedelta(days=1))
    wh.land_readings(_frame(DAY + timedelta(days=1), n=5), DAY + timedelta(days=1), DAY + timedelta(days=2))
    # re-landing a day replaces it (and leaves the other day alone)
    wh.land_readings(_frame(DAY, n=7, offset=50), DAY, DAY + timedelta(days=1))
    wh.publish_snapshot()
    assert _count(wh, DAY) == 7
    assert _count(wh, DAY + timedelta(days=1)) == 5
    power = wh.query(
        "SELECT max(power_consumption) AS p FROM raw.energy_readings WHERE ts < $b",
        {"b": DAY + timedelta(days=1)},
    )
    assert power["p"][0] == pytest.approx(150.0)


def test_duckdb_landing_idempotent(local_settings: Settings) -> None:
    _both(get_warehouse(local_settings))


def test_duckdb_readers_never_wait_for_the_writer(local_settings: Settings) -> None:
    wh = get_warehouse(local_settings)
    assert isinstance(wh, DuckDBWarehouse)
    wh.land_readings(_frame(DAY), DAY, DAY + timedelta(days=1))
    wh.publish_snapshot()
    writer = duckdb.connect(str(wh.path))  # a pipeline step holding the write lock
    try:
        assert _count(wh, DAY) == 10  # served from the snapshot while the lock is held
        # a second writer in *another process* is refused with a clear message, not a hang
        code = (
            "from hems.stores.warehouse import DuckDBWarehouse;from pathlib import Path;"
            f"DuckDBWarehouse(Path({str(wh.path)!r}), Path('/dev/null')).publish_snapshot()"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0
        assert "locked by another writing process" in proc.stderr
    finally:
        writer.close()


def test_duckdb_query_before_any_refresh_explains(local_settings: Settings) -> None:
    with pytest.raises(HemsError, match="no warehouse snapshot"):
        get_warehouse(local_settings).query("SELECT 1")


@pytest.mark.stack
def test_postgres_landing_idempotent(postgres_database: str) -> None:
    wh = PostgresWarehouse(f"postgresql://postgres@127.0.0.1:5432/{postgres_database}", "127.0.0.1:5432")
    _both(wh)


@pytest.mark.stack
def test_postgres_unreachable_is_one_line() -> None:
    from hems.errors import ServiceUnavailable

    wh = PostgresWarehouse("postgresql://postgres@127.0.0.1:1/nowhere", "127.0.0.1:1/nowhere")
    with pytest.raises(
        ServiceUnavailable, match=r"PostgreSQL \(warehouse\) is not reachable at 127.0.0.1:1/nowhere"
    ):
        wh.query("SELECT 1")
