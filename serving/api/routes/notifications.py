"""`GET /notifications` and `POST /notifications/{id}/read`.

A caller sees the notifications addressed to them (``user_id``) and those of households they
own (device offline, rewards ...). Analysts and admins are no exception: notifications are
personal, so nobody reads another user's inbox through this API.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, cast

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict

from hems.stores.appdb.models import Household, Notification
from serving.api.schemas import Page
from serving.deps import CurrentUser, EngineDep, HouseholdId, Pagination

router = APIRouter(tags=["notifications"])

_notes = cast(sa.Table, Notification.__table__)
_households = cast(sa.Table, Household.__table__)


class NotificationOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 12,
                    "household_id": "hh-0001",
                    "kind": "device_offline",
                    "title": "Smart meter offline",
                    "body": "hh-0001-meter has not reported since 09:58.",
                    "payload": {"device_id": "hh-0001-meter"},
                    "created_at": "2025-07-01T10:00:00Z",
                    "read_at": None,
                }
            ]
        }
    )

    id: int
    household_id: str | None
    kind: str
    title: str
    body: str | None
    payload: dict[str, Any] | None
    created_at: dt.datetime
    read_at: dt.datetime | None


def _visible_to(user_id: int) -> sa.ColumnElement[bool]:
    owned = sa.select(_households.c.id).where(_households.c.user_id == user_id)
    return sa.or_(_notes.c.user_id == user_id, _notes.c.household_id.in_(owned))


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), dt.UTC)


@router.get(
    "/notifications", response_model=Page[NotificationOut], summary="The caller's notifications, newest first"
)
def list_notifications(
    principal: CurrentUser,
    page: Pagination,
    engine: EngineDep,
    unread: Annotated[bool, Query(description="only those not yet read")] = False,
    household_id: Annotated[HouseholdId | None, Query(description="only this household's")] = None,
    since: Annotated[dt.date | None, Query(description="created on or after this day (UTC)")] = None,
    until: Annotated[dt.date | None, Query(description="created on or before this day (UTC)")] = None,
) -> Page[NotificationOut]:
    if since and until and since > until:
        raise HTTPException(422, f"since {since} is after until {until}")
    where = [_visible_to(principal.user_id)]
    if unread:
        where.append(_notes.c.read_at.is_(None))
    if household_id is not None:
        where.append(_notes.c.household_id == household_id)
    if since is not None:
        where.append(_notes.c.created_at >= _day_start(since))
    if until is not None:
        where.append(_notes.c.created_at < _day_start(until) + dt.timedelta(days=1))
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(_notes).where(*where)).scalar_one()
        rows = conn.execute(
            sa.select(_notes)
            .where(*where)
            .order_by(_notes.c.created_at.desc(), _notes.c.id.desc())
            .limit(page.limit)
            .offset(page.offset)
        ).all()
    items = [NotificationOut.model_validate(dict(r._mapping)) for r in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.post(
    "/notifications/{notification_id}/read",
    response_model=NotificationOut,
    summary="Mark a notification read (idempotent)",
    responses={404: {"description": "no such notification for the caller"}},
)
def mark_read(
    notification_id: Annotated[int, Path(ge=1, le=2**62)],
    principal: CurrentUser,
    engine: EngineDep,
) -> NotificationOut:
    mine = sa.and_(_notes.c.id == notification_id, _visible_to(principal.user_id))
    with engine.begin() as conn:
        conn.execute(
            sa.update(_notes).where(mine, _notes.c.read_at.is_(None)).values(read_at=dt.datetime.now(dt.UTC))
        )
        row = conn.execute(sa.select(_notes).where(mine)).first()
    if row is None:
        raise HTTPException(404, f"notification {notification_id} not found")
    return NotificationOut.model_validate(dict(row._mapping))
