"""AI engine (seed port 8004): forecasts, stored predictions, tips, anomalies, model performance.

Routes only parse, authorize and shape answers; the work is in :mod:`serving.ml_service`, which
uses the ``ml`` package's features and the MLflow champions. Household-scoped: ``POST`` bodies
name the household, so those routes apply the same rule as ``household_access``
(:func:`serving.deps.authorized_household`) to the body's ``household_id``.

Status codes beyond the usual: ``503`` when the model has no champion yet (train and promote
first), ``409`` when the stores hold too little of the household's data for the question.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import polars as pl
from fastapi import APIRouter, Body, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.concurrency import run_in_threadpool

from hems.contracts import conform_readings
from hems.settings import Settings
from serving import ml_service
from serving.api.schemas import Page
from serving.deps import (
    CurrentUser,
    EngineDep,
    HouseholdAccess,
    HouseholdId,
    HouseholdRef,
    Pagination,
    RawStoreDep,
    SettingsDep,
    authorized_household,
)
from serving.problems import problem

router = APIRouter(tags=["AI engine"])

MAX_HISTORY_DAYS = 366
MAX_ANOMALY_DAYS = 31
MAX_READINGS = 20_000
ModelName = Literal[
    "hems-consumption-forecaster",
    "hems-usage-pattern-classifier",
    "hems-anomaly-detector",
    "hems-efficiency-regressor",
]
PredictionType = Literal["consumption_kwh_hourly", "expected_kwh_daily"]
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such household, or not yours"},
    409: {"description": "the stores hold too little of the household's data (the detail says what)"},
    503: {"description": "no champion model yet: run the ml_training job (`hems demo`)"},
}


def _tz(household: HouseholdRef, settings: Settings) -> str:
    return household.timezone or settings.domain.timezone


def _day_range(start: dt.date | None, end: dt.date | None, today: dt.date, default_days: int, limit: int):
    """Inclusive local days, defaulting to the ``default_days`` up to today; 422 when inverted or long."""
    end = end or today
    start = start or end - dt.timedelta(days=default_days - 1)
    if start > end:
        raise HTTPException(422, f"start {start} is after end {end}")
    if (end - start).days + 1 > limit:
        raise HTTPException(
            422, f"at most {limit} days at a time; {start}..{end} is {(end - start).days + 1}"
        )
    return start, end


def _midnight(day: dt.date, tz: str) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=ZoneInfo(tz)).astimezone(dt.UTC)


async def _call(request: Request, fn: Any, *args: Any) -> Any:
    """Run ``fn`` off the event loop; a missing champion or missing data becomes its problem."""
    try:
        return await run_in_threadpool(fn, *args)
    except ml_service.NoChampion as exc:
        return problem(503, str(exc), title="No Champion Model", instance=request.url.path, model=exc.name)
    except ml_service.NotEnoughData as exc:
        return problem(409, str(exc), title="Not Enough Data", instance=request.url.path)


class ModelRef(BaseModel):
    name: str
    version: int


# --- forecast --------------------------------------------------------------------------------


class PredictIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"household_id": "hh-00001", "horizon_hours": 24}]}
    )

    household_id: HouseholdId
    horizon_hours: int = Field(24, ge=1, le=48, description="hours to forecast, 1-48")
    as_of: dt.datetime | None = Field(
        None,
        description="forecast from the data before this instant (default: now); the first hour is the "
        "one after the last metered hour",
    )

    @field_validator("as_of")
    @classmethod
    def _aware_not_future(cls, v: dt.datetime | None) -> dt.datetime | None:
        if v is None:
            return v
        if v.tzinfo is None:
            raise ValueError("as_of needs a UTC offset, e.g. 2025-07-16T00:00:00+09:00")
        if v > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5):
            raise ValueError("as_of is in the future")
        return v


class ForecastPoint(BaseModel):
    ts: dt.datetime = Field(description="hour start, UTC")
    predicted_kwh: float
    lower_kwh: float = Field(description="10 % quantile")
    upper_kwh: float = Field(description="90 % quantile")


class ForecastOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "household_id": "hh-00001",
                    "model": {"name": "hems-consumption-forecaster", "version": 3},
                    "timezone": "Asia/Seoul",
                    "data_until": "2025-07-15T15:00:00Z",
                    "horizon_hours": 24,
                    "interval": "10-90 %",
                    "total_kwh": 11.84,
                    "points": [
                        {
                            "ts": "2025-07-15T15:00:00Z",
                            "predicted_kwh": 0.31,
                            "lower_kwh": 0.18,
                            "upper_kwh": 0.52,
                        }
                    ],
                }
            ]
        }
    )

    household_id: str
    model: ModelRef
    timezone: str
    data_until: dt.datetime = Field(description="end of the last metered hour; the forecast starts here")
    horizon_hours: int
    interval: str = "10-90 %"
    total_kwh: float
    points: list[ForecastPoint]


@router.post(
    "/predict/energy",
    response_model=ForecastOut,
    summary="Hourly consumption forecast with a 10-90 % interval (champion LSTM forecaster)",
    responses=_ERRORS,
)
async def predict_energy(
    request: Request,
    body: Annotated[PredictIn, Body()],
    principal: CurrentUser,
    engine: EngineDep,
    raw: RawStoreDep,
    settings: SettingsDep,
) -> Any:
    household = await authorized_household(engine, principal, body.household_id)
    tz = _tz(household, settings)
    as_of = body.as_of or dt.datetime.now(dt.UTC)
    fc = await _call(
        request, ml_service.forecast, raw, engine, settings, household.id, tz, body.horizon_hours, as_of
    )
    if isinstance(fc, JSONResponse):
        return fc
    points = [
        ForecastPoint(ts=r["ts"], predicted_kwh=r["predicted"], lower_kwh=r["lower"], upper_kwh=r["upper"])
        for r in fc.points.iter_rows(named=True)
    ]
    return ForecastOut(
        household_id=household.id,
        model=ModelRef(name=fc.model_name, version=fc.model_version),
        timezone=tz,
        data_until=fc.data_until,
        horizon_hours=body.horizon_hours,
        total_kwh=round(float(fc.points["predicted"].sum()), 3),
        points=points,
    )


# --- stored predictions ----------------------------------------------------------------------


class StoredPrediction(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ts": "2025-07-14T15:00:00Z",
                    "prediction_type": "consumption_kwh_hourly",
                    "model_version": "3",
                    "predicted_value": 0.42,
                    "lower": 0.21,
                    "upper": 0.77,
                    "confidence_score": 0.8,
                    "actual_value": 0.38,
                }
            ]
        }
    )

    ts: dt.datetime
    prediction_type: str
    model_version: str
    predicted_value: float | None
    lower: float | None
    upper: float | None
    confidence_score: float | None = Field(description="nominal coverage of [lower, upper]")
    actual_value: float | None = Field(description="metered value, once the model-performance job has run")


@router.get(
    "/predictions/history",
    response_model=Page[StoredPrediction],
    summary="Stored predictions of a household (ai_predictions), oldest first, with actuals where known",
    responses={404: _ERRORS[404]},
)
async def predictions_history(
    household: HouseholdAccess,
    page: Pagination,
    raw: RawStoreDep,
    settings: SettingsDep,
    start: Annotated[
        dt.date | None, Query(description="first local day (default: 7 days before end)")
    ] = None,
    end: Annotated[dt.date | None, Query(description="last local day, inclusive (default: today)")] = None,
    prediction_type: Annotated[PredictionType | None, Query(description="only this kind")] = None,
) -> Page[StoredPrediction]:
    tz = _tz(household, settings)
    today = dt.datetime.now(ZoneInfo(tz)).date()
    start, end = _day_range(start, end, today, 7, MAX_HISTORY_DAYS)
    rows = await run_in_threadpool(
        ml_service.stored_predictions,
        raw,
        household.id,
        _midnight(start, tz),
        _midnight(end + dt.timedelta(days=1), tz),
        prediction_type,
    )
    part = rows.slice(page.offset, page.limit)
    items = [StoredPrediction.model_validate(r) for r in part.iter_rows(named=True)]
    return Page(items=items, total=rows.height, limit=page.limit, offset=page.offset)


# --- tips ------------------------------------------------------------------------------------


class TipOut(BaseModel):
    kind: str = Field(description="flexible_load, standby, tier_crossing or cooling")
    title: str
    detail: str
    effect_kwh_month: float = Field(description="estimated kWh a month")
    effect_krw_month: float | None = Field(
        description="KEPCO bill difference a month, where the bill changes"
    )
    data: dict[str, Any]


class TipsOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "household_id": "hh-00001",
                    "as_of": "2025-07-16",
                    "window": {"start": "2025-06-12", "end": "2025-07-16"},
                    "total_kwh_month": 21.6,
                    "total_krw_month": 4310.0,
                    "tips": [
                        {
                            "kind": "standby",
                            "title": "Cut standby power",
                            "detail": "Always-on use is 14% of the total ...",
                            "effect_kwh_month": 21.6,
                            "effect_krw_month": 4310.0,
                            "data": {"standby_w": 62.0},
                        }
                    ],
                    "note": None,
                }
            ]
        }
    )

    household_id: str
    as_of: dt.date
    window: dict[str, dt.date]
    total_kwh_month: float
    total_krw_month: float
    tips: list[TipOut]
    note: str | None = Field(description="why there are no tips, when the data was too thin")


@router.get(
    "/optimization/tips",
    response_model=TipsOut,
    summary="Energy-saving tips from the household's own data, with the monthly kWh and KRW effect",
    responses={404: _ERRORS[404]},
)
async def optimization_tips(
    household: HouseholdAccess,
    engine: EngineDep,
    raw: RawStoreDep,
    settings: SettingsDep,
    as_of: Annotated[dt.date | None, Query(description="local day the tips are for (default: today)")] = None,
) -> TipsOut:
    tz = _tz(household, settings)
    day = as_of or dt.datetime.now(ZoneInfo(tz)).date()
    first = day - dt.timedelta(days=ml_service.TIPS_HISTORY_DAYS - 1)
    note = None
    try:
        found = (await run_in_threadpool(ml_service.tips, raw, engine, household.id, tz, day)).tips
    except ml_service.NotEnoughData as exc:
        found, note = [], str(exc)
    tips = [
        TipOut(
            kind=t.kind,
            title=t.title,
            detail=t.detail,
            effect_kwh_month=t.effect_kwh_month,
            effect_krw_month=t.effect_krw_month,
            data=t.data,
        )
        for t in found
    ]
    return TipsOut(
        household_id=household.id,
        as_of=day,
        window={"start": first, "end": day},
        total_kwh_month=round(sum(t.effect_kwh_month for t in tips), 2),
        total_krw_month=round(sum(t.effect_krw_month or 0.0 for t in tips), 0),
        tips=tips,
        note=note,
    )


# --- anomalies -------------------------------------------------------------------------------


class ReadingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ts: dt.datetime
    device_id: str | None = Field(None, max_length=128, description="default: <household_id>-meter")
    device_type: Literal["smart_meter", "smart_plug", "solar_inverter", "env_sensor"] = "smart_meter"
    energy_import_kwh: float | None = Field(None, description="cumulative import register, kWh")
    power_w: float | None = None
    temperature_c: float | None = None

    @field_validator("ts")
    @classmethod
    def _aware(cls, v: dt.datetime) -> dt.datetime:
        if v.tzinfo is None:
            raise ValueError("ts needs a UTC offset")
        return v


class AnomalyIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"household_id": "hh-00001", "start": "2025-07-10", "end": "2025-07-16"},
                {
                    "household_id": "hh-00001",
                    "readings": [
                        {"ts": "2025-07-16T00:00:00+09:00", "energy_import_kwh": 1520.31, "power_w": 410.0},
                        {"ts": "2025-07-16T00:15:00+09:00", "energy_import_kwh": 1520.42, "power_w": 395.0},
                    ],
                },
            ]
        },
    )

    household_id: HouseholdId
    start: dt.date | None = Field(None, description="first local day (with end): read from the raw store")
    end: dt.date | None = Field(None, description="last local day, inclusive")
    readings: list[ReadingIn] | None = Field(
        None, max_length=MAX_READINGS, description="or: your own meter readings (cumulative register + power)"
    )

    @model_validator(mode="after")
    def _one_source(self) -> AnomalyIn:
        if self.readings is not None:
            if self.start is not None or self.end is not None:
                raise ValueError("give either start/end or readings, not both")
            if len(self.readings) < 2:
                raise ValueError("readings needs at least two meter readings")
            return self
        if self.start is None or self.end is None:
            raise ValueError("give start and end (local days), or readings")
        if self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        if (self.end - self.start).days + 1 > MAX_ANOMALY_DAYS:
            raise ValueError(f"at most {MAX_ANOMALY_DAYS} days at a time")
        return self


class Reason(BaseModel):
    feature: str
    z: float = Field(description="robust z-score against the model's training rows")


class AnomalousHour(BaseModel):
    ts: dt.datetime = Field(description="hour start, UTC")
    local_date: dt.date
    score: float = Field(description="IsolationForest score, higher = more unusual")
    top_feature: str
    reasons: list[Reason]


class AnomalousDay(BaseModel):
    date: dt.date
    anomalous_hours: int
    max_score: float
    features: list[str] = Field(description="features that made its hours anomalous, most frequent first")


class AnomalyOut(BaseModel):
    household_id: str
    model: ModelRef
    start: dt.datetime
    end: dt.datetime
    hours_scored: int
    anomalies: list[AnomalousHour]
    days: list[AnomalousDay]


@router.post(
    "/anomaly/detect",
    response_model=AnomalyOut,
    summary="Anomalous meter hours and days, with the features that made them anomalous",
    responses={**_ERRORS, 422: {"description": "bad body: neither or both sources, end before start, ..."}},
)
async def anomaly_detect(
    request: Request,
    body: Annotated[AnomalyIn, Body()],
    principal: CurrentUser,
    engine: EngineDep,
    raw: RawStoreDep,
    settings: SettingsDep,
) -> Any:
    household = await authorized_household(engine, principal, body.household_id)
    tz = _tz(household, settings)
    readings = None
    if body.readings is not None:
        frame = pl.DataFrame(
            [
                {
                    **r.model_dump(),
                    "ts": r.ts.astimezone(dt.UTC),
                    "household_id": household.id,
                    "device_id": r.device_id or f"{household.id}-meter",
                }
                for r in body.readings
            ],
            infer_schema_length=None,
        )
        readings = conform_readings(frame)
        stamps = [r.ts.astimezone(dt.UTC) for r in body.readings]
        start = min(stamps).replace(minute=0, second=0, microsecond=0)
        end = max(stamps) + dt.timedelta(hours=1)
    else:
        assert body.start is not None and body.end is not None
        start, end = _midnight(body.start, tz), _midnight(body.end + dt.timedelta(days=1), tz)
    found = await _call(
        request, ml_service.detect_anomalies, raw, engine, settings, household.id, tz, start, end, readings
    )
    if isinstance(found, JSONResponse):
        return found
    flagged = found.flagged.with_columns(pl.col("ts").dt.convert_time_zone(tz).dt.date().alias("local_date"))
    hours = [AnomalousHour.model_validate(r) for r in flagged.iter_rows(named=True)]
    days = []
    for (day,), g in sorted(flagged.group_by("local_date"), key=lambda kv: kv[0]):
        counts = g["top_feature"].value_counts(sort=True)
        days.append(
            AnomalousDay(
                date=day,
                anomalous_hours=g.height,
                max_score=float(g["score"].max()),  # type: ignore[arg-type]
                features=counts["top_feature"].to_list(),
            )
        )
    return AnomalyOut(
        household_id=household.id,
        model=ModelRef(name=ml_service.ANOMALY_DETECTOR, version=found.model_version),
        start=start,
        end=end,
        hours_scored=found.hours_scored,
        anomalies=hours,
        days=days,
    )


# --- model performance -----------------------------------------------------------------------


class DayPerformance(BaseModel):
    local_date: dt.date
    model_version: str
    points: int
    households: int
    mae: float
    rmse: float
    cv_rmse: float | None = Field(description="RMSE / mean actual, %")
    nmbe: float | None = Field(description="Σ(actual − predicted) / (n · mean actual), %; positive = too low")
    interval_coverage: float | None = Field(description="share of actuals inside [lower, upper]")


class ChampionOut(BaseModel):
    version: int | None
    run_id: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict, description="the champion run's holdout metrics")
    promotion: dict[str, str] = Field(default_factory=dict, description="why it was promoted")


class PerformanceOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "hems-consumption-forecaster",
                    "prediction_type": "consumption_kwh_hourly",
                    "timezone": "Asia/Seoul",
                    "start": "2025-07-01",
                    "end": "2025-07-31",
                    "champion": {
                        "version": 3,
                        "run_id": "5c1f...",
                        "metrics": {"holdout_cv_rmse": 98.4, "reference_cv_rmse": 131.0},
                        "promotion": {"decision": "promoted", "reason": "challenger 98.4 beats ..."},
                    },
                    "overall": {"points": 480, "households": 20, "mae": 0.21, "rmse": 0.33,
                                "cv_rmse": 96.2, "nmbe": -4.1, "interval_coverage": 0.81},
                    "daily": [{"local_date": "2025-07-14", "model_version": "3", "points": 480,
                               "households": 20, "mae": 0.21, "rmse": 0.33, "cv_rmse": 96.2,
                               "nmbe": -4.1, "interval_coverage": 0.81}],
                    "note": None,
                }
            ]
        }
    )  # fmt: skip

    model: str
    prediction_type: str | None = Field(description="what the model stores in ai_predictions (None: nothing)")
    timezone: str
    start: dt.date
    end: dt.date
    champion: ChampionOut
    overall: dict[str, Any] | None = Field(description="the same metrics over every point of the window")
    daily: list[DayPerformance]
    note: str | None


@router.get(
    "/model/performance",
    response_model=PerformanceOut,
    summary="Model metrics per day from stored predictions vs actuals, and the registry's champion",
    responses={422: {"description": "unknown model, end before start, window over 366 days"}},
)
async def model_performance(
    principal: CurrentUser,
    raw: RawStoreDep,
    settings: SettingsDep,
    model: Annotated[ModelName, Query(description="registered model name")] = "hems-consumption-forecaster",
    start: Annotated[
        dt.date | None, Query(description="first local day (default: 30 days before end)")
    ] = None,
    end: Annotated[dt.date | None, Query(description="last local day, inclusive (default: today)")] = None,
) -> PerformanceOut:
    tz = settings.domain.timezone
    start, end = _day_range(start, end, dt.datetime.now(ZoneInfo(tz)).date(), 30, MAX_HISTORY_DAYS)
    daily, overall = await run_in_threadpool(
        ml_service.performance,
        raw,
        model,
        _midnight(start, tz),
        _midnight(end + dt.timedelta(days=1), tz),
        tz,
    )
    notes = []
    try:
        summary = await run_in_threadpool(ml_service.model_summary, model, settings)
        champion = ChampionOut(
            version=summary.get("champion_version"),
            run_id=summary.get("run_id"),
            metrics=summary.get("metrics", {}),
            promotion=summary.get("promotion", {}),
        )
        if champion.version is None:
            notes.append(f"no champion yet: {ml_service.HOW_TO_TRAIN}")
    except Exception as exc:  # the registry down must not hide the stored metrics
        champion = ChampionOut(version=None)
        notes.append(f"model registry unavailable: {type(exc).__name__}")
    kind = ml_service.PREDICTION_TYPES.get(model)
    if kind is None:
        notes.append("this model stores no predictions; its holdout metrics are the champion's run metrics")
    elif overall is None:
        notes.append("no stored predictions with actuals in the window (the ml_training job fills them)")
    return PerformanceOut(
        model=model,
        prediction_type=kind,
        timezone=tz,
        start=start,
        end=end,
        champion=champion,
        overall=overall,
        daily=[DayPerformance.model_validate(r) for r in daily.iter_rows(named=True)],
        note="; ".join(notes) or None,
    )
