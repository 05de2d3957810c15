"""ML domain of the Dagster definitions: assets, checks, a training job (merged in definitions.py).

``ml_defs`` needs the ``stores`` resource (:class:`StoresResource`, the same as the energy
domain's) and runs after ``marts/energy_usage_daily``.
"""

from dagster import AssetSelection, Definitions, define_asset_job

from orchestration.defs.energy.resources import StoresResource
from orchestration.defs.ml.assets import ML_ASSETS
from orchestration.defs.ml.checks import ML_CHECKS

ml_training_job = define_asset_job(
    "ml_training",
    selection=AssetSelection.groups("ml"),
    description="features → train → evaluate → promote → predictions → model performance",
)

ml_defs = Definitions(
    assets=ML_ASSETS,
    asset_checks=ML_CHECKS,
    jobs=[ml_training_job],
    resources={"stores": StoresResource()},
)

__all__ = ["ML_ASSETS", "ML_CHECKS", "ml_defs", "ml_training_job"]
