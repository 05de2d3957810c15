"""Rewards: cashback band edges and the 30 % cap, the generic rule, DR events, versioned programs."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from transforms.rewards import (
    CASHBACK_PROGRAM,
    DR_PROGRAM,
    GENERIC_PROGRAM,
    REWARD_SCHEMA,
    SEEDS_DIR,
    Programs,
    compute_rewards,
)


def _savings(
    actual: list[float | None], baseline: float | None = 100.0, period: str = "2025-07"
) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "household_id": [f"hh-{i:02d}" for i in range(len(actual))],
            "period": period,
            "baseline_kwh": baseline,
            "actual_kwh": actual,
            "qualified": True,
            "reason": None,
        },
        schema_overrides={"baseline_kwh": pl.Float64, "actual_kwh": pl.Float64, "reason": pl.String},
    )


@pytest.mark.parametrize(
    ("actual", "reward", "reason"),
    [
        (97.01, 0, "savings 2.99% below the program minimum of 3.0%"),
        (97.0, 90, None),  # 3 % → 30 KRW/kWh
        (95.01, 149, None),  # 4.99 % → still 30 KRW/kWh: 4.99 × 30 = 149.7, truncated
        (95.0, 300, None),  # 5 % → 60
        (90.0, 800, None),  # 10 % → 80
        (80.0, 2000, None),  # 20 % → 100
        (70.0, 3000, None),  # 30 % → 100
        (55.0, 3000, "kWh counted up to the 30.0% cap"),  # 45 % saved, 30 kWh counted
    ],
)
def test_cashback_band_edges_and_cap(actual: float, reward: int, reason: str | None) -> None:
    row = compute_rewards(_savings([actual]), CASHBACK_PROGRAM).row(0, named=True)
    assert (row["reward_krw"], row["points"], row["status"], row["reason"]) == (
        reward,
        reward,
        "qualified",
        reason,
    )


def test_cashback_band_edge_survives_float_noise() -> None:
    # 291 of 300 kWh is exactly 3 %; in floats 9 / 300 × 100 is 3.0000000000000004 or 2.9999999999999996
    row = compute_rewards(_savings([291.0], baseline=300.0), CASHBACK_PROGRAM).row(0, named=True)
    assert row["reward_krw"] == 270


def test_output_contract_and_statuses() -> None:
    frame = _savings([100.0, 104.0, 80.0]).with_columns(
        qualified=pl.Series([True, True, False]),
        reason=pl.Series([None, None, "insufficient data: 80.0% of the 365 baseline days metered"]),
    )
    out = compute_rewards(frame, CASHBACK_PROGRAM)
    assert out.schema == pl.Schema(REWARD_SCHEMA)
    assert out["status"].to_list() == ["no_savings", "no_savings", "not_qualified"]
    assert out["reward_krw"].to_list() == [0, 0, 0]
    assert out["reason"][1] == "no savings: 104.0 kWh used against a baseline of 100.0 kWh"
    assert out["reason"][2].startswith("insufficient data")


def test_generic_rule_reward_is_savings_times_rate_times_price() -> None:
    out = compute_rewards(_savings([88.0, 101.0]), GENERIC_PROGRAM)
    # 12 kWh × 0.5 × 120 KRW/kWh (program_rules.csv)
    assert out["reward_krw"].to_list() == [720, 0]
    assert out["status"].to_list() == ["qualified", "no_savings"]


def test_caltrack_savings_frame_is_accepted() -> None:
    frame = pl.DataFrame(
        {
            "household_id": ["a"],
            "period": ["2025-01"],
            "counterfactual_kwh": [500.0],
            "actual_kwh": [450.0],
            "qualified": [True],
            "reason": [None],
        },
        schema_overrides={"reason": pl.String},
    )
    assert compute_rewards(frame, GENERIC_PROGRAM)["reward_krw"][0] == 3000


def test_demand_response_event_reward() -> None:
    out = compute_rewards(
        _savings([1.5], baseline=2.25, period="dr-2025-08-05"), DR_PROGRAM, on=date(2025, 8, 5)
    )
    assert out["reward_krw"][0] == 975  # 0.75 kWh × 1,300 KRW/kWh
    with pytest.raises(ValueError, match="not YYYY-MM"):
        compute_rewards(_savings([1.5], period="dr-2025-08-05"), DR_PROGRAM)


def test_next_years_bands_are_a_data_change(tmp_path: Path) -> None:
    for name in ("program_rules.csv", "program_cashback_bands.csv"):
        shutil.copy(SEEDS_DIR / name, tmp_path / name)
    bands = tmp_path / "program_cashback_bands.csv"
    text = bands.read_text().replace(",2024-01-01,,", ",2024-01-01,2025-12-31,")
    text += "".join(
        f"kepco_energy_cashback,2026-01-01,,{i},{lo},{hi},{rate}\n"
        for i, (lo, hi, rate) in enumerate([(3, 10, 50), (10, 30, 120)], start=1)
    )
    bands.write_text(text)
    programs = Programs.from_csv(tmp_path)
    frame = pl.concat([_savings([90.0], period="2025-12"), _savings([90.0], period="2026-01")])
    out = compute_rewards(frame, CASHBACK_PROGRAM, programs=programs)
    assert out["reward_krw"].to_list() == [800, 1200]  # 10 kWh × 80, then × 120


def test_missing_program_rule_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no kepco_energy_cashback program rule in force on 2023-07-01"):
        compute_rewards(_savings([90.0], period="2023-07"), CASHBACK_PROGRAM)
    with pytest.raises(ValueError, match="lacks column"):
        compute_rewards(_savings([90.0]).drop("qualified"), CASHBACK_PROGRAM)
