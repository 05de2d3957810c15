"""Resources of the energy domain, chosen by profile (stores from hems.stores, dbt target)."""

from __future__ import annotations

import sys
from pathlib import Path

from dagster import ConfigurableResource
from dagster_dbt import DbtCliResource

from hems.settings import Settings, get_settings
from hems.stores.raw_store import RawStore, get_raw_store
from hems.stores.warehouse import Warehouse, get_warehouse
from orchestration.lib.environment import DBT_PROJECT_DIR, apply_dbt_env, dbt_target


class StoresResource(ConfigurableResource):
    """The configured raw store, warehouse and app database URL (from HEMS_ settings)."""

    def raw_store(self) -> RawStore:
        return get_raw_store()

    def warehouse(self) -> Warehouse:
        return get_warehouse()

    def app_database_url(self) -> str:
        return get_settings().app_database_url


def dbt_resource(settings: Settings | None = None) -> DbtCliResource:
    settings = apply_dbt_env(settings)
    # the dbt of this environment, whether or not the virtualenv's bin is on PATH
    beside = Path(sys.executable).parent / "dbt"
    return DbtCliResource(
        project_dir=str(DBT_PROJECT_DIR),
        profiles_dir=str(DBT_PROJECT_DIR),
        target=dbt_target(settings),
        dbt_executable=str(beside) if beside.exists() else "dbt",
    )
