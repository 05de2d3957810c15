"""Energy assets: raw readings landed per local day → dbt marts → the app database.

Lineage in the Dagster UI runs from the raw store to ``energy_usage_daily`` as the API serves it.
"""

import json
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    Config,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableSchema,
    asset,
)
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from hems.contracts import ENERGY_CONSUMPTION
from hems.stores import appdb
from hems.stores.cache import bump_marts_version, get_cache
from orchestration.defs.energy.partitions import daily_partitions
from orchestration.defs.energy.resources import StoresResource
from orchestration.lib.environment import manifest_path

OWNERS = ["team:data-platform"]


def _schema(columns: Mapping[str, Any]) -> TableSchema:
    return TableSchema(columns=[TableColumn(name, str(dtype)) for name, dtype in columns.items()])


@asset(
    partitions_def=daily_partitions(),
    backfill_policy=BackfillPolicy.single_run(),
    group_name="raw",
    owners=OWNERS,
    kinds={"python", "polars"},
    description=(
        "Readings of measurement energy_consumption for one household-local day, copied from the raw "
        "store (InfluxDB or Parquet) into the warehouse table raw.energy_readings. Re-running a "
        "partition replaces that day, so it is idempotent."
    ),
    metadata={"dagster/column_schema": _schema(ENERGY_CONSUMPTION.schema)},
)
def raw_energy_readings(context: AssetExecutionContext, stores: StoresResource) -> MaterializeResult:
    window = context.partition_time_window
    raw, warehouse = stores.raw_store(), stores.warehouse()
    landed, households, devices = 0, set(), set()
    day_start = window.start
    while day_start < window.end:  # a ranged backfill is one run; land it a day at a time
        day_end = min(day_start + timedelta(days=1), window.end)
        frame = raw.query(ENERGY_CONSUMPTION.name, day_start, day_end)
        landed += warehouse.land_readings(frame, day_start, day_end)
        households.update(frame["household_id"].unique().to_list())
        devices.update(frame["device_id"].unique().to_list())
        context.log.info(f"landed {frame.height:,} readings for {day_start.date()}")
        day_start = day_end
    return MaterializeResult(
        metadata={
            "dagster/row_count": landed,
            "households": len(households),
            "devices": len(devices),
            "window": f"{window.start.isoformat()} → {window.end.isoformat()}",
        }
    )


_REFERENCE_SQL = {
    "households": (
        "SELECT id AS household_id, name, region, building_type, household_type, area_m2, residents, "
        "timezone, has_pv, pv_kwp, has_ev, electric_heating FROM households"
    ),
    "devices": (
        "SELECT id AS device_id, household_id, device_type, protocol, manufacturer, model FROM iot_devices"
    ),
}


def _copy_reference(stores: StoresResource, table: str) -> MaterializeResult:
    """Copy one app-database table whole into warehouse ``raw.<table>`` (atomic replace)."""
    import sqlalchemy as sa

    engine = appdb.get_engine(stores.app_database_url())
    with engine.connect() as con:
        frame = pl.read_database(sa.text(_REFERENCE_SQL[table]), con, infer_schema_length=None)
    frame = frame.with_columns(
        pl.col(c).cast(pl.String) for c, t in frame.schema.items() if t in (pl.Object, pl.Null)
    )
    written = stores.warehouse().replace_reference(table, frame)
    return MaterializeResult(metadata={"dagster/row_count": written})


@asset(
    group_name="raw",
    owners=OWNERS,
    kinds={"python", "sql"},
    description=(
        "Households copied whole from the app database into warehouse table raw.households (atomic "
        "replace), so the marts join region, building type and residents without the app database."
    ),
)
def raw_households(stores: StoresResource) -> MaterializeResult:
    return _copy_reference(stores, "households")


@asset(
    group_name="raw",
    owners=OWNERS,
    kinds={"python", "sql"},
    description="The device inventory copied whole from the app database into raw.devices.",
)
def raw_devices(stores: StoresResource) -> MaterializeResult:
    return _copy_reference(stores, "devices")


class HemsDbtTranslator(DagsterDbtTranslator):
    """Groups dbt models by layer (staging, intermediate, marts) and names their owner."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn", [])
        return f"warehouse_{fqn[1]}" if len(fqn) > 2 else "warehouse"

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> list[str]:
        return OWNERS


class DbtBuildConfig(Config):
    """``refresh_from``: a local date (YYYY-MM-DD); the incremental interval models then recompute
    only the days from it on (micro-batch and nightly runs). Empty: every day is recomputed."""

    refresh_from: str | None = None


@dbt_assets(manifest=manifest_path(), dagster_dbt_translator=HemsDbtTranslator())
def hems_dbt_models(context: AssetExecutionContext, dbt: DbtCliResource, config: DbtBuildConfig):
    """Build and test every dbt model (staging → intermediate → marts).

    Row counts are not fetched through dagster-dbt: that opens the DuckDB file from this process
    with another configuration and then holds it, which would lock the publish step out.
    """
    args = ["build"]
    if config.refresh_from:
        date.fromisoformat(config.refresh_from)  # a clear error here rather than inside dbt
        args += ["--vars", json.dumps({"refresh_from": config.refresh_from})]
    yield from dbt.cli(args, context=context).stream()


@asset(
    deps=[AssetKey(["marts", "energy_usage_daily"])],
    group_name="serving",
    owners=OWNERS,
    kinds={"python", "sql"},
    description=(
        "Publishes the energy_usage_daily mart to the app database (upsert by household and date) and "
        "refreshes the warehouse's serving snapshot, so the API and dashboards read fresh data "
        "without touching the pipeline's files."
    ),
)
def app_energy_usage_daily(stores: StoresResource) -> MaterializeResult:
    warehouse = stores.warehouse()
    warehouse.publish_snapshot()
    daily = warehouse.query("SELECT * FROM marts.energy_usage_daily ORDER BY household_id, date")
    columns = [
        "household_id",
        "date",
        "total_consumption_kwh",
        "peak_usage_kwh",
        "mid_usage_kwh",
        "off_peak_usage_kwh",
        "grid_consumption_kwh",
        "solar_generation_kwh",
        "cost_krw",
        "carbon_emission_kg",
    ]
    written = appdb.upsert_energy_usage_daily(daily.select(columns), url=stores.app_database_url())
    bump_marts_version(get_cache())  # cached API answers from the marts are stale now
    return MaterializeResult(
        metadata={
            "dagster/row_count": written,
            "households": daily["household_id"].n_unique() if daily.height else 0,
            "last_date": MetadataValue.text(str(daily["date"].max()) if daily.height else "none"),
            "total_kwh": float(daily["total_consumption_kwh"].sum()) if daily.height else 0.0,
        }
    )


__all__ = [
    "app_energy_usage_daily",
    "hems_dbt_models",
    "raw_devices",
    "raw_energy_readings",
    "raw_households",
]
