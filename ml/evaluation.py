"""Every model against a simple reference on the same holdout (the figures MLflow shows).

* forecaster — rolling-origin backtest: at every local midnight of the holdout the model forecasts
  the next 24 hours from data before that midnight only; the references are seasonal naive
  t−24 h and t−168 h.  MAE, RMSE, CV(RMSE), NMBE and MASE, per household-hour (pooled) and for
  the fleet aggregate.  With ``refit_every`` the model is retrained on an expanding window;
* classifier — macro F1 on holdout days against always predicting the training majority class;
* anomaly detector — precision/recall/F1 against the simulator's injected faults, with a robust
  z-score rule on hourly kWh (|z| > 3.5 per household and hour of day) as the reference;
* efficiency regressor — error on held-out households against the mean daily kWh of the
  training households in the same segment (building type × residents).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import polars as pl
from sklearn.metrics import f1_score

from ml.metrics import forecast_metrics, precision_recall
from ml.models.anomaly_detector import AnomalyDetector
from ml.models.efficiency_regressor import EfficiencyRegressor
from ml.models.lstm_forecaster import LSTMForecaster, origins_between, score_forecast
from ml.models.pattern_classifier import PatternClassifier


@dataclass(frozen=True)
class Evaluation:
    """One model's holdout metrics, its reference's, and which number decides promotion."""

    model: str
    primary_metric: str
    higher_is_better: bool
    metrics: dict[str, float]
    reference: str
    reference_metrics: dict[str, float]
    extra: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def primary(self) -> float:
        return self.metrics[self.primary_metric]

    @property
    def reference_primary(self) -> float:
        return self.reference_metrics[self.primary_metric]

    def beats_reference(self) -> bool:
        return better(self.primary, self.reference_primary, self.higher_is_better)

    def flat(self) -> dict[str, float]:
        """Metrics for MLflow: ``holdout_<m>``, ``reference_<m>`` and ``<name>_<m>`` for extras."""
        out = {f"holdout_{k}": v for k, v in self.metrics.items()}
        out |= {f"reference_{k}": v for k, v in self.reference_metrics.items()}
        for name, metrics in self.extra.items():
            out |= {f"{name}_{k}": v for k, v in metrics.items()}
        return out


def better(a: float, b: float, higher_is_better: bool) -> bool:
    """Strictly better (ties do not promote)."""
    return a > b if higher_is_better else a < b


# --------------------------------------------------------------------------- forecaster
def seasonal_naive(hourly: pl.DataFrame, forecasts: pl.DataFrame) -> pl.DataFrame:
    """Add the t−24 h and t−168 h seasonal naive forecasts to forecast rows (by household and ts)."""
    lags = hourly.select(
        "household_id", "ts", pl.col("kwh_lag_24").alias("naive_24"), pl.col("kwh_lag_168").alias("naive_168")
    )
    return forecasts.join(lags, on=["household_id", "ts"], how="left")


def backtest_forecaster(
    hourly: pl.DataFrame,
    test_start: datetime,
    model: LSTMForecaster | None = None,
    make_model: Callable[[], LSTMForecaster] | None = None,
    refit_every: int | None = None,
    weather: str = "observed",
) -> tuple[Evaluation, pl.DataFrame]:
    """Rolling-origin backtest over the local midnights at or after ``test_start``.

    Give a fitted ``model`` (trained on data before ``test_start``), or ``make_model`` to train
    one here — and with ``refit_every`` k, retrain every k origins on all data before the origin.
    Returns the evaluation and the forecasts (with the naive references alongside).
    """
    origins = origins_between(hourly, test_start)
    if not origins:
        raise ValueError(f"no forecast origin with observed load at or after {test_start}")
    if model is None and make_model is None:
        raise ValueError("give a fitted model or make_model")
    step = refit_every or len(origins)
    parts = []
    for i in range(0, len(origins), step):
        chunk = origins[i : i + step]
        if make_model is not None and (model is None or refit_every):
            model = make_model().fit(hourly, until=chunk[0])
        assert model is not None
        parts.append(model.forecast(hourly, chunk, weather=weather))
    fc = seasonal_naive(hourly, pl.concat(parts)).filter(pl.col("actual").is_not_null())
    fc = fc.filter(pl.col("naive_24").is_not_null() & pl.col("naive_168").is_not_null())
    assert model is not None
    scale = model.mase_scale
    metrics = score_forecast(fc, "predicted", scale)
    n24 = score_forecast(fc, "naive_24", scale)
    n168 = score_forecast(fc, "naive_168", scale)
    best = n24 if n24["cv_rmse"] <= n168["cv_rmse"] else n168
    best_name = "seasonal_naive_24h" if best is n24 else "seasonal_naive_168h"
    metrics["skill_vs_best_naive"] = 1.0 - metrics["cv_rmse"] / best["cv_rmse"]
    metrics["aggregate_skill_vs_best_naive"] = 1.0 - metrics["aggregate_cv_rmse"] / min(
        n24["aggregate_cv_rmse"], n168["aggregate_cv_rmse"]
    )
    metrics["origins"] = float(len(origins))
    ev = Evaluation(
        model=LSTMForecaster.name,
        primary_metric=LSTMForecaster.primary_metric,
        higher_is_better=False,
        metrics=metrics,
        reference=best_name,
        reference_metrics=best,
        extra={"naive_24h": n24, "naive_168h": n168},
    )
    return ev, fc


# --------------------------------------------------------------------------- classifier
def evaluate_classifier(model: PatternClassifier, test_daily: pl.DataFrame) -> Evaluation:
    """Macro F1 of the classifier and of the majority class on holdout days (labels by centroid)."""
    metrics = model.evaluate(test_daily)
    truth = model.label(test_daily).to_numpy()
    majority = np.full(truth.shape, model.majority, dtype=object)
    ref = {
        "macro_f1": float(f1_score(truth, majority, average="macro", zero_division=0)),
        "accuracy": float(np.mean(truth == majority)),
    }
    return Evaluation(PatternClassifier.name, "macro_f1", True, metrics, "majority_class", ref)


# --------------------------------------------------------------------------- anomaly detector
def zscore_reference(features: pl.DataFrame, threshold: float = 3.5) -> np.ndarray:
    """The reference detector: |robust z| of the hour's kWh ratio above ``threshold``.

    ``hour_kwh_ratio`` is signed-log(kWh / the household's median for that hour of day); its
    robust z-score over the scored rows is the classic 'unusual reading' rule.
    """
    x = features["hour_kwh_ratio"].to_numpy().astype(np.float64)
    med = np.median(x)
    mad = 1.4826 * np.median(np.abs(x - med)) or 1e-9
    return np.abs((x - med) / mad) > threshold


def evaluate_anomaly(model: AnomalyDetector, labelled: pl.DataFrame) -> Evaluation:
    """Precision/recall/F1 of the detector and of the z-score rule against ``is_fault``."""
    metrics = model.evaluate(labelled)
    metrics["faults_share"] = float(labelled["is_fault"].mean())  # type: ignore[arg-type]
    ref = precision_recall(labelled["is_fault"].to_numpy(), zscore_reference(labelled))
    return Evaluation(AnomalyDetector.name, "f1", True, metrics, "robust_zscore_hourly_kwh", ref)


# --------------------------------------------------------------------------- regressor
def segment(frame: pl.DataFrame) -> pl.Expr:
    return pl.concat_str(
        [pl.col("building_type"), pl.col("residents").clip(upper_bound=4).cast(pl.String)], separator="/"
    )


def mean_per_segment(train: pl.DataFrame, test: pl.DataFrame) -> np.ndarray:
    """The reference: mean daily kWh of training household-days in the same segment (else overall)."""
    means = train.group_by(segment(train).alias("_seg")).agg(pl.col("kwh").mean().alias("_ref"))
    out = test.with_columns(segment(test).alias("_seg")).join(means, on="_seg", how="left")
    return out["_ref"].fill_null(float(train["kwh"].mean())).to_numpy()  # type: ignore[arg-type]


def evaluate_regressor(model: EfficiencyRegressor, train: pl.DataFrame, test: pl.DataFrame) -> Evaluation:
    metrics = model.evaluate(test)
    ref = forecast_metrics(test["kwh"], mean_per_segment(train, test))
    metrics["n_households"] = float(test["household_id"].n_unique())
    return Evaluation(EfficiencyRegressor.name, "cv_rmse", False, metrics, "mean_per_segment", ref)


__all__ = [
    "Evaluation",
    "backtest_forecaster",
    "better",
    "evaluate_anomaly",
    "evaluate_classifier",
    "evaluate_regressor",
    "mean_per_segment",
    "seasonal_naive",
    "zscore_reference",
]
