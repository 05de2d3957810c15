"""CalTRACK daily on simulated Korean households recovers a known reduction within ±2 points.

16 simulated homes (ingest.simulator, 1-minute household model, regional weather) over a
365-day baseline and a 120-day reporting period. From the reporting start every home uses 10 %
less; the fleet's estimated savings (Σ savings / Σ counterfactual, the portfolio figure CalTRACK
is designed for) must be 10 % ± 2 points, and with no reduction 0 % ± 2 points (placebo).
"""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from ingest.simulator import Fleet, simulate
from transforms.baselines import caltrack_savings, fit_caltrack_daily

FIRST = date(2024, 1, 1)
REPORTING_START = date(2024, 12, 31)  # 365 baseline days
DAYS = 365 + 120


@pytest.fixture(scope="module")
def daily() -> pl.DataFrame:
    """Daily metered import per household with its region's local daily mean temperature."""
    fleet = Fleet.generate(16, seed=11, timezone="Asia/Seoul")
    sim = simulate(fleet, FIRST, DAYS, freq_minutes=60)
    temperature = (
        sim.weather.with_columns(date=pl.col("ts").dt.convert_time_zone("Asia/Seoul").dt.date())
        .group_by("region", "date")
        .agg(temperature_c=pl.col("temperature").mean())
    )
    return (
        sim.truth.join(fleet.households.select("household_id", "region"), on="household_id")
        .join(temperature, on=["region", "date"])
        .select("household_id", "date", kwh=pl.col("import_kwh"), temperature_c="temperature_c")
    )


def _fleet_savings_pct(daily: pl.DataFrame, reduction: float) -> tuple[float, pl.DataFrame]:
    reduced = daily.with_columns(
        kwh=pl.when(pl.col("date") >= REPORTING_START)
        .then(pl.col("kwh") * (1 - reduction))
        .otherwise(pl.col("kwh"))
    )
    model = fit_caltrack_daily(reduced, REPORTING_START)
    savings = caltrack_savings(model, reduced, REPORTING_START)
    total = savings.select(pl.col("savings_kwh").sum() / pl.col("counterfactual_kwh").sum() * 100).item()
    return total, model


def test_ten_percent_reduction_is_recovered_within_two_points(daily: pl.DataFrame) -> None:
    estimated, model = _fleet_savings_pct(daily, 0.10)
    assert estimated == pytest.approx(10.0, abs=2.0)
    assert model["qualified"].all(), model.filter(~pl.col("qualified"))["reason"].to_list()
    assert (model["model_type"] != "intercept_only").sum() >= 12  # weather matters for most homes


def test_no_reduction_shows_no_savings(daily: pl.DataFrame) -> None:
    estimated, _ = _fleet_savings_pct(daily, 0.0)
    assert estimated == pytest.approx(0.0, abs=2.0)
