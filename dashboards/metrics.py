"""Scores the dashboards compute from predictions and daily features (pure Polars, no Streamlit).

Why on the dashboard side: the prediction store already holds predictions *and* actuals, so
accuracy over time and the seasonal-naive reference can be shown from them directly, whatever the
registry logs; and the anomaly page needs "how did this day differ from the household's usual".
"""

from __future__ import annotations

import math

import polars as pl

KEYS = ("household_id", "prediction_type", "ts")


def forecast_scores(frame: pl.DataFrame) -> dict[str, float | None]:
    """MAE, RMSE, CV(RMSE), NMBE and interval coverage over rows that have an actual value."""
    scored = frame.filter(pl.col("actual_value").is_not_null() & pl.col("predicted_value").is_not_null())
    if scored.is_empty():
        return {"n": 0, "mae": None, "rmse": None, "cv_rmse": None, "nmbe": None, "coverage": None}
    err = scored["predicted_value"] - scored["actual_value"]
    mean_actual = float(scored["actual_value"].mean())  # type: ignore[arg-type]
    rmse = math.sqrt(float((err**2).mean()))  # type: ignore[arg-type]
    bounded = scored.filter(pl.col("lower").is_not_null() & pl.col("upper").is_not_null())
    coverage = (
        float(
            bounded.select(pl.col("actual_value").is_between(pl.col("lower"), pl.col("upper")).mean()).item()
        )
        if bounded.height
        else None
    )
    return {
        "n": scored.height,
        "mae": float(err.abs().mean()),  # type: ignore[arg-type]
        "rmse": rmse,
        "cv_rmse": rmse / mean_actual if mean_actual else None,
        "nmbe": float(err.sum()) / (scored.height * mean_actual) if mean_actual else None,
        "coverage": coverage,
    }


def actuals(frame: pl.DataFrame) -> pl.DataFrame:
    """One actual per household, prediction type and time (whichever model version recorded it)."""
    return (
        frame.filter(pl.col("actual_value").is_not_null()).group_by(*KEYS).agg(pl.col("actual_value").first())
    )


def daily_accuracy(frame: pl.DataFrame, timezone: str, lag_hours: int = 24) -> pl.DataFrame:
    """CV(RMSE) and MAE per local day for each model version and for the seasonal-naive reference
    (the actual ``lag_hours`` earlier), on the points where both can be scored."""
    truth = actuals(frame)
    naive = truth.with_columns(pl.col("ts") + pl.duration(hours=lag_hours)).rename({"actual_value": "naive"})
    models = frame.filter(pl.col("predicted_value").is_not_null()).select(
        *KEYS, "model_version", "predicted_value"
    )
    joined = models.join(truth, on=list(KEYS)).join(naive, on=list(KEYS), how="left")
    joined = joined.with_columns(pl.col("ts").dt.convert_time_zone(timezone).dt.date().alias("date"))
    candidates = pl.concat(
        [
            joined.select("date", pl.col("model_version").alias("model"), "predicted_value", "actual_value"),
            joined.filter(pl.col("naive").is_not_null())
            .unique(subset=list(KEYS))
            .select(
                "date",
                pl.lit(f"seasonal naive (t−{lag_hours} h)").alias("model"),
                pl.col("naive").alias("predicted_value"),
                "actual_value",
            ),
        ]
    )
    err = pl.col("predicted_value") - pl.col("actual_value")
    return (
        candidates.group_by("date", "model")
        .agg(
            err.abs().mean().alias("mae"),
            ((err**2).mean().sqrt() / pl.col("actual_value").mean()).alias("cv_rmse"),
            pl.len().alias("points"),
        )
        .sort("date", "model")
    )


def robust_deviation(day: dict[str, float | None], usual: pl.DataFrame, features: list[str]) -> pl.DataFrame:
    """How far each feature of one day sits from the household's usual days, in robust z units
    (difference from the median ÷ 1.4826·MAD; a feature with no spread scores 0 unless it differs)."""
    rows = []
    for feature in features:
        values = usual[feature].drop_nulls()
        value = day.get(feature)
        if value is None or values.is_empty():
            continue
        median = float(values.median())  # type: ignore[arg-type]
        mad = float((values - median).abs().median()) * 1.4826  # type: ignore[arg-type]
        diff = float(value) - median
        z = diff / mad if mad > 1e-9 else (0.0 if abs(diff) < 1e-9 else math.copysign(10.0, diff))
        rows.append({"feature": feature, "value": float(value), "usual": median, "robust_z": z})
    schema = {"feature": pl.Utf8, "value": pl.Float64, "usual": pl.Float64, "robust_z": pl.Float64}
    out = pl.DataFrame(rows, schema=schema)
    return out.sort(pl.col("robust_z").abs(), descending=True)
