"""The ML input set: hourly meter stats, temperatures and households, from frames or from the stores.

Why one container: training, evaluation, prediction and tips all start from the same four frames,
and the Dagster features asset, the benchmark and the tests build it three different ways (raw
store, simulator, hand-made frames).  Readings are reduced to hours one local day at a time, so a
window of 100 households × 120 days of 1-minute readings never sits in memory at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import polars as pl

from ml.features import (
    daily_features,
    hourly_features,
    hourly_indoor,
    hourly_load,
    hourly_meter_stats,
    hourly_weather,
    household_attributes,
)


@dataclass(frozen=True)
class MLInputs:
    """Hour-level inputs of every model, plus where they came from (logged as MLflow lineage)."""

    stats: pl.DataFrame  # hourly_meter_stats
    indoor: pl.DataFrame  # hourly_indoor
    weather: pl.DataFrame  # hourly_weather
    households: pl.DataFrame  # household_attributes
    timezone: str = "Asia/Seoul"
    source: str = "frames"
    first_day: date | None = None
    last_day: date | None = None
    _cache: dict[str, pl.DataFrame] = field(default_factory=dict, repr=False, compare=False)

    @property
    def load(self) -> pl.DataFrame:
        if "load" not in self._cache:
            self._cache["load"] = hourly_load(self.stats)
        return self._cache["load"]

    @property
    def hourly(self) -> pl.DataFrame:
        if "hourly" not in self._cache:
            self._cache["hourly"] = hourly_features(
                self.load, self.weather, self.indoor, self.households, self.timezone
            )
        return self._cache["hourly"]

    @property
    def daily(self) -> pl.DataFrame:
        if "daily" not in self._cache:
            self._cache["daily"] = daily_features(self.hourly)
        return self._cache["daily"]

    def lineage(self) -> dict[str, str]:
        """Dataset facts for MLflow: source, window, sizes."""
        return {
            "source": self.source,
            "first_day": str(self.first_day or ""),
            "last_day": str(self.last_day or ""),
            "households": str(self.households.height),
            "meter_hours": str(self.stats.height),
            "timezone": self.timezone,
        }


def inputs_from_frames(
    readings: pl.DataFrame,
    weather: pl.DataFrame,
    households: pl.DataFrame,
    timezone: str = "Asia/Seoul",
    source: str = "frames",
) -> MLInputs:
    """Inputs from canonical readings, the ``weather`` measurement and household attributes."""
    return MLInputs(
        stats=hourly_meter_stats(readings),
        indoor=hourly_indoor(readings),
        weather=hourly_weather(weather),
        households=household_attributes(households),
        timezone=timezone,
        source=source,
        first_day=_local_day(readings, timezone, "min"),
        last_day=_local_day(readings, timezone, "max"),
    )


def inputs_from_stores(
    raw_store,
    households: pl.DataFrame,
    first_day: date,
    last_day: date,
    timezone: str = "Asia/Seoul",
    household_ids: Sequence[str] | None = None,
) -> MLInputs:
    """Read local days ``first_day..last_day`` from the raw store, one day at a time.

    The register reading at the midnight after ``last_day`` is read as well, so the last hour of
    the window has its closing boundary.
    """
    if last_day < first_day:
        raise ValueError(f"last_day {last_day} is before first_day {first_day}")
    tz = ZoneInfo(timezone)
    stats, indoor = [], []
    day = first_day
    while day <= last_day:
        start = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
        if day == last_day:
            end += timedelta(minutes=1)
        readings = raw_store.read_readings(start, end, household_ids)
        if readings.height:
            stats.append(hourly_meter_stats(readings))
            indoor.append(hourly_indoor(readings))
        day += timedelta(days=1)
    w_start = datetime.combine(first_day, time(0), tzinfo=tz).astimezone(UTC)
    w_end = datetime.combine(last_day + timedelta(days=1), time(1), tzinfo=tz).astimezone(UTC)
    weather = raw_store.query("weather", w_start, w_end)
    if not stats:
        raise ValueError(f"the raw store holds no readings between {first_day} and {last_day}")
    return MLInputs(
        stats=pl.concat(stats).unique(["household_id", "ts"], keep="last").sort("household_id", "ts"),
        indoor=pl.concat(indoor).unique(["household_id", "ts"], keep="last"),
        weather=hourly_weather(weather),
        households=household_attributes(households),
        timezone=timezone,
        source=f"raw-store:{getattr(raw_store, 'name', 'raw')}",
        first_day=first_day,
        last_day=last_day,
    )


def households_from_appdb(url: str | None = None) -> pl.DataFrame:
    """Household attributes from the app database's ``households`` table."""
    import sqlalchemy as sa

    from hems.stores.appdb import get_engine

    query = sa.text(
        "SELECT id AS household_id, region, building_type, household_type, area_m2, residents, "
        "has_pv, has_ev, electric_heating FROM households ORDER BY id"
    )
    with get_engine(url).connect() as con:
        rows = [dict(r) for r in con.execute(query).mappings().all()]
    if not rows:
        raise ValueError("the app database has no households: run the simulator or register households")
    return household_attributes(pl.DataFrame(rows, infer_schema_length=None))


def _local_day(readings: pl.DataFrame, tz: str, how: str) -> date | None:
    if readings.is_empty():
        return None
    ts = readings["ts"].min() if how == "min" else readings["ts"].max()
    return ts.astimezone(ZoneInfo(tz)).date()  # type: ignore[union-attr]


__all__ = ["MLInputs", "households_from_appdb", "inputs_from_frames", "inputs_from_stores"]
