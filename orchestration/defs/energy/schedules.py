"""Jobs and schedules of the energy domain.

Nightly (local time): land yesterday's readings in full; the marts follow every successful landing
run through the ``marts_after_landing`` sensor (sensors.py), so there is no separate marts schedule.
"""

from datetime import datetime, timedelta

from dagster import (
    AssetSelection,
    RunRequest,
    ScheduleEvaluationContext,
    define_asset_job,
    schedule,
)

from hems.settings import get_settings
from orchestration.defs.energy.assets import (
    app_energy_usage_daily,
    hems_dbt_models,
    raw_devices,
    raw_energy_readings,
    raw_households,
)
from orchestration.defs.energy.partitions import daily_partitions

landing_job = define_asset_job(
    "energy_landing",
    selection=AssetSelection.assets(raw_energy_readings),
    partitions_def=daily_partitions(),
    description="Land one local day of raw readings into the warehouse.",
)

marts_job = define_asset_job(
    "energy_marts",
    selection=AssetSelection.assets(raw_households, raw_devices, hems_dbt_models, app_energy_usage_daily),
    description=(
        "Copy households and devices, build and test the dbt models, then publish energy_usage_daily "
        "to the app database."
    ),
)

_TZ = get_settings().domain.timezone


@schedule(job=landing_job, cron_schedule="20 0 * * *", execution_timezone=_TZ)
def finalize_yesterday(context: ScheduleEvaluationContext) -> RunRequest:
    """At 00:20 local time, land yesterday's complete day (late readings included)."""
    tick: datetime = context.scheduled_execution_time
    key = (tick - timedelta(days=1)).strftime("%Y-%m-%d")
    return RunRequest(run_key=f"finalize-{key}", partition_key=key)
