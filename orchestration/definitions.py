"""The only Dagster entry point: ``dagster dev -m orchestration.definitions``."""

from __future__ import annotations

from dagster import Definitions

from orchestration.lib.environment import ensure_manifest

ensure_manifest()

from orchestration.defs.energy.assets import (  # noqa: E402 - needs the dbt manifest first
    app_energy_usage_daily,
    hems_dbt_models,
    raw_devices,
    raw_energy_readings,
    raw_households,
)
from orchestration.defs.energy.resources import StoresResource, dbt_resource  # noqa: E402
from orchestration.defs.energy.schedules import (  # noqa: E402
    finalize_yesterday,
    landing_job,
    marts_job,
)
from orchestration.defs.energy.sensors import SENSORS  # noqa: E402
from orchestration.defs.quality.checks import QUALITY_CHECKS  # noqa: E402

defs = Definitions(
    assets=[raw_energy_readings, raw_households, raw_devices, hems_dbt_models, app_energy_usage_daily],
    asset_checks=QUALITY_CHECKS,
    jobs=[landing_job, marts_job],
    schedules=[finalize_yesterday],
    sensors=SENSORS,
    resources={"stores": StoresResource(), "dbt": dbt_resource()},
)
