"""`GET /dashboard/energy`: today so far, daily history, cost, carbon, TOU split and similar homes.

Where each part comes from, and how long it is reused:

- daily history, cost, carbon and the TOU split: ``energy_usage_daily`` as the pipeline publishes
  it to the app database (the mart's copy, indexed by household and day);
- the comparison with similar homes: the warehouse marts ``dim_households`` (same region,
  building type and residents band) and ``energy_usage_daily`` over the same days;
- today so far: the raw store's meter registers (the marts only hold finished refreshes).

The marts part is cached per (household, range) under the marts version
(:func:`hems.stores.cache.marts_version`), so a pipeline refresh makes it unreachable at once;
today's part is cached for a minute. A cached answer costs no database: in Redis one script call
reads both parts (:mod:`serving.cache_reads`), and :mod:`serving.fast_path` answers it without FastAPI.
"""

from __future__ import annotations

import asyncio
import statistics
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import orjson
import polars as pl
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from hems.contracts import ENERGY_CONSUMPTION, DeviceType
from hems.errors import HemsError
from hems.settings import Settings
from hems.stores.cache import Cache, RedisCache, marts_version
from hems.stores.raw_store import RawStore
from hems.stores.warehouse import get_warehouse
from serving.cache_reads import async_reader, splice_object
from serving.deps import (
    CacheDep,
    EngineDep,
    HouseholdAccess,
    HouseholdRef,
    SettingsDep,
    cache_is_local,
    raw_store_dep,
)

router = APIRouter(tags=["users and households"])

TODAY_TTL_S = 60
#: the marts part is invalidated by the marts version; the TTL only bounds memory use
DASHBOARD_TTL_S = 6 * 3600
#: when the comparison could not be computed (warehouse not built or down), retry soon
DEGRADED_TTL_S = 60
CACHE_HEADER = "X-Cache"


class DailyUsage(BaseModel):
    date: date
    total_kwh: float
    peak_kwh: float | None
    mid_kwh: float | None
    off_peak_kwh: float | None
    grid_kwh: float | None = Field(None, description="grid import")
    solar_kwh: float | None = Field(None, description="solar generation")
    cost_krw: float | None = Field(
        None, description="the day's share of the KEPCO bill (month-to-date difference)"
    )
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
    grid_kwh: float
    solar_kwh: float
    cost_krw: float
    carbon_kg: float
    tou_share: dict[str, float] = Field(description="share of grid import by time-of-use band")


class SimilarHomes(BaseModel):
    """This household against homes like it, over the same days."""

    region: str | None
    building_type: str | None
    residents_band: str | None = Field(description="1, 2, 3-4 or 5+")
    households: int = Field(description="similar homes with data in the range (this one excluded)")
    median_daily_kwh: float | None = Field(description="median of their mean daily use")
    your_daily_kwh: float | None = Field(description="this household's mean daily use")
    rank: int | None = Field(description="1 = lowest daily use among them and this household")
    of: int = Field(description="households ranked (similar homes + this one)")
    vs_median_pct: float | None = Field(description="(yours − median) / median × 100; negative is better")
    note: str | None = Field(None, description="why parts are missing")


class EnergyDashboard(BaseModel):
    household_id: str
    timezone: str
    start: date
    end: date
    marts_version: str = Field(description="the pipeline refresh this answer comes from")
    today: TodaySoFar
    daily: list[DailyUsage]
    totals: Totals
    similar_homes: SimilarHomes | None = Field(description="null while the warehouse marts are unavailable")


@router.get(
    "/dashboard/energy",
    response_model=EnergyDashboard,
    summary="Energy dashboard of a household",
    responses={
        200: {"headers": {CACHE_HEADER: {"description": "hit: the marts part came from the cache"}}},
        404: {"description": "no such household, or not yours"},
    },
)
async def dashboard_energy(
    household: HouseholdAccess,
    settings: SettingsDep,
    engine: EngineDep,
    cache: CacheDep,
    start: Annotated[date | None, Query(description="first local day (default: 30 days before end)")] = None,
    end: Annotated[date | None, Query(description="last local day, inclusive (default: yesterday)")] = None,
) -> Response:
    """``household_id`` (query) must be a household the caller may reach (404 otherwise)."""
    query = _query(household, settings, start, end)
    content = await cached_answer(query, cache)
    hit = content is not None
    if content is None:
        content, hit = await _build_once(query, cache, engine)
    return Response(content, media_type="application/json", headers=_HIT if hit else _MISS)


#: answers being built, per event loop and query: concurrent requests for the same answer (say 64
#: of a busy household when its today part expires, once a minute) wait for one build
_building: dict[tuple[int, str, str], asyncio.Future[tuple[bytes, bool]]] = {}


async def _build_once(query: _Query, cache: Cache, engine: Engine) -> tuple[bytes, bool]:
    """(answer, whether its marts part came from the cache), built in the thread pool once for
    every request of the same query that arrives while it is being built."""
    key = (id(asyncio.get_running_loop()), query.key(""), query.today_key())
    future = _building.get(key)
    if future is None:
        future = _building[key] = asyncio.ensure_future(run_in_threadpool(_build, query, cache, engine))
        future.add_done_callback(lambda _: _building.pop(key, None))
    return await asyncio.shield(future)  # a cancelled request does not cancel the others' build


def _query(household: HouseholdRef, settings: Settings, start: date | None, end: date | None) -> _Query:
    """The request's household and range, with the defaults applied (422 when out of bounds)."""
    tz_name = household.timezone or settings.domain.timezone
    today = datetime.now(ZoneInfo(tz_name)).date()
    end = end or today - timedelta(days=1)
    start = start or end - timedelta(days=29)
    if start > end:
        raise HTTPException(422, f"start {start} is after end {end}")
    if (end - start).days > 366 * 3:
        raise HTTPException(422, "a dashboard covers at most three years")
    return _Query(household.id, tz_name, start, end, today)


async def cached_answer(query: _Query, cache: Cache) -> bytes | None:
    """The whole answer as JSON bytes when both parts are cached, else None. On the event loop:
    from the in-process cache, or from Redis in one asynchronous round trip as the stored bytes
    (another cache goes to the thread pool)."""
    if isinstance(cache, RedisCache):
        return await _cached_redis(query, cache)
    found = _cached(query, cache) if cache_is_local(cache) else await run_in_threadpool(_cached, query, cache)
    return None if found is None else orjson.dumps(found)


_HIT, _MISS = {CACHE_HEADER: "hit"}, {CACHE_HEADER: "miss"}


class _Query:
    __slots__ = ("end", "household_id", "start", "today", "tz_name")

    def __init__(self, household_id: str, tz_name: str, start: date, end: date, today: date) -> None:
        self.household_id, self.tz_name, self.start, self.end, self.today = (
            household_id,
            tz_name,
            start,
            end,
            today,
        )

    def key(self, version: str) -> str:
        return f"dashboard:energy:{version}:{self.household_id}:{self.start}:{self.end}"

    def today_key(self) -> str:
        return f"dashboard:today:{self.household_id}:{self.today.isoformat()}"


def _cached(query: _Query, cache: Cache) -> dict[str, Any] | None:
    """The whole answer when both parts are cached, else None."""
    marts = cache.get_json(query.key(marts_version(cache)))
    if marts is None:
        return None
    today = cache.get_json(query.today_key())
    if today is None:
        return None
    return {**marts, "today": today}


async def _cached_redis(query: _Query, cache: RedisCache) -> bytes | None:
    """:func:`_cached` for Redis: one round trip, and the answer spliced from the stored bytes."""
    _, marts, (today,) = await async_reader(cache).marts_get(query.key("{version}"), query.today_key())
    if marts is None or today is None:
        return None
    return splice_object(marts, "today", today)


def _build(query: _Query, cache: Cache, engine: Engine) -> tuple[bytes, bool]:
    """The answer as JSON, and whether its marts part came from the cache (``X-Cache: hit``:
    only today's part, refreshed once a minute, was missing)."""
    version = marts_version(cache)  # read first: data read after a refresh is stored under the old key
    key = query.key(version)
    marts = cache.get_json(key)
    hit = marts is not None
    if marts is None:
        daily = _daily(engine, query)
        similar = _similar_homes(query, daily)
        marts = {
            "household_id": query.household_id,
            "timezone": query.tz_name,
            "start": query.start.isoformat(),
            "end": query.end.isoformat(),
            "marts_version": version,
            "daily": [d.model_dump(mode="json") for d in daily],
            "totals": _totals(daily).model_dump(mode="json"),
            "similar_homes": None if similar is None else similar.model_dump(mode="json"),
        }
        degraded = similar is None or similar.note is not None
        cache.set_json(key, marts, ttl_s=DEGRADED_TTL_S if degraded else DASHBOARD_TTL_S)
    return orjson.dumps({**marts, "today": _today_so_far(query, cache)}), hit


def _daily(engine: Engine, query: _Query) -> list[DailyUsage]:
    with engine.connect() as con:
        rows = con.execute(
            text(
                "SELECT date, total_consumption_kwh, peak_usage_kwh, mid_usage_kwh, off_peak_usage_kwh, "
                "grid_consumption_kwh, solar_generation_kwh, cost_krw, carbon_emission_kg "
                "FROM energy_usage_daily WHERE household_id = :h AND date >= :a AND date <= :b ORDER BY date"
            ),
            {"h": query.household_id, "a": query.start, "b": query.end},
        ).all()
    return [
        DailyUsage(
            date=r[0] if isinstance(r[0], date) else date.fromisoformat(str(r[0])),
            total_kwh=float(r[1] or 0.0),
            peak_kwh=r[2],
            mid_kwh=r[3],
            off_peak_kwh=r[4],
            grid_kwh=r[5],
            solar_kwh=r[6],
            cost_krw=r[7],
            carbon_kg=r[8],
        )
        for r in rows
    ]


def _totals(daily: list[DailyUsage]) -> Totals:
    total = sum(d.total_kwh for d in daily)
    bands = {
        "peak": sum(d.peak_kwh or 0.0 for d in daily),
        "mid": sum(d.mid_kwh or 0.0 for d in daily),
        "off_peak": sum(d.off_peak_kwh or 0.0 for d in daily),
    }
    banded = sum(bands.values())
    return Totals(
        days=len(daily),
        total_kwh=total,
        peak_kwh=bands["peak"],
        mid_kwh=bands["mid"],
        off_peak_kwh=bands["off_peak"],
        grid_kwh=sum(d.grid_kwh or 0.0 for d in daily),
        solar_kwh=sum(d.solar_kwh or 0.0 for d in daily),
        cost_krw=sum(d.cost_krw or 0.0 for d in daily),
        carbon_kg=sum(d.carbon_kg or 0.0 for d in daily),
        tou_share={k: (v / banded if banded else 0.0) for k, v in bands.items()},
    )


# residents band: (label, lowest, highest) — the same band makes homes comparable
RESIDENT_BANDS = (("1", 1, 1), ("2", 2, 2), ("3-4", 3, 4), ("5+", 5, 1_000))

_SIMILAR_SQL = """
WITH me AS (
    SELECT region, building_type, residents FROM marts.dim_households WHERE household_id = $household_id
),
peers AS (
    SELECT h.household_id FROM marts.dim_households AS h, me
    WHERE h.region = me.region AND h.building_type = me.building_type
      AND h.residents BETWEEN $low AND $high
)
SELECT d.household_id, avg(d.total_consumption_kwh) AS kwh_per_day, count(*) AS days
FROM marts.energy_usage_daily AS d JOIN peers AS p ON d.household_id = p.household_id
WHERE d.date >= $start AND d.date <= $end
GROUP BY d.household_id
"""


def _similar_homes(query: _Query, daily: list[DailyUsage]) -> SimilarHomes | None:
    """Median daily kWh of homes like this one and this one's rank among them; None when the
    warehouse cannot be read (no snapshot yet, or down) — the rest of the dashboard still answers."""
    try:
        warehouse = get_warehouse()
        me = warehouse.query(
            "SELECT region, building_type, residents FROM marts.dim_households "
            "WHERE household_id = $household_id",
            {"household_id": query.household_id},
        )
        if me.height == 0:
            return _without("this household is not in the marts yet (next pipeline refresh)")
        region, building_type, residents = me.row(0)
        band = _band(residents)
        if region is None or building_type is None or band is None:
            return _without(
                "set the household's region, building type and residents to compare with similar homes",
                region=region,
                building_type=building_type,
                residents_band=None if band is None else band[0],
            )
        peers = warehouse.query(
            _SIMILAR_SQL,
            {
                "household_id": query.household_id,
                "low": band[1],
                "high": band[2],
                "start": query.start,
                "end": query.end,
            },
        )
    except HemsError:
        return None
    except Exception as exc:  # a warehouse without the marts yet (catalog errors differ by backend)
        if "dim_households" in str(exc) or "energy_usage_daily" in str(exc):
            return None
        raise
    per_day = {str(h): float(k) for h, k, _ in peers.iter_rows() if k is not None}
    mine = per_day.pop(query.household_id, None)
    if mine is None and daily:
        mine = sum(d.total_kwh for d in daily) / len(daily)
    median = statistics.median(per_day.values()) if per_day else None
    ranked = sorted([*per_day.values(), *([mine] if mine is not None else [])])
    return SimilarHomes(
        region=region,
        building_type=building_type,
        residents_band=band[0],
        households=len(per_day),
        median_daily_kwh=None if median is None else round(median, 3),
        your_daily_kwh=None if mine is None else round(mine, 3),
        rank=None if mine is None else 1 + sum(1 for v in per_day.values() if v < mine),
        of=len(ranked),
        vs_median_pct=None if mine is None or not median else round((mine - median) / median * 100, 2),
        note=None if per_day else "no similar homes with data in this range",
    )


def _band(residents: int | None) -> tuple[str, int, int] | None:
    if residents is None or residents < 1:
        return None
    return next(b for b in RESIDENT_BANDS if b[1] <= residents <= b[2])


def _without(note: str, **fields: Any) -> SimilarHomes:
    return SimilarHomes(
        region=fields.get("region"),
        building_type=fields.get("building_type"),
        residents_band=fields.get("residents_band"),
        households=0,
        median_daily_kwh=None,
        your_daily_kwh=None,
        rank=None,
        of=0,
        vs_median_pct=None,
        note=note,
    )


def _today_so_far(query: _Query, cache: Cache) -> dict[str, Any]:
    key = query.today_key()
    cached = cache.get_json(key)
    if cached is not None:
        return dict(cached)
    raw: RawStore = raw_store_dep()
    tz = ZoneInfo(query.tz_name)
    midnight = datetime.combine(query.today, time(0), tz)
    frame = raw.query(
        ENERGY_CONSUMPTION.name,
        midnight,
        midnight + timedelta(days=1),
        where={"household_id": [query.household_id]},
    )
    meter = frame.filter(frame["device_type"] == DeviceType.smart_meter.value).drop_nulls("energy_import_kwh")
    result = TodaySoFar(date=query.today, import_kwh=None, latest_power_w=None, as_of=None)
    if meter.height:
        per_device = meter.group_by("device_id").agg(
            (pl.col("energy_import_kwh").last() - pl.col("energy_import_kwh").first()).alias("kwh")
        )
        last = meter.sort("ts").tail(1)
        result = TodaySoFar(
            date=query.today,
            import_kwh=max(float(per_device["kwh"].sum()), 0.0),
            latest_power_w=last["power_consumption"][0],
            as_of=last["ts"][0],
        )
    body = result.model_dump(mode="json")
    cache.set_json(key, body, ttl_s=TODAY_TTL_S)
    return body
