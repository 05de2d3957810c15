"""ML assets: features → train → evaluate → promote → batch predictions → model performance.

The registry (MLflow) is the hand-off between steps: the train asset registers new versions, the
evaluate asset loads them (and the current champion) back and scores them on one holdout, the
promote asset moves ``champion`` aliases, and predictions always come from the champion.
"""

from datetime import date, timedelta

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetKey,
    Config,
    MaterializeResult,
    MetadataValue,
    Output,
    asset,
)

from ml.data import households_from_appdb, inputs_from_stores
from ml.jobs.splits import Splits, labelled_anomaly_set, make_splits
from orchestration.defs.energy.resources import StoresResource

OWNERS = ["team:ml"]
GROUP = "ml"


class FeaturesConfig(Config):
    """Which days the models learn from (ending at the mart's last day)."""

    history_days: int = 120
    holdout_days: int = 0  # 0: a fifth of the days, 1..7
    #: faults injected into a copy of the holdout readings to score the anomaly detector
    fault_gaps: int = 10
    fault_spikes: int = 10
    fault_counter_resets: int = 5
    fault_meter_swaps: int = 2
    seed: int = 0


def _window(stores: StoresResource, history_days: int) -> tuple[date, date]:
    span = stores.warehouse().query("SELECT min(date) AS lo, max(date) AS hi FROM marts.energy_usage_daily")
    lo, hi = span.row(0)
    if hi is None:
        raise ValueError("marts.energy_usage_daily is empty: run the energy pipeline first")
    return max(lo, hi - timedelta(days=history_days - 1)), hi


@asset(
    deps=[AssetKey(["marts", "energy_usage_daily"])],
    group_name=GROUP,
    owners=OWNERS,
    kinds={"python", "polars"},
    description=(
        "Hourly and daily household features (calendar, Korean holidays, outdoor and indoor temperature, "
        "lags, load shapes, attributes) for the last `history_days` days of the energy mart, read from the "
        "raw store and the app database, with the holdout split and a labelled anomaly holdout (the "
        "simulator's fault injector applied to a copy of the holdout readings)."
    ),
)
def ml_features(
    context: AssetExecutionContext, config: FeaturesConfig, stores: StoresResource
) -> Output[Splits]:
    from hems.settings import get_settings
    from ingest.simulator.faults import FaultPlan, inject_faults

    settings = get_settings()
    first, last = _window(stores, config.history_days)
    raw = stores.raw_store()
    inputs = inputs_from_stores(
        raw, households_from_appdb(stores.app_database_url()), first, last, settings.domain.timezone
    )
    base = make_splits(inputs, config.holdout_days or None, seed=config.seed)
    holdout = raw.read_readings(base.cutoff, base.cutoff + timedelta(days=base.holdout_days))
    plan = FaultPlan(
        gaps=config.fault_gaps,
        spikes=config.fault_spikes,
        counter_resets=config.fault_counter_resets,
        meter_swaps=config.fault_meter_swaps,
    )
    injected = inject_faults(holdout, plan, seed=config.seed)
    labelled = labelled_anomaly_set(injected.readings, injected.log, inputs)
    splits = make_splits(inputs, base.holdout_days, anomaly_test=labelled, seed=config.seed)
    hourly = inputs.hourly
    context.log.info(f"features for {inputs.households.height} households, {first} → {last}")
    return Output(
        splits,
        metadata={
            "dagster/row_count": hourly.height,
            "households": inputs.households.height,
            "window": f"{first} → {last}",
            "holdout_start": splits.cutoff.isoformat(),
            "daily_rows": inputs.daily.height,
            "missing_hourly_kwh_share": float(hourly["kwh"].is_null().mean()),  # type: ignore[arg-type]
            "injected_faults": injected.log.height,
        },
    )


class TrainConfig(Config):
    forecaster_epochs: int = 40


@asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"python", "tensorflow", "scikitlearn", "xgboost", "mlflow"},
    description=(
        "Trains the four models on data before the holdout and registers each as a new MLflow model "
        "version (params, training time, input lineage, signature)."
    ),
)
def ml_trained_models(
    context: AssetExecutionContext, config: TrainConfig, ml_features: Splits
) -> Output[dict]:
    from ml import registry
    from ml.jobs.train import register_models, train_models
    from ml.models.lstm_forecaster import ForecasterConfig

    registry.configure()
    cfg = ForecasterConfig(epochs=config.forecaster_epochs, timezone=ml_features.inputs.timezone)
    trained = train_models(ml_features, forecaster_config=cfg)
    versions = register_models(trained, ml_features)
    return Output(
        versions,
        metadata={
            **{f"{n} version": MetadataValue.int(v.version) for n, v in versions.items()},
            **{f"{n} train_s": MetadataValue.float(round(t.seconds, 2)) for n, t in trained.items()},
        },
    )


@asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"python", "mlflow"},
    description=(
        "Scores each new version and the current champion on the same holdout against its reference "
        "(seasonal naive t−24 h / t−168 h, majority class, z-score rule, mean per segment) and logs "
        "the figures to the version's MLflow run."
    ),
)
def ml_evaluation(ml_features: Splits, ml_trained_models: dict) -> Output[dict]:
    from ml import registry
    from ml.jobs.evaluate import evaluate_versions

    registry.configure()
    evaluations = evaluate_versions(ml_trained_models, ml_features)
    frame = pl.DataFrame(
        [
            {
                "model": n,
                "metric": e.challenger.primary_metric,
                "challenger": e.challenger.primary,
                "reference": e.challenger.reference,
                "reference_value": e.challenger.reference_primary,
                "champion": e.champion_score,
            }
            for n, e in evaluations.items()
        ]
    )
    return Output(evaluations, metadata={"holdout": MetadataValue.md(_markdown(frame))})


@asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"python", "mlflow"},
    description=(
        "Moves each model's `champion` alias to the new version only when it beats both the reference "
        "and the current champion on the holdout; the decision and its reason are MLflow version tags."
    ),
)
def ml_champions(context: AssetExecutionContext, ml_evaluation: dict) -> Output[dict]:
    from ml import registry
    from ml.jobs.promote import promote_versions

    registry.configure()
    decisions = promote_versions(ml_evaluation)
    for name, d in decisions.items():
        context.log.info(f"{name}: {'promoted' if d.promoted else 'kept'} — {d.reason}")
    from hems.settings import get_settings

    registry.publish_summaries(get_settings().ml_champions_path, sorted(decisions))
    return Output(
        {n: d.champion_after for n, d in decisions.items()},
        metadata={n: MetadataValue.text(d.reason) for n, d in decisions.items()},
    )


@asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"python", "mlflow"},
    description=(
        "Batch predictions of the champions written to the raw store's `ai_predictions`: rolling "
        "day-ahead hourly forecasts over the holdout and for the day after the data, with the 10–90 % "
        "interval and the model version, and expected daily kWh (efficiency) per household-day."
    ),
)
def ml_predictions(
    context: AssetExecutionContext, ml_features: Splits, ml_champions: dict, stores: StoresResource
) -> MaterializeResult:
    from ml import registry
    from ml.jobs.predict import expected_daily_rows, forecast_rows, write_predictions
    from ml.models import EfficiencyRegressor, LSTMForecaster
    from ml.models.lstm_forecaster import origins_between

    registry.configure()
    raw = stores.raw_store()
    written, meta = 0, {}
    hourly = ml_features.hourly
    version = ml_champions.get(LSTMForecaster.name)
    if version is not None:
        model = registry.load_model(LSTMForecaster.name, version)
        origins = origins_between(hourly, ml_features.cutoff)
        rows = pl.concat(
            [forecast_rows(model, version, hourly, origins), forecast_rows(model, version, hourly)]
        )
        written += write_predictions(raw, rows)
        meta["forecast_rows"] = rows.height
        meta["forecaster_version"] = version
        bad = rows.filter(
            (pl.col("lower") > pl.col("predicted_value")) | (pl.col("predicted_value") > pl.col("upper"))
        )
        meta["intervals_out_of_order"] = bad.height
    else:
        context.log.warning("no champion forecaster yet: no forecasts written")
    version = ml_champions.get(EfficiencyRegressor.name)
    if version is not None:
        model = registry.load_model(EfficiencyRegressor.name, version)
        rows = expected_daily_rows(model, version, ml_features.daily_test, ml_features.inputs.timezone)
        written += write_predictions(raw, rows)
        meta["expected_daily_rows"] = rows.height
    return MaterializeResult(metadata={"dagster/row_count": written, **meta})


@asset(
    deps=["ml_predictions"],
    group_name=GROUP,
    owners=OWNERS,
    kinds={"python"},
    description=(
        "Past hourly forecasts in `ai_predictions` compared with metered load, per local day and model "
        "version (MAE, CV(RMSE), interval coverage); fills in `actual_value` on the predictions."
    ),
)
def ml_model_performance(ml_features: Splits, stores: StoresResource) -> MaterializeResult:
    from ml.jobs.predict import model_performance

    inputs = ml_features.inputs
    hourly = ml_features.hourly
    start, end = hourly["ts"].min(), hourly["ts"].max() + timedelta(days=2)
    perf = model_performance(stores.raw_store(), inputs.load, start, end, inputs.timezone)
    md = _markdown(perf) if perf.height else "no forecasts with actuals yet"
    return MaterializeResult(
        metadata={
            "dagster/row_count": perf.height,
            "performance": MetadataValue.md(md),
            "mean_cv_rmse": float(perf["cv_rmse"].mean()) if perf.height else 0.0,  # type: ignore[arg-type]
        }
    )


def _markdown(frame: pl.DataFrame) -> str:
    head = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * frame.width + "\n"
    fmt = [(f"{v:.4g}" if isinstance(v, float) else str(v)) for row in frame.iter_rows() for v in row]
    rows = [fmt[i : i + frame.width] for i in range(0, len(fmt), frame.width)]
    return head + "\n".join("| " + " | ".join(r) + " |" for r in rows)


ML_ASSETS = [
    ml_features,
    ml_trained_models,
    ml_evaluation,
    ml_champions,
    ml_predictions,
    ml_model_performance,
]

__all__ = [
    "ML_ASSETS",
    "ml_champions",
    "ml_evaluation",
    "ml_features",
    "ml_model_performance",
    "ml_predictions",
    "ml_trained_models",
]
