"""Batch predictions into the raw store's ``ai_predictions``, and how past predictions fared.

Rows follow :data:`hems.contracts.AI_PREDICTIONS`: tags ``household_id``, ``prediction_type``,
``model_version``; fields ``predicted_value``, ``confidence_score``, ``lower``, ``upper``,
``actual_value``.  A point is keyed by tags + ts, so re-running a prediction for the same hour and
model version overwrites it, and filling in ``actual_value`` later is a plain re-write.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl

from hems.contracts import AI_PREDICTIONS
from ml.metrics import cv_rmse, mae
from ml.models.efficiency_regressor import EfficiencyRegressor
from ml.models.lstm_forecaster import INTERVAL_LEVEL, LSTMForecaster

FORECAST_TYPE = "consumption_kwh_hourly"
EXPECTED_DAILY_TYPE = "expected_kwh_daily"


def forecast_rows(
    model: LSTMForecaster, version: int | str, hourly: pl.DataFrame, origins: list[datetime] | None = None
) -> pl.DataFrame:
    """Day-ahead forecasts as ``ai_predictions`` rows (interval = the 10–90 % band).

    ``confidence_score`` is the interval's nominal coverage (0.8); ``actual_value`` is filled
    where the hour has already been metered.
    """
    fc = model.forecast(hourly, origins)
    return fc.select(
        "ts",
        "household_id",
        pl.lit(FORECAST_TYPE).alias("prediction_type"),
        pl.lit(str(version)).alias("model_version"),
        pl.col("predicted").alias("predicted_value"),
        pl.lit(INTERVAL_LEVEL).alias("confidence_score"),
        "lower",
        "upper",
        pl.col("actual").alias("actual_value"),
    )


def expected_daily_rows(
    model: EfficiencyRegressor, version: int | str, daily: pl.DataFrame, timezone: str = "Asia/Seoul"
) -> pl.DataFrame:
    """Expected daily kWh per household-day, stamped at local midnight (score = predicted ÷ actual)."""
    pred = model.predict(daily).drop("efficiency_score", strict=False)
    midnight = pl.col("local_date").cast(pl.Datetime("ms")).dt.replace_time_zone(timezone)
    return pred.join(
        daily.select("household_id", "local_date", "kwh"), on=["household_id", "local_date"]
    ).select(
        midnight.dt.convert_time_zone("UTC").alias("ts"),
        "household_id",
        pl.lit(EXPECTED_DAILY_TYPE).alias("prediction_type"),
        pl.lit(str(version)).alias("model_version"),
        pl.col("expected_kwh").alias("predicted_value"),
        pl.lit(None, pl.Float64).alias("confidence_score"),
        pl.lit(None, pl.Float64).alias("lower"),
        pl.lit(None, pl.Float64).alias("upper"),
        pl.col("kwh").alias("actual_value"),
    )


def write_predictions(raw_store, rows: pl.DataFrame) -> int:
    """Write prediction rows to the raw store; returns the number of points."""
    return raw_store.write(AI_PREDICTIONS.name, rows)


def model_performance(
    raw_store, load: pl.DataFrame, start: datetime, end: datetime, timezone: str = "Asia/Seoul"
) -> pl.DataFrame:
    """Past hourly forecasts against metered load, per local day and model version.

    Also writes the actuals back into the predictions (``actual_value``), so the API and the
    dashboards read forecast and outcome from one place.  Returns one row per day and version:
    points, MAE, CV(RMSE) and the share of actuals inside the interval.
    """
    preds = raw_store.query(AI_PREDICTIONS.name, start, end, {"prediction_type": [FORECAST_TYPE]})
    if preds.is_empty():
        return pl.DataFrame(
            schema={"local_date": pl.Date, "model_version": pl.String, "points": pl.UInt32, "mae": pl.Float64,
                    "cv_rmse": pl.Float64, "interval_coverage": pl.Float64}
        )  # fmt: skip
    joined = preds.drop("actual_value").join(
        load.select("household_id", "ts", pl.col("kwh").alias("actual_value")),
        on=["household_id", "ts"],
        how="left",
    )
    filled = joined.filter(pl.col("actual_value").is_not_null())
    if filled.height:
        raw_store.write(AI_PREDICTIONS.name, filled)
    rows = []
    by_day = filled.with_columns(pl.col("ts").dt.convert_time_zone(timezone).dt.date().alias("local_date"))
    for (day, version), g in by_day.group_by("local_date", "model_version"):
        a, p = g["actual_value"].to_numpy(), g["predicted_value"].to_numpy()
        inside = (g["actual_value"] >= g["lower"]) & (g["actual_value"] <= g["upper"])
        rows.append(
            {
                "local_date": day,
                "model_version": version,
                "points": g.height,
                "mae": mae(a, p),
                "cv_rmse": cv_rmse(a, p) if np.mean(a) > 0 else None,
                "interval_coverage": float(inside.mean()),  # type: ignore[arg-type]
            }
        )
    return pl.DataFrame(rows).sort("local_date", "model_version")


__all__ = [
    "EXPECTED_DAILY_TYPE",
    "FORECAST_TYPE",
    "expected_daily_rows",
    "forecast_rows",
    "model_performance",
    "write_predictions",
]
