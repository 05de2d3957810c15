"""`GET|POST /households`, `GET /households/{id}` and `GET /households/{id}/devices`.

Residents list and create their own households; analysts and admins list every household and
admins may create one for another user. One household and its devices go through
:func:`serving.deps.household_access`, like every household-scoped route.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, cast

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from hems.stores.appdb.models import BuildingType, Household, HouseholdType, IotDevice, Role, User
from ingest.device_state import DeviceStateTracker
from serving.api.routes.realtime import tracker_dep
from serving.api.schemas import Page
from serving.deps import (
    ID_PATTERN,
    CurrentUser,
    EngineDep,
    HouseholdAccess,
    Pagination,
)

router = APIRouter(tags=["users and households"])

_households = cast(sa.Table, Household.__table__)
_devices = cast(sa.Table, IotDevice.__table__)
_users = cast(sa.Table, User.__table__)


class HouseholdIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Mapo apartment",
                    "region": "Seoul",
                    "building_type": "apartment",
                    "area_m2": 84.9,
                    "residents": 3,
                    "household_type": "family",
                    "timezone": "Asia/Seoul",
                    "has_pv": False,
                }
            ]
        },
    )

    id: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=ID_PATTERN)] | None = Field(
        None, description="the id devices publish under (default: generated, hh-<12 hex>)"
    )
    name: str | None = Field(None, max_length=200)
    region: str | None = Field(None, max_length=100)
    building_type: BuildingType | None = None
    area_m2: float | None = Field(None, gt=0, lt=100_000)
    residents: int | None = Field(None, ge=1, le=100)
    household_type: HouseholdType | None = None
    timezone: str = Field("Asia/Seoul", max_length=64)
    has_pv: bool = False
    pv_kwp: float | None = Field(None, ge=0, lt=10_000)
    has_ev: bool = False
    electric_heating: bool = False
    user_id: int | None = Field(None, ge=1, description="owner (admins only; default: the caller)")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name such as Asia/Seoul)") from None
        return v


class HouseholdOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "hh-3f2a9c1b7d04",
                    "user_id": 7,
                    "name": "Mapo apartment",
                    "region": "Seoul",
                    "building_type": "apartment",
                    "area_m2": 84.9,
                    "residents": 3,
                    "household_type": "family",
                    "timezone": "Asia/Seoul",
                    "has_pv": False,
                    "pv_kwp": None,
                    "has_ev": False,
                    "electric_heating": False,
                    "created_at": "2025-07-01T09:00:00Z",
                }
            ]
        }
    )

    id: str
    user_id: int | None
    name: str | None
    region: str | None
    building_type: str | None
    area_m2: float | None
    residents: int | None
    household_type: str | None
    timezone: str
    has_pv: bool
    pv_kwp: float | None
    has_ev: bool
    electric_heating: bool
    created_at: dt.datetime


class Device(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "device_id": "hh-0001-meter",
                    "device_type": "smart_meter",
                    "manufacturer": "LS Electric",
                    "model": "AMI-100",
                    "protocol": "mqtt",
                    "registered": True,
                    "status": "online",
                    "last_seen": "2025-07-01T09:59:30+00:00",
                    "offline_since": None,
                }
            ]
        }
    )

    device_id: str
    device_type: str | None
    manufacturer: str | None = None
    model: str | None = None
    protocol: str | None = None
    registered: bool = Field(description="listed in the app database (else only seen by ingest)")
    status: str = Field(description="online, offline or unknown (live state from ingest)")
    last_seen: str | None
    offline_since: str | None = None


def _out(row: Any) -> HouseholdOut:
    data = dict(row._mapping)
    for key in ("building_type", "household_type"):
        if data[key] is not None:
            data[key] = str(data[key])
    return HouseholdOut.model_validate(data)


@router.get("/households", response_model=Page[HouseholdOut], summary="Households the caller may reach")
def list_households(
    principal: CurrentUser,
    page: Pagination,
    engine: EngineDep,
    region: Annotated[str | None, Query(max_length=100, description="only this region")] = None,
) -> Page[HouseholdOut]:
    where = []
    if not principal.sees_all_households:
        where.append(_households.c.user_id == principal.user_id)
    if region is not None:
        where.append(_households.c.region == region)
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(_households).where(*where)).scalar_one()
        rows = conn.execute(
            sa.select(_households)
            .where(*where)
            .order_by(_households.c.id)
            .limit(page.limit)
            .offset(page.offset)
        ).all()
    return Page(items=[_out(r) for r in rows], total=total, limit=page.limit, offset=page.offset)


@router.post(
    "/households",
    status_code=201,
    response_model=HouseholdOut,
    summary="Register a household",
    responses={409: {"description": "the id is taken"}, 403: {"description": "user_id set by a non-admin"}},
)
def create_household(body: HouseholdIn, principal: CurrentUser, engine: EngineDep) -> HouseholdOut:
    owner = principal.user_id
    if body.user_id is not None and body.user_id != principal.user_id:
        if principal.role is not Role.admin:
            raise HTTPException(403, "only an admin may create a household for another user")
        owner = body.user_id
    household_id = body.id or f"hh-{uuid.uuid4().hex[:12]}"
    values = body.model_dump(exclude={"id", "user_id"})
    for key in ("building_type", "household_type"):
        if values[key] is not None:
            values[key] = values[key].value
    try:
        with engine.begin() as conn:
            if (
                owner != principal.user_id
                and conn.execute(sa.select(_users.c.id).where(_users.c.id == owner)).first() is None
            ):
                raise HTTPException(422, f"user {owner} does not exist")
            conn.execute(sa.insert(_households).values(id=household_id, user_id=owner, **values))
    except sa.exc.IntegrityError:
        raise HTTPException(409, f"household {household_id!r} already exists") from None
    with engine.connect() as conn:
        row = conn.execute(sa.select(_households).where(_households.c.id == household_id)).one()
    return _out(row)


@router.get("/households/{household_id}", response_model=HouseholdOut, summary="One household")
def get_household(
    household: HouseholdAccess,
    engine: EngineDep,
) -> HouseholdOut:
    with engine.connect() as conn:
        row = conn.execute(sa.select(_households).where(_households.c.id == household.id)).one()
    return _out(row)


@router.get(
    "/households/{household_id}/devices",
    response_model=Page[Device],
    summary="Devices of a household with their live status",
)
async def household_devices(
    household: HouseholdAccess,
    page: Pagination,
    engine: EngineDep,
    tracker: Annotated[DeviceStateTracker, Depends(tracker_dep)],
    device_type: Annotated[str | None, Query(max_length=32, description="only this device type")] = None,
) -> Page[Device]:
    """Registered devices (app database) merged with devices ingest has seen (status from the cache)."""
    status, registered = await run_in_threadpool(_devices_and_status, engine, tracker, household.id)
    devices = []
    for s in status:
        reg = registered.get(s["device_id"], {})
        devices.append(
            Device(
                device_id=s["device_id"],
                device_type=s.get("device_type"),
                manufacturer=reg.get("manufacturer"),
                model=reg.get("model"),
                protocol=reg.get("protocol"),
                registered=bool(s.get("registered")),
                status=s.get("status") or "unknown",
                last_seen=s.get("last_seen"),
                offline_since=s.get("offline_since"),
            )
        )
    if device_type is not None:
        devices = [d for d in devices if d.device_type == device_type]
    devices.sort(key=lambda d: d.device_id)
    return Page(
        items=devices[page.offset : page.offset + page.limit],
        total=len(devices),
        limit=page.limit,
        offset=page.offset,
    )


def _devices_and_status(
    engine: Engine, tracker: DeviceStateTracker, household_id: str
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(_devices.c.id, _devices.c.manufacturer, _devices.c.model, _devices.c.protocol).where(
                _devices.c.household_id == household_id
            )
        ).all()
    registered = {
        r.id: {
            "manufacturer": r.manufacturer,
            "model": r.model,
            "protocol": None if r.protocol is None else str(r.protocol),
        }
        for r in rows
    }
    return tracker.devices_status(household_id), registered
