"""The Great Expectations suites accept good data and name what is wrong with bad data."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest

from orchestration.defs.quality.suites import validate_daily, validate_raw

TODAY = date(2025, 7, 20)


def _daily(n: int = 20) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "household_id": [f"hh-{i % 4}" for i in range(n)],
            "date": [date(2025, 7, 1) + timedelta(days=i // 4) for i in range(n)],
            "total_consumption_kwh": [10.0 + i % 3 for i in range(n)],
            "grid_consumption_kwh": [9.0 + i % 3 for i in range(n)],
            "band_gap_kwh": [0.0] * n,
            "cost_krw": [1500.0] * n,
            "carbon_emission_kg": [4.0] * n,
            "interval_count": [1440] * n,
        }
    )


def _profile(n: int = 40) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "household_id": [f"hh-{i % 4}" for i in range(n)],
            "local_date": [date(2025, 7, 1) + timedelta(days=i // 4) for i in range(n)],
            "meter_readings": [1440] * n,
            "interval_minutes": [1.0] * n,
            "min_voltage_v": [215.0] * n,
            "max_voltage_v": [228.0] * n,
            "min_power_w": [40.0] * n,
            "backwards_steps": [0] * n,
            "completeness": [1.0] * n,
            "devices_seen": [3] * n,
            "devices_expected": [3] * n,
        }
    )


def test_good_daily_usage_passes() -> None:
    result = validate_daily(_daily())
    assert result.success, result.failed
    assert result.evaluated >= 10


@pytest.mark.parametrize(
    ("change", "column"),
    [
        (
            pl.when(pl.int_range(pl.len()) == 3).then(-10.0).otherwise(pl.col("cost_krw")).alias("cost_krw"),
            "cost_krw",
        ),
        (
            pl.when(pl.int_range(pl.len()) == 0)
            .then(12_000.0)
            .otherwise(pl.col("total_consumption_kwh"))
            .alias("total_consumption_kwh"),
            "total_consumption_kwh",
        ),
        (
            pl.when(pl.int_range(pl.len()) == 5)
            .then(0.5)
            .otherwise(pl.col("band_gap_kwh"))
            .alias("band_gap_kwh"),
            "band_gap_kwh",
        ),
        (pl.lit(None, dtype=pl.Float64).alias("carbon_emission_kg"), "carbon_emission_kg"),
    ],
)
def test_bad_daily_usage_fails_naming_the_column(change: pl.Expr, column: str) -> None:
    result = validate_daily(_daily().with_columns(change))
    assert not result.success
    assert column in {f["column"] for f in result.failed}
    assert any(column in line for line in result.metadata()["failures"])


def test_duplicate_household_day_fails() -> None:
    frame = _daily()
    result = validate_daily(pl.concat([frame, frame.head(1)]))
    assert not result.success
    assert any(f["expectation"] == "expect_compound_columns_to_be_unique" for f in result.failed)


def test_good_raw_profile_passes_and_bad_completeness_fails() -> None:
    good = validate_raw(_profile(), TODAY)
    assert good.success, good.failed
    # a fifth of household-days at half their readings: more than the 5 % the suite tolerates
    bad = _profile().with_columns(
        pl.when(pl.int_range(pl.len()) % 5 == 0)
        .then(0.5)
        .otherwise(pl.col("completeness"))
        .alias("completeness")
    )
    result = validate_raw(bad, TODAY)
    assert not result.success
    assert [f["column"] for f in result.failed] == ["completeness"]


def test_today_is_not_judged_for_completeness() -> None:
    partial_today = _profile(4).with_columns(
        pl.lit(TODAY).alias("local_date"), pl.lit(0.3).alias("completeness")
    )
    result = validate_raw(pl.concat([_profile(), partial_today]), TODAY)
    assert result.success, result.failed
    assert result.rows == 40


def test_devices_missing_from_the_inventory_report_fail() -> None:
    bad = _profile().with_columns(pl.lit(1).alias("devices_seen"))
    result = validate_raw(bad, TODAY)
    assert not result.success
    assert "devices_seen" in {f["column"] for f in result.failed}
