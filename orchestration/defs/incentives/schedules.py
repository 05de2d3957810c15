"""Incentive jobs and the monthly schedule (cashback and weather-normalized savings for last month)."""

from datetime import datetime

from dagster import AssetSelection, RunRequest, ScheduleEvaluationContext, define_asset_job, schedule

from hems.settings import get_settings
from orchestration.defs.incentives.assets import (
    cashback_payout,
    cashback_rewards,
    dr_event_payout,
    dr_event_rewards,
    weather_normalized_payout,
    weather_normalized_rewards,
)
from orchestration.defs.incentives.partitions import DR_EVENTS, monthly_partitions

monthly_incentives_job = define_asset_job(
    "incentives_monthly",
    selection=AssetSelection.assets(
        cashback_rewards, cashback_payout, weather_normalized_rewards, weather_normalized_payout
    ),
    partitions_def=monthly_partitions(),
    description="Cashback and weather-normalized rewards for one month, checked, then paid into the ledger.",
)

dr_event_job = define_asset_job(
    "incentives_dr_event",
    selection=AssetSelection.assets(dr_event_rewards, dr_event_payout),
    partitions_def=DR_EVENTS,
    description="One demand-response event: CBL, reduction, reward, checked, then paid into the ledger.",
)


@schedule(
    job=monthly_incentives_job, cron_schedule="0 3 3 * *", execution_timezone=get_settings().domain.timezone
)
def settle_last_month(context: ScheduleEvaluationContext) -> RunRequest:
    """On the 3rd at 03:00 local time (late readings landed, nightly marts rebuilt), last month."""
    tick: datetime = context.scheduled_execution_time
    year, month = (tick.year, tick.month - 1) if tick.month > 1 else (tick.year - 1, 12)
    key = f"{year:04d}-{month:02d}-01"
    return RunRequest(run_key=f"incentives-{key}", partition_key=key)
