"""Features for the four models, in Polars: hourly household load and context, daily load shapes.

Why from raw readings and not from a mart: the forecaster and the anomaly detector need the hour
inside the day and the meter's own behaviour (reading counts, register steps, minimum power), which
a daily mart has already averaged away.  Energy still comes from the cumulative import register
(DESIGN §5), interpolated to exact hour boundaries, so a missing minute does not move an hour's kWh.

Frames (all timestamps UTC, hours are hour starts):

* :func:`hourly_meter_stats` — per household and hour: first/last register reading, reading count,
  mean/max/min power and the largest/smallest register step (the raw material of everything else);
* :func:`hourly_load` — per household and hour: ``kwh`` (null where the meter cannot say);
* :func:`hourly_indoor`, :func:`hourly_weather` — indoor and outdoor temperature per hour;
* :func:`hourly_features` — one row per household-hour on a complete grid with calendar, Korean
  holidays, temperatures, lags and household attributes;
* :func:`daily_features` — one row per complete household-day: kWh, the normalized 24-hour shape,
  shape statistics, weather (CDD/HDD) and attributes.
"""

from __future__ import annotations

import math
from datetime import date
from functools import lru_cache

import holidays
import polars as pl

TS = pl.Datetime("ms", "UTC")
#: an hour cannot import more than this from a residential low-voltage connection (≈ 30 kW)
MAX_KWH_PER_HOUR = 30.0
#: base temperatures (°C) of the degree days used for cooling and heating
CDD_BASE_C = 24.0
HDD_BASE_C = 18.0
#: household attributes the models may use (the app database's households table)
HOUSEHOLD_COLUMNS = (
    "household_id",
    "region",
    "building_type",
    "household_type",
    "area_m2",
    "residents",
    "has_pv",
    "has_ev",
    "electric_heating",
)
SHAPE_COLUMNS = tuple(f"share_h{h:02d}" for h in range(24))

HOURLY_STATS_SCHEMA: dict[str, pl.DataType] = {
    "household_id": pl.String(),
    "ts": TS,
    "first_ts": TS,
    "first_kwh": pl.Float64(),
    "last_ts": TS,
    "last_kwh": pl.Float64(),
    "n_readings": pl.UInt32(),
    "power_mean_w": pl.Float64(),
    "power_max_w": pl.Float64(),
    "power_min_w": pl.Float64(),
    "step_max_kwh": pl.Float64(),
    "step_min_kwh": pl.Float64(),
    "power_span_kwh": pl.Float64(),  # energy by power over the span first → last reading
}


# --------------------------------------------------------------------------- meter hours
def hourly_meter_stats(readings: pl.DataFrame) -> pl.DataFrame:
    """Per household and UTC hour, what the smart meter said (see :data:`HOURLY_STATS_SCHEMA`).

    Meters are grouped by household, not device, so a meter swap shows as one backwards step
    instead of two half-series.  Exact duplicate timestamps are dropped (re-delivered readings).
    """
    _require(readings, ("ts", "household_id", "device_type", "energy_import_kwh", "power_w"), "readings")
    meter = (
        readings.filter(pl.col("device_type") == "smart_meter")
        .select("household_id", pl.col("ts").cast(TS), "energy_import_kwh", "power_w")
        .unique(["household_id", "ts"], keep="last")
        .sort("household_id", "ts")
    )
    if meter.is_empty():
        return pl.DataFrame(schema=HOURLY_STATS_SCHEMA)
    reg = meter.filter(pl.col("energy_import_kwh").is_not_null())
    step = pl.col("energy_import_kwh").diff().over("household_id")
    reg = reg.with_columns(step.alias("_step"), pl.col("ts").dt.truncate("1h").alias("hour"))
    hour = pl.col("ts").dt.truncate("1h")
    nxt = pl.col("ts").shift(-1).over("household_id")
    # power_w is the mean over the interval a reading opens, so power × time to the next reading in
    # the same hour is the energy the register should show between the hour's first and last reading
    by_power = (
        pl.when(nxt.dt.truncate("1h") == hour)
        .then(pl.col("power_w") / 1000 * (nxt - pl.col("ts")).dt.total_milliseconds() / 3_600_000)
        .otherwise(0.0)
    )
    out = (
        meter.with_columns(hour.alias("hour"), by_power.alias("_e"))
        .group_by("household_id", "hour")
        .agg(
            pl.len().cast(pl.UInt32).alias("n_readings"),
            pl.col("_e").sum().alias("power_span_kwh"),
            pl.col("power_w").mean().alias("power_mean_w"),
            pl.col("power_w").max().alias("power_max_w"),
            pl.col("power_w").min().alias("power_min_w"),
        )
        .join(
            reg.group_by("household_id", "hour").agg(
                pl.col("ts").first().alias("first_ts"),
                pl.col("energy_import_kwh").first().alias("first_kwh"),
                pl.col("ts").last().alias("last_ts"),
                pl.col("energy_import_kwh").last().alias("last_kwh"),
                pl.col("_step").max().alias("step_max_kwh"),
                pl.col("_step").min().alias("step_min_kwh"),
            ),
            on=["household_id", "hour"],
            how="left",
        )
        .rename({"hour": "ts"})
    )
    return out.select([pl.col(c).cast(t) for c, t in HOURLY_STATS_SCHEMA.items()]).sort("household_id", "ts")


def hourly_load(stats: pl.DataFrame) -> pl.DataFrame:
    """Hourly import kWh per household from :func:`hourly_meter_stats` (several chunks may be stacked).

    The register at each hour boundary is interpolated between the last reading before it and the
    first reading after it; an hour's energy is the difference of its two boundaries.  Hours whose
    boundaries cannot be placed (a whole hour missing), that go backwards (counter reset, meter
    swap) or that exceed :data:`MAX_KWH_PER_HOUR` (a spike) are null rather than wrong.
    """
    _require(stats, ("household_id", "ts", "first_ts", "first_kwh", "last_ts", "last_kwh"), "stats")
    s = (
        stats.filter(pl.col("first_kwh").is_not_null())
        .unique(["household_id", "ts"], keep="last")
        .sort("household_id", "ts")
    )
    hour = pl.duration(hours=1)
    prev_adjacent = (pl.col("ts") - pl.col("ts").shift(1).over("household_id")) == hour
    prev_last_ts = pl.col("last_ts").shift(1).over("household_id")
    prev_last_kwh = pl.col("last_kwh").shift(1).over("household_id")
    span = (pl.col("first_ts") - prev_last_ts).dt.total_milliseconds()
    part = (pl.col("ts") - prev_last_ts).dt.total_milliseconds() / span
    boundary = (
        pl.when(pl.col("first_ts") == pl.col("ts"))
        .then(pl.col("first_kwh"))
        .when(prev_adjacent)
        .then(prev_last_kwh + (pl.col("first_kwh") - prev_last_kwh) * part)
        .otherwise(None)
    )
    s = s.with_columns(boundary.alias("_b"))
    next_adjacent = (pl.col("ts").shift(-1).over("household_id") - pl.col("ts")) == hour
    kwh = pl.when(next_adjacent).then(pl.col("_b").shift(-1).over("household_id") - pl.col("_b"))
    s = s.with_columns(kwh.alias("kwh"))
    valid = (pl.col("kwh") >= 0) & (pl.col("kwh") <= MAX_KWH_PER_HOUR)
    return s.select(
        "household_id", "ts", pl.when(valid).then(pl.col("kwh")).otherwise(None).alias("kwh")
    ).filter(pl.col("ts") < pl.col("ts").max().over("household_id"))


def hourly_indoor(readings: pl.DataFrame) -> pl.DataFrame:
    """Mean indoor temperature per household and hour from environment sensors."""
    _require(readings, ("ts", "household_id", "device_type", "temperature_c"), "readings")
    return (
        readings.filter((pl.col("device_type") == "env_sensor") & pl.col("temperature_c").is_not_null())
        .group_by("household_id", pl.col("ts").cast(TS).dt.truncate("1h"))
        .agg(pl.col("temperature_c").mean().alias("indoor_temp_c"))
        .sort("household_id", "ts")
    )


def hourly_weather(weather: pl.DataFrame) -> pl.DataFrame:
    """Mean outdoor temperature per region and hour (the raw store's ``weather`` measurement)."""
    _require(weather, ("ts", "region", "temperature"), "weather")
    return (
        weather.filter(pl.col("temperature").is_not_null())
        .group_by("region", pl.col("ts").cast(TS).dt.truncate("1h"))
        .agg(pl.col("temperature").mean().alias("outdoor_temp_c"))
        .sort("region", "ts")
    )


# --------------------------------------------------------------------------- calendar
@lru_cache(maxsize=64)
def _kr_holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("KR", years=year))


def korean_holidays(years: list[int] | range) -> list[date]:
    """Korean public holidays (incl. substitute holidays) of the given years, from ``holidays``."""
    return sorted(d for y in years for d in _kr_holidays(int(y)))


def with_calendar(frame: pl.DataFrame, tz: str = "Asia/Seoul", ts: str = "ts") -> pl.DataFrame:
    """Add the household-local calendar of ``ts``: hour, weekday, month, holiday, day off, cycles."""
    local = pl.col(ts).dt.convert_time_zone(tz)
    frame = frame.with_columns(local.dt.date().alias("local_date"), local.dt.hour().alias("hour"))
    years = frame["local_date"].dt.year().unique().drop_nulls().to_list() if frame.height else []
    hol = pl.Series("h", korean_holidays(years), dtype=pl.Date)
    two_pi = 2 * math.pi
    return frame.with_columns(
        pl.col("local_date").dt.weekday().alias("dow"),  # Monday = 1
        pl.col("local_date").dt.month().alias("month"),
        pl.col("local_date").is_in(hol.implode()).alias("is_holiday"),
    ).with_columns(
        (pl.col("dow") >= 6).alias("is_weekend"),
        ((pl.col("dow") >= 6) | pl.col("is_holiday")).alias("day_off"),
        (two_pi * pl.col("hour") / 24).sin().alias("hour_sin"),
        (two_pi * pl.col("hour") / 24).cos().alias("hour_cos"),
        (two_pi * pl.col("dow") / 7).sin().alias("dow_sin"),
        (two_pi * pl.col("dow") / 7).cos().alias("dow_cos"),
        (two_pi * pl.col("month") / 12).sin().alias("month_sin"),
        (two_pi * pl.col("month") / 12).cos().alias("month_cos"),
    )


# --------------------------------------------------------------------------- hourly features
def household_attributes(households: pl.DataFrame) -> pl.DataFrame:
    """The attribute columns the models use, typed; a missing attribute column is an error."""
    if "id" in households.columns and "household_id" not in households.columns:
        households = households.rename({"id": "household_id"})
    _require(households, HOUSEHOLD_COLUMNS, "households")
    return households.select(
        pl.col("household_id").cast(pl.String),
        pl.col("region").cast(pl.String),
        pl.col("building_type").cast(pl.String),
        pl.col("household_type").cast(pl.String),
        pl.col("area_m2").cast(pl.Float64),
        pl.col("residents").cast(pl.Int64),
        *[pl.col(c).cast(pl.Boolean) for c in ("has_pv", "has_ev", "electric_heating")],
    ).unique("household_id", keep="last")


def hourly_features(
    load: pl.DataFrame,
    weather: pl.DataFrame,
    indoor: pl.DataFrame,
    households: pl.DataFrame,
    tz: str = "Asia/Seoul",
) -> pl.DataFrame:
    """One row per household and hour on a complete hourly grid (missing load stays null).

    Outdoor temperature is the household's region's; gaps in temperatures are interpolated (and
    filled at the ends) per series, because weather and indoor sensors change slowly.  Lags of the
    load are by position on the complete grid, so ``kwh_lag_24`` is exactly 24 hours earlier.
    """
    _require(load, ("household_id", "ts", "kwh"), "load")
    attrs = household_attributes(households)
    unknown = set(load["household_id"].unique().to_list()) - set(attrs["household_id"].to_list())
    if unknown:
        raise ValueError(f"load has households without attributes: {sorted(unknown)[:5]}")
    if load.is_empty():
        raise ValueError("no hourly load: the window holds no smart-meter register readings")
    load = load.select("household_id", pl.col("ts").cast(TS), pl.col("kwh").cast(pl.Float64))
    spans = load.group_by("household_id").agg(pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi"))
    grid = spans.select(
        "household_id", pl.datetime_ranges("lo", "hi", interval="1h", time_zone="UTC").alias("ts")
    ).explode("ts")
    grid = grid.with_columns(pl.col("ts").cast(TS))
    frame = grid.join(load, on=["household_id", "ts"], how="left").join(attrs, on="household_id", how="left")
    if weather.height:
        w = weather.select("region", pl.col("ts").cast(TS), "outdoor_temp_c")
        frame = frame.join(w, on=["region", "ts"], how="left")
    else:
        frame = frame.with_columns(pl.lit(None, pl.Float64).alias("outdoor_temp_c"))
    if indoor.height:
        i = indoor.select("household_id", pl.col("ts").cast(TS), "indoor_temp_c")
        frame = frame.join(i, on=["household_id", "ts"], how="left")
    else:
        frame = frame.with_columns(pl.lit(None, pl.Float64).alias("indoor_temp_c"))
    frame = frame.sort("household_id", "ts")
    fill = [
        pl.col(c).interpolate().forward_fill().backward_fill().over("household_id").alias(c)
        for c in ("outdoor_temp_c", "indoor_temp_c")
    ]
    frame = frame.with_columns(fill)
    k = pl.col("kwh")
    frame = frame.with_columns(
        k.shift(24).over("household_id").alias("kwh_lag_24"),
        k.shift(168).over("household_id").alias("kwh_lag_168"),
        k.shift(1).rolling_mean(24, min_samples=12).over("household_id").alias("kwh_mean_24"),
    )
    return with_calendar(frame, tz)


# --------------------------------------------------------------------------- daily features
def daily_features(hourly: pl.DataFrame) -> pl.DataFrame:
    """One row per complete household-local day: kWh, 24-hour normalized shape and context.

    Only days with all 24 hours of load (23/25 on DST days are dropped too) enter: a load shape
    with a hole would be a different shape.  ``share_hHH`` sums to 1; ``base_kwh`` is the smallest
    hour (always-on load); ``night_share`` covers 22–03, ``morning_share`` 06–10,
    ``daytime_share`` 10–17, ``evening_share`` 17–22.
    """
    _require(hourly, ("household_id", "local_date", "hour", "kwh", "outdoor_temp_c"), "hourly")
    days = (
        hourly.group_by("household_id", "local_date")
        .agg(
            pl.col("kwh").count().alias("_n"),
            pl.len().alias("_rows"),
            pl.col("kwh").sum().alias("kwh"),
            pl.col("kwh").min().alias("base_kwh"),
            pl.col("kwh").max().alias("max_kwh"),
            pl.col("hour").get(pl.col("kwh").arg_max()).alias("peak_hour"),
            *[pl.col("kwh").filter(pl.col("hour") == h).sum().alias(f"_h{h:02d}") for h in range(24)],
            pl.col("outdoor_temp_c").mean().alias("outdoor_mean_c"),
            pl.col("outdoor_temp_c").max().alias("outdoor_max_c"),
            pl.col("outdoor_temp_c").min().alias("outdoor_min_c"),
            pl.col("indoor_temp_c").mean().alias("indoor_mean_c"),
            *[
                pl.col(c).first()
                for c in (*HOUSEHOLD_COLUMNS[1:], "dow", "month", "is_holiday", "is_weekend", "day_off")
                if c in hourly.columns
            ],
        )
        .filter((pl.col("_n") == 24) & (pl.col("_rows") == 24) & (pl.col("kwh") > 0))
    )
    shares = [(pl.col(f"_h{h:02d}") / pl.col("kwh")).alias(SHAPE_COLUMNS[h]) for h in range(24)]
    days = days.with_columns(shares)

    def window(hours: list[int]) -> pl.Expr:
        return pl.sum_horizontal([pl.col(SHAPE_COLUMNS[h]) for h in hours])

    days = days.with_columns(
        window([22, 23, 0, 1, 2]).alias("night_share"),
        window(list(range(6, 10))).alias("morning_share"),
        window(list(range(10, 17))).alias("daytime_share"),
        window(list(range(17, 22))).alias("evening_share"),
        (pl.col("max_kwh") / (pl.col("kwh") / 24)).alias("peak_to_mean"),
        (pl.col("outdoor_mean_c") - CDD_BASE_C).clip(lower_bound=0).alias("cdd"),
        (HDD_BASE_C - pl.col("outdoor_mean_c")).clip(lower_bound=0).alias("hdd"),
    )
    return days.drop([c for c in days.columns if c.startswith("_")]).sort("household_id", "local_date")


def _require(frame: pl.DataFrame, columns: tuple[str, ...] | list[str], what: str) -> None:
    if not isinstance(frame, pl.DataFrame):
        raise ValueError(f"{what} must be a polars DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks columns {missing}")


__all__ = [
    "CDD_BASE_C",
    "HDD_BASE_C",
    "HOUSEHOLD_COLUMNS",
    "MAX_KWH_PER_HOUR",
    "SHAPE_COLUMNS",
    "daily_features",
    "hourly_features",
    "hourly_indoor",
    "hourly_load",
    "hourly_meter_stats",
    "hourly_weather",
    "household_attributes",
    "korean_holidays",
    "with_calendar",
]
