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
from orchestration.defs.incentives.assets import PAYOUT_ASSETS, REWARD_ASSETS  # noqa: E402
from orchestration.defs.incentives.checks import PAYOUT_CHECKS  # noqa: E402
from orchestration.defs.incentives.schedules import (  # noqa: E402
    dr_event_job,
    monthly_incentives_job,
    settle_last_month,
)
from orchestration.defs.ml import ML_ASSETS, ML_CHECKS, ml_training_job  # noqa: E402
from orchestration.defs.quality.checks import QUALITY_CHECKS  # noqa: E402

defs = Definitions(
    assets=[
        raw_energy_readings,
        raw_households,
        raw_devices,
        hems_dbt_models,
        app_energy_usage_daily,
        *REWARD_ASSETS,
        *PAYOUT_ASSETS,
        *ML_ASSETS,
    ],
    asset_checks=[*QUALITY_CHECKS, *PAYOUT_CHECKS, *ML_CHECKS],
    jobs=[landing_job, marts_job, monthly_incentives_job, dr_event_job, ml_training_job],
    schedules=[finalize_yesterday, settle_last_month],
    sensors=SENSORS,
    resources={"stores": StoresResource(), "dbt": dbt_resource()},
)
