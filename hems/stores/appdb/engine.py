"""Engines and sessions for the app database, one cached engine per URL.

SQLite (embedded profile) is tuned so the API can read while a pipeline writes: WAL journal,
a busy timeout instead of instant "database is locked", foreign keys on (SQLite ignores them
otherwise), and real BEGINs (the sqlite3 driver's legacy mode runs DDL and SELECTs outside any
transaction, which breaks atomic migrations). Connection failures become one
:class:`~hems.errors.ServiceUnavailable` line naming the address and the fix.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, ExceptionContext, make_url
from sqlalchemy.orm import Session, sessionmaker

from hems.errors import HemsError, ServiceUnavailable

SQLITE_BUSY_TIMEOUT_MS = 10_000
PG_CONNECT_TIMEOUT_S = 5

_lock = threading.Lock()
_engines: dict[str, tuple[Engine, sessionmaker[Session]]] = {}


def resolve_url(url: str | None = None) -> str:
    """The given URL, else the configured one (``settings.app_database_url``, by profile)."""
    if url:
        return url
    from hems.settings import get_settings

    return get_settings().app_database_url


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for ``url`` (created on first use; connecting is lazy)."""
    return _cached(resolve_url(url))[0]


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on any exception."""
    factory = _cached(resolve_url(url))[1]
    with factory.begin() as session:
        yield session


@contextmanager
def write_connection(url: str | None = None) -> Iterator[Connection]:
    """A Core connection in one write transaction (SQLite: ``BEGIN IMMEDIATE``, so concurrent
    writers queue on the busy timeout instead of failing on a stale read snapshot)."""
    engine = get_engine(url)
    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
        yield conn


def dispose_engine(url: str | None = None) -> None:
    """Close the pooled connections of one URL and forget its engine (tests, database drops)."""
    with _lock:
        entry = _engines.pop(resolve_url(url), None)
    if entry:
        entry[0].dispose()


def describe(url: URL) -> tuple[str, str]:
    """(service name, address without credentials) for messages."""
    if url.get_backend_name() == "sqlite":
        return "SQLite", url.database or ":memory:"
    name = "PostgreSQL" if url.get_backend_name() == "postgresql" else url.get_backend_name()
    return name, f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"


def _cached(url: str) -> tuple[Engine, sessionmaker[Session]]:
    with _lock:
        entry = _engines.get(url)
        if entry is None:
            engine = _create_engine(url)
            entry = _engines[url] = (engine, sessionmaker(engine, expire_on_commit=False))
        return entry


def _create_engine(url_text: str) -> Engine:
    try:
        url = make_url(url_text)
    except sa.exc.ArgumentError as exc:
        raise HemsError(
            f"app database URL is not valid ({exc}): check HEMS_PROFILE, HEMS_POSTGRES__*"
        ) from None
    backend = url.get_backend_name()
    try:
        if backend == "sqlite":
            engine = _sqlite_engine(url)
        elif backend == "postgresql":
            engine = sa.create_engine(
                url, pool_pre_ping=True, connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S}
            )
        else:
            engine = sa.create_engine(url, pool_pre_ping=True)
    except sa.exc.NoSuchModuleError as exc:
        raise HemsError(f"app database URL uses an unknown driver ({exc})") from None
    sa.event.listen(engine, "handle_error", _on_error)
    return engine


def _sqlite_engine(url: URL) -> Engine:
    path = url.database
    if path and path != ":memory:" and not path.startswith("file:"):
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ServiceUnavailable(
                "SQLite", path, "make its directory writable or set HEMS_DATA_DIR", exc
            ) from None
    engine = sa.create_engine(url)

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_con: Any, _record: Any) -> None:
        dbapi_con.isolation_level = None  # let the "begin" hook below emit BEGIN itself
        cur = dbapi_con.cursor()
        cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer, nor it them
        cur.execute("PRAGMA synchronous=NORMAL")  # safe with WAL, far fewer fsyncs
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _on_error(ctx: ExceptionContext) -> None:
    """Turn "cannot connect" (not query errors) into ServiceUnavailable; pre-ping failures pass
    through so the pool can reconnect."""
    if ctx.is_pre_ping or ctx.engine is None:
        return
    connect_failed = ctx.connection is None or ctx.is_disconnect
    if not connect_failed or not isinstance(ctx.sqlalchemy_exception, sa.exc.DBAPIError):
        return
    raise unavailable(ctx.engine.url, ctx.original_exception)


def unavailable(url: URL, cause: BaseException) -> ServiceUnavailable:
    service, address = describe(url)
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    lowered = text.lower()
    if service == "SQLite":
        fix = "check that the file and its directory are readable and writable (HEMS_DATA_DIR)"
    elif "does not exist" in lowered and "database" in lowered:
        fix = (
            f"create it with `createdb -h {url.host} -p {url.port or 5432} -U {url.username} "
            f"{url.database}` or run `hems services up`"
        )
    elif "authentication" in lowered or "password" in lowered:
        fix = "check HEMS_POSTGRES__USER and HEMS_POSTGRES__PASSWORD"
    else:
        fix = "start it with `hems services up`"
    return ServiceUnavailable(service, address, fix, text)
