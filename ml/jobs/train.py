"""Train the four models on the training part of a split (and register them in MLflow)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ml.jobs.splits import Splits
from ml.models import AnomalyDetector, EfficiencyRegressor, LSTMForecaster, Model, PatternClassifier
from ml.models.lstm_forecaster import ForecasterConfig

ALL_MODELS = (LSTMForecaster.name, PatternClassifier.name, AnomalyDetector.name, EfficiencyRegressor.name)


@dataclass(frozen=True)
class Trained:
    model: Model
    seconds: float
    rows: int


def train_models(
    splits: Splits,
    names: tuple[str, ...] = ALL_MODELS,
    forecaster_config: ForecasterConfig | None = None,
) -> dict[str, Trained]:
    """Fit each named model on data before the holdout (households outside the regressor's test set)."""
    unknown = set(names) - set(ALL_MODELS)
    if unknown:
        raise ValueError(f"unknown models {sorted(unknown)}; known: {list(ALL_MODELS)}")
    out: dict[str, Trained] = {}
    for name in names:
        started = time.perf_counter()
        model: Model
        if name == LSTMForecaster.name:
            cfg = forecaster_config or ForecasterConfig(timezone=splits.inputs.timezone)
            model = LSTMForecaster(cfg).fit(splits.hourly, until=splits.cutoff)
            rows = splits.hourly.filter(splits.hourly["ts"] < splits.cutoff).height
        elif name == PatternClassifier.name:
            model = PatternClassifier().fit(splits.daily_train)
            rows = splits.daily_train.height
        elif name == AnomalyDetector.name:
            feats = splits.anomaly_train()
            model = AnomalyDetector().fit(feats)
            rows = feats.height
        else:
            train, _ = splits.regressor_split()
            model = EfficiencyRegressor().fit(train)
            rows = train.height
        out[name] = Trained(model, time.perf_counter() - started, rows)
    return out


def input_example(name: str, splits: Splits):
    """A small frame of the model's input (MLflow signature and example)."""
    if name == LSTMForecaster.name:
        first = splits.hourly["household_id"].min()
        return splits.hourly.filter(splits.hourly["household_id"] == first).tail(24 * 9)
    if name == AnomalyDetector.name:
        return splits.anomaly_train().head(50)
    return splits.daily_train.head(50)


def register_models(trained: dict[str, Trained], splits: Splits) -> dict[str, object]:
    """Log a run per model (params, training time, lineage, signature) and register a version."""
    from ml import registry

    versions = {}
    for name, t in trained.items():
        versions[name] = registry.log_training_run(
            t.model,
            metrics={"train_seconds": t.seconds, "train_rows": float(t.rows)},
            lineage=splits.lineage(),
            input_example=input_example(name, splits),
            training_data=input_example(name, splits),
        )
    return versions


__all__ = ["ALL_MODELS", "Trained", "input_example", "register_models", "train_models"]
