"""Points ledger and program settlement over the app database (issue 5 item 3, DESIGN §4-§5).

The ledger pays households, so every write is append-only and idempotent:

- ``record_rewards`` writes one ``rewards`` row per (household, program, period) (upsert) and
  brings the ledger to the frame's points for that key: the first time an ``accrual`` keyed
  ``accrual:{program}:{household}:{period}``, later only the *difference* as an ``adjustment``
  keyed ``adjustment:{program}:{household}:{period}:{n}`` (``n`` = entries already there). The
  same result twice writes nothing; two runs racing on the same state derive the same key, so
  the unique ``idempotency_key`` lets exactly one through and the loser retries from fresh state.
- ``redeem`` and ``expire_points`` append negative entries; ``balance_after`` is the running
  balance in id order, so writers are serialized: on PostgreSQL bulk writers take an exclusive
  advisory lock and a redemption takes it shared plus a per-household advisory lock (locking the
  household's latest ledger row FOR UPDATE would not cover its first entry, nor make a waiting
  writer see the row committed meanwhile); SQLite serializes writers with ``BEGIN IMMEDIATE``.
- Expiry is FIFO: every negative entry (redemption, expiry, clawback adjustment) consumes the
  oldest positive entries first, so what is left of the entries posted on or before the cutoff
  is ``max(0, matured - consumed)`` — no per-lot bookkeeping.

Settlement sums one program period (households paid, points, KRW) into ``settlements`` and
exports a CSV plus a ``sha256sum``-format checksum file, both written atomically.
Functions take an :class:`~sqlalchemy.engine.Engine` from :func:`hems.stores.appdb.get_engine`
(or a URL, or ``None`` for the configured app database); the schema comes from the migrations.
"""

from __future__ import annotations

import calendar
import csv
import dataclasses
import datetime as dt
import hashlib
import io
import json
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, cast

import polars as pl
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from hems.errors import HemsError
from hems.stores.appdb.engine import get_engine
from hems.stores.appdb.models import (
    Household,
    LedgerEntryType,
    PointsLedger,
    ProgramKind,
    Reward,
    RewardProgram,
    Settlement,
)

DEFAULT_VALIDITY_MONTHS = 24  # platform policy, not a KEPCO rule: configurable per call
MAX_ATTEMPTS = 3  # retries after losing an idempotency-key race (each one re-reads the ledger)
ANALYZE_AFTER_ROWS = 5_000  # PostgreSQL: refresh planner statistics after writing this many rows
IN_CHUNK = 5_000  # ids per IN (...) list: far below SQLite's and PostgreSQL's parameter limits
# PostgreSQL advisory lock keys: one bigint for "the ledger", an int pair per household.
_LEDGER_LOCK = 0x48454D534C4544  # "HEMSLED"
_HOUSEHOLD_LOCK_CLASS = 0x4C454447  # "LEDG"

STATUSES = ("qualified", "not_qualified", "no_savings")
FRAME_SCHEMA: dict[str, str] = {
    "household_id": "str",
    "program_code": "str",
    "period": "str",
    "baseline_kwh": "float",
    "actual_kwh": "float",
    "savings_kwh": "float",
    "savings_pct": "float",
    "reward_krw": "int",
    "points": "int",
    "status": "str",
    "reason": "str",
}
EXPORT_COLUMNS = (
    "record_type",
    "program_code",
    "period",
    "household_id",
    "status",
    "baseline_kwh",
    "actual_kwh",
    "savings_kwh",
    "savings_pct",
    "reward_krw",
    "points",
)

_LEDGER = cast(sa.Table, PointsLedger.__table__)
_REWARDS = cast(sa.Table, Reward.__table__)
_PROGRAMS = cast(sa.Table, RewardProgram.__table__)
_SETTLEMENTS = cast(sa.Table, Settlement.__table__)
_HOUSEHOLDS = cast(sa.Table, Household.__table__)
_EARNING = (LedgerEntryType.accrual.value, LedgerEntryType.adjustment.value)
_KEY_LENGTH: int = cast(sa.String, _LEDGER.c.idempotency_key.type).length or 200
_REWARD_VALUES = (
    "baseline_kwh",
    "actual_kwh",
    "savings_kwh",
    "savings_pct",
    "reward_krw",
    "status",
    "reason",
)
_EXPIRY_SCHEMA: dict[str, Any] = {
    "household_id": pl.String,
    "entry_type": pl.String,
    "points": pl.Int64,
    "balance_after": pl.Int64,
    "idempotency_key": pl.String,
    "note": pl.String,
    "created_at": pl.Datetime("us", "UTC"),
}
# PostgreSQL staging table for the rewards upsert (COPY in, then INSERT ... SELECT ... ON CONFLICT).
_STAGE = sa.Table(
    "ledger_rewards_stage",
    sa.MetaData(),
    sa.Column("household_id", sa.Text),
    sa.Column("program_id", sa.BigInteger),
    sa.Column("period", sa.Text),
    *(
        sa.Column(c, sa.Float)
        for c in ("baseline_kwh", "actual_kwh", "savings_kwh", "savings_pct", "reward_krw")
    ),
    sa.Column("status", sa.Text),
    sa.Column("reason", sa.Text),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)


class LedgerError(HemsError):
    """A ledger or settlement request that cannot be carried out; nothing was written."""


class InvalidRewardFrame(LedgerError):
    """The rewards frame breaks the input contract (columns, types, values)."""


class UnknownProgram(LedgerError):
    """A program code with no ``reward_programs`` row (upsert the configuration first)."""


class UnknownHousehold(LedgerError):
    """A household id with no ``households`` row."""


class InsufficientPoints(LedgerError):
    """A redemption larger than the household's balance."""

    def __init__(self, household_id: str, balance: int, requested: int) -> None:
        self.household_id, self.balance, self.requested = household_id, balance, requested
        super().__init__(
            f"household {household_id} has {balance} points, cannot redeem {requested}: nothing was written"
        )


class IdempotencyConflict(LedgerError):
    """An idempotency key reused for a different request."""


@dataclass(frozen=True)
class RecordSummary:
    """What one ``record_rewards`` call changed (``points_accrued`` is the net of the new entries)."""

    rows: int
    rewards_upserted: int
    accruals: int
    adjustments: int
    unchanged: int
    points_accrued: int
    attempts: int
    seconds: float


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    household_id: str
    program_code: str | None
    period: str | None
    entry_type: LedgerEntryType
    points: int
    balance_after: int
    idempotency_key: str
    created_at: dt.datetime
    note: str | None
    replayed: bool = False  # True when an earlier request with the same key is returned


@dataclass(frozen=True)
class ExpirySummary:
    as_of: dt.datetime
    cutoff: dt.datetime
    households: int
    points_expired: int


@dataclass(frozen=True)
class SettlementTotals:
    program_code: str
    period: str
    households: int  # households with a rewards row for the period
    households_paid: int  # of which net points > 0
    points: int
    reward_krw: int
    savings_kwh: float
    revision: int  # 1, +1 each time the totals change on re-settling
    settled_at: dt.datetime


@dataclass(frozen=True)
class ExportPaths:
    csv: Path
    sha256: Path
    checksum: str
    settlement: SettlementTotals


# --------------------------------------------------------------------------- programs


def upsert_programs(engine: Engine | str | None, programs: Iterable[Any]) -> dict[str, int]:
    """Insert or update ``reward_programs`` by code from the program configuration; returns code -> id.

    Each item is a mapping or an object (dataclass, pydantic model) with ``code`` (or
    ``program_code``), ``kind``, ``effective_from``, optional ``effective_to`` and ``name``
    (default: the code) and ``rules`` (default: every other field, so the rewards module's rule
    rows can be passed as they are). Several versions of one code become one row spanning them
    all, with ``rules = {"versions": [...]}`` (each version's rules and dates).
    """
    versions: dict[str, list[dict[str, Any]]] = {}
    for i, program in enumerate(programs):
        row = _program_row(program, i)
        versions.setdefault(row["code"], []).append(row)
    rows = [_merged_program(code, found) for code, found in versions.items()]
    if not rows:
        return {}
    with _write(_engine(engine)) as conn:
        stmt = _insert(conn)(_PROGRAMS)
        stmt = stmt.on_conflict_do_update(
            index_elements=["code"],
            set_={c: stmt.excluded[c] for c in ("name", "kind", "rules", "effective_from", "effective_to")},
        )
        conn.execute(stmt, rows)
        return _program_ids(conn, [r["code"] for r in rows])


def program_ids(engine: Engine | str | None, codes: Iterable[str]) -> dict[str, int]:
    """Program ids by code; raises :class:`UnknownProgram` naming every missing code."""
    with _engine(engine).connect() as conn:
        return _program_ids(conn, list(codes))


_PROGRAM_FIELDS = ("code", "program_code", "name", "kind", "rules", "effective_from", "effective_to")


def _program_row(program: Any, index: int) -> dict[str, Any]:
    if isinstance(program, Mapping):
        fields = dict(program)
    elif dataclasses.is_dataclass(program) and not isinstance(program, type):
        fields = dataclasses.asdict(program)
    elif hasattr(program, "model_dump"):
        fields = program.model_dump()
    else:
        fields = {k: getattr(program, k) for k in _PROGRAM_FIELDS if hasattr(program, k)}
    code = fields.get("code", fields.get("program_code"))
    where = f"program #{index} ({code!r})"
    if not isinstance(code, str) or not code.strip() or len(code) > 64:
        raise LedgerError(f"{where}: code must be a non-empty string of at most 64 characters")
    name = fields.get("name") or code
    if not isinstance(name, str):
        raise LedgerError(f"{where}: name must be text")
    kind = fields.get("kind")
    try:
        kind = ProgramKind(str(getattr(kind, "value", kind)))
    except ValueError:
        raise LedgerError(f"{where}: kind {kind!r} is not one of {[k.value for k in ProgramKind]}") from None
    rules = fields.get("rules")
    if rules is None:
        rules = {k: v for k, v in fields.items() if k not in _PROGRAM_FIELDS}
    if hasattr(rules, "model_dump"):
        rules = rules.model_dump(mode="json")
    if not isinstance(rules, Mapping):
        raise LedgerError(f"{where}: rules must be a mapping, got {type(rules).__name__}")
    start = _as_date(fields.get("effective_from"), f"{where}: effective_from")
    end = fields.get("effective_to")
    end = None if end is None or end == "" else _as_date(end, f"{where}: effective_to")
    if end is not None and end < start:
        raise LedgerError(f"{where}: effective_to {end} is before effective_from {start}")
    return {
        "code": code,
        "name": name,
        "kind": kind.value,
        "rules": _jsonable(dict(rules), where),
        "effective_from": start,
        "effective_to": end,
    }


def _merged_program(code: str, versions: list[dict[str, Any]]) -> dict[str, Any]:
    if len(versions) == 1:
        return versions[0]
    kinds = {v["kind"] for v in versions}
    if len(kinds) > 1:
        raise LedgerError(f"program {code}: its versions disagree on kind ({sorted(kinds)})")
    versions = sorted(versions, key=lambda v: v["effective_from"])
    ends = [v["effective_to"] for v in versions]
    return {
        "code": code,
        "name": versions[-1]["name"],
        "kind": versions[0]["kind"],
        "rules": {
            "versions": [
                {
                    "effective_from": v["effective_from"].isoformat(),
                    "effective_to": None if v["effective_to"] is None else v["effective_to"].isoformat(),
                    **v["rules"],
                }
                for v in versions
            ]
        },
        "effective_from": versions[0]["effective_from"],
        "effective_to": None if None in ends else max(ends),
    }


def _program_ids(conn: Connection, codes: Sequence[str]) -> dict[str, int]:
    wanted = sorted(set(codes))
    found: dict[str, int] = {}
    for among in _member_of(conn, _PROGRAMS.c.code, wanted):
        stmt = sa.select(_PROGRAMS.c.code, _PROGRAMS.c.id).where(among)
        found.update({str(code): int(pid) for code, pid in conn.execute(stmt).tuples()})
    missing = [c for c in wanted if c not in found]
    if missing:
        raise UnknownProgram(
            f"unknown program code(s) {missing[:10]}{' …' if len(missing) > 10 else ''}: "
            "add them to reward_programs with upsert_programs() first; nothing was written"
        )
    return found


# --------------------------------------------------------------------------- accrual


def record_rewards(
    engine: Engine | str | None, frame: pl.DataFrame, *, at: dt.datetime | None = None
) -> RecordSummary:
    """Upsert the frame's ``rewards`` rows and bring the ledger to its points, in one transaction.

    Re-running a period with the same result writes no ledger entry; a changed result appends an
    ``adjustment`` of the difference. ``at`` is the posting time (default now; expiry counts from it).
    """
    started = time.perf_counter()
    rows = validate_reward_frame(frame)
    if rows.height == 0:
        return RecordSummary(0, 0, 0, 0, 0, 0, 0, time.perf_counter() - started)
    posted = _utc(at)
    eng = _engine(engine)

    def attempt() -> tuple[int, int, int, int]:
        with _write(eng) as conn:
            return _record(conn, rows, posted)

    (accruals, adjustments, unchanged, net), attempts = _retrying(attempt)
    return RecordSummary(
        rows=rows.height,
        rewards_upserted=rows.height,
        accruals=accruals,
        adjustments=adjustments,
        unchanged=unchanged,
        points_accrued=net,
        attempts=attempts,
        seconds=time.perf_counter() - started,
    )


def validate_reward_frame(frame: Any) -> pl.DataFrame:
    """The rewards frame checked against the contract and normalized, or :class:`InvalidRewardFrame`."""
    if not isinstance(frame, pl.DataFrame):
        raise InvalidRewardFrame(f"reward frame must be a polars DataFrame, got {type(frame).__name__}")
    missing = [c for c in FRAME_SCHEMA if c not in frame.columns]
    if missing:
        raise InvalidRewardFrame(
            f"reward frame: missing column(s) {missing}; expected {list(FRAME_SCHEMA)}; nothing was written"
        )
    cols: list[pl.Expr] = []
    for name, kind in FRAME_SCHEMA.items():
        dtype = frame.schema[name]
        if kind == "str":
            if dtype not in (pl.String, pl.Categorical, pl.Null) and not isinstance(dtype, pl.Enum):
                raise InvalidRewardFrame(f"reward frame: column {name} must be text, got {dtype}")
            cols.append(pl.col(name).cast(pl.String))
        elif kind == "float":
            if not (dtype.is_numeric() or dtype == pl.Null):
                raise InvalidRewardFrame(f"reward frame: column {name} must be numeric, got {dtype}")
            cols.append(pl.col(name).cast(pl.Float64))
        else:
            if dtype.is_float():
                bad = frame.filter(pl.col(name).is_not_null() & (pl.col(name) != pl.col(name).round(0)))
                if bad.height:
                    raise InvalidRewardFrame(
                        f"reward frame: column {name} must hold whole numbers, "
                        f"e.g. {bad[name][0]} for household {bad['household_id'][0]}"
                    )
            elif not (dtype.is_integer() or dtype == pl.Null):
                raise InvalidRewardFrame(f"reward frame: column {name} must be an integer, got {dtype}")
            cols.append(pl.col(name).cast(pl.Int64))
    rows = frame.select(cols)

    def fail_where(condition: pl.Expr, message: str) -> None:
        bad = rows.filter(condition)
        if bad.height:
            first = bad.row(0, named=True)
            raise InvalidRewardFrame(
                f"reward frame: {message} ({bad.height} row(s), first: household {first['household_id']!r}, "
                f"program {first['program_code']!r}, period {first['period']!r}); nothing was written"
            )

    for name in ("household_id", "program_code", "period", "status", "points", "reward_krw"):
        fail_where(pl.col(name).is_null(), f"{name} is missing")
    for name, limit in (("household_id", 64), ("program_code", 64), ("period", 64)):
        fail_where(
            (pl.col(name).str.strip_chars().str.len_chars() == 0) | (pl.col(name).str.len_chars() > limit),
            f"{name} must be non-empty and at most {limit} characters",
        )
    fail_where(pl.col("points") < 0, "points must not be negative")
    fail_where(pl.col("reward_krw") < 0, "reward_krw must not be negative")
    fail_where(~pl.col("status").is_in(STATUSES), f"status must be one of {list(STATUSES)}")
    fail_where(
        (pl.col("status") != "qualified") & ((pl.col("points") > 0) | (pl.col("reward_krw") > 0)),
        "only a 'qualified' row may carry points or reward_krw",
    )
    fail_where(
        pl.struct("household_id", "program_code", "period").is_duplicated(),
        "duplicate (household_id, program_code, period)",
    )
    longest = "adjustment:{}:{}:{}:9999"
    fail_where(
        pl.sum_horizontal(pl.col(c).str.len_chars() for c in ("household_id", "program_code", "period"))
        + len(longest.format("", "", ""))
        > _KEY_LENGTH,
        f"program_code + household_id + period are too long for a {_KEY_LENGTH}-character ledger key",
    )
    return rows.sort("household_id", "program_code", "period")


def _record(conn: Connection, rows: pl.DataFrame, posted: dt.datetime) -> tuple[int, int, int, int]:
    ids = _program_ids(conn, rows["program_code"].unique().to_list())
    _require_households(conn, rows["household_id"].unique().to_list())
    rows = rows.with_columns(
        program_id=pl.col("program_code").replace_strict(ids, return_dtype=pl.Int64),
    )

    _upsert_rewards(conn, rows.select(_STAGE.c.keys()).with_columns(pl.col("reward_krw").cast(pl.Float64)))

    earned = _earned(conn, rows.select("program_id", "period").unique().rows())
    plan = (
        rows.join(earned, on=["household_id", "program_id", "period"], how="left")
        .with_columns(pl.col("earned").fill_null(0), pl.col("entries").fill_null(0))
        .with_columns(delta=pl.col("points") - pl.col("earned"))
    )
    changes = plan.filter(pl.col("delta") != 0)
    unchanged = plan.height - changes.height
    if changes.height == 0:
        return 0, 0, unchanged, 0

    balances = _latest_balances(conn, changes["household_id"].unique().to_list())
    entries = changes.join(balances, on="household_id", how="left").with_columns(
        entry_type=pl.when(pl.col("entries") == 0)
        .then(pl.lit(LedgerEntryType.accrual.value))
        .otherwise(pl.lit(LedgerEntryType.adjustment.value)),
        balance_after=pl.col("balance").fill_null(0) + pl.col("delta").cum_sum().over("household_id"),
    )
    entries = entries.with_columns(
        idempotency_key=pl.when(pl.col("entries") == 0)
        .then(pl.format("accrual:{}:{}:{}", "program_code", "household_id", "period"))
        .otherwise(pl.format("adjustment:{}:{}:{}:{}", "program_code", "household_id", "period", "entries")),
        note=pl.when(pl.col("entries") == 0)
        .then(pl.lit(None, dtype=pl.String))
        .otherwise(pl.format("result changed: {} -> {} points", "earned", "points")),
    )
    ledger_rows = entries.select(
        "household_id",
        "program_id",
        "period",
        "entry_type",
        pl.col("delta").alias("points"),
        "balance_after",
        "idempotency_key",
        "note",
        pl.lit(posted, dtype=pl.Datetime("us", "UTC")).alias("created_at"),
    )
    _bulk_insert(conn, _LEDGER, ledger_rows)
    _analyze(conn, changes.height, _LEDGER, _REWARDS)
    accruals = int((entries["entry_type"] == LedgerEntryType.accrual.value).sum())
    return accruals, changes.height - accruals, unchanged, int(changes["delta"].sum())


def _upsert_rewards(conn: Connection, rows: pl.DataFrame) -> None:
    """Insert or update ``rewards`` by (household, program, period); rows whose values are already
    stored are left alone (no rewrite, no dead tuples on a re-run)."""
    columns = list(rows.columns)
    if conn.dialect.name == "postgresql" and _can_copy(conn):
        _STAGE.create(conn)  # ON COMMIT DROP
        _bulk_insert(conn, _STAGE, rows)
        stmt = postgresql.insert(_REWARDS).from_select(columns, sa.select(*(_STAGE.c[c] for c in columns)))
        conn.execute(_on_reward_conflict(stmt))
    else:
        _executemany(conn, _on_reward_conflict(_insert(conn)(_REWARDS)), _REWARDS, rows)


def _on_reward_conflict(stmt: Any) -> Any:
    changed = [
        _REWARDS.c[c].is_distinct_from(sa.cast(stmt.excluded[c], _REWARDS.c[c].type)) for c in _REWARD_VALUES
    ]
    return stmt.on_conflict_do_update(
        index_elements=["household_id", "program_id", "period"],
        set_={c: stmt.excluded[c] for c in _REWARD_VALUES},
        where=sa.or_(*changed),
    )


def _bulk_insert(conn: Connection, table: sa.Table, rows: pl.DataFrame) -> None:
    """Many rows in one go: COPY on PostgreSQL (about 4x psycopg's pipelined executemany at
    100k rows), executemany elsewhere. A unique violation surfaces as IntegrityError either way."""
    if not (conn.dialect.name == "postgresql" and _can_copy(conn)):
        _executemany(conn, sa.insert(table), table, rows)
        return
    import psycopg

    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    statement = f"COPY {table.name} ({', '.join(rows.columns)}) FROM STDIN"
    try:
        with cursor.copy(statement) as copy:
            for row in rows.iter_rows():
                copy.write_row(row)
    except psycopg.errors.IntegrityError as exc:
        raise sa.exc.IntegrityError(statement, None, exc) from exc
    finally:
        cursor.close()


def _executemany(conn: Connection, stmt: Any, table: sa.Table, rows: pl.DataFrame) -> None:
    """executemany straight to the driver, with SQLAlchemy's bind processors applied column by
    column: building parameters row by row in SQLAlchemy cost more than SQLite's inserts at 100k."""
    compiled = stmt.compile(dialect=conn.dialect, column_keys=list(rows.columns))
    names = list(compiled.positiontup or [])
    if conn.dialect.paramstyle != "qmark" or sorted(names) != sorted(rows.columns):
        conn.execute(stmt, rows.to_dicts())
        return
    columns = []
    for name in names:
        values = rows[name].to_list()
        process = table.c[name].type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
        columns.append(values if process is None else [process(v) for v in values])
    conn.exec_driver_sql(str(compiled), list(zip(*columns, strict=True)))


def _analyze(conn: Connection, written: int, *tables: sa.Table) -> None:
    """Refresh PostgreSQL's statistics after a bulk write, inside the transaction: until
    autovacuum gets to it the planner believes the tables are as small as before and chooses
    sequential scans (a single balance read went from 2 ms to 23 ms after a 100k-row load)."""
    if conn.dialect.name == "postgresql" and written >= ANALYZE_AFTER_ROWS:
        conn.exec_driver_sql(f"ANALYZE {', '.join(t.name for t in tables)}")


def _can_copy(conn: Connection) -> bool:
    return conn.dialect.driver == "psycopg"


def _earned(conn: Connection, keys: Iterable[tuple[int, str]]) -> pl.DataFrame:
    """Net points already earned per (household, program, period) and how many entries made them."""
    parts: list[tuple[str, int, str, int, int]] = []
    for program_id, period in keys:
        stmt = (
            sa.select(
                _LEDGER.c.household_id,
                sa.func.coalesce(sa.func.sum(_LEDGER.c.points), 0),
                sa.func.count(),
            )
            .where(
                _LEDGER.c.program_id == program_id,
                _LEDGER.c.period == period,
                _LEDGER.c.entry_type.in_(_EARNING),
            )
            .group_by(_LEDGER.c.household_id)
        )
        parts.extend(
            (str(hh), program_id, period, int(s), int(n)) for hh, s, n in conn.execute(stmt).tuples()
        )
    return pl.DataFrame(
        parts,
        schema={
            "household_id": pl.String,
            "program_id": pl.Int64,
            "period": pl.String,
            "earned": pl.Int64,
            "entries": pl.Int64,
        },
        orient="row",
    )


def _latest_balances(conn: Connection, household_ids: Sequence[str]) -> pl.DataFrame:
    """``balance_after`` of each household's newest entry (households without entries are absent)."""
    found: list[tuple[str, int]] = []
    for among in _member_of(conn, _LEDGER.c.household_id, household_ids):
        newest = sa.select(sa.func.max(_LEDGER.c.id)).where(among).group_by(_LEDGER.c.household_id)
        stmt = sa.select(_LEDGER.c.household_id, _LEDGER.c.balance_after).where(_LEDGER.c.id.in_(newest))
        found.extend((str(hh), int(b)) for hh, b in conn.execute(stmt).tuples())
    return pl.DataFrame(found, schema={"household_id": pl.String, "balance": pl.Int64}, orient="row")


def _require_households(conn: Connection, household_ids: Sequence[str]) -> None:
    known: set[str] = set()
    for among in _member_of(conn, _HOUSEHOLDS.c.id, household_ids):
        known.update(conn.execute(sa.select(_HOUSEHOLDS.c.id).where(among)).scalars())
    missing = sorted(set(household_ids) - known)
    if missing:
        raise UnknownHousehold(
            f"unknown household id(s) {missing[:10]}{' …' if len(missing) > 10 else ''} "
            f"({len(missing)} in all); nothing was written"
        )


# --------------------------------------------------------------------------- redemption, balance


def redeem(
    engine: Engine | str | None,
    household_id: str,
    points: int,
    idempotency_key: str,
    note: str | None = None,
    *,
    at: dt.datetime | None = None,
) -> LedgerEntry:
    """Spend ``points`` of a household's balance; the same key again returns the first result.

    Raises :class:`InsufficientPoints` (nothing written) when the balance is too small and
    :class:`IdempotencyConflict` when the key was used for a different redemption.
    """
    if isinstance(points, bool) or not isinstance(points, int) or points <= 0:
        raise LedgerError(f"points to redeem must be a positive integer, got {points!r}")
    if not isinstance(household_id, str) or not household_id:
        raise LedgerError("household_id is required")
    prefix = f"{LedgerEntryType.redemption.value}:"
    if not isinstance(idempotency_key, str) or not idempotency_key.strip():
        raise LedgerError("an idempotency key is required for a redemption")
    if len(prefix) + len(idempotency_key) > _KEY_LENGTH:
        raise LedgerError(f"idempotency key longer than {_KEY_LENGTH - len(prefix)} characters")
    key = prefix + idempotency_key
    posted, eng = _utc(at), _engine(engine)

    def attempt() -> LedgerEntry:
        with _write(eng, household=household_id) as conn:
            earlier = _entry_by_key(conn, key)
            if earlier is not None:
                if earlier.household_id != household_id or earlier.points != -points:
                    raise IdempotencyConflict(
                        f"idempotency key {idempotency_key!r} was already used to redeem "
                        f"{-earlier.points} points for household {earlier.household_id}"
                    )
                return earlier
            current = _balance(conn, household_id)
            if current < points:
                raise InsufficientPoints(household_id, current, points)
            row = {
                "household_id": household_id,
                "entry_type": LedgerEntryType.redemption.value,
                "points": -points,
                "balance_after": current - points,
                "idempotency_key": key,
                "note": note,
                "created_at": posted,
            }
            conn.execute(sa.insert(_LEDGER), row)
            entry = _entry_by_key(conn, key)
            assert entry is not None
            return replace(entry, replayed=False)

    return _retrying(attempt)[0]


def balance(engine: Engine | str | None, household_id: str) -> int:
    """The household's current points (0 before its first entry; unknown household -> error)."""
    with _engine(engine).connect() as conn:
        return _balance(conn, household_id)


def history(
    engine: Engine | str | None,
    household_id: str,
    limit: int = 50,
    offset: int = 0,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> list[LedgerEntry]:
    """The household's entries, newest first; ``start`` inclusive, ``end`` exclusive (posting time)."""
    if not 1 <= limit <= 1000:
        raise LedgerError(f"limit must be between 1 and 1000, got {limit}")
    if offset < 0:
        raise LedgerError(f"offset must not be negative, got {offset}")
    lo, hi = (None if start is None else _utc(start)), (None if end is None else _utc(end))
    if lo is not None and hi is not None and hi <= lo:
        raise LedgerError(f"end {hi.isoformat()} must be after start {lo.isoformat()}")
    with _engine(engine).connect() as conn:
        _require_households(conn, [household_id])
        stmt = _entries_select().where(_LEDGER.c.household_id == household_id)
        if lo is not None:
            stmt = stmt.where(_LEDGER.c.created_at >= lo)
        if hi is not None:
            stmt = stmt.where(_LEDGER.c.created_at < hi)
        stmt = stmt.order_by(_LEDGER.c.created_at.desc(), _LEDGER.c.id.desc()).limit(limit).offset(offset)
        return [_entry(r) for r in conn.execute(stmt).mappings()]


def _balance(conn: Connection, household_id: str) -> int:
    newest = sa.select(sa.func.max(_LEDGER.c.id)).where(_LEDGER.c.household_id == household_id)
    value = conn.execute(sa.select(_LEDGER.c.balance_after).where(_LEDGER.c.id == newest.scalar_subquery()))
    found = value.scalar_one_or_none()
    if found is None:
        _require_households(conn, [household_id])
        return 0
    return int(found)


def _entries_select() -> sa.Select[Any]:
    return sa.select(_LEDGER, _PROGRAMS.c.code.label("program_code")).outerjoin(
        _PROGRAMS, _PROGRAMS.c.id == _LEDGER.c.program_id
    )


def _entry_by_key(conn: Connection, key: str) -> LedgerEntry | None:
    row = conn.execute(_entries_select().where(_LEDGER.c.idempotency_key == key)).mappings().first()
    return None if row is None else replace(_entry(row), replayed=True)


def _entry(row: Any) -> LedgerEntry:
    return LedgerEntry(
        id=int(row["id"]),
        household_id=row["household_id"],
        program_code=row["program_code"],
        period=row["period"],
        entry_type=LedgerEntryType(row["entry_type"]),
        points=int(row["points"]),
        balance_after=int(row["balance_after"]),
        idempotency_key=row["idempotency_key"],
        created_at=row["created_at"],
        note=row["note"],
    )


# --------------------------------------------------------------------------- expiry


def expire_points(
    engine: Engine | str | None,
    as_of: dt.datetime | dt.date,
    validity_months: int = DEFAULT_VALIDITY_MONTHS,
) -> ExpirySummary:
    """Expire what is left of points posted ``validity_months`` or more before ``as_of`` (FIFO).

    Per household: matured = positive entries posted at or before the cutoff, consumed = all
    negative entries; since consumption takes the oldest points first, ``max(0, matured -
    consumed)`` is still unspent and expires. Running again for the same ``as_of`` expires nothing.
    A date ``as_of`` means 00:00 UTC of that day.
    """
    if isinstance(validity_months, bool) or not isinstance(validity_months, int) or validity_months < 1:
        raise LedgerError(f"validity_months must be a positive integer, got {validity_months!r}")
    when = _utc(as_of)
    cutoff = _months_before(when, validity_months)
    eng = _engine(engine)

    def attempt() -> tuple[int, int]:
        with _write(eng) as conn:
            return _expire(conn, when, cutoff)

    (households, expired), _ = _retrying(attempt)
    return ExpirySummary(as_of=when, cutoff=cutoff, households=households, points_expired=expired)


def _expire(conn: Connection, when: dt.datetime, cutoff: dt.datetime) -> tuple[int, int]:
    points = _LEDGER.c.points
    matured = sa.func.sum(sa.case(((points > 0) & (_LEDGER.c.created_at <= cutoff), points), else_=0))
    consumed = sa.func.sum(sa.case((points < 0, -points), else_=0))
    negatives = sa.func.sum(sa.case((points < 0, 1), else_=0))
    stmt = (
        sa.select(
            _LEDGER.c.household_id,
            matured.label("matured"),
            consumed.label("consumed"),
            sa.func.sum(points).label("balance"),
            negatives.label("negatives"),
        )
        .group_by(_LEDGER.c.household_id)
        .having(matured > consumed)
    )
    stamp = cutoff.strftime("%Y%m%dT%H%M%SZ")
    rows = [
        {
            "household_id": r.household_id,
            "entry_type": LedgerEntryType.expiry.value,
            "points": -(int(r.matured) - int(r.consumed)),
            "balance_after": int(r.balance) - (int(r.matured) - int(r.consumed)),
            "idempotency_key": f"expiry:{r.household_id}:{stamp}:{int(r.negatives)}",
            "note": f"points posted on or before {cutoff.date().isoformat()} expired",
            "created_at": when,
        }
        for r in conn.execute(stmt)
    ]
    if rows:
        _bulk_insert(conn, _LEDGER, pl.DataFrame(rows, schema=_EXPIRY_SCHEMA))
        _analyze(conn, len(rows), _LEDGER)
    return len(rows), -sum(r["points"] for r in rows)


def _months_before(when: dt.datetime, months: int) -> dt.datetime:
    """Same day-of-month ``months`` earlier, clamped to the month's last day (Mar 31 - 1 -> Feb 28)."""
    index = when.year * 12 + (when.month - 1) - months
    year, month = divmod(index, 12)
    day = min(when.day, calendar.monthrange(year, month + 1)[1])
    return when.replace(year=year, month=month + 1, day=day)


# --------------------------------------------------------------------------- settlement


def settle_month(engine: Engine | str | None, program_code: str, period: str) -> SettlementTotals:
    """Totals of one program period (households paid, points, KRW), stored in ``settlements``."""
    with _write(_engine(engine)) as conn:
        _, totals = _settle(conn, program_code, period)
        return totals


def export_settlement(
    engine: Engine | str | None, program_code: str, period: str, out_dir: str | Path
) -> ExportPaths:
    """Write the program period's settlement CSV (header, one row per household, a totals row)
    and its ``sha256sum`` checksum file, each atomically; the totals are stored with the checksum."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LedgerError(f"cannot create export directory {out}: {exc}") from None
    name = f"settlement_{_safe(program_code)}_{_safe(period)}.csv"
    with _write(_engine(engine)) as conn:
        rows, totals = _settle(conn, program_code, period)
        data = _settlement_csv(program_code, period, rows)
        checksum = hashlib.sha256(data).hexdigest()
        csv_path, sha_path = out / name, out / f"{name}.sha256"
        _write_atomic(csv_path, data)
        _write_atomic(sha_path, f"{checksum}  {name}\n".encode())
        conn.execute(
            sa.update(_SETTLEMENTS)
            .where(
                _SETTLEMENTS.c.program_id == _program_ids(conn, [program_code])[program_code],
                _SETTLEMENTS.c.period == period,
            )
            .values(export_file=name, export_sha256=checksum)
        )
    return ExportPaths(csv=csv_path, sha256=sha_path, checksum=checksum, settlement=totals)


def _settle(
    conn: Connection, program_code: str, period: str
) -> tuple[list[dict[str, Any]], SettlementTotals]:
    program_id = _program_ids(conn, [program_code])[program_code]
    # Two single-table reads joined here rather than one SQL join: right after a bulk load the
    # planner's row estimates are stale and it picked a nested loop that took 30 s at 10k rows.
    earned: dict[str, int] = dict(  # type: ignore[arg-type]
        conn.execute(
            sa.select(_LEDGER.c.household_id, sa.func.sum(_LEDGER.c.points))
            .where(
                _LEDGER.c.program_id == program_id,
                _LEDGER.c.period == period,
                _LEDGER.c.entry_type.in_(_EARNING),
            )
            .group_by(_LEDGER.c.household_id)
        ).all()
    )
    stmt = (
        sa.select(
            _REWARDS.c.household_id,
            _REWARDS.c.status,
            _REWARDS.c.baseline_kwh,
            _REWARDS.c.actual_kwh,
            _REWARDS.c.savings_kwh,
            _REWARDS.c.savings_pct,
            _REWARDS.c.reward_krw,
        )
        .where(_REWARDS.c.program_id == program_id, _REWARDS.c.period == period)
        .order_by(_REWARDS.c.household_id)
    )
    rows = [{**r, "points": int(earned.get(r["household_id"]) or 0)} for r in conn.execute(stmt).mappings()]
    if not rows:
        raise LedgerError(
            f"program {program_code} has no rewards recorded for period {period}: nothing to settle"
        )
    values: dict[str, Any] = {
        "households": len(rows),
        "households_paid": sum(1 for r in rows if r["points"] > 0),
        "points": sum(int(r["points"]) for r in rows),
        "reward_krw": int(sum(_krw(r["reward_krw"]) for r in rows)),
        "savings_kwh": float(sum(_dec(r["savings_kwh"], 3) or 0 for r in rows)),
    }
    key = (_SETTLEMENTS.c.program_id == program_id) & (_SETTLEMENTS.c.period == period)
    stored = conn.execute(sa.select(_SETTLEMENTS).where(key)).mappings().first()
    now = _utc(None)
    if stored is None:
        conn.execute(
            sa.insert(_SETTLEMENTS),
            {"program_id": program_id, "period": period, **values, "revision": 1, "settled_at": now},
        )
        revision, settled_at = 1, now
    elif any(_differs(stored[k], v) for k, v in values.items()):
        revision, settled_at = int(stored["revision"]) + 1, now
        conn.execute(sa.update(_SETTLEMENTS).where(key).values(**values, revision=revision, settled_at=now))
    else:
        revision, settled_at = int(stored["revision"]), stored["settled_at"]
    return rows, SettlementTotals(
        program_code=program_code, period=period, revision=revision, settled_at=settled_at, **values
    )


def _settlement_csv(program_code: str, period: str, rows: list[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    sums = {"baseline_kwh": Decimal(0), "actual_kwh": Decimal(0), "savings_kwh": Decimal(0)}
    krw_total, points_total = 0, 0
    for r in rows:
        kwh = {c: _dec(r[c], 3) for c in sums}
        for c, v in kwh.items():
            sums[c] += v or 0
        krw, points = _krw(r["reward_krw"]), int(r["points"])
        krw_total += krw
        points_total += points
        pct = _dec(r["savings_pct"], 3)
        writer.writerow(
            [
                "household",
                program_code,
                period,
                r["household_id"],
                r["status"],
                *("" if kwh[c] is None else str(kwh[c]) for c in sums),
                "" if pct is None else str(pct),
                krw,
                points,
            ]
        )
    writer.writerow(
        ["total", program_code, period, "", "", *(str(v) for v in sums.values()), "", krw_total, points_total]
    )
    return buffer.getvalue().encode("utf-8")


def _write_atomic(path: Path, data: bytes) -> None:
    """Temp file in the same directory, fsync, rename: readers see the old file or the new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


def _dec(value: float | None, places: int) -> Decimal | None:
    return None if value is None else round(Decimal(str(value)), places)


def _krw(value: float | None) -> int:
    return 0 if value is None else int(Decimal(str(value)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _differs(stored: Any, value: Any) -> bool:
    if isinstance(value, float):
        return abs(float(stored) - value) > 1e-6
    return bool(stored != value)


# --------------------------------------------------------------------------- plumbing


def _engine(engine: Engine | str | None) -> Engine:
    return engine if isinstance(engine, Engine) else get_engine(engine)


@contextmanager
def _write(engine: Engine, *, household: str | None = None) -> Iterator[Connection]:
    """One write transaction holding the ledger lock: exclusive for bulk writers, or shared plus
    the household's own lock for a single-household writer (PostgreSQL); ``BEGIN IMMEDIATE`` on
    SQLite (the app-DB engine's begin hook), which admits one writer at a time."""
    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            if household is None:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LEDGER_LOCK})
            else:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": _LEDGER_LOCK})
                conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:c, hashtext(:hh))"),
                    {"c": _HOUSEHOLD_LOCK_CLASS, "hh": household},
                )
        yield conn


def _retrying(attempt: Any) -> tuple[Any, int]:
    """Run ``attempt`` again (fresh transaction, fresh reads) when it lost an idempotency-key race."""
    for number in range(1, MAX_ATTEMPTS + 1):
        try:
            return attempt(), number
        except sa.exc.IntegrityError as exc:
            if "idempotency_key" not in str(exc.orig):
                raise LedgerError(f"ledger write refused by the database: {str(exc.orig).strip()}") from exc
            if number == MAX_ATTEMPTS:
                raise LedgerError(
                    f"ledger write lost {MAX_ATTEMPTS} idempotency-key races in a row; nothing was written"
                ) from exc
    raise AssertionError("unreachable")


def _insert(conn: Connection) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert
    if conn.dialect.name == "sqlite":
        return sqlite.insert
    raise LedgerError(f"the ledger supports PostgreSQL and SQLite, not {conn.dialect.name}")


def _member_of(conn: Connection, column: sa.ColumnElement[str], values: Sequence[str]) -> Iterator[Any]:
    """``column IN values`` with one parameter however many values: ``= ANY(array)`` on
    PostgreSQL, ``IN (SELECT value FROM json_each(json))`` on SQLite (an IN list of 5,000
    parameters costs more to build than to run). Other backends get IN lists of ``IN_CHUNK``."""
    items = sorted(set(values))
    if conn.dialect.name == "postgresql":
        yield column == sa.any_(sa.bindparam(None, items, type_=postgresql.ARRAY(sa.String)))
    elif conn.dialect.name == "sqlite":
        members = sa.func.json_each(sa.bindparam(None, json.dumps(items), type_=sa.String))
        yield column.in_(sa.select(sa.column("value")).select_from(members))
    else:
        for start in range(0, len(items), IN_CHUNK):
            yield column.in_(items[start : start + IN_CHUNK])


def _utc(value: dt.datetime | dt.date | None) -> dt.datetime:
    if value is None:
        return dt.datetime.now(dt.UTC)
    if not isinstance(value, dt.datetime):
        if isinstance(value, dt.date):
            return dt.datetime.combine(value, dt.time(), dt.UTC)
        raise LedgerError(f"expected a date or datetime, got {value!r}")
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _as_date(value: Any, where: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise LedgerError(f"{where} must be a date (YYYY-MM-DD), got {value!r}")


def _jsonable(rules: dict[str, Any], where: str) -> dict[str, Any]:
    try:
        json.dumps(rules)
    except (TypeError, ValueError) as exc:
        raise LedgerError(f"{where}: rules are not JSON-serializable ({exc})") from None
    return rules
