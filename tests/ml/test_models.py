"""Each model trains on small data, predicts sensibly, round-trips through save/load, and is scored
against its reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ml.evaluation import (
    backtest_forecaster,
    evaluate_anomaly,
    evaluate_classifier,
    evaluate_regressor,
    mean_per_segment,
)
from ml.models import AnomalyDetector, EfficiencyRegressor, LSTMForecaster, Model, PatternClassifier
from ml.models.lstm_forecaster import ForecasterConfig
from ml.models.pattern_classifier import name_centroids


@pytest.fixture(scope="module")
def forecaster(splits) -> LSTMForecaster:
    cfg = ForecasterConfig(epochs=2, units=8, batch_size=64)
    return LSTMForecaster(cfg).fit(splits.hourly, until=splits.cutoff)


def test_forecaster_gives_ordered_non_negative_intervals_for_the_next_day(
    forecaster, splits, tmp_path: Path
) -> None:
    fc = forecaster.predict(splits.hourly)
    assert fc["household_id"].n_unique() == 10 and fc.height == 10 * 24
    assert (fc["lower"] <= fc["predicted"]).all() and (fc["predicted"] <= fc["upper"]).all()
    assert (fc["lower"] >= 0).all()
    assert fc["actual"].is_null().all()  # the day after the data has not happened
    assert fc["ts"].min() > splits.hourly.filter(pl.col("kwh").is_not_null())["ts"].max()
    forecaster.save(tmp_path / "f")
    again = Model.load(tmp_path / "f")
    assert isinstance(again, LSTMForecaster)
    np.testing.assert_allclose(again.predict(splits.hourly)["predicted"], fc["predicted"], rtol=1e-5)


def test_rolling_origin_backtest_scores_model_and_seasonal_naive(forecaster, splits) -> None:
    ev, fc = backtest_forecaster(splits.hourly, splits.cutoff, model=forecaster)
    assert ev.metrics["origins"] == 3
    assert fc["origin"].n_unique() == 3 and fc["origin"].min() == splits.cutoff
    for name in ("naive_24h", "naive_168h"):
        assert {"mae", "rmse", "cv_rmse", "nmbe", "mase"} <= set(ev.extra[name])
    assert ev.reference in ("seasonal_naive_24h", "seasonal_naive_168h")
    assert ev.reference_primary == min(ev.extra["naive_24h"]["cv_rmse"], ev.extra["naive_168h"]["cv_rmse"])
    # the naive forecast is the load 24 h earlier, exactly
    row = fc.row(0, named=True)
    earlier = splits.hourly.filter(
        (pl.col("household_id") == row["household_id"]) & (pl.col("ts") == row["ts"] - pl.duration(hours=24))
    )["kwh"][0]
    assert row["naive_24"] == earlier
    assert 0 <= ev.metrics["interval_coverage"] <= 1


def test_forecaster_refuses_too_little_history(splits) -> None:
    short = splits.hourly.filter(pl.col("ts") < splits.hourly["ts"].min() + pl.duration(days=5))
    with pytest.raises(ValueError, match="complete training days"):
        LSTMForecaster(ForecasterConfig(epochs=1)).fit(short)
    with pytest.raises(ValueError, match="lookback"):
        ForecasterConfig(lookback=500)


def test_cluster_names_follow_the_documented_rules() -> None:
    flat = np.full(24, 1 / 24)
    evening = flat.copy()
    evening[17:22] += 0.1
    evening /= evening.sum()
    morning = flat.copy()
    morning[6:10] += 0.1
    morning /= morning.sum()
    night = flat.copy()
    night[[22, 23, 0, 1, 2]] += 0.1
    night /= night.sum()
    day = flat.copy()
    day[10:17] += 0.1
    day /= day.sum()
    cents = np.vstack([flat, evening, morning, night, day])
    assert name_centroids(cents, cents.mean(axis=0)) == [
        "flat",
        "evening peak",
        "morning peak",
        "night owl",
        "daytime at home",
    ]
    with pytest.raises(ValueError, match="24 shares"):
        name_centroids(np.ones((2, 5)), np.ones(5))


def test_pattern_classifier_beats_the_majority_class(splits) -> None:
    model = PatternClassifier(n_estimators=50).fit(splits.daily_train)
    assert set(model.cluster_names) <= {
        "evening peak",
        "morning peak",
        "daytime at home",
        "night owl",
        "flat",
    }
    ev = evaluate_classifier(model, splits.daily_test)
    assert ev.metrics["macro_f1"] > ev.reference_metrics["macro_f1"]
    pred = model.predict(splits.daily_test)
    assert pred["probability"].is_between(0, 1).all()


def test_anomaly_detector_finds_injected_faults_and_says_why(splits) -> None:
    model = AnomalyDetector(n_estimators=100).fit(splits.anomaly_train())
    ev = evaluate_anomaly(model, splits.anomaly_test)
    assert ev.metrics["recall"] >= 0.7 and ev.metrics["precision"] >= 0.3
    assert ev.metrics["f1"] > ev.reference_metrics["f1"]
    pred = model.predict(splits.anomaly_test)
    flagged = pred.filter(pl.col("is_anomaly"))
    assert (flagged["reasons"].str.len_chars() > 0).all()
    assert (pred.filter(~pl.col("is_anomaly"))["reasons"] == "").all()
    with pytest.raises(ValueError, match="contamination"):
        AnomalyDetector(contamination=0.7)


def test_efficiency_regressor_beats_mean_per_segment_on_unseen_homes(splits) -> None:
    train, test = splits.regressor_split()
    assert not set(train["household_id"]) & set(test["household_id"])
    model = EfficiencyRegressor(n_estimators=100).fit(train)
    ev = evaluate_regressor(model, train, test)
    assert ev.metrics["cv_rmse"] < ev.reference_metrics["cv_rmse"]
    pred = model.predict(test)
    assert np.allclose(pred["efficiency_score"], pred["expected_kwh"] / test["kwh"])


def test_efficiency_regressor_never_expects_less_for_a_bigger_fuller_home(splits) -> None:
    """Monotone constraints: more area, residents, electric heating or an EV never lower expected use."""
    train, test = splits.regressor_split()
    model = EfficiencyRegressor(n_estimators=100).fit(train)
    base = model.expected(test)
    for column, bump in (("area_m2", 40.0), ("residents", 2), ("electric_heating", True), ("has_ev", True)):
        bumped = test.with_columns(
            (pl.col(column) + bump) if not isinstance(bump, bool) else pl.lit(bump).alias(column)
        )
        assert (model.expected(bumped) >= base - 1e-9).all(), column
    assert model.params()["objective"] == "reg:tweedie"


def test_mean_per_segment_reference_by_hand() -> None:
    train = pl.DataFrame(
        {
            "building_type": ["apartment", "apartment", "detached"],
            "residents": [2, 2, 3],
            "kwh": [8.0, 10.0, 20.0],
        }
    )
    test = pl.DataFrame(
        {"building_type": ["apartment", "detached", "detached"], "residents": [2, 3, 1], "kwh": [0.0] * 3}
    )
    # apartment/2 → 9; detached/3 → 20; detached/1 unseen → overall mean 38/3
    assert mean_per_segment(train, test).tolist() == pytest.approx([9.0, 20.0, 38 / 3])


def test_efficiency_regressor_wins_on_a_demo_sized_fleet_over_several_household_splits() -> None:
    """The demo's 20 homes × 21 November days: an unconstrained tree memorized homes by area and
    lost to mean-per-segment there (so the demo had no regressor champion).  Over eight random
    household splits (including the Dagster job's default seed 0) the model must win every one."""
    from datetime import date

    from ingest.simulator import Fleet, simulate
    from ml.data import inputs_from_frames
    from ml.jobs.splits import make_splits

    fleet = Fleet.generate(20, seed=42, timezone="Asia/Seoul")
    sim = simulate(fleet, start=date(2025, 11, 5), days=21, freq_minutes=15, env_freq_minutes=60)
    inputs = inputs_from_frames(sim.readings, sim.weather, fleet.households, source="simulator")
    losses = []
    for seed in range(8):
        train, test = make_splits(inputs, holdout_days=3, seed=seed).regressor_split()
        ev = evaluate_regressor(EfficiencyRegressor().fit(train), train, test)
        if ev.metrics["cv_rmse"] >= ev.reference_metrics["cv_rmse"]:
            losses.append((seed, round(ev.metrics["cv_rmse"], 1), round(ev.reference_metrics["cv_rmse"], 1)))
    assert not losses, f"lost to mean-per-segment on splits (seed, model, reference): {losses}"
