"""The jobs end to end on real stores: train → register → evaluate → promote → predictions in the
Parquet raw store's ai_predictions → model performance with actuals filled in."""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from hems.stores.raw_parquet import ParquetRawStore
from ml import registry
from ml.jobs.evaluate import evaluate_versions
from ml.jobs.predict import FORECAST_TYPE, forecast_rows, model_performance, write_predictions
from ml.jobs.promote import promote_versions
from ml.jobs.train import register_models, train_models
from ml.models import LSTMForecaster, PatternClassifier
from ml.models.lstm_forecaster import ForecasterConfig, origins_between


def test_train_evaluate_promote_predict(mlflow_tracking, splits, tmp_path) -> None:
    from mlflow import MlflowClient

    names = (LSTMForecaster.name, PatternClassifier.name)
    trained = train_models(splits, names, ForecasterConfig(epochs=2, units=8))
    versions = register_models(trained, splits)
    evaluations = evaluate_versions(versions, splits)
    run = MlflowClient().get_run(versions[LSTMForecaster.name].run_id)
    for metric in (
        "holdout_cv_rmse",
        "reference_cv_rmse",
        "naive_24h_mase",
        "naive_168h_cv_rmse",
        "train_seconds",
    ):
        assert metric in run.data.metrics
    decisions = promote_versions(evaluations)
    cls = decisions[PatternClassifier.name]
    assert cls.promoted  # macro F1 far above the majority class on the first run
    assert registry.champion_version(PatternClassifier.name) == versions[PatternClassifier.name].version

    # a second identical run cannot beat the champion it equals: the alias stays
    again = evaluate_versions(
        register_models(train_models(splits, (PatternClassifier.name,)), splits), splits
    )
    assert again[PatternClassifier.name].champion_score is not None
    second = promote_versions(again)[PatternClassifier.name]
    assert not second.promoted
    assert registry.champion_version(PatternClassifier.name) == versions[PatternClassifier.name].version

    model = registry.load_model(LSTMForecaster.name, versions[LSTMForecaster.name].version)
    rows = forecast_rows(model, 1, splits.hourly, origins_between(splits.hourly, splits.cutoff))
    raw = ParquetRawStore(tmp_path / "raw")
    raw.ensure()
    assert (
        write_predictions(raw, rows.with_columns(pl.lit(None, pl.Float64).alias("actual_value")))
        == rows.height
    )
    start, end = rows["ts"].min(), rows["ts"].max() + timedelta(hours=1)
    perf = model_performance(raw, splits.inputs.load, start, end)
    assert perf["points"].sum() == rows.height and perf["local_date"].n_unique() == 3
    stored = raw.query("ai_predictions", start, end, {"prediction_type": [FORECAST_TYPE]})
    assert stored.height == rows.height and stored["actual_value"].null_count() == 0
    assert (stored["model_version"] == "1").all()
    assert (stored["lower"] <= stored["predicted_value"]).all()
