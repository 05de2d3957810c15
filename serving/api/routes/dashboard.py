"""`GET /dashboard/energy`: today so far, daily history, TOU split and carbon for one household.

Daily history comes from ``energy_usage_daily`` in the app database (published by the pipeline);
today's usage so far comes from the raw store's meter registers (cached for a minute), because
the marts only hold finished refreshes.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

import polars as pl
from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.engine import Engine

from hems.contracts import ENERGY_CONSUMPTION, DeviceType
from hems.settings import Settings
from hems.stores.cache import Cache
from hems.stores.raw_store import RawStore
from serving.deps import HouseholdRef, cache_dep, engine_dep, household_access, raw_store_dep, settings_dep

router = APIRouter(tags=["users and households"])

TODAY_TTL_S = 60


class DailyUsage(BaseModel):
    date: date
    total_kwh: float
    peak_kwh: float | None
    mid_kwh: float | None
    off_peak_kwh: float | None
    carbon_kg: float | None


class TodaySoFar(BaseModel):
    date: date
    import_kwh: float | None = Field(description="grid import since local midnight, from the meter register")
    latest_power_w: float | None
    as_of: datetime | None


class Totals(BaseModel):
    days: int
    total_kwh: float
    peak_kwh: float
    mid_kwh: float
    off_peak_kwh: float
    carbon_kg: float
    tou_share: dict[str, float]


class EnergyDashboard(BaseModel):
    household_id: str
    timezone: str
    start: date
    end: date
    today: TodaySoFar
    daily: list[DailyUsage]
    totals: Totals


@router.get("/dashboard/energy", response_model=EnergyDashboard, summary="Energy dashboard of a household")
def dashboard_energy(
    household: Annotated[HouseholdRef, Depends(household_access)],
    settings: Annotated[Settings, Depends(settings_dep)],
    engine: Annotated[Engine, Depends(engine_dep)],
    raw: Annotated[RawStore, Depends(raw_store_dep)],
    cache: Annotated[Cache, Depends(cache_dep)],
    start: Annotated[date | None, Query(description="first local day (default: 30 days before end)")] = None,
    end: Annotated[date | None, Query(description="last local day, inclusive (default: yesterday)")] = None,
) -> EnergyDashboard:
    """``household_id`` (query) must be a household the caller may reach (404 otherwise)."""
    household_id = household.id
    tz_name = household.timezone or settings.domain.timezone
    tz = ZoneInfo(tz_name)
    today = datetime.now(tz).date()
    end = end or today - timedelta(days=1)
    start = start or end - timedelta(days=29)
    if start > end:
        raise HTTPException(422, f"start {start} is after end {end}")
    if (end - start).days > 366 * 3:
        raise HTTPException(422, "a dashboard covers at most three years")

    with engine.connect() as con:
        rows = con.execute(
            text(
                "SELECT date, total_consumption_kwh, peak_usage_kwh, mid_usage_kwh, off_peak_usage_kwh, "
                "carbon_emission_kg FROM energy_usage_daily "
                "WHERE household_id = :h AND date >= :a AND date <= :b ORDER BY date"
            ),
            {"h": household_id, "a": start, "b": end},
        ).all()
    daily = [
        DailyUsage(
            date=r[0] if isinstance(r[0], date) else date.fromisoformat(str(r[0])),
            total_kwh=float(r[1] or 0.0),
            peak_kwh=r[2],
            mid_kwh=r[3],
            off_peak_kwh=r[4],
            carbon_kg=r[5],
        )
        for r in rows
    ]
    return EnergyDashboard(
        household_id=household_id,
        timezone=tz_name,
        start=start,
        end=end,
        today=_today_so_far(household_id, tz, today, raw, cache),
        daily=daily,
        totals=_totals(daily),
    )


def _totals(daily: list[DailyUsage]) -> Totals:
    total = sum(d.total_kwh for d in daily)
    bands = {
        "peak": sum(d.peak_kwh or 0.0 for d in daily),
        "mid": sum(d.mid_kwh or 0.0 for d in daily),
        "off_peak": sum(d.off_peak_kwh or 0.0 for d in daily),
    }
    return Totals(
        days=len(daily),
        total_kwh=total,
        peak_kwh=bands["peak"],
        mid_kwh=bands["mid"],
        off_peak_kwh=bands["off_peak"],
        carbon_kg=sum(d.carbon_kg or 0.0 for d in daily),
        tou_share={k: (v / total if total else 0.0) for k, v in bands.items()},
    )


def _today_so_far(household_id: str, tz: ZoneInfo, today: date, raw: RawStore, cache: Cache) -> TodaySoFar:
    key = f"dashboard:today:{household_id}:{today.isoformat()}"
    cached = cache.get_json(key)
    if cached is not None:
        return TodaySoFar.model_validate(cached)
    midnight = datetime.combine(today, time(0), tz)
    frame = raw.query(
        ENERGY_CONSUMPTION.name,
        midnight,
        midnight + timedelta(days=1),
        where={"household_id": [household_id]},
    )
    meter = frame.filter(frame["device_type"] == DeviceType.smart_meter.value).drop_nulls("energy_import_kwh")
    result = TodaySoFar(date=today, import_kwh=None, latest_power_w=None, as_of=None)
    if meter.height:
        per_device = meter.group_by("device_id").agg(
            (pl.col("energy_import_kwh").last() - pl.col("energy_import_kwh").first()).alias("kwh")
        )
        last = meter.sort("ts").tail(1)
        result = TodaySoFar(
            date=today,
            import_kwh=max(float(per_device["kwh"].sum()), 0.0),
            latest_power_w=last["power_consumption"][0],
            as_of=last["ts"][0],
        )
    cache.set_json(key, result.model_dump(mode="json"), ttl_s=TODAY_TTL_S)
    return result
