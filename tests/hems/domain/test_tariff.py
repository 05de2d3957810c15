"""The KEPCO residential bill of DESIGN §5 at its edges: tiers, seasons, super-user, fund dates, rounding."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from hems.domain.tariff import SEEDS_DIR, Tariff, daily_costs, kepco_bill

D = Decimal


# --- worked by hand ------------------------------------------------------------------------------
def test_350_kwh_in_march_2025() -> None:
    # other season, blocks 0–200 / 201–400 / >400; 350 kWh is tier 2 → base 1,600
    # energy   200 × 120.0 = 24,000 ; 150 × 214.6 = 32,190        → 56,190
    # climate  350 × 9.0 = 3,150 ; fuel 350 × 5.0 = 1,750
    # subtotal 1,600 + 56,190 + 3,150 + 1,750                      = 62,690
    # VAT      62,690 × 10 %  = 6,269.0                            → 6,269
    # fund     62,690 × 3.2 % = 2,006.08 (to 10 KRW)               → 2,000
    # total    62,690 + 6,269 + 2,000 = 70,959 (to 10 KRW)         → 70,950
    bill = kepco_bill(350, "2025-03")
    assert (bill.season, bill.tier, bill.base_charge, bill.energy_charge) == ("other", 2, 1600, 56190)
    assert (bill.climate_charge, bill.fuel_charge, bill.subtotal) == (3150, 1750, 62690)
    assert (bill.vat, bill.fund_rate, bill.fund, bill.total) == (6269, D("0.032"), 2000, 70950)


def test_350_kwh_in_august_2025() -> None:
    # summer, blocks 0–300 / 301–450 / >450; 350 kWh is tier 2 → base 1,600
    # energy   300 × 120.0 = 36,000 ; 50 × 214.6 = 10,730         → 46,730
    # climate 3,150 ; fuel 1,750
    # subtotal 1,600 + 46,730 + 3,150 + 1,750                      = 53,230
    # VAT      5,323.0                                             → 5,323
    # fund     53,230 × 2.7 % = 1,437.21                           → 1,430
    # total    53,230 + 5,323 + 1,430 = 59,983                     → 59,980
    bill = kepco_bill(350, "2025-08")
    assert (bill.season, bill.tier, bill.base_charge, bill.energy_charge) == ("summer", 2, 1600, 46730)
    assert (bill.subtotal, bill.vat, bill.fund, bill.total) == (53230, 5323, 1430, 59980)


def test_1200_kwh_in_august_2025_is_a_super_user_and_rounds_vat_half_up() -> None:
    # summer tier 3 base 7,300 (the super-user block keeps it)
    # energy   300 × 120.0 = 36,000 ; 150 × 214.6 = 32,190 ; 550 × 307.3 = 169,015
    #          200 × 736.2 = 147,240 (above 1,000 kWh)             → 384,445
    # climate  1,200 × 9.0 = 10,800 ; fuel 1,200 × 5.0 = 6,000
    # subtotal 7,300 + 384,445 + 10,800 + 6,000                    = 408,545
    # VAT      40,854.5, half-up                                   → 40,855
    # fund     408,545 × 2.7 % = 11,030.715                        → 11,030
    # total    408,545 + 40,855 + 11,030 = 460,430                 → 460,430
    bill = kepco_bill(1200, "2025-08")
    assert [(b.kwh, b.amount) for b in bill.blocks] == [
        (300, 36000),
        (150, 32190),
        (550, 169015),
        (200, 147240),
    ]
    assert (bill.super_user_kwh, bill.super_user_charge, bill.base_charge) == (200, 147240, 7300)
    assert (bill.energy_charge, bill.subtotal, bill.vat, bill.fund, bill.total) == (
        384445,
        408545,
        40855,
        11030,
        460430,
    )


# --- tiers and seasons ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwh", "month", "tier", "base", "total"),
    [
        (200, "2025-03", 1, 910, 31360),
        (201, "2025-03", 2, 1600, 32400),
        (400, "2025-03", 2, 1600, 83900),
        (401, "2025-03", 3, 7300, 90710),
        (300, "2025-07", 1, 910, 46320),
        (301, "2025-07", 2, 1600, 47360),
        (450, "2025-08", 2, 1600, 85740),
        (451, "2025-08", 3, 7300, 92530),
    ],
)
def test_tier_boundaries(kwh: int, month: str, tier: int, base: int, total: int) -> None:
    bill = kepco_bill(kwh, month)
    assert (bill.tier, bill.base_charge, bill.total) == (tier, base, total)


def test_a_kwh_past_a_boundary_is_priced_at_the_next_block() -> None:
    assert kepco_bill(201, "2025-03").energy_charge - kepco_bill(200, "2025-03").energy_charge == 214
    assert kepco_bill(401, "2025-03").energy_charge - kepco_bill(400, "2025-03").energy_charge == 307


@pytest.mark.parametrize("month", ["2025-07", "2025-08"])
def test_summer_blocks_in_july_and_august(month: str) -> None:
    assert kepco_bill(450, month).tier == 2


@pytest.mark.parametrize("month", ["2025-06", "2025-09", "2025-01"])
def test_summer_blocks_only_in_july_and_august(month: str) -> None:
    assert kepco_bill(450, month).tier == 3


@pytest.mark.parametrize("month", ["2025-07", "2025-08", "2025-12", "2026-01", "2026-02"])
def test_super_user_above_1000_kwh_in_summer_and_winter(month: str) -> None:
    assert kepco_bill(1000, month).super_user_kwh == 0
    assert kepco_bill(1001, month).super_user_kwh == 1
    assert kepco_bill(1200, month).super_user_charge == D("147240")


@pytest.mark.parametrize("month", ["2025-03", "2025-04", "2025-06", "2025-09", "2025-11"])
def test_no_super_user_in_spring_and_autumn(month: str) -> None:
    bill = kepco_bill(1200, month)
    assert bill.super_user_kwh == 0
    # 200 × 120 + 200 × 214.6 + 800 × 307.3 = 24,000 + 42,920 + 245,840
    assert bill.energy_charge == 312760


def test_december_1200_kwh() -> None:
    # 24,000 + 42,920 + 600 × 307.3 (184,380) + 200 × 736.2 (147,240) = 398,540
    assert kepco_bill(1200, "2025-12").energy_charge == 398540


# --- fund-rate change dates ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("month", "rate", "fund"),
    [
        ("2024-06", "0.037", 2310),  # 62,690 × 3.7 % = 2,319.53
        ("2024-07", "0.032", 1700),  # summer: 53,230 × 3.2 % = 1,703.36
        ("2024-09", "0.032", 2000),  # 62,690 × 3.2 % = 2,006.08
        ("2025-06", "0.032", 2000),
        ("2025-07", "0.027", 1430),  # 53,230 × 2.7 % = 1,437.21
        ("2025-09", "0.027", 1690),  # 62,690 × 2.7 % = 1,692.63
    ],
)
def test_fund_rate_follows_its_effective_dates(month: str, rate: str, fund: int) -> None:
    bill = kepco_bill(350, month)
    assert (bill.fund_rate, bill.fund) == (D(rate), fund)


# --- rounding ------------------------------------------------------------------------------------
def test_zero_kwh_pays_the_first_tier_base_charge() -> None:
    # 910 + VAT 91 + fund 910 × 3.2 % = 29.12 → 20 ; 1,021 → 1,020
    bill = kepco_bill(0, "2025-03")
    assert (bill.tier, bill.subtotal, bill.vat, bill.fund, bill.total) == (1, 910, 91, 20, 1020)


def test_vat_rounds_half_up_and_fund_and_total_truncate_to_10() -> None:
    # 1 kWh: 910 + 120 + 9 + 5 = 1,044 ; VAT 104.4 → 104 ; fund 33.408 → 30 ; 1,178 → 1,170
    assert [kepco_bill(1, "2025-03").__getattribute__(k) for k in ("vat", "fund", "total")] == [104, 30, 1170]
    # 1,200 kWh in August: VAT 40,854.5 → 40,855 (half-up, not half-even 40,854)
    assert kepco_bill(1200, "2025-08").vat == 40855


def test_fractional_kwh_truncates_each_charge_to_1_krw() -> None:
    # 0.5 kWh: energy 60.0 ; climate 4.5 → 4 ; fuel 2.5 → 2 ; 910 + 60 + 4 + 2 = 976
    bill = kepco_bill("0.5", "2025-03")
    assert (bill.energy_charge, bill.climate_charge, bill.fuel_charge, bill.subtotal) == (60, 4, 2, 976)
    # 150.5 kWh above 200: 150.5 × 214.6 = 32,297.3 → the energy charge drops the 0.3
    assert kepco_bill("350.5", "2025-03").energy_charge == 24000 + 32297


def test_usage_is_metered_to_the_watt_hour() -> None:
    assert kepco_bill(200.0004, "2025-03").kwh == D("200.000")
    assert kepco_bill(200.0005, "2025-03").tier == 2
    assert kepco_bill(0.1 + 0.2, "2025-03").kwh == D("0.300")


# --- daily cost ----------------------------------------------------------------------------------
def test_daily_costs_are_month_to_date_bill_differences() -> None:
    # day 1: bill(150) = 23,780 (base 910 included); day 2: bill(250) 45,080 − 23,780 = 21,300
    costs = daily_costs([150, 100, 0], "2025-03")
    assert costs == [23780, 21300, 0]
    assert sum(costs) == kepco_bill(250, "2025-03").total


def test_daily_costs_sum_to_the_monthly_bill_across_the_super_user_threshold() -> None:
    days = [40.25] * 31  # 1,247.75 kWh in August
    assert (
        sum(daily_costs(days, date(2025, 8, 1))) == kepco_bill(sum(D("40.25") for _ in days), "2025-08").total
    )


# --- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kwh", [-1, -0.001, float("nan"), float("inf"), "abc", True])
def test_bad_kwh_raises(kwh: object) -> None:
    with pytest.raises(ValueError, match="kWh"):
        kepco_bill(kwh, "2025-03")  # type: ignore[arg-type]


@pytest.mark.parametrize("month", ["2025-3", "2025-13", "2025/03", "March", "2025-03-01", ""])
def test_bad_month_raises(month: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        kepco_bill(100, month)


@pytest.mark.parametrize("month", ["2023-04", "2023-05", "1999-01"])
def test_month_without_a_tariff_in_force_raises(month: str) -> None:
    # the rows start 2023-05-16; a month is priced by the rows in force on its first day
    with pytest.raises(ValueError, match="no kepco_residential_low_voltage tariff in force"):
        kepco_bill(100, month)


def test_too_many_days_raises() -> None:
    with pytest.raises(ValueError, match="fewer days"):
        daily_costs([1] * 31, "2025-02")


# --- tariffs as data -----------------------------------------------------------------------------
def test_next_years_rates_are_a_data_change(tmp_path: Path) -> None:
    for name in SEEDS_DIR.glob("tariff_kepco_*.csv"):
        text = name.read_text()
        if name.name == "tariff_kepco_surcharges.csv":
            text = text.replace("2025-07-01,,0.027", "2025-07-01,2026-12-31,0.027")
            text += "kepco_residential_low_voltage,power_industry_fund,2027-01-01,,0.020,ratio\n"
        (tmp_path / name.name).write_text(text)
    tariff = Tariff.from_csv(tmp_path)
    assert kepco_bill(350, "2026-12", tariff).fund_rate == D("0.027")
    # 62,690 × 2.0 % = 1,253.8 → 1,250
    assert kepco_bill(350, "2027-01", tariff).fund == 1250


def test_overlapping_or_broken_rows_raise() -> None:
    tariff = Tariff.from_csv()
    doubled = replace(tariff, surcharges=tariff.surcharges + tariff.surcharges[:1])
    with pytest.raises(ValueError, match="overlapping climate_environment"):
        kepco_bill(100, "2025-03", doubled)
    gap = replace(
        tariff, blocks=tuple(b for b in tariff.blocks if not (b.season == "other" and b.block == 2))
    )
    with pytest.raises(ValueError, match="not contiguous"):
        kepco_bill(100, "2025-03", gap)
