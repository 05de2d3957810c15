"""The analytical warehouse: DuckDB file (embedded) or PostgreSQL database (stack).

Two roles with different locking needs:
* the pipeline lands raw partitions and runs dbt (a writer);
* the API and dashboards read marts (readers that must never block a run, nor be blocked).

On DuckDB, which allows one writing process per file, readers never open the pipeline's file:
:meth:`DuckDBWarehouse.publish_snapshot` copies the database into a serving file after each
refresh (under the writer's own lock), swapped in with an atomic rename, and readers open that
file read-only per query. PostgreSQL has MVCC, so both roles use the one database.
"""

from __future__ import annotations

import io
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from hems.contracts import ENERGY_CONSUMPTION
from hems.errors import HemsError, ServiceUnavailable

RAW_SCHEMA = "raw"
RAW_READINGS_TABLE = f"{RAW_SCHEMA}.energy_readings"
_RAW_COLUMNS = list(ENERGY_CONSUMPTION.schema)

#: Reference tables copied whole from the app database (households, devices) so the marts can join
#: attributes without reaching into the app DB. Column types in DuckDB spelling; PostgreSQL's below.
REFERENCE_TABLES: dict[str, dict[str, str]] = {
    "households": {
        "household_id": "VARCHAR",
        "name": "VARCHAR",
        "region": "VARCHAR",
        "building_type": "VARCHAR",
        "household_type": "VARCHAR",
        "area_m2": "DOUBLE",
        "residents": "INTEGER",
        "timezone": "VARCHAR",
        "has_pv": "BOOLEAN",
        "pv_kwp": "DOUBLE",
        "has_ev": "BOOLEAN",
        "electric_heating": "BOOLEAN",
    },
    "devices": {
        "device_id": "VARCHAR",
        "household_id": "VARCHAR",
        "device_type": "VARCHAR",
        "protocol": "VARCHAR",
        "manufacturer": "VARCHAR",
        "model": "VARCHAR",
    },
}
_PG_TYPES = {"VARCHAR": "TEXT", "DOUBLE": "DOUBLE PRECISION"}


def _reference_frame(table: str, frame: pl.DataFrame) -> tuple[dict[str, str], pl.DataFrame]:
    if table not in REFERENCE_TABLES:
        raise HemsError(f"unknown reference table {table!r}; known: {', '.join(REFERENCE_TABLES)}")
    columns = REFERENCE_TABLES[table]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise HemsError(f"reference table {table}: frame lacks columns {', '.join(missing)}")
    return columns, frame.select(list(columns))


class Warehouse(ABC):
    dbt_target: str

    @abstractmethod
    def land_readings(self, frame: pl.DataFrame, start: datetime, end: datetime) -> int:
        """Replace raw readings with ``start <= ts < end`` by ``frame`` (idempotent per range)."""

    @abstractmethod
    def query(self, sql: str, params: dict[str, Any] | None = None) -> pl.DataFrame:
        """Run a read query for serving (never blocks, nor is blocked by, a pipeline run)."""

    def read_live(self, sql: str, params: dict[str, Any] | None = None) -> pl.DataFrame:
        """Read the pipeline's own tables, not the serving snapshot (for checks inside a run)."""
        return self.query(sql, params)

    @abstractmethod
    def replace_reference(self, table: str, frame: pl.DataFrame) -> int:
        """Replace reference table ``raw.<table>`` (see REFERENCE_TABLES) by ``frame``, atomically."""

    def publish_snapshot(self) -> None:  # noqa: B027 - only DuckDB needs a serving copy
        """Make the latest refresh visible to readers."""

    @abstractmethod
    def drop(self) -> None: ...


class DuckDBWarehouse(Warehouse):
    dbt_target = "duckdb"

    def __init__(self, path: Path, snapshot_path: Path) -> None:
        self.path, self.snapshot_path = Path(path), Path(snapshot_path)

    @contextmanager
    def _writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = duckdb.connect(str(self.path))
        except duckdb.IOException as exc:
            raise HemsError(
                f"warehouse {self.path} is locked by another writing process ({exc}); "
                "wait for the running pipeline step to finish"
            ) from None
        try:
            con.execute("SET TimeZone = 'UTC'")
            yield con
        finally:
            con.close()

    def land_readings(self, frame: pl.DataFrame, start: datetime, end: datetime) -> int:
        frame = frame.select(_RAW_COLUMNS)
        with self._writer() as con:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA}")
            con.execute(
                f"""CREATE TABLE IF NOT EXISTS {RAW_READINGS_TABLE} (
                    ts TIMESTAMPTZ NOT NULL, household_id VARCHAR NOT NULL, device_id VARCHAR NOT NULL,
                    device_type VARCHAR, power_consumption DOUBLE, energy_import_kwh DOUBLE,
                    energy_export_kwh DOUBLE, voltage DOUBLE, current DOUBLE, power_factor DOUBLE,
                    solar_generation DOUBLE)"""
            )
            con.execute("BEGIN TRANSACTION")
            con.execute(f"DELETE FROM {RAW_READINGS_TABLE} WHERE ts >= $1 AND ts < $2", [start, end])
            con.register("landing", frame)
            con.execute(f"INSERT INTO {RAW_READINGS_TABLE} SELECT * FROM landing")
            con.unregister("landing")
            con.execute("COMMIT")
        return frame.height

    def replace_reference(self, table: str, frame: pl.DataFrame) -> int:
        columns, frame = _reference_frame(table, frame)
        ddl = ", ".join(f"{name} {kind}" for name, kind in columns.items())
        with self._writer() as con:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA}")
            con.execute(f"CREATE TABLE IF NOT EXISTS {RAW_SCHEMA}.{table} ({ddl})")
            con.execute("BEGIN TRANSACTION")
            con.execute(f"DELETE FROM {RAW_SCHEMA}.{table}")
            con.register("landing", frame)
            con.execute(f"INSERT INTO {RAW_SCHEMA}.{table} SELECT * FROM landing")
            con.unregister("landing")
            con.execute("COMMIT")
        return frame.height

    def publish_snapshot(self) -> None:
        if not self.path.exists():
            return
        tmp = self.snapshot_path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        with self._writer() as con:
            (source,) = con.execute("SELECT current_database()").fetchone()  # type: ignore[misc]
            con.execute(f"ATTACH '{tmp}' AS serving")
            con.execute(f'COPY FROM DATABASE "{source}" TO serving')
            con.execute("DETACH serving")
        os.replace(tmp, self.snapshot_path)

    def query(self, sql: str, params: dict[str, Any] | None = None) -> pl.DataFrame:
        if not self.snapshot_path.exists():
            raise HemsError(
                f"no warehouse snapshot at {self.snapshot_path} yet: "
                "run the pipeline (`hems demo --no-serve`)"
            )
        with duckdb.connect(str(self.snapshot_path), read_only=True) as con:
            con.execute("SET TimeZone = 'UTC'")
            return con.sql(sql, params=params or {}).pl()

    def read_live(self, sql: str, params: dict[str, Any] | None = None) -> pl.DataFrame:
        """Open the pipeline's file read-only; a writer step holding it is waited for (up to 60 s)."""
        from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

        @retry(
            retry=retry_if_exception_type(duckdb.IOException),
            stop=stop_after_delay(60),
            wait=wait_exponential(multiplier=0.2, max=5),
            reraise=True,
        )
        def read() -> pl.DataFrame:
            with duckdb.connect(str(self.path), read_only=True) as con:
                con.execute("SET TimeZone = 'UTC'")
                return con.sql(sql, params=params or {}).pl()

        return read()

    def drop(self) -> None:
        for p in (self.path, self.snapshot_path, self.path.with_suffix(".duckdb.wal")):
            p.unlink(missing_ok=True)


class PostgresWarehouse(Warehouse):
    dbt_target = "postgres"

    def __init__(self, conninfo: str, address: str) -> None:
        self.conninfo, self.address = conninfo, address

    def _connect(self):
        import psycopg

        try:
            return psycopg.connect(self.conninfo, connect_timeout=5)
        except psycopg.OperationalError as exc:
            raise ServiceUnavailable(
                "PostgreSQL (warehouse)", self.address, "start it with `hems services up`", exc
            ) from None

    def land_readings(self, frame: pl.DataFrame, start: datetime, end: datetime) -> int:
        frame = frame.select(_RAW_COLUMNS)
        buf = io.BytesIO()
        frame.with_columns(pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S%.3f+00:00")).write_csv(
            buf, include_header=False, null_value=""
        )
        with self._connect() as con, con.cursor() as cur:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA}")
            cur.execute(
                f"""CREATE TABLE IF NOT EXISTS {RAW_READINGS_TABLE} (
                    ts TIMESTAMPTZ NOT NULL, household_id TEXT NOT NULL, device_id TEXT NOT NULL,
                    device_type TEXT, power_consumption DOUBLE PRECISION, energy_import_kwh DOUBLE PRECISION,
                    energy_export_kwh DOUBLE PRECISION, voltage DOUBLE PRECISION, current DOUBLE PRECISION,
                    power_factor DOUBLE PRECISION, solar_generation DOUBLE PRECISION)"""
            )
            cur.execute(f"CREATE INDEX IF NOT EXISTS energy_readings_ts_idx ON {RAW_READINGS_TABLE} (ts)")
            cur.execute(f"DELETE FROM {RAW_READINGS_TABLE} WHERE ts >= %s AND ts < %s", (start, end))
            with cur.copy(
                f"COPY {RAW_READINGS_TABLE} ({', '.join(_RAW_COLUMNS)}) FROM STDIN (FORMAT csv)"
            ) as cp:
                cp.write(buf.getvalue())
        return frame.height

    def replace_reference(self, table: str, frame: pl.DataFrame) -> int:
        columns, frame = _reference_frame(table, frame)
        ddl = ", ".join(f"{name} {_PG_TYPES.get(kind, kind)}" for name, kind in columns.items())
        buf = io.BytesIO()
        frame.write_csv(buf, include_header=False, null_value="")
        with self._connect() as con, con.cursor() as cur:  # one transaction: readers see old or new
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA}")
            cur.execute(f"CREATE TABLE IF NOT EXISTS {RAW_SCHEMA}.{table} ({ddl})")
            cur.execute(f"DELETE FROM {RAW_SCHEMA}.{table}")
            with cur.copy(f"COPY {RAW_SCHEMA}.{table} ({', '.join(columns)}) FROM STDIN (FORMAT csv)") as cp:
                cp.write(buf.getvalue())
        return frame.height

    def query(self, sql: str, params: dict[str, Any] | None = None) -> pl.DataFrame:
        with self._connect() as con, con.cursor() as cur:
            cur.execute(_pg_params(sql), params or {})
            cols = [d.name for d in cur.description or []]
            rows = cur.fetchall()
        return pl.DataFrame(rows, schema=cols, orient="row", infer_schema_length=None)

    def drop(self) -> None:
        with self._connect() as con:
            con.execute("DROP SCHEMA IF EXISTS raw, staging, intermediate, marts, analytics CASCADE")


def _pg_params(sql: str) -> str:
    """Serving SQL is written with DuckDB-style ``$name`` parameters; psycopg wants ``%(name)s``."""
    import re

    return re.sub(r"\$([A-Za-z_]\w*)", r"%(\1)s", sql.replace("%", "%%"))


def get_warehouse(settings=None) -> Warehouse:
    from hems.settings import Profile, get_settings

    settings = settings or get_settings()
    if settings.profile is Profile.stack:
        pg = settings.postgres
        return PostgresWarehouse(
            pg.url(pg.warehouse_database, driver="postgresql"),
            f"{pg.host}:{pg.port}/{pg.warehouse_database}",
        )
    return DuckDBWarehouse(settings.warehouse_path, settings.warehouse_snapshot_path)
