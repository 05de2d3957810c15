"""Alembic environment, driven from code (no alembic.ini): see ``hems.stores.appdb.migrate``.

The caller passes an open connection (``config.attributes["connection"]``) so migrations run
on the engine configured by ``hems.stores.appdb`` (SQLite pragmas, error mapping); otherwise the
URL comes from ``config.attributes["url"]`` and falls back to the settings.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from hems.stores.appdb.engine import get_engine, resolve_url
from hems.stores.appdb.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return resolve_url(config.attributes.get("url") or config.get_main_option("sqlalchemy.url"))


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite's ALTER TABLE is minimal
        compare_type=True,
        compare_server_default=False,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    with get_engine(_url()).connect() as connection:
        _configure(connection)
        connection.commit()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
