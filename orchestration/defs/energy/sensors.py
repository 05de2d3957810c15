"""Micro-batch: refresh today's partition every few minutes while readings arrive.

``microbatch_today`` counts today's points in the raw store (a cheap count, not a read) and asks
for a landing run of today's partition when the count moved. ``marts_after_landing`` follows every
successful landing run with a marts run: after a micro-batch it recomputes the interval models
only from today on (incremental dbt); after the nightly finalize or a backfill from the UI it
recomputes every day, which also heals anything the incremental lookback cannot see.
"""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunStatusSensorContext,
    SensorEvaluationContext,
    SkipReason,
    run_status_sensor,
    sensor,
)

from hems.contracts import ENERGY_CONSUMPTION
from hems.settings import get_settings
from orchestration.defs.energy.resources import StoresResource
from orchestration.defs.energy.schedules import landing_job, marts_job

#: how often the micro-batch sensor looks for new readings (seconds)
MICROBATCH_INTERVAL_S = 300


def today_window(now: datetime, tz: str) -> tuple[str, datetime, datetime]:
    """Today's partition key and its [local midnight, next midnight) window for ``now``."""
    local = now.astimezone(ZoneInfo(tz))
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return start.date().isoformat(), start, start + timedelta(days=1)


@sensor(
    job=landing_job,
    minimum_interval_seconds=MICROBATCH_INTERVAL_S,
    default_status=DefaultSensorStatus.RUNNING,
    description="Land today's readings again whenever more have arrived (every 5 minutes at most).",
)
def microbatch_today(context: SensorEvaluationContext, stores: StoresResource):
    key, start, end = today_window(datetime.now().astimezone(), get_settings().domain.timezone)
    count = stores.raw_store().count_points(ENERGY_CONSUMPTION.name, start, end)
    if count == 0:
        return SkipReason(f"no readings for {key} yet")
    cursor = f"{key}:{count}"
    if context.cursor == cursor:
        return SkipReason(f"no new readings for {key} since the last micro-batch ({count:,} points)")
    context.update_cursor(cursor)
    return RunRequest(run_key=f"microbatch-{cursor}", partition_key=key, tags={"hems/trigger": "microbatch"})


def first_landed_day(tags: dict[str, str], partition_key: str | None) -> str | None:
    """The first local day a landing run wrote: its partition, or the start of its range."""
    return tags.get("dagster/asset_partition_range_start") or partition_key


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    monitored_jobs=[landing_job],
    request_job=marts_job,
    default_status=DefaultSensorStatus.RUNNING,
    description="After each successful landing run, rebuild the marts from its first day on.",
)
def marts_after_landing(context: RunStatusSensorContext):
    run = context.dagster_run
    config = {}
    if run.tags.get("hems/trigger") == "microbatch":
        config["refresh_from"] = first_landed_day(dict(run.tags), run.tags.get("dagster/partition"))
    return RunRequest(
        run_key=f"marts-after-{run.run_id}",
        run_config={"ops": {"hems_dbt_models": {"config": config}}},
        tags={"hems/trigger": f"landing:{run.run_id}"},
    )


SENSORS = [microbatch_today, marts_after_landing]
