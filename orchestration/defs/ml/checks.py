"""Asset checks of the ML assets: enough data in, every model against its reference, sane output."""

from dagster import AssetCheckResult, AssetCheckSeverity, asset_check

from ml.jobs.splits import Splits
from orchestration.defs.ml.assets import ml_evaluation, ml_features

#: above this share of missing hourly kWh the features are not worth training on
MAX_MISSING_SHARE = 0.2


@asset_check(
    asset=ml_features, description="Hourly load is mostly present and the holdout has faults to find."
)
def ml_features_complete(ml_features: Splits) -> AssetCheckResult:
    missing = float(ml_features.hourly["kwh"].is_null().mean())  # type: ignore[arg-type]
    faults = 0 if ml_features.anomaly_test is None else int(ml_features.anomaly_test["is_fault"].sum())
    return AssetCheckResult(
        passed=missing <= MAX_MISSING_SHARE and faults > 0,
        severity=AssetCheckSeverity.ERROR,
        metadata={"missing_hourly_kwh_share": missing, "labelled_fault_hours": faults},
    )


@asset_check(
    asset=ml_evaluation,
    description="Each new version beats its reference on the holdout (warns; promotion refuses anyway).",
)
def ml_models_beat_references(ml_evaluation: dict) -> AssetCheckResult:
    losers = [n for n, e in ml_evaluation.items() if not e.challenger.beats_reference()]
    return AssetCheckResult(
        passed=not losers,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "not_beating_reference": ", ".join(losers) or "none",
            **{f"{n} {e.challenger.primary_metric}": e.challenger.primary for n, e in ml_evaluation.items()},
            **{f"{n} reference": e.challenger.reference_primary for n, e in ml_evaluation.items()},
        },
    )


ML_CHECKS = [ml_features_complete, ml_models_beat_references]

__all__ = ["ML_CHECKS", "ml_features_complete", "ml_models_beat_references"]
