"""Training time of the four models and forecast skill, one run: ``python benchmarks/ml_training.py``.

Simulates ``--households`` homes × ``--days`` days (15-minute readings), builds the features,
trains the four models on everything before the holdout (the last ``--holdout-days`` days; the
regressor holds out a fifth of the homes instead) and scores each against its reference on the
holdout, the forecaster in a rolling-origin backtest against seasonal naive t−24 h and t−168 h.
The anomaly detector is scored against faults injected into a copy of the holdout readings.

Targets (issue 6): CV(RMSE) at least 15 % lower than the better seasonal-naive reference, hourly
CV(RMSE) ≤ 30 % on the aggregate of households, all four trained in ≤ 10 minutes on 2 cores.
Simulation and feature building are timed separately from training.  Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import polars as pl

from ingest.simulator import Fleet, simulate
from ingest.simulator.faults import FaultPlan, inject_faults
from ml.data import inputs_from_frames
from ml.evaluation import backtest_forecaster
from ml.jobs.evaluate import evaluate_model
from ml.jobs.splits import labelled_anomaly_set, make_splits
from ml.jobs.train import train_models
from ml.models import LSTMForecaster
from ml.models.lstm_forecaster import ForecasterConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--households", type=int, default=100)
    ap.add_argument("--days", type=int, default=120)
    ap.add_argument("--start", default="2025-05-01", help="first simulated local day")
    ap.add_argument("--holdout-days", type=int, default=14)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    load_start = os.getloadavg()[0]
    t = time.perf_counter()
    fleet = Fleet.generate(args.households, seed=args.seed, timezone="Asia/Seoul")
    sim = simulate(
        fleet, start=date.fromisoformat(args.start), days=args.days, freq_minutes=15, env_freq_minutes=60
    )
    simulate_s = time.perf_counter() - t

    t = time.perf_counter()
    inputs = inputs_from_frames(sim.readings, sim.weather, fleet.households, source="simulator")
    base = make_splits(inputs, args.holdout_days, seed=args.seed)
    holdout = sim.readings.filter(pl.col("ts") >= base.cutoff)
    plan = FaultPlan(
        gaps=3 * args.holdout_days, spikes=3 * args.holdout_days, counter_resets=args.holdout_days
    )
    injected = inject_faults(holdout, plan, seed=args.seed)
    splits = make_splits(
        inputs, args.holdout_days, anomaly_test=labelled_anomaly_set(injected.readings, injected.log, inputs)
    )
    features_s = time.perf_counter() - t

    cfg = ForecasterConfig(epochs=args.epochs, threads=2)
    trained = train_models(splits, forecaster_config=cfg)
    train_s = {name: round(tr.seconds, 1) for name, tr in trained.items()}

    evaluations = {name: evaluate_model(tr.model, splits) for name, tr in trained.items()}
    forecaster = trained[LSTMForecaster.name].model
    assert isinstance(forecaster, LSTMForecaster)
    persistence, _ = backtest_forecaster(
        splits.hourly, splits.cutoff, model=forecaster, weather="persistence"
    )

    fc = evaluations[LSTMForecaster.name]
    n24, n168 = fc.extra["naive_24h"], fc.extra["naive_168h"]
    best_naive = min(n24["cv_rmse"], n168["cv_rmse"])
    best_naive_agg = min(n24["aggregate_cv_rmse"], n168["aggregate_cv_rmse"])
    total_train = sum(tr.seconds for tr in trained.values())

    def r(x: float) -> float:
        return round(float(x), 3)

    result = {
        "benchmark": "ml_training",
        "households": args.households,
        "days": args.days,
        "first_day": args.start,
        "holdout_days": args.holdout_days,
        "cpu_cores": os.cpu_count(),
        "load_avg_start": round(load_start, 2),
        "load_avg_end": round(os.getloadavg()[0], 2),
        "simulate_s": round(simulate_s, 1),
        "features_s": round(features_s, 1),
        "train_s": train_s,
        "train_total_s": round(total_train, 1),
        "forecaster_epochs_run": len(forecaster.history.get("loss", [])),
        "forecast": {
            "household_cv_rmse": r(fc.metrics["cv_rmse"]),
            "household_mase": r(fc.metrics["mase"]),
            "household_nmbe": r(fc.metrics["nmbe"]),
            "aggregate_cv_rmse": r(fc.metrics["aggregate_cv_rmse"]),
            "aggregate_nmbe": r(fc.metrics["aggregate_nmbe"]),
            "interval_coverage_10_90": r(fc.metrics["interval_coverage"]),
            "naive_24h": {k: r(n24[k]) for k in ("cv_rmse", "mase", "aggregate_cv_rmse")},
            "naive_168h": {k: r(n168[k]) for k in ("cv_rmse", "mase", "aggregate_cv_rmse")},
            "skill_household": r(1 - fc.metrics["cv_rmse"] / best_naive),
            "skill_aggregate": r(1 - fc.metrics["aggregate_cv_rmse"] / best_naive_agg),
            "persistence_weather_aggregate_cv_rmse": r(persistence.metrics["aggregate_cv_rmse"]),
            "persistence_weather_skill_aggregate": r(
                1 - persistence.metrics["aggregate_cv_rmse"] / best_naive_agg
            ),
        },
        "classifier": {
            "macro_f1": r(evaluations["hems-usage-pattern-classifier"].primary),
            "majority_macro_f1": r(evaluations["hems-usage-pattern-classifier"].reference_primary),
        },
        "anomaly": {
            k: r(evaluations["hems-anomaly-detector"].metrics[k]) for k in ("precision", "recall", "f1")
        }
        | {"reference_f1": r(evaluations["hems-anomaly-detector"].reference_primary)},
        "regressor": {
            "cv_rmse": r(evaluations["hems-efficiency-regressor"].primary),
            "mean_per_segment_cv_rmse": r(evaluations["hems-efficiency-regressor"].reference_primary),
        },
    }
    result["targets"] = {
        "skill_ge_15pct_household": result["forecast"]["skill_household"] >= 0.15,
        "skill_ge_15pct_aggregate": result["forecast"]["skill_aggregate"] >= 0.15,
        "aggregate_cv_rmse_le_30": result["forecast"]["aggregate_cv_rmse"] <= 30.0,
        "train_le_600s": total_train <= 600.0,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
