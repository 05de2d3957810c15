"""Idempotent bulk writes: insert-or-update by key with the dialect's ON CONFLICT.

Pipelines re-run partitions; writing the same day twice must replace, never duplicate (DESIGN §4).
Only the columns present in the rows are updated, so a writer that knows only some columns
(e.g. cost computed later) does not null the others.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from hems.stores.appdb.engine import write_connection
from hems.stores.appdb.models import Base, EnergyUsageDaily, Household, IotDevice

if TYPE_CHECKING:
    import polars as pl

    Rows = Iterable[Mapping[str, Any]] | pl.DataFrame

DEFAULT_CHUNK = 1_000
_NEVER_UPDATED = frozenset({"id", "created_at"})


def upsert_energy_usage_daily(rows: Rows, url: str | None = None, *, chunk_size: int = DEFAULT_CHUNK) -> int:
    """Insert or update daily usage by (household_id, date); returns the rows written."""
    return upsert(EnergyUsageDaily, rows, ("household_id", "date"), url, chunk_size=chunk_size)


def upsert_households(rows: Rows, url: str | None = None, *, chunk_size: int = DEFAULT_CHUNK) -> int:
    """Insert or update households by id (``created_at`` is kept)."""
    return upsert(Household, rows, ("id",), url, chunk_size=chunk_size)


def upsert_devices(rows: Rows, url: str | None = None, *, chunk_size: int = DEFAULT_CHUNK) -> int:
    """Insert or update IoT devices by id."""
    return upsert(IotDevice, rows, ("id",), url, chunk_size=chunk_size)


def upsert(
    target: sa.Table | type[Base],
    rows: Rows,
    keys: Sequence[str],
    url: str | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK,
) -> int:
    """Insert-or-update ``rows`` into a table (or model) by the unique ``keys``, in one transaction.

    Duplicate keys within ``rows``: the last one wins. Rows with different column sets are
    written as separate statements so each updates only its own columns.
    """
    table = target if isinstance(target, sa.Table) else cast(sa.Table, target.__table__)
    records = _records(rows)
    if not records:
        return 0
    allowed = set(table.c.keys()) - ({"id"} - set(keys))  # surrogate ids come from the database
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for i, record in enumerate(records):
        unknown = record.keys() - allowed
        if unknown:
            raise ValueError(f"{table.name}: unknown column(s) {sorted(unknown)} in row {i}")
        row = {name: _coerce(table.c[name], value) for name, value in record.items()}
        key = tuple(row.get(k) for k in keys)
        if any(v is None for v in key):
            raise ValueError(f"{table.name}: row {i} lacks key column(s) {list(keys)}")
        latest[key] = row

    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in latest.values():
        groups.setdefault(tuple(sorted(row)), []).append(row)

    with write_connection(url) as conn:
        insert = _insert_for(conn.dialect.name)
        for columns, group in groups.items():
            stmt = insert(table)
            set_: dict[str, Any] = {
                c: stmt.excluded[c] for c in columns if c not in keys and c not in _NEVER_UPDATED
            }
            if "updated_at" in table.c and "updated_at" not in columns:
                set_["updated_at"] = sa.func.now()
            stmt = (
                stmt.on_conflict_do_update(index_elements=list(keys), set_=set_)
                if set_
                else stmt.on_conflict_do_nothing(index_elements=list(keys))
            )
            for start in range(0, len(group), max(1, chunk_size)):
                conn.execute(stmt, group[start : start + max(1, chunk_size)])
    return len(latest)


def _insert_for(dialect: str) -> Any:
    if dialect == "postgresql":
        return postgresql.insert
    if dialect == "sqlite":
        return sqlite.insert
    raise NotImplementedError(f"upsert supports PostgreSQL and SQLite, not {dialect}")


def _records(rows: Rows) -> list[Mapping[str, Any]]:
    to_dicts = getattr(rows, "to_dicts", None)  # polars.DataFrame, without importing polars here
    if callable(to_dicts):
        return to_dicts()
    return list(rows)  # type: ignore[arg-type]


def _coerce(column: sa.Column[Any], value: Any) -> Any:
    """ISO strings to dates/datetimes (SQLite's Date type refuses strings), NaN to NULL."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    python_type = _python_type(column)
    if python_type is dt.date:
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, str):
            return dt.date.fromisoformat(value)
    elif python_type is dt.datetime and isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    return value


def _python_type(column: sa.Column[Any]) -> type | None:
    try:
        return column.type.python_type
    except NotImplementedError:
        return None
