"""Metric definitions against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from ml.metrics import (
    cv_rmse,
    forecast_metrics,
    mae,
    mase,
    nmbe,
    precision_recall,
    rmse,
    seasonal_naive_scale,
)

ACTUAL = [1.0, 2.0, 3.0, 4.0]
PRED = [2.0, 2.0, 2.0, 2.0]


def test_forecast_metrics_match_hand_computation() -> None:
    # errors a − p = −1, 0, 1, 2; mean actual 2.5
    assert mae(ACTUAL, PRED) == pytest.approx(1.0)
    assert rmse(ACTUAL, PRED) == pytest.approx(math.sqrt(6 / 4))
    assert cv_rmse(ACTUAL, PRED) == pytest.approx(100 * math.sqrt(1.5) / 2.5)
    assert nmbe(ACTUAL, PRED) == pytest.approx(100 * 2 / (4 * 2.5))  # positive: under-prediction
    assert mase(ACTUAL, PRED, scale=0.5) == pytest.approx(2.0)
    assert forecast_metrics(ACTUAL, PRED, 0.5)["mase"] == pytest.approx(2.0)


def test_missing_pairs_are_dropped_and_empty_input_is_an_error() -> None:
    assert mae([1.0, float("nan"), 3.0], [1.0, 5.0, float("nan")]) == 0.0
    with pytest.raises(ValueError, match="no pair"):
        mae([float("nan")], [1.0])
    with pytest.raises(ValueError, match="differ in length"):
        rmse([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="mean actual is 0"):
        cv_rmse([0.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="positive"):
        mase(ACTUAL, PRED, scale=0.0)


def test_seasonal_naive_scale_is_the_in_sample_mae_of_the_lagged_series() -> None:
    series = [1.0, 2.0, 4.0, 7.0]  # season 2: |4 − 1|, |7 − 2| → mean 4
    assert seasonal_naive_scale(series, season=2) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="too short"):
        seasonal_naive_scale([1.0], season=24)


def test_precision_recall_against_hand_counts() -> None:
    truth = [True, True, False, False, True]
    flags = [True, False, True, False, True]  # tp 2, fp 1, fn 1
    out = precision_recall(truth, flags)
    assert out["precision"] == pytest.approx(2 / 3)
    assert out["recall"] == pytest.approx(2 / 3)
    assert out["f1"] == pytest.approx(2 / 3)
    assert precision_recall([False], [False])["f1"] == 0.0
