"""Optimization tips with numbers checked by hand against DESIGN §5's tariff."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from ml.tips import (
    all_tips,
    bill_saving,
    cooling_tips,
    flexible_load_tips,
    plug_appliance,
    standby_tips,
    tier_tips,
)


def _days(kwh: list[float], first: date, hh: str = "h1", **cols: object) -> pl.DataFrame:
    n = len(kwh)
    return pl.DataFrame(
        {"household_id": [hh] * n, "local_date": [first + timedelta(days=i) for i in range(n)], "kwh": kwh}
        | {k: [v] * n for k, v in cols.items()}
    )


def test_tier_crossing_projection_and_bill_difference() -> None:
    # May 2025 ("other" season: blocks at 200 and 400 kWh); 15 kWh a day for 10 days
    tips = tier_tips(_days([15.0] * 10, date(2025, 5, 1)), as_of=date(2025, 5, 10))
    (tip,) = tips
    # 150 so far + 15 × 21 remaining days = 465 kWh, crossing 200 first
    assert tip.data["projected_kwh"] == pytest.approx(465.0)
    assert tip.data["block_edge_kwh"] == 200.0
    assert tip.effect_kwh_month == pytest.approx(265.0)
    # bill(465) by hand: base 7,300; energy 24,000 + 42,920 + 65 × 307.3 = 86,894 (truncated);
    # climate 4,185; fuel 2,325; subtotal 100,704; VAT 10,070; fund 3.2 % → 3,220; total 113,990.
    # bill(200): 910 + 24,000 + 1,800 + 1,000 = 27,710; VAT 2,771; fund 880; total 31,360.
    assert tip.effect_krw_month == 113_990 - 31_360
    # already in the top block, or staying below the next edge: no tip
    assert tier_tips(_days([1.0] * 10, date(2025, 5, 1)), as_of=date(2025, 5, 10)) == []


def test_standby_above_typical_share() -> None:
    t0 = datetime(2025, 5, 1, tzinfo=UTC)
    stats = pl.DataFrame(
        {
            "household_id": ["h1"] * 48,
            "ts": [t0 + timedelta(hours=i) for i in range(48)],
            "power_min_w": [100.0] * 48,
        },
        schema_overrides={"ts": pl.Datetime("ms", "UTC")},
    )
    (tip,) = standby_tips(stats, _days([10.0, 10.0], date(2025, 5, 1)), date(2025, 5, 1))
    # 100 W × 720 h = 72 kWh of 300 kWh a month = 24 %; down to 6 % saves 54 kWh
    assert tip.data["share"] == pytest.approx(0.24)
    assert tip.effect_kwh_month == pytest.approx(54.0)
    # bill(300) = 58,020 and bill(246) = 44,040 KRW in May 2025 (worked as in the tier test)
    assert tip.effect_krw_month == 58_020 - 44_040
    low = stats.with_columns(pl.lit(10.0).alias("power_min_w"))  # 7.2 kWh = 2.4 %: no tip
    assert standby_tips(low, _days([10.0, 10.0], date(2025, 5, 1)), date(2025, 5, 1)) == []


def test_flexible_load_in_the_peak() -> None:
    rows = []
    for d in range(10):  # 1 kWh of laundry at 18:00 KST and 0.5 kWh at 23:00 KST, for 10 days
        day = datetime(2025, 5, 1, tzinfo=UTC) + timedelta(days=d)
        rows += [
            ("h1", day + timedelta(hours=9), "laundry", 1.0),
            ("h1", day + timedelta(hours=14), "laundry", 0.5),
        ]
    flex = pl.DataFrame(rows, schema=["household_id", "ts", "appliance", "kwh"], orient="row").with_columns(
        pl.col("ts").cast(pl.Datetime("ms", "UTC"))
    )
    (tip,) = flexible_load_tips(flex)
    assert tip.effect_kwh_month == pytest.approx(30.0)  # 1 kWh a day in the peak × 30
    assert tip.data["peak_share"] == pytest.approx(1 / 1.5, abs=1e-3)
    assert plug_appliance("hh-00001-plug-washer") == "laundry" and plug_appliance("hh-1-plug-fridge") is None


def test_cooling_far_above_similar_homes() -> None:
    cdd = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    frames = [
        pl.DataFrame(
            {
                "household_id": [f"p{i}"] * 6,
                "local_date": [date(2025, 7, d + 1) for d in range(6)],
                "kwh": [5 + 1.0 * c for c in cdd],
                "cdd": cdd,
                "building_type": ["apartment"] * 6,
                "residents": [2] * 6,
            }
        )
        for i in range(4)
    ]
    frames.append(
        frames[0].with_columns(pl.lit("hot").alias("household_id"), (5 + 3.0 * pl.col("cdd")).alias("kwh"))
    )
    tips = cooling_tips(pl.concat(frames), date(2025, 7, 1))
    assert [t.household_id for t in tips] == ["hot"]
    # slope 3 against the peers' median 1, at a mean of 3 CDD on hot days: (3 − 1) × 3 × 30 = 180 kWh
    assert tips[0].effect_kwh_month == pytest.approx(180.0)
    assert tips[0].effect_krw_month and tips[0].effect_krw_month > 0


def test_bill_saving_never_goes_below_zero_use() -> None:
    assert bill_saving(10.0, 50.0, date(2025, 5, 1)) == bill_saving(10.0, 10.0, date(2025, 5, 1))


def test_all_tips_on_simulated_homes(inputs) -> None:
    last = inputs.daily["local_date"].max()
    tips = all_tips(inputs.stats, inputs.hourly, inputs.daily, last)
    assert tips, "a hot July fortnight gives at least one tip"
    assert all(t.effect_kwh_month > 0 for t in tips)
    assert {t.kind for t in tips} <= {"flexible_load", "standby", "tier_crossing", "cooling"}
