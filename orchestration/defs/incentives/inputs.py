"""What the incentive assets read: daily and hourly grid kWh from the warehouse (the pipeline's own
tables, read inside the run) and daily mean outdoor temperature per household from the raw store."""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import polars as pl

from hems.contracts import WEATHER
from hems.stores.raw_store import RawStore
from hems.stores.warehouse import Warehouse

DAILY_SQL = """
select household_id, date, grid_consumption_kwh as kwh
from marts.energy_usage_daily
where date >= $first and date <= $last
"""

HOURLY_SQL = """
select household_id, local_date as date, local_hour as hour, sum(import_kwh) as kwh
from intermediate.int_meter_intervals_differenced
where local_date >= $first and local_date <= $last
group by household_id, local_date, local_hour
"""


def daily_kwh(warehouse: Warehouse, first: date, last: date) -> pl.DataFrame:
    frame = warehouse.read_live(DAILY_SQL, {"first": first, "last": last})
    # typed explicitly: an empty answer from PostgreSQL comes back with Null columns
    return frame.with_columns(
        pl.col("household_id").cast(pl.String), pl.col("date").cast(pl.Date), pl.col("kwh").cast(pl.Float64)
    )


def hourly_kwh(warehouse: Warehouse, first: date, last: date) -> pl.DataFrame:
    frame = warehouse.read_live(HOURLY_SQL, {"first": first, "last": last})
    return frame.with_columns(
        pl.col("household_id").cast(pl.String),
        pl.col("date").cast(pl.Date),
        pl.col("hour").cast(pl.Int8),
        pl.col("kwh").cast(pl.Float64),
    )


def daily_temperature(raw: RawStore, warehouse: Warehouse, first: date, last: date, tz: str) -> pl.DataFrame:
    """``household_id, date, temperature_c``: the local-day mean of the household's region."""
    zone = ZoneInfo(tz)
    start = datetime.combine(first, time.min, zone).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time.min, zone).astimezone(UTC)
    weather = raw.query(WEATHER.name, start, end)
    if weather.is_empty():
        return pl.DataFrame(schema={"household_id": pl.String, "date": pl.Date, "temperature_c": pl.Float64})
    by_region = weather.group_by("region", pl.col("ts").dt.convert_time_zone(tz).dt.date().alias("date")).agg(
        pl.col("temperature").mean().alias("temperature_c")
    )
    households = warehouse.read_live("select household_id, region from marts.dim_households").with_columns(
        pl.col("household_id").cast(pl.String), pl.col("region").cast(pl.String)
    )
    return households.join(by_region, on="region").select("household_id", "date", "temperature_c")
