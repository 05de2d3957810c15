"""Model serving for the AI routes: champions by alias, features from the stores, tips, metrics.

Why a module apart from the routes: the routes stay thin (parse, authorize, answer), and every
number here comes from the ``ml`` package's own functions — features (``ml.data``,
``ml.features``), the models' ``forecast``/``predict``, ``ml.tips`` and ``ml.metrics`` — so the
API, the Dagster assets and the dashboards agree.

* Champions are loaded with :class:`ml.registry.ChampionLoader`: once per process and model,
  reloaded only when the ``champion`` alias moves (checked at most every 30 s). Loaders are kept
  per tracking URI, so a process whose settings change (tests) never serves another registry's
  model. MLflow is imported on first use, not when the API starts (it takes seconds).
* Registry reads are retried with backoff (tenacity, 3 attempts within ~2 s) on transient errors;
  raw-store reads have their own timeouts and retries (``hems.stores.raw_influx``).
* Nothing here writes: predictions are written by the Dagster asset ``ml_predictions``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from tenacity import (
    Retrying,
    retry_if_not_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)

from hems.contracts import AI_PREDICTIONS, ENERGY_CONSUMPTION, WEATHER, measurement_to_readings
from hems.settings import Settings
from hems.stores.raw_store import RawStore

if TYPE_CHECKING:
    from ml.data import MLInputs
    from ml.registry import ChampionLoader

FORECASTER = "hems-consumption-forecaster"
CLASSIFIER = "hems-usage-pattern-classifier"
ANOMALY_DETECTOR = "hems-anomaly-detector"
REGRESSOR = "hems-efficiency-regressor"
MODEL_NAMES = (FORECASTER, CLASSIFIER, ANOMALY_DETECTOR, REGRESSOR)
#: what each model leaves in ai_predictions (written by the Dagster asset ml_predictions)
FORECAST_TYPE = "consumption_kwh_hourly"
EXPECTED_DAILY_TYPE = "expected_kwh_daily"
PREDICTION_TYPES = {FORECASTER: FORECAST_TYPE, REGRESSOR: EXPECTED_DAILY_TYPE}
#: local days of readings read for a forecast: the model needs 168 h before its origin
FORECAST_HISTORY_DAYS = 10
#: extra local days read before an anomaly window, so "usual" (medians) has a reference
ANOMALY_CONTEXT_DAYS = 7
#: local days of readings behind tips (a month-to-date projection and a month of standby)
TIPS_HISTORY_DAYS = 35
HOW_TO_TRAIN = "run the ml_training job (Dagster job `ml_training`, or `hems demo` which trains and promotes)"

T = TypeVar("T")


class NoChampion(LookupError):
    """The registry has no ``champion`` alias for the model (nothing trained and promoted yet)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"model {name!r} has no champion in the MLflow registry yet: {HOW_TO_TRAIN}")


class NotEnoughData(ValueError):
    """The stores hold too little of the household's data for the question asked."""


# --------------------------------------------------------------------------- champions
_loaders: dict[tuple[str, str], ChampionLoader] = {}
_loaders_lock = threading.Lock()
_predict_locks: dict[str, threading.Lock] = {}
#: the tracking URI the process's MLflow client points at (``ml.registry.configure`` is global)
_configured_uri: list[str] = []


def _retrying(fn: Callable[[], T]) -> T:
    """``fn()`` retried on transient errors (not on a missing champion), 3 attempts within ~2 s."""
    for attempt in Retrying(
        retry=retry_if_not_exception_type((LookupError, ValueError, TypeError)),
        stop=stop_after_attempt(3) | stop_after_delay(2.0),
        wait=wait_exponential(multiplier=0.1, max=1.0),
        reraise=True,
    ):
        with attempt:
            return fn()
    raise AssertionError("unreachable")  # pragma: no cover


def _registry(settings: Settings) -> Any:
    """``ml.registry``, pointed at the settings' tracking store (imported on first use)."""
    from ml import registry

    uri = settings.mlflow_tracking_uri
    with _loaders_lock:
        if _configured_uri != [uri]:
            registry.configure(settings)
            _configured_uri[:] = [uri]
    return registry


def champion(name: str, settings: Settings) -> tuple[Any, int]:
    """The champion model of ``name`` and its version; :class:`NoChampion` when there is none."""
    registry = _registry(settings)
    key = (settings.mlflow_tracking_uri, name)
    with _loaders_lock:
        loader = _loaders.get(key)
        if loader is None:
            loader = _loaders[key] = registry.ChampionLoader(name, check_interval_s=30.0)
            _predict_locks.setdefault(name, threading.Lock())
    try:
        model = _retrying(loader.get)
    except LookupError:
        raise NoChampion(name) from None
    assert loader.version is not None
    return model, loader.version


def model_summary(name: str, settings: Settings) -> dict[str, Any]:
    """The registry's record of the champion: version, run metrics, promotion decision."""
    registry = _registry(settings)
    return _retrying(lambda: registry.model_summary(name))


# --------------------------------------------------------------------------- features
def household_attributes(engine: Engine, household_id: str) -> pl.DataFrame:
    """The one household's model attributes (``ml.features.HOUSEHOLD_COLUMNS``) from the app DB."""
    from ml.features import household_attributes as typed

    query = sa.text(
        "SELECT id AS household_id, region, building_type, household_type, area_m2, residents, "
        "has_pv, has_ev, electric_heating FROM households WHERE id = :id"
    )
    with engine.connect() as con:
        rows = [dict(r) for r in con.execute(query, {"id": household_id}).mappings()]
    if not rows:
        raise NotEnoughData(f"household {household_id!r} has no row in the app database")
    return typed(pl.DataFrame(rows, infer_schema_length=None))


def _inputs(
    raw: RawStore,
    attrs: pl.DataFrame,
    household_id: str,
    first: date,
    last: date,
    tz: str,
    until: datetime | None,
) -> MLInputs:
    """Hour-level inputs of one household for local days ``first..last`` (hours before ``until``)."""
    from ml.data import MLInputs, inputs_from_stores

    try:
        inputs = inputs_from_stores(raw, attrs, first, last, tz, household_ids=[household_id])
    except ValueError:
        raise NotEnoughData(
            f"the raw store holds no readings of household {household_id!r} between {first} and {last}"
        ) from None
    if until is None:
        return inputs
    keep = pl.col("ts") < until
    return MLInputs(
        stats=inputs.stats.filter(keep),
        indoor=inputs.indoor.filter(keep),
        weather=inputs.weather,
        households=inputs.households,
        timezone=tz,
        source=inputs.source,
        first_day=first,
        last_day=last,
    )


def _hourly(inputs: MLInputs, household_id: str) -> pl.DataFrame:
    try:
        hourly = inputs.hourly
    except ValueError:
        hourly = pl.DataFrame()
    if hourly.is_empty() or hourly["kwh"].is_null().all():
        raise NotEnoughData(
            f"household {household_id!r} has no hourly load in the window: its smart meter's "
            "register readings are missing"
        )
    return hourly


def _local_midnight(day: date, tz: str) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(tz)).astimezone(UTC)


def _hour_floor(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


# --------------------------------------------------------------------------- forecast
@dataclass(frozen=True)
class Forecast:
    household_id: str
    model_name: str
    model_version: int
    data_until: datetime  # end of the last metered hour
    points: pl.DataFrame  # ts, predicted, lower, upper


def forecast(
    raw: RawStore,
    engine: Engine,
    settings: Settings,
    household_id: str,
    tz: str,
    horizon_hours: int,
    as_of: datetime,
) -> Forecast:
    """Hourly kWh for ``horizon_hours`` from the first hour after the last metered one (≤ ``as_of``).

    The champion forecaster predicts 24 h from each local midnight; the hours asked for are
    covered by the midnights from the one that starts the first hour's day. Hours after the data
    are unknown to the model (load at the level of the last week, temperatures of 24 h earlier),
    which is how it treats the day after the data in the batch predictions too.
    """
    from ml.features import HOUSEHOLD_COLUMNS

    model, version = champion(FORECASTER, settings)
    local_day = as_of.astimezone(ZoneInfo(tz)).date()
    first = local_day - timedelta(days=FORECAST_HISTORY_DAYS)
    attrs = household_attributes(engine, household_id)
    inputs = _inputs(raw, attrs, household_id, first, local_day, tz, _hour_floor(as_of) + timedelta(hours=1))
    hourly = _hourly(inputs, household_id)
    last_metered = hourly.filter(pl.col("kwh").is_not_null())["ts"].max()
    assert isinstance(last_metered, datetime)
    start = last_metered + timedelta(hours=1)
    end = start + timedelta(hours=horizon_hours)
    frame = _pad(hourly, end + timedelta(hours=24), HOUSEHOLD_COLUMNS)
    origins, day = [], start.astimezone(ZoneInfo(tz)).date()
    while (origin := _local_midnight(day, tz)) < end:
        origins.append(origin)
        day += timedelta(days=1)
    with _predict_locks[FORECASTER]:  # one Keras call at a time: 2 cores, and the graph is shared
        fc = model.forecast(frame, origins)
    points = (
        fc.filter((pl.col("ts") >= start) & (pl.col("ts") < end))
        .select("ts", "predicted", "lower", "upper")
        .unique("ts", keep="last")
        .sort("ts")
    )
    if points.height < horizon_hours:
        raise NotEnoughData(
            f"household {household_id!r} has too little hourly load before {origins[0].isoformat()}: "
            f"a forecast needs 7 full days of metered history (data until {start.isoformat()})"
        )
    return Forecast(household_id, FORECASTER, version, start, points)


def _pad(hourly: pl.DataFrame, until: datetime, attributes: Sequence[str]) -> pl.DataFrame:
    """Hours after the data up to ``until`` with unknown load, the household's attributes, and
    temperatures carried forward from the same hour a day earlier (a persistence forecast)."""
    last = hourly["ts"].max()
    assert isinstance(last, datetime)
    if last + timedelta(hours=1) < until:
        ts = pl.datetime_range(last + timedelta(hours=1), until, "1h", time_zone="UTC", eager=True)
        attrs = hourly.tail(1).select([c for c in attributes if c in hourly.columns])
        pad = (
            pl.DataFrame({"ts": ts})
            .with_columns(pl.col("ts").cast(hourly.schema["ts"]))
            .join(attrs, how="cross")
        )
        hourly = pl.concat([hourly, pad], how="diagonal_relaxed").sort("ts")
    for _ in range(4):  # up to 96 hours forward
        hourly = hourly.with_columns(
            pl.col(c).fill_null(pl.col(c).shift(24)) for c in ("outdoor_temp_c", "indoor_temp_c")
        )
    return hourly


# --------------------------------------------------------------------------- stored predictions
def stored_predictions(
    raw: RawStore, household_id: str, start: datetime, end: datetime, prediction_type: str | None
) -> pl.DataFrame:
    """The household's ``ai_predictions`` points in ``[start, end)``, oldest first."""
    where: dict[str, Sequence[str]] = {"household_id": [household_id]}
    if prediction_type is not None:
        where["prediction_type"] = [prediction_type]
    return raw.query(AI_PREDICTIONS.name, start, end, where).sort("ts", "prediction_type", "model_version")


# --------------------------------------------------------------------------- tips
@dataclass(frozen=True)
class Tips:
    first_day: date
    last_day: date
    tips: list[Any]  # ml.tips.Tip


def tips(raw: RawStore, engine: Engine, household_id: str, tz: str, as_of: date) -> Tips:
    """``ml.tips.all_tips`` over the household's last :data:`TIPS_HISTORY_DAYS` local days.

    Smart plugs named after flexible appliances (…-plug-washer) are read as well. Only this
    household's data is read, so the cooling tip, which compares with similar homes, needs peers
    in the frame and does not appear here.
    """
    from ml.tips import all_tips, hourly_plug_load

    first = as_of - timedelta(days=TIPS_HISTORY_DAYS - 1)
    attrs = household_attributes(engine, household_id)
    inputs = _inputs(raw, attrs, household_id, first, as_of, tz, None)
    hourly = _hourly(inputs, household_id)
    plugs_raw = raw.query(
        ENERGY_CONSUMPTION.name,
        _local_midnight(first, tz),
        _local_midnight(as_of + timedelta(days=1), tz),
        {"household_id": [household_id], "device_type": ["smart_plug"]},
    )
    plugs = hourly_plug_load(measurement_to_readings(ENERGY_CONSUMPTION.name, plugs_raw))
    found = all_tips(inputs.stats, hourly, inputs.daily, as_of, plugs, tz)
    return Tips(first, as_of, [t for t in found if t.household_id == household_id])


# --------------------------------------------------------------------------- anomalies
_REASON = re.compile(r"(\w+) \(z=([+-]?[\d.]+(?:e[+-]?\d+)?)\)")


@dataclass(frozen=True)
class Anomalies:
    model_version: int
    hours_scored: int
    flagged: pl.DataFrame  # ts, score, top_feature, reasons (list of (feature, z))


def detect_anomalies(
    raw: RawStore,
    engine: Engine,
    settings: Settings,
    household_id: str,
    tz: str,
    start: datetime,
    end: datetime,
    readings: pl.DataFrame | None = None,
) -> Anomalies:
    """Household-hours in ``[start, end)`` the champion anomaly detector flags, with reasons.

    From the raw store (with :data:`ANOMALY_CONTEXT_DAYS` before ``start`` as the household's
    "usual") or from ``readings`` given by the caller (canonical reading columns).
    """
    from ml.data import inputs_from_frames
    from ml.models.anomaly_detector import anomaly_features

    model, version = champion(ANOMALY_DETECTOR, settings)
    attrs = household_attributes(engine, household_id)
    if readings is None:
        first = start.astimezone(ZoneInfo(tz)).date() - timedelta(days=ANOMALY_CONTEXT_DAYS)
        last = (end - timedelta(microseconds=1)).astimezone(ZoneInfo(tz)).date()
        inputs = _inputs(raw, attrs, household_id, first, last, tz, None)
    else:
        weather = raw.query(WEATHER.name, start - timedelta(hours=1), end + timedelta(hours=1))
        inputs = inputs_from_frames(readings, weather, attrs, tz, source="request")
    if inputs.stats.is_empty():
        raise NotEnoughData(f"no smart-meter readings of household {household_id!r} in the window")
    try:
        hourly: pl.DataFrame | None = inputs.hourly
    except ValueError:  # no complete hour of load (e.g. every register reading broken)
        hourly = None
    feats = anomaly_features(inputs.stats, hourly)
    feats = feats.filter((pl.col("ts") >= start) & (pl.col("ts") < end))
    if feats.is_empty():
        raise NotEnoughData(
            f"no complete meter hour of household {household_id!r} between {start.isoformat()} and "
            f"{end.isoformat()} (an hour is scored once the next one has a reading)"
        )
    with _predict_locks[ANOMALY_DETECTOR]:
        scored = model.predict(feats)
    flagged = scored.filter(pl.col("is_anomaly")).sort("ts")
    reasons = [[(f, float(z)) for f, z in _REASON.findall(text)] for text in flagged["reasons"].to_list()]
    flagged = flagged.select("ts", "score", "top_feature").with_columns(
        pl.Series("reasons", reasons, dtype=pl.List(pl.Struct({"feature": pl.String, "z": pl.Float64})))
    )
    return Anomalies(version, feats.height, flagged)


# --------------------------------------------------------------------------- performance
PERFORMANCE_SCHEMA: dict[str, Any] = {
    "local_date": pl.Date, "model_version": pl.String, "points": pl.Int64, "households": pl.Int64,
    "mae": pl.Float64, "rmse": pl.Float64, "cv_rmse": pl.Float64, "nmbe": pl.Float64,
    "interval_coverage": pl.Float64,
}  # fmt: skip


def _scores(g: pl.DataFrame) -> dict[str, Any]:
    """MAE, RMSE, CV(RMSE) %, NMBE % and interval coverage of prediction rows with actuals."""
    from ml.metrics import cv_rmse, mae, nmbe, rmse

    a, p = g["actual_value"].to_numpy(), g["predicted_value"].to_numpy()
    positive = bool(np.mean(a) > 0)
    bounded = g.filter(pl.col("lower").is_not_null() & pl.col("upper").is_not_null())
    inside = (bounded["actual_value"] >= bounded["lower"]) & (bounded["actual_value"] <= bounded["upper"])
    return {
        "points": g.height,
        "households": g["household_id"].n_unique(),
        "mae": mae(a, p),
        "rmse": rmse(a, p),
        "cv_rmse": cv_rmse(a, p) if positive else None,
        "nmbe": nmbe(a, p) if positive else None,
        "interval_coverage": float(inside.mean()) if bounded.height else None,  # type: ignore[arg-type]
    }


def performance(
    raw: RawStore, model_name: str, start: datetime, end: datetime, tz: str
) -> tuple[pl.DataFrame, dict[str, Any] | None]:
    """Stored predictions with actuals in ``[start, end)``: per local day and model version, and
    over the whole window (None without any). Models that store no predictions have none."""
    kind = PREDICTION_TYPES.get(model_name)
    if kind is None:
        return pl.DataFrame(schema=PERFORMANCE_SCHEMA), None
    preds = raw.query(AI_PREDICTIONS.name, start, end, {"prediction_type": [kind]})
    done = preds.filter(pl.col("actual_value").is_not_null() & pl.col("predicted_value").is_not_null())
    if done.is_empty():
        return pl.DataFrame(schema=PERFORMANCE_SCHEMA), None
    done = done.with_columns(pl.col("ts").dt.convert_time_zone(tz).dt.date().alias("local_date"))
    rows = [
        {"local_date": day, "model_version": version, **_scores(g)}
        for (day, version), g in sorted(done.group_by("local_date", "model_version"), key=lambda kv: kv[0])
    ]
    return pl.DataFrame(rows, schema=PERFORMANCE_SCHEMA), _scores(done)


__all__ = [
    "ANOMALY_DETECTOR",
    "CLASSIFIER",
    "EXPECTED_DAILY_TYPE",
    "FORECASTER",
    "FORECAST_TYPE",
    "MODEL_NAMES",
    "REGRESSOR",
    "Anomalies",
    "Forecast",
    "NoChampion",
    "NotEnoughData",
    "Tips",
    "champion",
    "detect_anomalies",
    "forecast",
    "household_attributes",
    "model_summary",
    "performance",
    "stored_predictions",
    "tips",
]
