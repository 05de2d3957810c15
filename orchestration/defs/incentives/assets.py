"""Incentive assets: rewards per program and period, then the payout into the points ledger.

Each program has two assets. ``<program>_rewards`` computes every household's baseline, savings
and reward (Polars, from transforms/baselines.py and transforms/rewards.py) and keeps the frame;
``<program>_payout`` records it in the append-only ledger (transforms/ledger.py: idempotent per
household, program and period, so re-running a partition never pays twice), settles the period and
writes the program's export file. Between them, blocking checks (checks.py) stop a payout whose
inputs look wrong.
"""

from datetime import date, timedelta

import polars as pl
from dagster import AssetExecutionContext, AssetIn, MaterializeResult, MetadataValue, Output, asset

from hems.settings import get_settings
from orchestration.defs.energy.resources import StoresResource
from orchestration.defs.incentives.inputs import daily_kwh, daily_temperature, hourly_kwh
from orchestration.defs.incentives.partitions import DR_EVENTS, monthly_partitions, parse_dr_event
from transforms import ledger
from transforms.baselines import (
    caltrack_savings,
    cashback_baseline,
    dr_event_savings,
    fit_caltrack_daily,
    monthly_kwh,
)
from transforms.rewards import CASHBACK_PROGRAM, DR_PROGRAM, GENERIC_PROGRAM, compute_rewards, load_programs

OWNERS = ["team:incentives"]
GROUP = "incentives"
#: days of history the weather-normalized model needs before the reporting month (CalTRACK: 365)
CALTRACK_BASELINE_DAYS = 365
#: weekdays before a DR event are looked up this far back (KPX: 10 weekdays, minus holidays/events)
CBL_LOOKBACK_DAYS = 60


def _month_bounds(key: str) -> tuple[date, date]:
    first = date.fromisoformat(key)
    nxt = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    return first, nxt - timedelta(days=1)


def _years_back(d: date, years: int) -> date:
    return d.replace(year=d.year - years)


def _with_coverage(rewards: pl.DataFrame, metered: pl.DataFrame, expected: int) -> pl.DataFrame:
    """Add ``coverage``: the share of the period's days (or event hours) with metered data."""
    counts = metered.group_by("household_id").agg((pl.len() / expected).clip(0, 1).alias("coverage"))
    return rewards.join(counts, on="household_id", how="left").with_columns(pl.col("coverage").fill_null(0.0))


def _summary(rewards: pl.DataFrame) -> dict:
    paid = rewards.filter(pl.col("reward_krw") > 0)
    reasons = (
        rewards.filter(pl.col("reason").is_not_null())
        .group_by("reason")
        .len()
        .sort("len", descending=True)
        .head(5)
    )
    return {
        "dagster/row_count": rewards.height,
        "households_paid": paid.height,
        "reward_krw_total": int(rewards["reward_krw"].sum()) if rewards.height else 0,
        "qualified": int((rewards["status"] == "qualified").sum()) if rewards.height else 0,
        "top_reasons": MetadataValue.md("\n".join(f"- {r} ({n})" for r, n in reasons.iter_rows()) or "none"),
    }


def _rewards_asset(partitions_def, upstream: list[str], description: str):
    """The shared shape of the three reward assets (group, owner, kinds, one upstream table)."""
    return asset(
        partitions_def=partitions_def,
        group_name=GROUP,
        owners=OWNERS,
        kinds={"python", "polars"},
        deps=[upstream],
        description=description,
    )


@_rewards_asset(
    monthly_partitions(),
    ["marts", "energy_usage_daily"],
    (
        "KEPCO energy cashback for one month: baseline = mean kWh of the same month one and two "
        "years back (one suffices), savings ≥ 3 % earn by band, counted up to 30 %. Households "
        "without a baseline month get 0 KRW and the reason."
    ),
)
def cashback_rewards(context: AssetExecutionContext, stores: StoresResource) -> Output[pl.DataFrame]:
    first, last = _month_bounds(context.partition_key)
    frames = [daily_kwh(stores.warehouse(), _years_back(first, y), _years_back(last, y)) for y in (2, 1, 0)]
    monthly = monthly_kwh(pl.concat(frames))
    baseline = cashback_baseline(monthly, periods=[first.strftime("%Y-%m")])
    rewards = compute_rewards(baseline, CASHBACK_PROGRAM, programs=load_programs())
    rewards = _with_coverage(rewards, frames[-1], last.day)
    return Output(rewards, metadata=_summary(rewards))


@_rewards_asset(
    monthly_partitions(),
    ["marts", "energy_usage_daily"],
    (
        "Weather-normalized savings (CalTRACK daily: HDD/CDD with balance-point search, fitted on "
        "the 365 days before the month) for one month; reward = savings × reward_rate × "
        "electricity_rate. A disqualified baseline earns nothing and says why."
    ),
)
def weather_normalized_rewards(
    context: AssetExecutionContext, stores: StoresResource
) -> Output[pl.DataFrame]:
    first, last = _month_bounds(context.partition_key)
    history_start = first - timedelta(days=CALTRACK_BASELINE_DAYS)
    warehouse = stores.warehouse()
    kwh = daily_kwh(warehouse, history_start, last)
    temps = daily_temperature(
        stores.raw_store(), warehouse, history_start, last, get_settings().domain.timezone
    )
    daily = kwh.join(temps, on=["household_id", "date"], how="left")
    model = fit_caltrack_daily(daily, first)
    savings = caltrack_savings(model, daily, first, last).with_columns(period=pl.lit(first.strftime("%Y-%m")))
    rewards = compute_rewards(savings, GENERIC_PROGRAM, programs=load_programs())
    rewards = _with_coverage(rewards, kwh.filter(pl.col("date") >= first), last.day)
    context.add_output_metadata({"qualified_baselines": int(model["qualified"].sum()) if model.height else 0})
    return Output(rewards, metadata=_summary(rewards))


@_rewards_asset(
    DR_EVENTS,
    ["intermediate", "int_meter_intervals_differenced"],
    (
        "Demand-response event reward (KPX CBL Mid(6/10): the 10 weekdays before the event, no "
        "holidays or earlier event days, per hour drop the 2 highest and 2 lowest, average 6); "
        "reduction over the event hours × the program's KRW/kWh. Partition key YYYY-MM-DDTHH-HH."
    ),
)
def dr_event_rewards(context: AssetExecutionContext, stores: StoresResource) -> Output[pl.DataFrame]:
    event = parse_dr_event(context.partition_key)
    earlier = sorted(
        parse_dr_event(k).day
        for k in context.instance.get_dynamic_partitions(DR_EVENTS.name)
        if parse_dr_event(k).day < event.day
    )
    hourly = hourly_kwh(stores.warehouse(), event.day - timedelta(days=CBL_LOOKBACK_DAYS), event.day)
    savings = dr_event_savings(
        hourly, event.key, event.day, event.hours, "mid_6_10", earlier, CBL_LOOKBACK_DAYS
    )
    rewards = compute_rewards(savings, DR_PROGRAM, on=event.day, programs=load_programs())
    metered = hourly.filter((pl.col("date") == event.day) & pl.col("hour").is_in(event.hours))
    rewards = _with_coverage(
        rewards, metered.rename({"hour": "_unit"}).select("household_id", "_unit"), len(event.hours)
    )
    return Output(rewards, metadata=_summary(rewards))


def _payout(context: AssetExecutionContext, stores: StoresResource, rewards: pl.DataFrame, program: str):
    engine = stores.app_database_url()
    ledger.upsert_programs(engine, load_programs().rules)
    recorded = ledger.record_rewards(engine, rewards)
    period = context.partition_key if program == DR_PROGRAM else context.partition_key[:7]
    out_dir = get_settings().data_dir / "exports" / program / period
    paths = ledger.export_settlement(engine, program, period, out_dir)  # settles, stores totals
    settlement = paths.settlement
    return MaterializeResult(
        metadata={
            "dagster/row_count": rewards.height,
            "accruals": recorded.accruals,
            "adjustments": recorded.adjustments,
            "unchanged": recorded.unchanged,
            "points_accrued": recorded.points_accrued,
            "households_paid": settlement.households_paid,
            "reward_krw": settlement.reward_krw,
            "settlement_revision": settlement.revision,
            "export": MetadataValue.path(str(paths.csv)),
            "sha256": paths.checksum,
        }
    )


def _payout_asset(program: str, rewards_asset, partitions_def, name: str):
    @asset(
        name=name,
        partitions_def=partitions_def,
        group_name=GROUP,
        owners=OWNERS,
        kinds={"python", "sql"},
        ins={"rewards": AssetIn(rewards_asset.key)},
        description=(
            f"Pays {program}: records each household's result in the append-only points ledger "
            "(idempotent per household, program and period; a changed result appends an adjustment), "
            "settles the period and writes the checksummed export file under var/exports/."
        ),
    )
    def payout(context: AssetExecutionContext, stores: StoresResource, rewards: pl.DataFrame):
        return _payout(context, stores, rewards, program)

    return payout


cashback_payout = _payout_asset(CASHBACK_PROGRAM, cashback_rewards, monthly_partitions(), "cashback_payout")
weather_normalized_payout = _payout_asset(
    GENERIC_PROGRAM, weather_normalized_rewards, monthly_partitions(), "weather_normalized_payout"
)
dr_event_payout = _payout_asset(DR_PROGRAM, dr_event_rewards, DR_EVENTS, "dr_event_payout")

REWARD_ASSETS = [cashback_rewards, weather_normalized_rewards, dr_event_rewards]
PAYOUT_ASSETS = [cashback_payout, weather_normalized_payout, dr_event_payout]
