"""Score models on the holdout against their references (and the current champion)."""

from __future__ import annotations

from dataclasses import dataclass

from ml.evaluation import (
    Evaluation,
    backtest_forecaster,
    evaluate_anomaly,
    evaluate_classifier,
    evaluate_regressor,
)
from ml.jobs.splits import Splits
from ml.models import AnomalyDetector, EfficiencyRegressor, LSTMForecaster, Model, PatternClassifier


def evaluate_model(model: Model, splits: Splits) -> Evaluation:
    """The holdout evaluation of one fitted model (see :mod:`ml.evaluation`)."""
    if isinstance(model, LSTMForecaster):
        ev, _ = backtest_forecaster(splits.hourly, splits.cutoff, model=model)
        return ev
    if isinstance(model, PatternClassifier):
        return evaluate_classifier(model, splits.daily_test)
    if isinstance(model, AnomalyDetector):
        if splits.anomaly_test is None or splits.anomaly_test.is_empty():
            raise ValueError("the anomaly detector needs a labelled holdout (readings with injected faults)")
        return evaluate_anomaly(model, splits.anomaly_test)
    if isinstance(model, EfficiencyRegressor):
        train, test = splits.regressor_split()
        return evaluate_regressor(model, train, test)
    raise TypeError(f"no evaluation for {type(model).__name__}")


@dataclass(frozen=True)
class VersionEvaluation:
    name: str
    version: int
    run_id: str
    challenger: Evaluation
    champion_version: int | None
    champion_score: float | None  # the champion's primary metric on the same holdout


def evaluate_versions(versions: dict[str, object], splits: Splits) -> dict[str, VersionEvaluation]:
    """Load each registered challenger and the current champion, score both on this holdout,
    and log the figures to the challenger's run."""
    from ml import registry

    out = {}
    for name, logged in versions.items():
        version, run_id = logged.version, logged.run_id  # type: ignore[attr-defined]
        challenger = evaluate_model(registry.load_model(name, version), splits)
        champ_v = registry.champion_version(name)
        champ_score = None
        metrics = challenger.flat()
        if champ_v is not None and champ_v != version:
            champ = evaluate_model(registry.load_model(name, champ_v), splits)
            champ_score = champ.primary
            metrics |= {f"champion_{k}": v for k, v in champ.metrics.items()}
        registry.log_metrics(run_id, metrics)
        out[name] = VersionEvaluation(name, version, run_id, challenger, champ_v, champ_score)
    return out


__all__ = ["VersionEvaluation", "evaluate_model", "evaluate_versions"]
