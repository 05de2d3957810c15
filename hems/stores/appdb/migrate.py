"""Run the Alembic migrations from code: no alembic.ini, the URL comes from the caller or settings.

``hems`` start-up paths (CLI, API, Dagster) call :func:`migrate`; it is idempotent and
serialized (PostgreSQL advisory lock / SQLite ``BEGIN IMMEDIATE``), so two processes starting
together do not both try to create the tables.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from hems.stores.appdb.engine import get_engine, resolve_url, write_connection

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_ADVISORY_LOCK_KEY = 0x48454D53  # "HEMS"


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config for these migrations (also for `alembic revision` from code)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    if url:
        cfg.attributes["url"] = url
    return cfg


def head_revision() -> str:
    """The newest revision shipped with the code."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(url: str | None = None) -> str | None:
    """The revision the database is at (None when never migrated)."""
    with get_engine(url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(url: str | None = None, revision: str = "head") -> str | None:
    """Upgrade the database to ``revision``; a no-op when already there. Returns the new revision."""
    url = resolve_url(url)
    cfg = alembic_config(url)
    with write_connection(url) as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_ADVISORY_LOCK_KEY})")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return current_revision(url)
