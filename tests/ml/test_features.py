"""Hourly load from registers, calendar with Korean holidays, daily shapes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from ml.features import (
    SHAPE_COLUMNS,
    hourly_features,
    hourly_load,
    hourly_meter_stats,
    with_calendar,
)


def test_hourly_load_reproduces_the_simulator_truth(inputs, simulation) -> None:
    daily = inputs.daily.select("household_id", pl.col("local_date").alias("date"), "kwh")
    truth = simulation.truth.select("household_id", "date", "import_kwh")
    joined = daily.join(truth, on=["household_id", "date"])
    assert joined.height >= 10 * 15  # every complete household-day
    assert (joined["kwh"] - joined["import_kwh"]).abs().max() < 1e-6


def _meter(rows: list[tuple[datetime, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ts": [r[0] for r in rows],
            "household_id": ["h1"] * len(rows),
            "device_type": ["smart_meter"] * len(rows),
            "energy_import_kwh": [r[1] for r in rows],
            "power_w": [100.0] * len(rows),
        },
        schema_overrides={"ts": pl.Datetime("ms", "UTC")},
    )


def test_gaps_resets_and_spikes_give_null_hours_not_wrong_ones() -> None:
    t0 = datetime(2025, 7, 1, tzinfo=UTC)
    regs = [(t0 + timedelta(minutes=30 * i), 100.0 + 0.25 * i) for i in range(12)]  # 0.5 kWh an hour
    regs[6] = (regs[6][0], 1.0)  # counter reset at 03:00 …
    regs = [(t, v if i < 6 else v - 101.5 + 1.0) if i >= 6 else (t, v) for i, (t, v) in enumerate(regs)]
    del regs[9]  # … and a missing reading at 04:30 (interpolated)
    load = hourly_load(hourly_meter_stats(_meter(regs))).sort("ts")
    kwh = dict(zip(load["ts"].dt.hour().to_list(), load["kwh"].to_list(), strict=True))
    assert kwh[0] == pytest.approx(0.5)
    assert kwh[2] is None  # the reset falls in the boundary of 03:00: the hour before is unknowable
    assert kwh[4] == pytest.approx(0.5)  # 04:30 missing, the boundaries still interpolate
    spike = [(t0 + timedelta(hours=i), 100.0 + 0.5 * i) for i in range(4)]
    spike[2] = (spike[2][0], 5000.0)
    load = hourly_load(hourly_meter_stats(_meter(spike)))
    assert load["kwh"].drop_nulls().max() <= 30.0  # never an absurd hour


def test_calendar_marks_korean_holidays_and_days_off() -> None:
    frame = pl.DataFrame(
        {"ts": [datetime(2025, 8, 14, 15, tzinfo=UTC), datetime(2025, 8, 17, 15, tzinfo=UTC)]},
        schema_overrides={"ts": pl.Datetime("ms", "UTC")},
    )
    cal = with_calendar(frame, "Asia/Seoul")
    # 2025-08-15 00:00 KST is Liberation Day (a Friday); 2025-08-18 is a plain Monday
    assert cal["local_date"].to_list() == [date(2025, 8, 15), date(2025, 8, 18)]
    assert cal["is_holiday"].to_list() == [True, False]
    assert cal["day_off"].to_list() == [True, False]
    assert cal["hour"].to_list() == [0, 0]


def test_hourly_features_grid_lags_and_daily_shapes(inputs) -> None:
    h = inputs.hourly
    one = h.filter(pl.col("household_id") == "hh-00001").sort("ts")
    assert (one["ts"].diff().drop_nulls() == timedelta(hours=1)).all()
    assert one["kwh_lag_24"][30] == one["kwh"][6]
    assert h["outdoor_temp_c"].null_count() == 0 and h["indoor_temp_c"].null_count() == 0
    d = inputs.daily
    sums = d.select(pl.sum_horizontal(SHAPE_COLUMNS)).to_series()
    assert ((sums - 1.0).abs() < 1e-9).all()
    assert d["peak_hour"].is_between(0, 23).all()


def test_bad_inputs_fail_with_a_clear_message(inputs) -> None:
    with pytest.raises(ValueError, match="lacks columns"):
        hourly_meter_stats(pl.DataFrame({"ts": []}))
    with pytest.raises(ValueError, match="without attributes"):
        hourly_features(
            inputs.load.with_columns(pl.lit("stranger").alias("household_id")),
            inputs.weather,
            inputs.indoor,
            inputs.households,
        )
