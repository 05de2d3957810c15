"""Savings → rewards for the incentive programs (DESIGN §5), programs read as versioned data.

Program rules live in the dbt seeds ``transforms/dbt/seeds/program_rules.csv`` (one row per
program version: kind, caps, rates) and ``program_cashback_bands.csv`` (the energy-cashback bands),
each row with ``effective_from``/``effective_to`` (inclusive; empty = in force). Next year's
bands are new rows, not code. A period uses the rows in force on its first day (a month
'YYYY-MM') or on the event day (demand response).

The three kinds:

* ``cashback`` — savings rate = (baseline − actual) / baseline. The band [min, max) that holds the
  rate gives KRW per kWh saved; kWh count up to ``savings_cap_pct`` of the baseline (30 %), and a
  rate above the top band earns the top band's rate. Below the lowest band: no reward.
* ``generic`` — reward = savings kWh × reward_rate × electricity_rate, paid only when savings > 0.
* ``demand_response`` — reward = event reduction kWh (CBL − actual over the event hours) × KRW/kWh.

Every row states why it pays what it pays: ``status`` is ``qualified`` (the baseline holds;
``reason`` explains a zero reward, e.g. below the lowest band), ``not_qualified`` (the baseline's
reason) or ``no_savings``. Amounts: kWh are taken at 1 Wh (rounded half-up to 0.001) and the
reward is truncated to whole KRW (원 미만 절사, as the tariff does); 1 point = 1 KRW.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import polars as pl

from hems.settings import PROJECT_ROOT

SEEDS_DIR = PROJECT_ROOT / "transforms" / "dbt" / "seeds"
RULES_SEED = "program_rules.csv"
BANDS_SEED = "program_cashback_bands.csv"
CASHBACK_PROGRAM = "kepco_energy_cashback"
GENERIC_PROGRAM = "hems_weather_normalized_savings"
DR_PROGRAM = "kpx_citizen_dr"
KINDS = ("cashback", "generic", "demand_response")
#: the output contract other code (ledger, settlement, export, API) consumes
REWARD_SCHEMA: dict[str, pl.DataType] = {
    "household_id": pl.String(),
    "program_code": pl.String(),
    "period": pl.String(),
    "baseline_kwh": pl.Float64(),
    "actual_kwh": pl.Float64(),
    "savings_kwh": pl.Float64(),
    "savings_pct": pl.Float64(),
    "reward_krw": pl.Int64(),
    "points": pl.Int64(),
    "status": pl.String(),
    "reason": pl.String(),
}
_EPS = 1e-6  # float guard for band edges and truncation (3.0000000000000004 % is 3 %)


@dataclass(frozen=True)
class ProgramRule:
    program_code: str
    kind: str
    effective_from: date
    effective_to: date | None
    baseline_method: str
    min_savings_pct: float
    savings_cap_pct: float | None
    reward_rate: float | None
    electricity_rate_krw_per_kwh: float | None
    dr_krw_per_kwh: float | None


@dataclass(frozen=True)
class CashbackBand:
    program_code: str
    effective_from: date
    effective_to: date | None
    band: int
    min_savings_pct: float
    max_savings_pct: float
    krw_per_kwh: float


def _in_force(row: ProgramRule | CashbackBand, on: date) -> bool:
    return row.effective_from <= on and (row.effective_to is None or on <= row.effective_to)


def _opt(value: str) -> float | None:
    return float(value) if value.strip() else None


@dataclass(frozen=True)
class Programs:
    """All program versions; look one up by code and date."""

    rules: tuple[ProgramRule, ...]
    bands: tuple[CashbackBand, ...]

    @classmethod
    def from_csv(cls, seeds_dir: Path = SEEDS_DIR) -> Programs:
        """Read the dbt seeds (the warehouse loads the same files)."""
        with open(seeds_dir / RULES_SEED, newline="", encoding="utf-8") as f:
            rules = tuple(
                ProgramRule(
                    program_code=r["program_code"],
                    kind=r["kind"],
                    effective_from=date.fromisoformat(r["effective_from"]),
                    effective_to=date.fromisoformat(r["effective_to"]) if r["effective_to"] else None,
                    baseline_method=r["baseline_method"],
                    min_savings_pct=_opt(r["min_savings_pct"]) or 0.0,
                    savings_cap_pct=_opt(r["savings_cap_pct"]),
                    reward_rate=_opt(r["reward_rate"]),
                    electricity_rate_krw_per_kwh=_opt(r["electricity_rate_krw_per_kwh"]),
                    dr_krw_per_kwh=_opt(r["dr_krw_per_kwh"]),
                )
                for r in csv.DictReader(f)
            )
        with open(seeds_dir / BANDS_SEED, newline="", encoding="utf-8") as f:
            bands = tuple(
                CashbackBand(
                    program_code=r["program_code"],
                    effective_from=date.fromisoformat(r["effective_from"]),
                    effective_to=date.fromisoformat(r["effective_to"]) if r["effective_to"] else None,
                    band=int(r["band"]),
                    min_savings_pct=float(r["min_savings_pct"]),
                    max_savings_pct=float(r["max_savings_pct"]),
                    krw_per_kwh=float(r["krw_per_kwh"]),
                )
                for r in csv.DictReader(f)
            )
        for rule in rules:
            if rule.kind not in KINDS:
                raise ValueError(f"{RULES_SEED}: {rule.program_code} has unknown kind {rule.kind!r}")
        return cls(rules, bands)

    def rule_for(self, program_code: str, on: date) -> ProgramRule:
        found = [r for r in self.rules if r.program_code == program_code and _in_force(r, on)]
        if not found:
            known = sorted({r.program_code for r in self.rules})
            raise ValueError(
                f"no {program_code} program rule in force on {on} (programs: {', '.join(known)})"
            )
        if len(found) > 1:
            raise ValueError(f"{program_code}: overlapping rule rows on {on}")
        rule = found[0]
        missing = {
            "cashback": [],
            "generic": [
                n for n in ("reward_rate", "electricity_rate_krw_per_kwh") if getattr(rule, n) is None
            ],
            "demand_response": ["dr_krw_per_kwh"] if rule.dr_krw_per_kwh is None else [],
        }[rule.kind]
        if missing:
            raise ValueError(f"{program_code} ({on}): {', '.join(missing)} not set in {RULES_SEED}")
        return rule

    def bands_for(self, program_code: str, on: date) -> tuple[CashbackBand, ...]:
        """The bands in force, ascending; they must be contiguous (each max = the next min)."""
        bands = sorted(
            (b for b in self.bands if b.program_code == program_code and _in_force(b, on)),
            key=lambda b: b.min_savings_pct,
        )
        if not bands:
            raise ValueError(f"no {program_code} cashback bands in force on {on} ({BANDS_SEED})")
        for lower, upper in pairwise(bands):
            if abs(lower.max_savings_pct - upper.min_savings_pct) > _EPS:
                raise ValueError(
                    f"{program_code} ({on}): bands {lower.band} and {upper.band} are not contiguous"
                )
        return tuple(bands)


@lru_cache(maxsize=8)
def load_programs(seeds_dir: Path = SEEDS_DIR) -> Programs:
    return Programs.from_csv(seeds_dir)


def period_day(period: str) -> date:
    """First day of a 'YYYY-MM' period (the day whose rules apply)."""
    try:
        return date.fromisoformat(period + "-01")
    except ValueError:
        raise ValueError(f"period {period!r} is not YYYY-MM; pass `on` for an event period") from None


def _band_rate(bands: list[tuple[str, float, float, float]], periods: list[str]) -> pl.Expr:
    """KRW/kWh of the cashback band [lo, hi) that holds each row's savings rate (null: none).

    One when/then chain per distinct set of bands (usually one for all periods) instead of a
    join of every row with every band.
    """
    by_period: dict[str, list[tuple[float, float, float]]] = {}
    for period, lo, hi, rate in bands:
        by_period.setdefault(period, []).append((lo, hi, rate))
    groups: dict[tuple[tuple[float, float, float], ...], list[str]] = {}
    for period, period_bands in by_period.items():
        groups.setdefault(tuple(period_bands), []).append(period)
    pct = pl.col("savings_pct") + _EPS
    chains = []
    for band_set, in_group in groups.items():
        chain: Any = pl
        for lo, hi, rate in band_set:
            chain = chain.when((pct >= lo) & (pct < hi)).then(pl.lit(rate, dtype=pl.Float64))
        chains.append((in_group, chain))
    if not chains:
        return pl.lit(None, dtype=pl.Float64)
    if len(chains) == 1 and set(chains[0][0]) == set(periods):
        return chains[0][1]
    out: Any = pl
    for in_group, chain in chains:
        out = out.when(pl.col("period").is_in(in_group)).then(chain)
    return out


def compute_rewards(
    savings: pl.DataFrame,
    program_code: str,
    on: date | None = None,
    programs: Programs | None = None,
) -> pl.DataFrame:
    """Rewards per household and period under the program version in force.

    ``savings``: ``household_id, period, baseline_kwh, actual_kwh, qualified`` and optionally
    ``reason`` (the baseline's verdict) — the output of ``cashback_baseline``,
    ``dr_event_savings`` or ``caltrack_savings`` (its ``counterfactual_kwh`` is the baseline).
    ``on``: the day whose rules apply (default: the first day of each 'YYYY-MM' period; give the
    event day for a demand-response event id). Returns :data:`REWARD_SCHEMA`.
    """
    progs = programs or load_programs()
    frame = savings
    if "baseline_kwh" not in frame.columns and "counterfactual_kwh" in frame.columns:
        frame = frame.rename({"counterfactual_kwh": "baseline_kwh"})
    missing = [
        c
        for c in ("household_id", "period", "baseline_kwh", "actual_kwh", "qualified")
        if c not in frame.columns
    ]
    if missing:
        raise ValueError(f"savings frame lacks column(s) {', '.join(missing)}")
    if "reason" not in frame.columns:
        frame = frame.with_columns(reason=pl.lit(None, dtype=pl.String))
    periods = frame["period"].unique().sort().to_list()
    params, bands = [], []
    for period in periods:  # few periods per run: one rule lookup each
        day = on or period_day(period)
        rule = progs.rule_for(program_code, day)
        params.append(
            {
                "period": period,
                "_kind": rule.kind,
                "_min_pct": rule.min_savings_pct,
                "_cap_pct": rule.savings_cap_pct,
                "_krw_per_kwh": {
                    "cashback": None,
                    "generic": (rule.reward_rate or 0) * (rule.electricity_rate_krw_per_kwh or 0),
                    "demand_response": rule.dr_krw_per_kwh,
                }[rule.kind],
            }
        )
        if rule.kind == "cashback":
            in_force = progs.bands_for(program_code, day)
            params[-1]["_min_pct"] = max(rule.min_savings_pct, in_force[0].min_savings_pct)
            for i, b in enumerate(in_force):
                top = i == len(in_force) - 1  # above the top band: the top band's rate (kWh capped)
                bands.append(
                    (period, b.min_savings_pct, float("inf") if top else b.max_savings_pct, b.krw_per_kwh)
                )
    param_schema = {"period": pl.String, "_kind": pl.String, "_min_pct": pl.Float64, "_cap_pct": pl.Float64,
                    "_krw_per_kwh": pl.Float64}  # fmt: skip
    param_frame = pl.DataFrame(params, schema=param_schema)

    base = (
        frame.select(
            pl.col("household_id").cast(pl.String),
            pl.col("period").cast(pl.String),
            pl.col("baseline_kwh").cast(pl.Float64).round(3),
            pl.col("actual_kwh").cast(pl.Float64).round(3),
            pl.col("qualified").cast(pl.Boolean).fill_null(False),
            pl.col("reason").cast(pl.String),
        )
        .join(param_frame, on="period", how="left")
        .with_columns(savings_kwh=(pl.col("baseline_kwh") - pl.col("actual_kwh")).round(3))
        .with_columns(savings_pct=pl.col("savings_kwh") / pl.col("baseline_kwh") * 100)
        .with_columns(_band_rate=_band_rate(bands, periods))
    )
    eligible = pl.col("qualified") & pl.col("baseline_kwh").is_not_null() & (pl.col("baseline_kwh") > 0)
    has_savings = pl.col("savings_kwh") > 0
    above_min = pl.col("savings_pct") + _EPS >= pl.col("_min_pct")
    counted = (
        pl.when(pl.col("_cap_pct").is_not_null())
        .then(pl.min_horizontal(pl.col("savings_kwh"), pl.col("baseline_kwh") * pl.col("_cap_pct") / 100))
        .otherwise(pl.col("savings_kwh"))
    )
    rate = pl.when(pl.col("_kind") == "cashback").then(pl.col("_band_rate")).otherwise(pl.col("_krw_per_kwh"))
    pays = eligible & has_savings & above_min & rate.is_not_null()
    reward = pl.when(pays).then((counted * rate + _EPS).floor()).otherwise(0).cast(pl.Int64)
    status = pl.when(~eligible).then(pl.lit("not_qualified")).when(~has_savings).then(pl.lit("no_savings"))
    # which reason applies (0: none); the texts are formatted afterwards for those rows only
    why = (
        pl.when(~eligible)
        .then(1)
        .when(~has_savings)
        .then(2)
        .when(~above_min)
        .then(3)
        .when(pl.col("_cap_pct").is_not_null() & (pl.col("savings_pct") > pl.col("_cap_pct") + _EPS))
        .then(4)
        .otherwise(0)
    )
    out = base.with_columns(
        program_code=pl.lit(program_code),
        reward_krw=reward,
        status=status.otherwise(pl.lit("qualified")),
        _why=why,
    ).with_columns(
        reason=pl.when(pl.col("_why") == 1).then(
            pl.coalesce(pl.col("reason"), pl.lit("baseline not qualified"))
        ),
        points=pl.col("reward_krw"),
        savings_pct=pl.when(pl.col("baseline_kwh") > 0).then(pl.col("savings_pct").round(4)),
        _pct=pl.col("savings_pct"),
    )
    texts = {
        2: pl.format("no savings: {} kWh used against a baseline of {} kWh", "actual_kwh", "baseline_kwh"),
        3: pl.format(
            "savings {}% below the program minimum of {}%", pl.col("_pct").round(2), pl.col("_min_pct")
        ),
        4: pl.format("kWh counted up to the {}% cap", pl.col("_cap_pct")),
    }
    reason = out["reason"]
    for code, text in texts.items():
        rows = (out["_why"] == code).arg_true()
        if rows.len():
            reason = reason.scatter(rows, out[rows].select(text).to_series())
    return (
        out.with_columns(reason=reason)
        .select(list(REWARD_SCHEMA))
        .cast(REWARD_SCHEMA)  # type: ignore[arg-type]
        .sort("household_id", "period")
    )
