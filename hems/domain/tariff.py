"""KEPCO residential low-voltage bill (주택용 저압), DESIGN §5, read from the dbt seed CSVs.

The numbers live in ``transforms/dbt/seeds/tariff_kepco_*.csv`` as rows with effective dates; the
SQL marts (macro ``kepco_bill``) read the same files, so next year's rates are a data change and
Python and SQL cannot drift apart. Only order and rounding live in code, here and in the macro.

Order and rounding (DESIGN §5), all in ``Decimal``:

1. base charge of the month's tier and the energy charge (sum over cumulative blocks, super-user
   block included) are each truncated to 1 KRW;
2. climate-environment and fuel-cost-adjustment charges (kWh × rate) are each truncated to 1 KRW.
   DESIGN §5 does not say; KEPCO's bills and its online calculator cut every charge below 1 KRW
   (원 미만 절사) and only VAT is rounded, so truncation is the consistent choice. With whole kWh
   both are whole numbers anyway; it only matters for fractional month-to-date kWh;
3. subtotal = base + energy + climate + fuel;
4. VAT = subtotal × 10 % rounded half-up to 1 KRW;
5. fund = subtotal × fund rate truncated to 10 KRW;
6. bill = subtotal + VAT + fund truncated to 10 KRW.

Choices DESIGN leaves open: usage is taken at metering resolution, 1 Wh (kWh quantized to 0.001,
half-up, which is what ``cast(x as decimal(18, 3))`` does on DuckDB and PostgreSQL); the rates of a
month are the rows in force on its first day (KEPCO prorates a mid-month change by days; this
does not, so 2023-05 — rates from 2023-05-16 — has no tariff and raises); truncation is toward zero.
"""

from __future__ import annotations

import calendar
import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any

from hems.settings import PROJECT_ROOT

TARIFF_CODE = "kepco_residential_low_voltage"
SEEDS_DIR = PROJECT_ROOT / "transforms" / "dbt" / "seeds"
BLOCKS_SEED = "tariff_kepco_residential_low_voltage.csv"
SEASONS_SEED = "tariff_kepco_residential_seasons.csv"
SURCHARGES_SEED = "tariff_kepco_surcharges.csv"
SURCHARGE_COMPONENTS = ("climate_environment", "fuel_cost_adjustment", "vat", "power_industry_fund")

KWH_RESOLUTION = Decimal("0.001")
_ONE, _TEN = Decimal(1), Decimal(10)
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@dataclass(frozen=True)
class Block:
    """One cumulative usage block of a season: kWh in (from_kwh, to_kwh] at ``rate`` KRW/kWh."""

    season: str
    block: int
    from_kwh: Decimal
    to_kwh: Decimal | None
    rate: Decimal
    base_charge: Decimal
    is_super_user: bool
    effective_from: date
    effective_to: date | None


@dataclass(frozen=True)
class Season:
    month_of_year: int
    season: str
    effective_from: date
    effective_to: date | None


@dataclass(frozen=True)
class Surcharge:
    component: str
    rate: Decimal
    unit: str
    effective_from: date
    effective_to: date | None


@dataclass(frozen=True)
class MonthRates:
    """The rows of one tariff in force for a billing month."""

    month: date
    season: str
    blocks: tuple[Block, ...]
    surcharges: dict[str, Decimal]


@dataclass(frozen=True)
class Tariff:
    """A versioned tariff: every row carries effective dates (inclusive; ``None`` = open-ended)."""

    code: str
    blocks: tuple[Block, ...]
    seasons: tuple[Season, ...]
    surcharges: tuple[Surcharge, ...]

    @classmethod
    def from_csv(cls, seeds_dir: Path = SEEDS_DIR, code: str = TARIFF_CODE) -> Tariff:
        """Read the dbt seed files (the one source of truth the SQL marts also read)."""
        blocks = tuple(
            Block(
                season=r["season"],
                block=int(r["block"]),
                from_kwh=Decimal(r["block_from_kwh"]),
                to_kwh=Decimal(r["block_to_kwh"]) if r["block_to_kwh"] else None,
                rate=Decimal(r["energy_rate_krw_per_kwh"]),
                base_charge=Decimal(r["base_charge_krw"]),
                is_super_user=r["is_super_user"].strip().lower() == "true",
                effective_from=date.fromisoformat(r["effective_from"]),
                effective_to=date.fromisoformat(r["effective_to"]) if r["effective_to"] else None,
            )
            for r in _rows(seeds_dir / BLOCKS_SEED, code)
        )
        seasons = tuple(
            Season(
                month_of_year=int(r["month_of_year"]),
                season=r["season"],
                effective_from=date.fromisoformat(r["effective_from"]),
                effective_to=date.fromisoformat(r["effective_to"]) if r["effective_to"] else None,
            )
            for r in _rows(seeds_dir / SEASONS_SEED, code)
        )
        surcharges = tuple(
            Surcharge(
                component=r["component"],
                rate=Decimal(r["rate"]),
                unit=r["unit"],
                effective_from=date.fromisoformat(r["effective_from"]),
                effective_to=date.fromisoformat(r["effective_to"]) if r["effective_to"] else None,
            )
            for r in _rows(seeds_dir / SURCHARGES_SEED, code)
        )
        return cls(code=code, blocks=blocks, seasons=seasons, surcharges=surcharges)

    def rates_for(self, month: date) -> MonthRates:
        """The rows in force on the month's first day; gaps, overlaps and broken blocks raise."""
        month = month.replace(day=1)
        seasons = [s for s in self.seasons if s.month_of_year == month.month and _in_force(s, month)]
        if not seasons:
            raise ValueError(f"no {self.code} tariff in force for {month:%Y-%m} (on {month.isoformat()})")
        if len(seasons) > 1:
            raise ValueError(f"{self.code}: overlapping season rows for {month:%Y-%m}")
        season = seasons[0].season
        blocks = sorted(
            (b for b in self.blocks if b.season == season and _in_force(b, month)), key=lambda b: b.block
        )
        _check_blocks(self.code, season, month, blocks)
        surcharges: dict[str, Decimal] = {}
        for s in self.surcharges:
            if _in_force(s, month):
                if s.component in surcharges:
                    raise ValueError(f"{self.code}: overlapping {s.component} rows for {month:%Y-%m}")
                surcharges[s.component] = s.rate
        missing = [c for c in SURCHARGE_COMPONENTS if c not in surcharges]
        if missing:
            raise ValueError(f"no {self.code} {', '.join(missing)} in force for {month:%Y-%m}")
        return MonthRates(month=month, season=season, blocks=tuple(blocks), surcharges=surcharges)


@dataclass(frozen=True)
class BlockCharge:
    block: int
    kwh: Decimal
    rate: Decimal
    amount: Decimal  # kWh × rate, not yet truncated (the energy charge is truncated as a whole)
    is_super_user: bool


@dataclass(frozen=True)
class BillBreakdown:
    """One month's bill with every component, in KRW (amounts are whole KRW except block amounts)."""

    month: date
    kwh: Decimal
    season: str
    tier: int
    base_charge: Decimal
    blocks: tuple[BlockCharge, ...]
    energy_charge: Decimal
    climate_rate: Decimal
    climate_charge: Decimal
    fuel_rate: Decimal
    fuel_charge: Decimal
    subtotal: Decimal
    vat_rate: Decimal
    vat: Decimal
    fund_rate: Decimal
    fund: Decimal
    total: Decimal

    @property
    def super_user_kwh(self) -> Decimal:
        return sum((b.kwh for b in self.blocks if b.is_super_user), Decimal(0))

    @property
    def super_user_charge(self) -> Decimal:
        return sum((b.amount for b in self.blocks if b.is_super_user), Decimal(0))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: KRW and kWh as numbers (whole KRW as ints), the month as YYYY-MM."""
        return {
            "month": f"{self.month:%Y-%m}",
            "kwh": _num(self.kwh),
            "season": self.season,
            "tier": self.tier,
            "base_charge_krw": _num(self.base_charge),
            "energy_blocks": [
                {
                    "block": b.block,
                    "super_user": b.is_super_user,
                    "kwh": _num(b.kwh),
                    "rate_krw_per_kwh": _num(b.rate),
                    "amount_krw": _num(b.amount),
                }
                for b in self.blocks
            ],
            "super_user_kwh": _num(self.super_user_kwh),
            "super_user_krw": _num(self.super_user_charge),
            "energy_charge_krw": _num(self.energy_charge),
            "climate_environment_krw": _num(self.climate_charge),
            "fuel_cost_adjustment_krw": _num(self.fuel_charge),
            "subtotal_krw": _num(self.subtotal),
            "vat_krw": _num(self.vat),
            "fund_rate": _num(self.fund_rate),
            "power_industry_fund_krw": _num(self.fund),
            "total_krw": _num(self.total),
        }


@lru_cache(maxsize=1)
def default_tariff() -> Tariff:
    """The KEPCO residential low-voltage tariff from the seeds (read once per process)."""
    return Tariff.from_csv()


def kepco_bill(
    kwh: Decimal | float | int | str, month: date | str, tariff: Tariff | None = None
) -> BillBreakdown:
    """The monthly bill for ``kwh`` used in ``month`` (a date or ``YYYY-MM``); bad input raises ValueError."""
    usage = metered_kwh(kwh)
    rates = (tariff or default_tariff()).rates_for(parse_month(month))
    blocks = []
    tier = rates.blocks[0]
    for b in rates.blocks:
        upper = usage if b.to_kwh is None else min(usage, b.to_kwh)
        in_block = max(upper - b.from_kwh, Decimal(0))
        blocks.append(BlockCharge(b.block, in_block, b.rate, in_block * b.rate, b.is_super_user))
        if usage > b.from_kwh:
            tier = b  # the month's tier is the highest block reached (0 kWh: the first)
    base = _trunc(tier.base_charge)
    energy = _trunc(sum((b.amount for b in blocks), Decimal(0)))
    s = rates.surcharges
    climate = _trunc(usage * s["climate_environment"])
    fuel = _trunc(usage * s["fuel_cost_adjustment"])
    subtotal = base + energy + climate + fuel
    vat = (subtotal * s["vat"]).quantize(_ONE, rounding=ROUND_HALF_UP)
    fund = _trunc(subtotal * s["power_industry_fund"], _TEN)
    total = _trunc(subtotal + vat + fund, _TEN)
    return BillBreakdown(
        month=rates.month,
        kwh=usage,
        season=rates.season,
        tier=tier.block,
        base_charge=base,
        blocks=tuple(blocks),
        energy_charge=energy,
        climate_rate=s["climate_environment"],
        climate_charge=climate,
        fuel_rate=s["fuel_cost_adjustment"],
        fuel_charge=fuel,
        subtotal=subtotal,
        vat_rate=s["vat"],
        vat=vat,
        fund_rate=s["power_industry_fund"],
        fund=fund,
        total=total,
    )


def daily_costs(
    daily_kwh_series: Iterable[Decimal | float | int | str], month: date | str, tariff: Tariff | None = None
) -> list[Decimal]:
    """Cost of each metered day of a month: bill(month to date through d) − bill(through d−1).

    A progressive tariff has no per-kWh price, so a day costs what it added to the month's bill.
    Days are in date order (days without data may be left out); before the first day nothing is
    billed, so the first day carries the base charge and the costs sum to the month's bill.
    """
    first = parse_month(month)
    days = [metered_kwh(v) for v in daily_kwh_series]
    if len(days) > calendar.monthrange(first.year, first.month)[1]:
        raise ValueError(f"{len(days)} daily values but {first:%Y-%m} has fewer days")
    costs, to_date, billed = [], Decimal(0), Decimal(0)
    for kwh in days:
        to_date += kwh
        bill = kepco_bill(to_date, first, tariff).total
        costs.append(bill - billed)
        billed = bill
    return costs


def metered_kwh(value: Decimal | float | int | str) -> Decimal:
    """Usage as a Decimal at 1 Wh resolution; negative, NaN, infinite or non-numeric raise ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"kWh must be a number, not {value!r}")
    try:
        kwh = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValueError(f"kWh must be a number, not {value!r}") from None
    if not kwh.is_finite():
        raise ValueError(f"kWh must be finite, not {value!r}")
    if kwh < 0:
        raise ValueError(f"kWh must not be negative, got {value!r}")
    return kwh.quantize(KWH_RESOLUTION, rounding=ROUND_HALF_UP)


def parse_month(value: date | str) -> date:
    """First day of the billing month from a date or a ``YYYY-MM`` string."""
    if isinstance(value, date):
        return date(value.year, value.month, 1)
    match = _MONTH.match(value.strip()) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"month must be YYYY-MM, not {value!r}")
    return date(int(match[1]), int(match[2]), 1)


def _trunc(amount: Decimal, unit: Decimal = _ONE) -> Decimal:
    """Cut toward zero to a multiple of ``unit`` KRW (원 미만 / 10원 미만 절사)."""
    return (amount / unit).to_integral_value(rounding=ROUND_DOWN) * unit


def _num(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _in_force(row: Block | Season | Surcharge, day: date) -> bool:
    return row.effective_from <= day and (row.effective_to is None or day <= row.effective_to)


def _check_blocks(code: str, season: str, month: date, blocks: list[Block]) -> None:
    if not blocks:
        raise ValueError(f"no {code} {season} blocks in force for {month:%Y-%m}")
    edge = Decimal(0)
    for b in blocks:
        if b.from_kwh != edge or (b.to_kwh is not None and b.to_kwh <= b.from_kwh):
            raise ValueError(f"{code} {season} blocks for {month:%Y-%m} are not contiguous from 0 kWh")
        edge = b.to_kwh if b.to_kwh is not None else Decimal("Infinity")
    if blocks[-1].to_kwh is not None:
        raise ValueError(f"{code} {season} blocks for {month:%Y-%m} leave usage above {edge} kWh unpriced")


def _rows(path: Path, code: str) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [r for r in csv.DictReader(handle) if r["tariff_code"] == code]


__all__ = [
    "BillBreakdown",
    "BlockCharge",
    "MonthRates",
    "Tariff",
    "daily_costs",
    "default_tariff",
    "kepco_bill",
    "metered_kwh",
    "parse_month",
]
