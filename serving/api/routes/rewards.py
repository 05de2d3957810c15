"""Incentives: a household's rewards and points (balance, history, redemption), settlements, programs.

Every ledger write goes through :mod:`transforms.ledger` (append-only, idempotent); this module
only reads the incentive tables and calls ``ledger.redeem``. A redemption needs an
``Idempotency-Key`` header: the same key again for the same household returns the first result
(``Idempotent-Replayed: true``) instead of spending twice. Keys are scoped per household, so two
households' clients cannot collide (nor learn of each other's redemptions).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal, cast
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends, Header, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from hems.stores.appdb.models import LedgerEntryType, PointsLedger, Reward, RewardProgram, Role, Settlement
from serving.api.schemas import Page
from serving.deps import (
    CurrentUser,
    EngineDep,
    HouseholdAccess,
    HouseholdWriteAccess,
    Pagination,
    require_role,
)
from serving.problems import problem
from serving.security.tokens import Principal
from transforms import ledger
from transforms.rewards import load_programs

router = APIRouter(tags=["incentives"])

_rewards = cast(sa.Table, Reward.__table__)
_programs = cast(sa.Table, RewardProgram.__table__)
_ledger = cast(sa.Table, PointsLedger.__table__)
_settlements = cast(sa.Table, Settlement.__table__)
_EARNING = (LedgerEntryType.accrual.value, LedgerEntryType.adjustment.value)

MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
PERIOD_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])([0-9A-Za-z_.:-]{0,55})$"
CODE_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
KEY_PATTERN = r"^[A-Za-z0-9_.:-]{1,100}$"
MAX_REDEEM_POINTS = 10_000_000


def _month(description: str) -> Any:
    return Query(pattern=MONTH_PATTERN, description=description)


ProgramCode = Annotated[
    str, Path(pattern=CODE_PATTERN, description="program code, e.g. kepco_energy_cashback")
]
Period = Annotated[
    str,
    Path(pattern=PERIOD_PATTERN, description="'YYYY-MM', or a demand-response event id 'YYYY-MM-DDTHH-HH'"),
]
#: the filters the rewards and settlements listings share
ProgramFilter = Annotated[str | None, Query(pattern=CODE_PATTERN, description="only this program code")]
PeriodFrom = Annotated[str | None, _month("first period, YYYY-MM")]
PeriodTo = Annotated[str | None, _month("last period, YYYY-MM (inclusive)")]
Status = Literal["qualified", "not_qualified", "no_savings", "pending"]


def _next_month(month: str) -> str:
    year, mon = int(month[:4]), int(month[5:7])
    return f"{year + mon // 12:04d}-{mon % 12 + 1:02d}"


def _period_range(column: sa.ColumnElement[str], start: str | None, end: str | None) -> list[Any]:
    """Periods are 'YYYY-MM' or event ids starting 'YYYY-MM-DD', so month bounds compare as text."""
    if start and end and start > end:
        raise HTTPException(422, f"period_from {start} is after period_to {end}")
    where: list[Any] = []
    if start:
        where.append(column >= start)
    if end:
        where.append(column < _next_month(end))
    return where


# --- rewards ---------------------------------------------------------------------------------


class RewardOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "program_code": "kepco_energy_cashback",
                    "program_name": "에너지캐시백",
                    "kind": "cashback",
                    "period": "2025-07",
                    "baseline_kwh": 310.2,
                    "actual_kwh": 281.5,
                    "savings_kwh": 28.7,
                    "savings_pct": 9.252,
                    "reward_krw": 1722,
                    "points": 1722,
                    "paid": True,
                    "status": "qualified",
                    "reason": None,
                    "created_at": "2025-08-01T01:00:00Z",
                }
            ]
        }
    )

    program_code: str
    program_name: str
    kind: str
    period: str = Field(description="'YYYY-MM' (monthly programs) or a demand-response event id")
    baseline_kwh: float | None
    actual_kwh: float | None
    savings_kwh: float | None
    savings_pct: float | None
    reward_krw: float | None
    points: int = Field(
        description="net points posted to the ledger for this period (accruals + adjustments)"
    )
    paid: bool
    status: str = Field(description="qualified, not_qualified or no_savings")
    reason: str | None = Field(description="why it is not paid (or paid nothing), as the program states it")
    created_at: dt.datetime


@router.get(
    "/households/{household_id}/rewards",
    response_model=Page[RewardOut],
    summary="A household's rewards per program and period, newest period first",
    responses={404: {"description": "no such household, or not yours"}},
)
def household_rewards(
    household: HouseholdAccess,
    page: Pagination,
    engine: EngineDep,
    program: ProgramFilter = None,
    period_from: PeriodFrom = None,
    period_to: PeriodTo = None,
    status: Annotated[Status | None, Query(description="only rows with this status")] = None,
) -> Page[RewardOut]:
    earned = (
        sa.select(_ledger.c.program_id, _ledger.c.period, sa.func.sum(_ledger.c.points).label("points"))
        .where(_ledger.c.household_id == household.id, _ledger.c.entry_type.in_(_EARNING))
        .group_by(_ledger.c.program_id, _ledger.c.period)
        .subquery()
    )
    where = [
        _rewards.c.household_id == household.id,
        *_period_range(_rewards.c.period, period_from, period_to),
    ]
    if program is not None:
        where.append(_programs.c.code == program)
    if status is not None:
        where.append(_rewards.c.status == status)
    joined = _rewards.join(_programs, _programs.c.id == _rewards.c.program_id).outerjoin(
        earned, (earned.c.program_id == _rewards.c.program_id) & (earned.c.period == _rewards.c.period)
    )
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(joined).where(*where)).scalar_one()
        rows = conn.execute(
            sa.select(
                _rewards,
                _programs.c.code.label("program_code"),
                _programs.c.name.label("program_name"),
                _programs.c.kind,
                sa.func.coalesce(earned.c.points, 0).label("points"),
            )
            .select_from(joined)
            .where(*where)
            .order_by(_rewards.c.period.desc(), _programs.c.code)
            .limit(page.limit)
            .offset(page.offset)
        ).mappings()
        items = [
            RewardOut(
                program_code=r["program_code"],
                program_name=r["program_name"],
                kind=str(getattr(r["kind"], "value", r["kind"])),
                period=r["period"],
                baseline_kwh=r["baseline_kwh"],
                actual_kwh=r["actual_kwh"],
                savings_kwh=r["savings_kwh"],
                savings_pct=r["savings_pct"],
                reward_krw=r["reward_krw"],
                points=int(r["points"]),
                paid=int(r["points"]) > 0,
                status=r["status"],
                reason=r["reason"],
                created_at=r["created_at"],
            )
            for r in rows
        ]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


# --- points ----------------------------------------------------------------------------------


class Balance(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"household_id": "hh-0001", "balance": 4210, "as_of": "2025-08-02T09:00:00Z"}]
        }
    )

    household_id: str
    balance: int = Field(description="points (1 point = 1 KRW)")
    as_of: dt.datetime


@router.get(
    "/households/{household_id}/points",
    response_model=Balance,
    summary="A household's points balance",
    responses={404: {"description": "no such household, or not yours"}},
)
def points_balance(
    household: HouseholdAccess,
    engine: EngineDep,
) -> Balance:
    return Balance(
        household_id=household.id, balance=ledger.balance(engine, household.id), as_of=dt.datetime.now(dt.UTC)
    )


class LedgerEntryOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 91,
                    "entry_type": "redemption",
                    "points": -1000,
                    "balance_after": 3210,
                    "program_code": None,
                    "period": None,
                    "note": "coffee voucher",
                    "created_at": "2025-08-02T09:00:00Z",
                }
            ]
        }
    )

    id: int
    entry_type: str = Field(description="accrual, adjustment, redemption or expiry")
    points: int = Field(description="positive earns, negative spends")
    balance_after: int
    program_code: str | None
    period: str | None
    note: str | None
    created_at: dt.datetime


def _entry_out(e: ledger.LedgerEntry) -> LedgerEntryOut:
    return LedgerEntryOut(
        id=e.id,
        entry_type=e.entry_type.value,
        points=e.points,
        balance_after=e.balance_after,
        program_code=e.program_code,
        period=e.period,
        note=e.note,
        created_at=e.created_at,
    )


@router.get(
    "/households/{household_id}/points/history",
    response_model=Page[LedgerEntryOut],
    summary="A household's points ledger, newest first",
    responses={404: {"description": "no such household, or not yours"}},
)
def points_history(
    household: HouseholdAccess,
    page: Pagination,
    engine: EngineDep,
    start: Annotated[dt.date | None, Query(description="first local day (household time zone)")] = None,
    end: Annotated[dt.date | None, Query(description="last local day, inclusive")] = None,
) -> Page[LedgerEntryOut]:
    if start and end and start > end:
        raise HTTPException(422, f"start {start} is after end {end}")
    tz = ZoneInfo(household.timezone or "Asia/Seoul")
    lo = None if start is None else dt.datetime.combine(start, dt.time(0), tz)
    hi = None if end is None else dt.datetime.combine(end + dt.timedelta(days=1), dt.time(0), tz)
    entries = ledger.history(engine, household.id, limit=page.limit, offset=page.offset, start=lo, end=hi)
    where = [_ledger.c.household_id == household.id]
    if lo is not None:
        where.append(_ledger.c.created_at >= lo.astimezone(dt.UTC))
    if hi is not None:
        where.append(_ledger.c.created_at < hi.astimezone(dt.UTC))
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(_ledger).where(*where)).scalar_one()
    return Page(items=[_entry_out(e) for e in entries], total=total, limit=page.limit, offset=page.offset)


class RedeemIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"points": 1000, "note": "coffee voucher"}]}
    )

    points: int = Field(gt=0, le=MAX_REDEEM_POINTS, description="points to spend (1 point = 1 KRW)")
    note: str | None = Field(None, max_length=200)


class Redemption(LedgerEntryOut):
    household_id: str
    idempotency_key: str = Field(description="the Idempotency-Key this redemption was made with")
    replayed: bool = Field(description="true when this answers an earlier request with the same key")


@router.post(
    "/households/{household_id}/points/redeem",
    response_model=Redemption,
    status_code=201,
    summary="Spend points (owner or admin); needs an Idempotency-Key header",
    responses={
        200: {"description": "replay of an earlier redemption with the same key (Idempotent-Replayed: true)"},
        400: {"description": "no Idempotency-Key header"},
        403: {"description": "analysts cannot act for a household"},
        404: {"description": "no such household, or not yours"},
        409: {"description": "insufficient balance (the problem carries balance and requested)"},
        422: {"description": "bad body, or the key was already used for a different redemption"},
    },
)
async def redeem_points(
    request: Request,
    response: Response,
    household: HouseholdWriteAccess,
    body: Annotated[RedeemIn, Body()],
    engine: EngineDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="required: a unique value per redemption (e.g. a UUID), 1-100 of A-Za-z0-9_.:-",
        ),
    ] = None,
) -> Any:
    if idempotency_key is None:
        raise HTTPException(400, "send an Idempotency-Key header (e.g. a UUID) with every redemption")
    if not re.fullmatch(KEY_PATTERN, idempotency_key):
        raise HTTPException(400, "Idempotency-Key must be 1-100 of A-Za-z0-9_.:-")
    scoped = f"{household.id}:{idempotency_key}"
    try:
        entry = await run_in_threadpool(ledger.redeem, engine, household.id, body.points, scoped, body.note)
    except ledger.InsufficientPoints as exc:
        return problem(
            409,
            f"household {household.id} has {exc.balance} points; cannot redeem {exc.requested}",
            title="Insufficient Points",
            instance=request.url.path,
            balance=exc.balance,
            requested=exc.requested,
        )
    except ledger.IdempotencyConflict:
        raise HTTPException(
            422, f"Idempotency-Key {idempotency_key!r} was already used for a different redemption"
        ) from None
    except ledger.UnknownHousehold:
        raise HTTPException(404, f"household {household.id!r} not found") from None
    if entry.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    out = _entry_out(entry)
    return Redemption(
        **out.model_dump(),
        household_id=household.id,
        idempotency_key=idempotency_key,
        replayed=entry.replayed,
    )


# --- settlements -----------------------------------------------------------------------------

_staff = require_role(Role.analyst, Role.admin)


class SettlementOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "program_code": "kepco_energy_cashback",
                    "period": "2025-07",
                    "households": 1200,
                    "households_paid": 431,
                    "points": 812_340,
                    "reward_krw": 812_340.0,
                    "savings_kwh": 10_234.512,
                    "revision": 1,
                    "settled_at": "2025-08-01T02:00:00Z",
                    "export_file": "settlement_kepco_energy_cashback_2025-07.csv",
                    "export_sha256": "9f2c...",
                }
            ]
        }
    )

    program_code: str
    period: str
    households: int = Field(description="households with a result for the period")
    households_paid: int
    points: int
    reward_krw: float
    savings_kwh: float
    revision: int = Field(description="1, +1 each time re-settling changed the totals")
    settled_at: dt.datetime
    export_file: str | None
    export_sha256: str | None


def _settlement_select() -> sa.Select[Any]:
    return sa.select(_settlements, _programs.c.code.label("program_code")).join(
        _programs, _programs.c.id == _settlements.c.program_id
    )


def _settlement_out(r: Any) -> SettlementOut:
    return SettlementOut.model_validate({k: r[k] for k in SettlementOut.model_fields})


@router.get(
    "/settlements",
    response_model=Page[SettlementOut],
    summary="Program settlements (analysts, admins), newest period first",
    responses={403: {"description": "residents"}},
)
def list_settlements(
    principal: Annotated[Principal, Depends(_staff)],
    page: Pagination,
    engine: EngineDep,
    program: ProgramFilter = None,
    period_from: PeriodFrom = None,
    period_to: PeriodTo = None,
) -> Page[SettlementOut]:
    where = _period_range(_settlements.c.period, period_from, period_to)
    if program is not None:
        where.append(_programs.c.code == program)
    with engine.connect() as conn:
        total = conn.execute(
            sa.select(sa.func.count())
            .select_from(_settlements.join(_programs, _programs.c.id == _settlements.c.program_id))
            .where(*where)
        ).scalar_one()
        rows = conn.execute(
            _settlement_select()
            .where(*where)
            .order_by(_settlements.c.period.desc(), _programs.c.code)
            .limit(page.limit)
            .offset(page.offset)
        ).mappings()
        items = [_settlement_out(r) for r in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get(
    "/settlements/{program_code}/{period}",
    response_model=SettlementOut,
    summary="One program period's settlement totals (analysts, admins)",
    responses={403: {"description": "residents"}, 404: {"description": "not settled (or no such program)"}},
)
def get_settlement(
    program_code: ProgramCode,
    period: Period,
    principal: Annotated[Principal, Depends(_staff)],
    engine: EngineDep,
) -> SettlementOut:
    with engine.connect() as conn:
        row = (
            conn.execute(
                _settlement_select().where(_programs.c.code == program_code, _settlements.c.period == period)
            )
            .mappings()
            .first()
        )
    if row is None:
        raise HTTPException(404, f"program {program_code!r} has no settlement for period {period!r}")
    return _settlement_out(row)


# --- programs --------------------------------------------------------------------------------


class CashbackBandOut(BaseModel):
    effective_from: dt.date
    effective_to: dt.date | None
    min_savings_pct: float
    max_savings_pct: float
    krw_per_kwh: float


class ProgramOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "code": "kpx_citizen_dr",
                    "name": "kpx_citizen_dr",
                    "kind": "demand_response",
                    "effective_from": "2024-01-01",
                    "effective_to": None,
                    "rules": {"baseline_method": "cbl-mid-6-10", "dr_krw_per_kwh": 1300.0},
                    "bands": [],
                }
            ]
        }
    )

    code: str
    name: str
    kind: str
    effective_from: dt.date
    effective_to: dt.date | None
    rules: dict[str, Any] = Field(description="the rule values; several versions appear under `versions`")
    bands: list[CashbackBandOut] = Field(description="cashback programs: KRW per kWh saved by savings rate")


@router.get(
    "/programs",
    response_model=Page[ProgramOut],
    summary="Incentive programs and their versioned rules (any signed-in user)",
)
def list_programs(
    principal: CurrentUser,
    page: Pagination,
    engine: EngineDep,
    active_on: Annotated[dt.date | None, Query(description="only programs in force on this day")] = None,
) -> Page[ProgramOut]:
    where: list[Any] = []
    if active_on is not None:
        where += [
            _programs.c.effective_from <= active_on,
            sa.or_(_programs.c.effective_to.is_(None), _programs.c.effective_to >= active_on),
        ]
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(_programs).where(*where)).scalar_one()
        rows = conn.execute(
            sa.select(_programs)
            .where(*where)
            .order_by(_programs.c.code)
            .limit(page.limit)
            .offset(page.offset)
        ).mappings()
        found = [dict(r) for r in rows]
    bands = load_programs().bands
    items = [
        ProgramOut(
            code=r["code"],
            name=r["name"],
            kind=str(getattr(r["kind"], "value", r["kind"])),
            effective_from=r["effective_from"],
            effective_to=r["effective_to"],
            rules=r["rules"] or {},
            bands=[
                CashbackBandOut(
                    effective_from=b.effective_from,
                    effective_to=b.effective_to,
                    min_savings_pct=b.min_savings_pct,
                    max_savings_pct=b.max_savings_pct,
                    krw_per_kwh=b.krw_per_kwh,
                )
                for b in sorted(bands, key=lambda b: (b.effective_from, b.min_savings_pct))
                if b.program_code == r["code"]
            ],
        )
        for r in found
    ]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)
