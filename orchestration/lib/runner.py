"""Run the energy pipeline from code (used by `hems demo` and the end-to-end tests).

Runs go through the Dagster instance in DAGSTER_HOME, so they show in the Dagster UI exactly
like runs launched there: one ranged run lands every day of the range, one run builds the marts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date

from hems.settings import PROJECT_ROOT, Profile, Settings, get_settings


@dataclass(frozen=True)
class PipelineResult:
    landed_partitions: int
    landed_rows: int
    run_ids: tuple[str, ...]
    #: asset check name → passed, for every check the marts run evaluated (dbt tests and GE suites)
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def failed_checks(self) -> list[str]:
        return sorted(name for name, passed in self.checks.items() if not passed)


def prepare_dagster_home(settings: Settings) -> str:
    """DAGSTER_HOME under the data dir; in stack the project's dagster.yaml (PostgreSQL storage)."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if settings.profile is Profile.stack:
        pg = settings.postgres
        os.environ.setdefault("HEMS_POSTGRES__HOST", pg.host)
        os.environ.setdefault("HEMS_POSTGRES__PORT", str(pg.port))
        os.environ.setdefault("HEMS_POSTGRES__USER", pg.user)
        os.environ.setdefault("HEMS_POSTGRES__PASSWORD", pg.password.get_secret_value())
        os.environ.setdefault("HEMS_POSTGRES__DAGSTER_DATABASE", pg.dagster_database)
        target.write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    else:
        target.write_text("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(home)
    return str(home)


def _run_definitions(settings: Settings):
    """The UI's assets, checks and jobs, with resources resolved now (not at import): the profile
    decides the dbt target and the stores."""
    from dagster import Definitions

    from orchestration.definitions import defs
    from orchestration.defs.energy.resources import StoresResource, dbt_resource

    return Definitions(
        assets=defs.assets,
        asset_checks=defs.asset_checks,
        jobs=defs.jobs,
        resources={"stores": StoresResource(), "dbt": dbt_resource(settings)},
    )


def run_energy_pipeline(
    first_day: date, last_day: date, settings: Settings | None = None, *, incremental: bool = False
) -> PipelineResult:
    """Land local days ``first_day..last_day`` (inclusive), then build and publish the marts.

    ``incremental``: the interval models recompute only ``first_day`` on (as a micro-batch does);
    otherwise every day is recomputed.
    """
    settings = settings or get_settings()
    prepare_dagster_home(settings)
    from dagster import DagsterInstance

    from orchestration.defs.energy.schedules import landing_job, marts_job

    instance = DagsterInstance.get()
    run_defs = _run_definitions(settings)
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # the UI keeps the full log
    landing = run_defs.resolve_job_def(landing_job.name).execute_in_process(
        instance=instance,
        run_config=quiet,
        tags={
            "dagster/asset_partition_range_start": first_day.isoformat(),
            "dagster/asset_partition_range_end": last_day.isoformat(),
        },
        raise_on_error=True,
    )
    # a ranged run reports one materialization per partition, each with the run's total
    counts = [
        int(event.materialization.metadata["dagster/row_count"].value)  # type: ignore[arg-type]
        for event in landing.get_asset_materialization_events()
        if "dagster/row_count" in event.materialization.metadata
    ]
    rows = max(counts, default=0)
    # marts: households/devices → dbt build (tests as checks) → GE suites (blocking) → publish
    dbt_config = {"refresh_from": first_day.isoformat()} if incremental else {}
    marts = run_defs.resolve_job_def(marts_job.name).execute_in_process(
        instance=instance,
        run_config={**quiet, "ops": {"hems_dbt_models": {"config": dbt_config}}},
        raise_on_error=True,
    )
    return PipelineResult(
        landed_partitions=(last_day - first_day).days + 1,
        landed_rows=rows,
        run_ids=(landing.run_id, marts.run_id),
        checks={e.check_name: e.passed for e in marts.get_asset_check_evaluations()},
    )


@dataclass(frozen=True)
class IncentiveResult:
    run_ids: tuple[str, ...]
    checks: dict[str, bool]
    #: program period → reward_krw total paid
    paid_krw: dict[str, int]


def run_incentive_pipeline(
    months: list[date], dr_events: list[str], settings: Settings | None = None
) -> IncentiveResult:
    """Rewards, payout checks and ledger payouts for ``months`` (first days) and DR event keys
    (``YYYY-MM-DDTHH-HH``, registered as partitions first), through the UI's jobs."""
    settings = settings or get_settings()
    prepare_dagster_home(settings)
    from dagster import DagsterInstance

    from orchestration.defs.incentives.partitions import DR_EVENTS, parse_dr_event
    from orchestration.defs.incentives.schedules import dr_event_job, monthly_incentives_job

    for key in dr_events:
        parse_dr_event(key)  # a clear error before anything runs
    instance = DagsterInstance.get()
    run_defs = _run_definitions(settings)
    known = set(instance.get_dynamic_partitions(DR_EVENTS.name))
    new = [k for k in dr_events if k not in known]
    if new:
        instance.add_dynamic_partitions(DR_EVENTS.name, new)
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    runs, checks, paid = [], {}, {}
    jobs = [(monthly_incentives_job.name, m.replace(day=1).isoformat()) for m in months]
    jobs += [(dr_event_job.name, k) for k in dr_events]
    for job_name, key in jobs:
        result = run_defs.resolve_job_def(job_name).execute_in_process(
            instance=instance, run_config=quiet, partition_key=key, raise_on_error=True
        )
        runs.append(result.run_id)
        checks.update({f"{e.asset_key.to_user_string()}:{e.check_name}": e.passed
                       for e in result.get_asset_check_evaluations()})  # fmt: skip
        for event in result.get_asset_materialization_events():
            meta = event.materialization.metadata
            if "reward_krw" in meta:
                paid[f"{event.asset_key.to_user_string()}:{key}"] = int(meta["reward_krw"].value)  # type: ignore[arg-type]
    return IncentiveResult(tuple(runs), checks, paid)


def run_ml_pipeline(settings: Settings | None = None) -> PipelineResult:
    """Features → train → evaluate → promote → predictions → performance (the ml_training job)."""
    settings = settings or get_settings()
    prepare_dagster_home(settings)
    from dagster import DagsterInstance

    from orchestration.defs.ml import ml_training_job

    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    result = (
        _run_definitions(settings)
        .resolve_job_def(ml_training_job.name)
        .execute_in_process(instance=DagsterInstance.get(), run_config=quiet, raise_on_error=True)
    )
    return PipelineResult(
        landed_partitions=0,
        landed_rows=0,
        run_ids=(result.run_id,),
        checks={e.check_name: e.passed for e in result.get_asset_check_evaluations()},
    )
