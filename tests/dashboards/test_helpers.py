"""The dashboards' small pure helpers: formatting, translations, scores, page lookup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from dashboards import formatting as fmt
from dashboards.apptest import page_test
from dashboards.i18n import LANGUAGES, TEXT, t
from dashboards.metrics import daily_accuracy, forecast_scores, robust_deviation


def test_kwh_krw_co2_and_missing_values() -> None:
    assert fmt.kwh(1234.56) == "1,234.6 kWh"
    assert float(fmt.kwh(382.2).split()[0]) == 382.2
    assert fmt.krw(12_345.5) == "₩12,346"
    assert fmt.krw(-0.4) == "₩0"
    assert fmt.krw(-1200) == "-₩1,200"
    assert fmt.co2(2.25, 2) == "2.25 kgCO₂e"
    assert fmt.pct(0.1234) == "12.3%"
    assert fmt.points(1200) == "1,200 P"
    for f in (fmt.kwh, fmt.krw, fmt.co2, fmt.pct, fmt.points, fmt.number):
        assert f(None) == fmt.MISSING
        assert f(float("nan")) == fmt.MISSING


def test_every_label_has_both_languages() -> None:
    for key, entry in TEXT.items():
        assert set(entry) == set(LANGUAGES), key
        assert all(v.strip() for v in entry.values()), key


def test_unknown_label_fails_loudly_unless_defaulted() -> None:
    with pytest.raises(KeyError, match="no label 'nope'"):
        t("nope")
    assert t("nope", default="fallback") == "fallback"
    assert t("metric.day_kwh", day="2025-07-01") == "Day 2025-07-01"


def test_unknown_page_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown page 'billing'"):
        page_test("billing")


def _predictions(errors: list[float]) -> pl.DataFrame:
    start = datetime(2025, 7, 1, tzinfo=UTC)
    n = len(errors)
    actual = [1.0] * n
    return pl.DataFrame(
        {
            "ts": [start + timedelta(hours=i) for i in range(n)],
            "household_id": ["h"] * n,
            "prediction_type": ["hourly_load"] * n,
            "model_version": ["1"] * n,
            "predicted_value": [a + e for a, e in zip(actual, errors, strict=True)],
            "lower": [a + e - 0.5 for a, e in zip(actual, errors, strict=True)],
            "upper": [a + e + 0.5 for a, e in zip(actual, errors, strict=True)],
            "actual_value": actual,
        }
    )


def test_forecast_scores() -> None:
    scores = forecast_scores(_predictions([0.1, -0.1, 1.0, 0.0]))
    assert scores["mae"] == pytest.approx(0.3)
    assert scores["coverage"] == pytest.approx(0.75)  # the 1.0 miss is outside its ±0.5 band
    assert scores["nmbe"] == pytest.approx(0.25)
    assert forecast_scores(_predictions([]))["n"] == 0


def test_daily_accuracy_scores_the_seasonal_naive_reference() -> None:
    frame = _predictions([0.2] * 48)
    acc = daily_accuracy(frame, "UTC")
    naive = acc.filter(pl.col("model").str.starts_with("seasonal naive"))
    model = acc.filter(pl.col("model") == "1")
    assert naive["cv_rmse"].to_list() == [0.0]  # constant actuals: t−24 h is perfect on day 2
    assert model["cv_rmse"].to_list() == pytest.approx([0.2, 0.2])


def test_robust_deviation_ranks_the_feature_that_moved() -> None:
    usual = pl.DataFrame({"a": [10.0, 11.0, 9.0, 10.0], "b": [1.0, 1.0, 1.0, 1.0]})
    out = robust_deviation({"a": 10.5, "b": 5.0}, usual, ["a", "b"])
    assert out["feature"].to_list() == ["b", "a"]
    assert out["robust_z"][0] == 10.0
