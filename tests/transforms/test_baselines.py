"""Baselines: KPX CBL by hand, cashback months, CalTRACK equal to statsmodels and its verdicts."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
import statsmodels.api as sm
from polars.testing import assert_frame_equal

from transforms.baselines import (
    CaltrackConfig,
    caltrack_savings,
    cashback_baseline,
    cbl_eligible_days,
    cbl_hourly,
    dr_event_savings,
    fit_caltrack_daily,
    monthly_kwh,
)

EVENT = date(2025, 6, 20)  # a Friday; 2025-06-06 (Memorial Day) and 06-03 (election day) are holidays
EARLIER_EVENT = date(2025, 6, 12)
# the level of every eligible weekday, newest first: 19, 18, 17, 16, 13, 11, 10, 9, 5, 4 June
LEVELS = {
    date(2025, 6, 19): 10.0,
    date(2025, 6, 18): 2.0,
    date(2025, 6, 17): 7.0,
    date(2025, 6, 16): 4.0,
    date(2025, 6, 13): 9.0,
    date(2025, 6, 11): 1.0,
    date(2025, 6, 10): 3.0,
    date(2025, 6, 9): 5.0,
    date(2025, 6, 5): 6.0,
    date(2025, 6, 4): 8.0,
}


def _hourly(households: dict[str, dict[date, float]], first: date = date(2025, 5, 20)) -> pl.DataFrame:
    """kWh = the day's level + 0.1 × hour; days not listed (weekends, holidays, events) use 100."""
    rows = []
    for hh, levels in households.items():
        d = first
        while d <= EVENT:
            level = 0.0 if d == EVENT else levels.get(d, 100.0)
            rows += [(hh, d, h, level + 0.1 * h) for h in range(24)]
            d += timedelta(days=1)
    return pl.DataFrame(rows, schema=["household_id", "date", "hour", "kwh"], orient="row")


def test_eligible_days_skip_weekends_holidays_and_earlier_events() -> None:
    days = cbl_eligible_days(EVENT, [EARLIER_EVENT], lookback_days=20)
    assert days[:10] == list(LEVELS)
    assert date(2025, 6, 6) not in days and date(2025, 6, 3) not in days  # public holidays
    assert EARLIER_EVENT not in days and date(2025, 6, 14) not in days  # event day, Saturday


def test_cbl_mid_6_10_and_max_4_5_by_hand() -> None:
    hourly = _hourly({"hh-a": LEVELS})
    mid = cbl_hourly(hourly, EVENT, "mid_6_10", [EARLIER_EVENT])
    # levels 1..10: drop 1, 2 and 9, 10 → mean(3..8) = 5.5
    assert mid["cbl_kwh"].to_list() == pytest.approx([5.5 + 0.1 * h for h in range(24)])
    assert mid["qualified"].all() and mid["days_used"].unique().to_list() == [10]
    mx = cbl_hourly(hourly, EVENT, "max_4_5", [EARLIER_EVENT])
    # latest 5: 10, 2, 7, 4, 9 → drop 2 → mean(10, 7, 4, 9) = 7.5
    assert mx["cbl_kwh"].to_list() == pytest.approx([7.5 + 0.1 * h for h in range(24)])
    # without the earlier event excluded, 12 June (level 100) replaces 4 June in Mid(6/10):
    # 1, 2, 3, 4, 5, 6, 7, 9, 10, 100 → drop 1, 2 and 10, 100 → mean(3, 4, 5, 6, 7, 9)
    assert cbl_hourly(hourly, EVENT, "mid_6_10")["cbl_kwh"][0] == pytest.approx(34 / 6)


def test_cbl_skips_incomplete_days_and_disqualifies_short_history() -> None:
    hourly = pl.concat([_hourly({"hh-a": LEVELS}), _hourly({"hh-b": LEVELS}, first=date(2025, 6, 15))])
    # hh-a misses hour 5 on 19 June: that day is skipped, 18, 17, 16, 13 and 11 June are Max(4/5)'s
    hourly = hourly.filter(
        ~((pl.col("household_id") == "hh-a") & (pl.col("date") == date(2025, 6, 19)) & (pl.col("hour") == 5))
    )
    out = cbl_hourly(hourly, EVENT, "max_4_5", [EARLIER_EVENT], lookback_days=10)
    a = out.filter(pl.col("household_id") == "hh-a")
    assert a["cbl_kwh"][0] == pytest.approx((2 + 7 + 4 + 9) / 4)
    b = out.filter(pl.col("household_id") == "hh-b")
    assert not b["qualified"].any()
    assert "Max(4/5) needs 5 eligible weekdays" in b["reason"][0] and "found 4" in b["reason"][0]


def test_dr_event_savings_sum_event_hours() -> None:
    hourly = _hourly({"hh-a": LEVELS})
    out = dr_event_savings(hourly, "dr-2025-06-20", EVENT, range(14, 18), "mid_6_10", [EARLIER_EVENT])
    row = out.row(0, named=True)
    assert row["period"] == "dr-2025-06-20" and row["qualified"]
    assert row["baseline_kwh"] == pytest.approx(sum(5.5 + 0.1 * h for h in range(14, 18)))
    assert row["actual_kwh"] == pytest.approx(sum(0.1 * h for h in range(14, 18)))


def _monthly(values: dict[str, float], complete: bool = True) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "household_id": "hh",
            "month": [date.fromisoformat(m + "-01") for m in values],
            "kwh": list(values.values()),
            "complete": complete,
        }
    )


def test_cashback_baseline_two_years_one_year_and_none() -> None:
    frame = pl.concat(
        [
            _monthly(
                {"2023-07": 300.0, "2024-07": 340.0, "2025-07": 290.0, "2025-08": 310.0, "2024-08": 400.0}
            ),
            _monthly({"2024-09": 999.0}, complete=False),
            _monthly({"2025-09": 250.0}),
        ]
    )
    out = cashback_baseline(frame, ["2025-07", "2025-08", "2025-09"])
    jul, aug, sep = out.rows(named=True)
    assert (jul["baseline_kwh"], jul["baseline_years"], jul["qualified"]) == (320.0, 2, True)
    assert (aug["baseline_kwh"], aug["baseline_years"], aug["actual_kwh"]) == (400.0, 1, 310.0)
    assert not sep["qualified"]  # September 2024 was not completely metered: it does not count
    assert sep["reason"] == "no complete 09 in the previous two years"


def test_monthly_kwh_marks_incomplete_months() -> None:
    days = [date(2025, 2, 1) + timedelta(days=i) for i in range(28)] + [date(2025, 3, 1)]
    out = monthly_kwh(pl.DataFrame({"household_id": "hh", "date": days, "kwh": 1.0}))
    assert out["complete"].to_list() == [True, False]
    assert out["kwh"].to_list() == [28.0, 1.0]


# --- CalTRACK -------------------------------------------------------------------------------
START = date(2025, 1, 1)


def _daily(
    households: dict[str, tuple[float, float, float, float, float, float]],
    days: int = 365 + 90,
    seed: int = 3,
) -> pl.DataFrame:
    """Households (μ, βH, Th, βC, Tc, noise σ) under one seasonal temperature series."""
    rng = np.random.default_rng(seed)
    first = START - timedelta(days=365)
    dates = [first + timedelta(days=i) for i in range(days)]
    doy = np.arange(days)
    temp = 13 - 14 * np.cos(2 * np.pi * (doy - 15) / 365) + rng.normal(0, 3, days)
    frames = []
    for hh, (mu, bh, th, bc, tc, sigma) in households.items():
        kwh = mu + bh * np.maximum(th - temp, 0) + bc * np.maximum(temp - tc, 0) + rng.normal(0, sigma, days)
        frames.append(pl.DataFrame({"household_id": hh, "date": dates, "kwh": kwh, "temperature_c": temp}))
    return pl.concat(frames)


def test_caltrack_fit_equals_statsmodels_ols_at_the_chosen_balance_points() -> None:
    daily = _daily(
        {
            "both": (8, 0.3, 16, 0.5, 23, 1.0),
            "heat": (10, 0.4, 17, 0, 22, 1.0),
            "cool": (9, 0, 15, 0.6, 24, 1.0),
            "flat": (11, 0, 15, 0, 23, 1.0),
        }
    )
    model = fit_caltrack_daily(daily, START)
    types = dict(zip(model["household_id"], model["model_type"], strict=True))
    assert types == {"both": "hdd_cdd", "heat": "hdd_only", "cool": "cdd_only", "flat": "intercept_only"}
    for row in model.iter_rows(named=True):
        base = daily.filter((pl.col("household_id") == row["household_id"]) & (pl.col("date") < START))
        t, y = base["temperature_c"].to_numpy(), base["kwh"].to_numpy()
        cols = [np.ones_like(t)]
        if row["beta_hdd"] > 0:
            cols.append(np.maximum(row["heating_balance_point_c"] - t, 0))
        if row["beta_cdd"] > 0:
            cols.append(np.maximum(t - row["cooling_balance_point_c"], 0))
        ols = sm.OLS(y, np.column_stack(cols)).fit()
        ours = [row["intercept"]] + [row[b] for b in ("beta_hdd", "beta_cdd") if row[b] > 0]
        assert ours == pytest.approx(list(ols.params), rel=1e-9)
        assert row["r_squared_adj"] == pytest.approx(ols.rsquared_adj if len(cols) > 1 else 0.0, abs=1e-9)
        assert row["cvrmse"] == pytest.approx(np.sqrt(ols.ssr / ols.df_resid) / y.mean(), rel=1e-9)
        assert abs(row["nmbe"]) < 1e-9  # OLS with an intercept: residuals sum to 0 in-sample
        assert row["qualified"] and row["n_days"] == 365
    both = model.filter(pl.col("household_id") == "both").row(0, named=True)
    assert both["heating_balance_point_c"] == pytest.approx(16, abs=1.5)
    assert both["cooling_balance_point_c"] == pytest.approx(23, abs=1.5)


def test_caltrack_never_keeps_a_negative_coefficient() -> None:
    # usage falls as it gets colder: an HDD term would need βH < 0, so the model stays flat
    model = fit_caltrack_daily(_daily({"odd": (12, -0.3, 18, 0, 25, 0.5)}), START)
    row = model.row(0, named=True)
    assert row["model_type"] in ("intercept_only", "cdd_only") and row["beta_hdd"] == 0
    assert row["beta_cdd"] >= 0


def test_caltrack_savings_recover_a_known_reduction() -> None:
    daily = _daily({"hh": (8, 0.3, 16, 0.5, 23, 0.3)}).with_columns(
        kwh=pl.when(pl.col("date") >= START).then(pl.col("kwh") * 0.85).otherwise(pl.col("kwh"))
    )
    out = caltrack_savings(fit_caltrack_daily(daily, START), daily, START)
    assert out["savings_pct"][0] == pytest.approx(15, abs=1)
    assert out["reporting_days"][0] == 90


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda d: d.filter(pl.col("date") >= START - timedelta(days=20)), "too few days: 20 metered days"),
        (
            lambda d: d.filter(
                (pl.col("date") < START - timedelta(days=300))
                | (pl.col("date") >= START - timedelta(days=250))
            ),
            "insufficient data: 86.3% of the 365 baseline days metered, at least 90.0% needed",
        ),
        (
            lambda d: d.with_columns(
                kwh=pl.col("kwh") * 0 + np.random.default_rng(1).gamma(0.5, 4, d.height)
            ),
            "poor fit: CV(RMSE)",
        ),
    ],
)
def test_caltrack_disqualification_reasons(mangle, reason: str) -> None:
    daily = mangle(_daily({"hh": (8, 0.3, 16, 0.5, 23, 0.5)}))
    model = fit_caltrack_daily(daily, START)
    assert not model["qualified"][0]
    assert reason in model["reason"][0]
    savings = caltrack_savings(model, daily, START)
    assert not savings["qualified"][0] and reason in savings["reason"][0]


def test_caltrack_thresholds_are_configurable() -> None:
    daily = _daily({"hh": (8, 0.3, 16, 0.5, 23, 0.5)}).filter(pl.col("date") >= START - timedelta(days=200))
    assert not fit_caltrack_daily(daily, START)["qualified"][0]
    relaxed = CaltrackConfig(baseline_days=200, min_coverage=0.9)
    assert fit_caltrack_daily(daily, START, relaxed)["qualified"][0]
    with pytest.raises(ValueError, match="strictly increasing"):
        CaltrackConfig(balance_points_c=(20.0, 10.0))


def test_caltrack_per_household_reporting_start_and_bad_input() -> None:
    daily = _daily({"a": (8, 0.3, 16, 0.5, 23, 0.5), "b": (9, 0.2, 15, 0.4, 24, 0.5)})
    starts = pl.DataFrame(
        {"household_id": ["a", "b"], "reporting_start": [START, START - timedelta(days=30)]}
    )
    model = fit_caltrack_daily(daily, starts)
    assert (
        model.filter(pl.col("household_id") == "b")["n_days"][0] == 335
    )  # the data begin 365 days before START
    with pytest.raises(ValueError, match="lacks column"):
        fit_caltrack_daily(daily.drop("temperature_c"), START)
    with pytest.raises(ValueError, match="lacks 1 household"):
        fit_caltrack_daily(daily, starts.head(1))


def test_results_do_not_depend_on_row_order_or_id_type() -> None:
    """Rows grouped or shuffled, ids as strings or categoricals: the same models and savings."""
    daily = _daily(
        {"b": (8, 0.3, 15, 0.5, 22, 0.4), "a": (12, 0.0, 15, 0.8, 24, 0.6), "c": (5, 0.2, 16, 0, 24, 0.3)}
    )
    reference = fit_caltrack_daily(daily, START).sort("household_id")
    shuffled = daily.sample(fraction=1.0, shuffle=True, seed=1)
    categorical = daily.with_columns(pl.col("household_id").cast(pl.Categorical))
    for variant in (shuffled, categorical):
        fitted = fit_caltrack_daily(variant, START).with_columns(pl.col("household_id").cast(pl.String))
        # same model choice and balance points; coefficients equal up to summation order
        assert_frame_equal(fitted.sort("household_id"), reference, check_exact=False, rel_tol=1e-9)
    savings = caltrack_savings(reference, daily, START).sort("household_id")
    assert_frame_equal(
        caltrack_savings(reference, shuffled, START).sort("household_id"),
        savings,
        check_exact=False,
        rel_tol=1e-9,
    )
