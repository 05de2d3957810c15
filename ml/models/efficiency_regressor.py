"""Efficiency regressor: XGBoost expected daily kWh from household attributes and weather.

Expected consumption is what a home *like this one* (area, residents, building type, household
type, electric heating, EV, PV) would use on *a day like this* (outdoor mean/max/min temperature,
cooling and heating degree days, day off, month).  The efficiency score is expected ÷ actual:
above 1 the home uses less than similar homes would, below 1 more.  Splits for evaluation are by
household, because the score is only meaningful for homes the model has not memorized.

Why a Tweedie objective and monotone constraints: with a fleet of 20 homes a free tree memorizes
homes by their area (each area is one home) and lost to the mean-per-segment reference on held-out
homes.  Consumption is non-negative, right-skewed and its spread grows with its level, which a
Tweedie log-link models (attributes scale use, they do not add to it); and more area, more
residents, electric heating or an EV can only raise expected use.  Measured over eight random
household splits (`benchmarks/ml_training.py` data, docs/ml.md): mean CV(RMSE) 40.9 % against 51.6 %
for the unconstrained squared-error model on 20 homes × 21 days, 54.3 % against 56.7 % on
100 × 120 days; the reference scores 65.4 % and 65.6 %.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np
import polars as pl
from xgboost import XGBRegressor

from ml.metrics import forecast_metrics
from ml.models.base import Model, require_columns

FEATURES = (
    "area_m2",
    "residents",
    "apartment",
    "household_type_code",
    "electric_heating",
    "has_ev",
    "has_pv",
    "outdoor_mean_c",
    "outdoor_max_c",
    "outdoor_min_c",
    "cdd",
    "hdd",
    "day_off",
    "month",
)
#: +1: expected use can only rise with the feature (the others are unconstrained)
MONOTONE = {"area_m2": 1, "residents": 1, "electric_heating": 1, "has_ev": 1}
_TYPES = {"single": 0, "couple": 1, "family": 2, "elderly": 3}
#: features built from another column by :func:`design` (the rest are read as they are)
_SOURCE = {"apartment": "building_type", "household_type_code": "household_type"}
_NEEDED = ("kwh", *(_SOURCE.get(f, f) for f in FEATURES))


def design(daily: pl.DataFrame) -> pl.DataFrame:
    """The regressor's input columns from daily features (categoricals as codes)."""
    require_columns(daily, [c for c in _NEEDED if c != "kwh"], "daily features")
    return daily.with_columns(
        (pl.col("building_type") == "apartment").cast(pl.Float64).alias("apartment"),
        pl.col("household_type")
        .replace_strict(_TYPES, default=-1)
        .cast(pl.Float64)
        .alias("household_type_code"),
    ).select([pl.col(c).cast(pl.Float64) for c in FEATURES])


class EfficiencyRegressor(Model):
    """Expected daily kWh of a household-day, and the efficiency score expected ÷ actual."""

    name: ClassVar[str] = "hems-efficiency-regressor"
    primary_metric: ClassVar[str] = "cv_rmse"
    higher_is_better: ClassVar[bool] = False

    def __init__(
        self,
        n_estimators: int = 300,
        max_depth: int = 3,
        learning_rate: float = 0.05,
        tweedie_variance_power: float = 1.2,
        seed: int = 0,
    ) -> None:
        self.n_estimators, self.max_depth, self.learning_rate = n_estimators, max_depth, learning_rate
        self.tweedie_variance_power, self.seed = tweedie_variance_power, seed
        self._fitted = False

    def params(self) -> dict[str, Any]:
        return {
            "n_estimators": self.n_estimators,
            "max_depth": self.max_depth,
            "learning_rate": self.learning_rate,
            "objective": "reg:tweedie",
            "tweedie_variance_power": self.tweedie_variance_power,
            "monotone_increasing": ",".join(MONOTONE),
        }

    def fit(self, frame: pl.DataFrame) -> Self:
        require_columns(frame, _NEEDED, "daily features")
        self._xgb = XGBRegressor(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            objective="reg:tweedie",
            tweedie_variance_power=self.tweedie_variance_power,
            monotone_constraints=tuple(MONOTONE.get(f, 0) for f in FEATURES),
            subsample=0.8,
            colsample_bytree=0.8,
            min_child_weight=5,
            n_jobs=2,
            random_state=self.seed,
        ).fit(design(frame).to_numpy(), frame["kwh"].to_numpy())
        self._fitted = True
        return self

    def expected(self, frame: pl.DataFrame) -> np.ndarray:
        self._check_fitted()
        return np.maximum(self._xgb.predict(design(frame).to_numpy()).astype(np.float64), 0.01)

    def predict(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``expected_kwh`` per row and, where ``kwh`` is present, ``efficiency_score``."""
        exp = self.expected(frame)
        keys = [c for c in ("household_id", "local_date") if c in frame.columns]
        out = frame.select(keys).with_columns(pl.Series("expected_kwh", exp))
        if "kwh" in frame.columns:
            out = out.with_columns((pl.col("expected_kwh") / frame["kwh"]).alias("efficiency_score"))
        return out

    def evaluate(self, frame: pl.DataFrame) -> dict[str, float]:
        require_columns(frame, ("kwh",), "daily features")
        return forecast_metrics(frame["kwh"], self.expected(frame))


def household_scores(predictions: pl.DataFrame, actual: pl.DataFrame) -> pl.DataFrame:
    """Efficiency per household over a period: Σ expected ÷ Σ actual (days with both)."""
    joined = predictions.join(
        actual.select("household_id", "local_date", "kwh"), on=["household_id", "local_date"]
    )
    return (
        joined.group_by("household_id")
        .agg(
            (pl.col("expected_kwh").sum() / pl.col("kwh").sum()).alias("efficiency_score"),
            pl.len().alias("days"),
        )
        .sort("household_id")
    )


__all__ = ["FEATURES", "MONOTONE", "EfficiencyRegressor", "design", "household_scores"]
