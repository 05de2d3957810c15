"""The environment switch: which dbt target and which stores a run uses, from hems.settings.

dbt reads its connection from environment variables (transforms/dbt/profiles.yml); this module
is the one place that derives them from the settings tree, so dbt and Python never disagree.
"""

from __future__ import annotations

import os
from pathlib import Path

from hems.settings import PROJECT_ROOT, Profile, Settings, get_settings

DBT_PROJECT_DIR = PROJECT_ROOT / "transforms" / "dbt"


def dbt_target(settings: Settings) -> str:
    return "postgres" if settings.profile is Profile.stack else "duckdb"


def dbt_env(settings: Settings) -> dict[str, str]:
    pg = settings.postgres
    return {
        "HEMS_DBT_TARGET": dbt_target(settings),
        "HEMS_DBT_DUCKDB_PATH": str(settings.warehouse_path),
        "HEMS_DBT_PG_HOST": pg.host,
        "HEMS_DBT_PG_PORT": str(pg.port),
        "HEMS_DBT_PG_USER": pg.user,
        "HEMS_DBT_PG_PASSWORD": pg.password.get_secret_value(),
        "HEMS_DBT_PG_DATABASE": pg.warehouse_database,
    }


def apply_dbt_env(settings: Settings | None = None) -> Settings:
    """Export the dbt connection variables into this process (dbt subprocesses inherit them)."""
    settings = settings or get_settings()
    os.environ.update(dbt_env(settings))
    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    return settings


def manifest_path() -> Path:
    return DBT_PROJECT_DIR / "target" / "manifest.json"


def ensure_manifest(force: bool = False) -> Path:
    """Parse the dbt project when its manifest is missing (or forced), so definitions can load.

    Deployments run this once at build time (``hems dbt-parse`` / ``make demo``); here it is the
    fallback that keeps a fresh clone loadable in the Dagster UI.
    """
    path = manifest_path()
    if path.exists() and not force and not _project_changed_since(path.stat().st_mtime):
        return path
    apply_dbt_env()
    from dbt.cli.main import dbtRunner

    result = dbtRunner().invoke(
        ["parse", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR), "--quiet"]
    )
    if not result.success or not path.exists():
        raise RuntimeError(f"dbt parse failed for {DBT_PROJECT_DIR}: {result.exception}")
    return path


def _project_changed_since(mtime: float) -> bool:
    """A model, macro, seed or the project file is newer than the manifest (a stale parse)."""
    watched = [DBT_PROJECT_DIR / "dbt_project.yml"]
    for folder in ("models", "macros", "seeds", "tests"):
        watched.extend(p for p in (DBT_PROJECT_DIR / folder).rglob("*") if p.is_file())
    return any(p.stat().st_mtime > mtime for p in watched)
