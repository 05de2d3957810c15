"""Community challenges: list, join, a household's progress, and the standings.

Progress is measured from ``energy_usage_daily`` (the pipeline's daily usage in the app DB):

- a ``goal_kwh`` challenge caps the household's total use over the challenge days;
- a ``goal_pct`` challenge asks for that much less than the household's own baseline, the mean
  daily use over the same number of days just before the start, so the goal is
  ``baseline/day × days × (1 − pct/100)`` (unknown without baseline data).

``on_track`` projects the use so far (per day with data) over the whole challenge; ``met`` is
decided once the challenge has ended. Standings rank by use relative to goal, lowest first;
residents see other households only as their rank, never their ids.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, cast
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Connection

from hems.settings import Settings
from hems.stores.appdb.models import Challenge, ChallengeParticipant, EnergyUsageDaily
from serving.api.schemas import Page
from serving.deps import (
    CurrentUser,
    EngineDep,
    HouseholdAccess,
    HouseholdWriteAccess,
    Pagination,
    SettingsDep,
    owned_household_ids,
)

router = APIRouter(prefix="/community/challenges", tags=["community"])

_challenges = cast(sa.Table, Challenge.__table__)
_participants = cast(sa.Table, ChallengeParticipant.__table__)
_usage = cast(sa.Table, EnergyUsageDaily.__table__)

ChallengeId = Annotated[int, Path(ge=1, le=2**62)]
Status = Literal["upcoming", "active", "ended"]


class ChallengeOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 3,
                    "code": "summer-10pct-2025",
                    "title": "Cool summer: 10% less",
                    "description": "Use 10% less than your June baseline during the first two weeks of July.",
                    "goal_kwh": None,
                    "goal_pct": 10.0,
                    "starts_on": "2025-07-01",
                    "ends_on": "2025-07-14",
                    "status": "active",
                    "participants": 128,
                }
            ]
        }
    )

    id: int
    code: str
    title: str
    description: str | None
    goal_kwh: float | None = Field(description="cap on total kWh over the challenge")
    goal_pct: float | None = Field(description="reduction against the household's own baseline, percent")
    starts_on: dt.date
    ends_on: dt.date
    status: Status
    participants: int


class Participation(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"challenge_id": 3, "household_id": "hh-0001", "joined_at": "2025-07-01T09:00:00Z"}]
        }
    )

    challenge_id: int
    household_id: str
    joined_at: dt.datetime


class Progress(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "challenge_id": 3,
                    "household_id": "hh-0001",
                    "status": "active",
                    "days_total": 14,
                    "days_with_data": 6,
                    "used_kwh": 52.4,
                    "baseline_kwh_per_day": 10.1,
                    "goal_kwh": 127.3,
                    "progress_pct": 41.2,
                    "projected_kwh": 122.3,
                    "on_track": True,
                    "met": None,
                }
            ]
        }
    )

    challenge_id: int
    household_id: str
    status: Status
    days_total: int
    days_with_data: int
    used_kwh: float
    baseline_kwh_per_day: float | None
    goal_kwh: float | None = Field(description="the household's goal for the whole challenge, kWh")
    progress_pct: float | None = Field(description="used / goal × 100")
    projected_kwh: float | None = Field(description="used per day with data × days_total")
    on_track: bool | None
    met: bool | None = Field(description="decided when the challenge has ended")


class Standing(BaseModel):
    rank: int
    household_id: str | None = Field(description="shown for your own households (all, for analysts/admins)")
    mine: bool
    used_kwh: float
    goal_kwh: float | None
    ratio: float | None = Field(description="used / goal; lower is better")
    met: bool | None


class Results(Page[Standing]):
    challenge_id: int
    status: Status


def _today(settings: Settings) -> dt.date:
    return dt.datetime.now(ZoneInfo(settings.domain.timezone)).date()


def _status(row: Any, today: dt.date) -> Status:
    if today < row.starts_on:
        return "upcoming"
    return "active" if today <= row.ends_on else "ended"


def _challenge(conn: Connection, challenge_id: int) -> Any:
    row = conn.execute(sa.select(_challenges).where(_challenges.c.id == challenge_id)).first()
    if row is None:
        raise HTTPException(404, f"challenge {challenge_id} not found")
    return row


def _participant_count(conn: Connection, ids: list[int]) -> dict[int, int]:
    if not ids:
        return {}
    rows = conn.execute(
        sa.select(_participants.c.challenge_id, sa.func.count())
        .where(_participants.c.challenge_id.in_(ids))
        .group_by(_participants.c.challenge_id)
    ).all()
    return {r[0]: r[1] for r in rows}


def _out(row: Any, today: dt.date, participants: int) -> ChallengeOut:
    return ChallengeOut(
        id=row.id,
        code=row.code,
        title=row.title,
        description=row.description,
        goal_kwh=row.goal_kwh,
        goal_pct=row.goal_pct,
        starts_on=row.starts_on,
        ends_on=row.ends_on,
        status=_status(row, today),
        participants=participants,
    )


@router.get("", response_model=Page[ChallengeOut], summary="Challenges, soonest ending first")
def list_challenges(
    principal: CurrentUser,
    page: Pagination,
    engine: EngineDep,
    settings: SettingsDep,
    status: Annotated[Status | None, Query(description="only upcoming, active or ended ones")] = None,
    start: Annotated[
        dt.date | None, Query(description="only challenges running on or after this day")
    ] = None,
    end: Annotated[dt.date | None, Query(description="only challenges running on or before this day")] = None,
) -> Page[ChallengeOut]:
    if start and end and start > end:
        raise HTTPException(422, f"start {start} is after end {end}")
    today = _today(settings)
    where = []
    if start is not None:
        where.append(_challenges.c.ends_on >= start)
    if end is not None:
        where.append(_challenges.c.starts_on <= end)
    if status == "upcoming":
        where.append(_challenges.c.starts_on > today)
    elif status == "active":
        where.extend([_challenges.c.starts_on <= today, _challenges.c.ends_on >= today])
    elif status == "ended":
        where.append(_challenges.c.ends_on < today)
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(_challenges).where(*where)).scalar_one()
        rows = conn.execute(
            sa.select(_challenges)
            .where(*where)
            .order_by(_challenges.c.ends_on, _challenges.c.id)
            .limit(page.limit)
            .offset(page.offset)
        ).all()
        counts = _participant_count(conn, [r.id for r in rows])
    items = [_out(r, today, counts.get(r.id, 0)) for r in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.post(
    "/{challenge_id}/join",
    response_model=Participation,
    status_code=201,
    summary="Enter a household (yours) into a challenge; joining twice is a no-op (200)",
    responses={200: {"description": "already joined"}, 409: {"description": "the challenge has ended"}},
)
def join_challenge(
    challenge_id: ChallengeId,
    household: HouseholdWriteAccess,
    response: Response,
    engine: EngineDep,
    settings: SettingsDep,
) -> Participation:
    with engine.begin() as conn:
        row = _challenge(conn, challenge_id)
        key = (_participants.c.challenge_id == challenge_id, _participants.c.household_id == household.id)
        existing = conn.execute(sa.select(_participants).where(*key)).first()
        if existing is None:
            if _status(row, _today(settings)) == "ended":
                raise HTTPException(409, f"challenge {challenge_id} ended on {row.ends_on}")
            conn.execute(
                sa.insert(_participants).values(challenge_id=challenge_id, household_id=household.id)
            )
            existing = conn.execute(sa.select(_participants).where(*key)).one()
        else:
            response.status_code = 200
    return Participation.model_validate(dict(existing._mapping))


def _sums(
    conn: Connection, household_ids: list[str], first: dt.date, last: dt.date
) -> dict[str, tuple[float, int]]:
    """household → (kWh, days with data) over [first, last]."""
    if not household_ids:
        return {}
    rows = conn.execute(
        sa.select(
            _usage.c.household_id,
            sa.func.sum(_usage.c.total_consumption_kwh),
            sa.func.count(_usage.c.total_consumption_kwh),
        )
        .where(_usage.c.household_id.in_(household_ids), _usage.c.date >= first, _usage.c.date <= last)
        .group_by(_usage.c.household_id)
    ).all()
    return {r[0]: (float(r[1] or 0.0), int(r[2])) for r in rows}


def _measure(conn: Connection, row: Any, household_ids: list[str], today: dt.date) -> dict[str, Progress]:
    days = (row.ends_on - row.starts_on).days + 1
    used = _sums(conn, household_ids, row.starts_on, row.ends_on)
    baseline: dict[str, tuple[float, int]] = {}
    if row.goal_kwh is None:
        before = row.starts_on - dt.timedelta(days=1)
        baseline = _sums(conn, household_ids, before - dt.timedelta(days=days - 1), before)
    status = _status(row, today)
    out = {}
    for hh in household_ids:
        kwh, with_data = used.get(hh, (0.0, 0))
        base_kwh, base_days = baseline.get(hh, (0.0, 0))
        per_day = base_kwh / base_days if base_days else None
        if row.goal_kwh is not None:
            goal = float(row.goal_kwh)
        elif per_day is not None:
            goal = per_day * days * (1 - float(row.goal_pct) / 100)
        else:
            goal = None
        projected = kwh / with_data * days if with_data else None
        out[hh] = Progress(
            challenge_id=row.id,
            household_id=hh,
            status=status,
            days_total=days,
            days_with_data=with_data,
            used_kwh=round(kwh, 3),
            baseline_kwh_per_day=None if per_day is None else round(per_day, 3),
            goal_kwh=None if goal is None else round(goal, 3),
            progress_pct=round(kwh / goal * 100, 2) if goal else None,
            projected_kwh=None if projected is None else round(projected, 3),
            on_track=None if goal is None or projected is None else projected <= goal,
            met=(kwh <= goal) if status == "ended" and goal is not None else None,
        )
    return out


@router.get(
    "/{challenge_id}/progress",
    response_model=Progress,
    summary="A household's use against its goal",
    responses={404: {"description": "no such challenge, household, or the household has not joined"}},
)
def challenge_progress(
    challenge_id: ChallengeId,
    household: HouseholdAccess,
    engine: EngineDep,
    settings: SettingsDep,
) -> Progress:
    with engine.connect() as conn:
        row = _challenge(conn, challenge_id)
        joined = conn.execute(
            sa.select(_participants.c.household_id).where(
                _participants.c.challenge_id == challenge_id, _participants.c.household_id == household.id
            )
        ).first()
        if joined is None:
            raise HTTPException(404, f"household {household.id!r} has not joined challenge {challenge_id}")
        return _measure(conn, row, [household.id], _today(settings))[household.id]


@router.get("/{challenge_id}/results", response_model=Results, summary="Standings of every participant")
def challenge_results(
    challenge_id: ChallengeId,
    principal: CurrentUser,
    page: Pagination,
    engine: EngineDep,
    settings: SettingsDep,
) -> Results:
    today = _today(settings)
    with engine.connect() as conn:
        row = _challenge(conn, challenge_id)
        members: list[str] = list(
            conn.execute(
                sa.select(_participants.c.household_id).where(_participants.c.challenge_id == challenge_id)
            ).scalars()
        )
        progress = _measure(conn, row, members, today)
    mine = owned_household_ids(engine, principal.user_id)

    def order(p: Progress) -> tuple[int, float, str]:
        ratio = p.used_kwh / p.goal_kwh if p.goal_kwh else None
        return (ratio is None, ratio or 0.0, p.household_id)

    ranked = sorted(progress.values(), key=order)
    standings = []
    for rank, p in enumerate(ranked, start=1):
        own = p.household_id in mine
        standings.append(
            Standing(
                rank=rank,
                household_id=p.household_id if own or principal.sees_all_households else None,
                mine=own,
                used_kwh=p.used_kwh,
                goal_kwh=p.goal_kwh,
                ratio=round(p.used_kwh / p.goal_kwh, 4) if p.goal_kwh else None,
                met=p.met,
            )
        )
    return Results(
        challenge_id=challenge_id,
        status=_status(row, today),
        items=standings[page.offset : page.offset + page.limit],
        total=len(standings),
        limit=page.limit,
        offset=page.offset,
    )
