"""`GET /community/leaderboard`: who saved most against their own baseline, per week.

The ranking comes from the mart ``fct_community_leaderboard`` (weekly kWh saved against each
household's own baseline). Serving it reads sorted sets, not the warehouse: the first request
for a week builds one set per scope and group (``all``, each region, each building type,
scored by the savings rate), a hash of each household's figures and a marker, all under the
marts version, so a pipeline refresh makes them unreachable at once and the next request
rebuilds them. Redis in the stack profile (``ZADD`` then ``ZREVRANGE ... WITHSCORES``), the
in-process cache when embedded.

Privacy: residents see their own households by id (``mine``) and every other household only as a
stable pseudonym (an HMAC of the id under a server secret, so it cannot be reversed by hashing
guessed ids); analysts and admins see ids. No names are ever shown.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from functools import lru_cache
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from hems.stores.cache import Cache, marts_version
from hems.stores.warehouse import get_warehouse
from serving.deps import (
    CacheDep,
    CurrentUser,
    EngineDep,
    HouseholdId,
    SettingsDep,
    authorized_household,
    cache_is_local,
    recently_owned_household_ids,
)
from serving.security.secrets import jwt_secret

router = APIRouter(prefix="/community", tags=["community"])

Scope = Literal["all", "region", "building_type"]
#: sets and their hash live this long after a build; a marts refresh replaces them sooner
LEADERBOARD_TTL_S = 24 * 3600
PSEUDONYM_PREFIX = "anon-"
_FIRST_WEEK = dt.date(2000, 1, 3)  # a Monday; older weeks are refused rather than cached
_ROW_FIELDS = ("region", "building_type", "metered_days", "kwh", "baseline_kwh", "saved_kwh", "saved_ratio")


class Entry(BaseModel):
    rank: int = Field(description="1 = the largest saving against its own baseline")
    household: str = Field(
        description="the id for your own households (all, for analysts/admins), else a pseudonym"
    )
    mine: bool
    saved_pct: float = Field(description="(baseline − actual) / baseline × 100 over the metered days")
    saved_kwh: float | None
    kwh: float | None
    baseline_kwh: float | None
    metered_days: int | None


class Leaderboard(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "week_start": "2025-07-07",
                    "scope": "region",
                    "group": "Seoul",
                    "total": 42,
                    "limit": 10,
                    "offset": 0,
                    "items": [
                        {
                            "rank": 1,
                            "household": "anon-3f9a0c2be1",
                            "mine": False,
                            "saved_pct": 14.2,
                            "saved_kwh": 9.8,
                            "kwh": 59.2,
                            "baseline_kwh": 69.0,
                            "metered_days": 7,
                        }
                    ],
                    "me": {
                        "rank": 7,
                        "household": "hh-0001",
                        "mine": True,
                        "saved_pct": 5.1,
                        "saved_kwh": 3.4,
                        "kwh": 63.1,
                        "baseline_kwh": 66.5,
                        "metered_days": 7,
                    },
                    "marts_version": "18a2f...-1c2d3e4f",
                }
            ]
        }
    )

    week_start: dt.date | None = Field(description="Monday of the week (null: the marts hold no week yet)")
    scope: Scope
    group: str | None = Field(description="the region or building type ranked within (null for 'all')")
    total: int = Field(description="households ranked in this group")
    limit: int
    offset: int
    items: list[Entry]
    me: Entry | None = Field(description="the household named by household_id, when it is ranked")
    marts_version: str


@router.get(
    "/leaderboard",
    response_model=Leaderboard,
    summary="Weekly savings leaderboard (all, by region or by building type)",
    responses={404: {"description": "household_id is not a household you may read"}},
)
async def leaderboard(
    principal: CurrentUser,
    settings: SettingsDep,
    engine: EngineDep,
    cache: CacheDep,
    week: Annotated[
        dt.date | None, Query(description="any day of the week (Monday start); default: the newest week")
    ] = None,
    scope: Annotated[Scope, Query(description="rank among all, within a region or a building type")] = "all",
    household_id: Annotated[
        HouseholdId | None,
        Query(description="your household: shown as `me`, and its region/building type picks the group"),
    ] = None,
    region: Annotated[
        str | None, Query(min_length=1, max_length=100, description="scope=region: which")
    ] = None,
    building_type: Annotated[
        str | None, Query(min_length=1, max_length=32, description="scope=building_type: which")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="entries per page")] = 10,
    offset: Annotated[int, Query(ge=0, le=1_000_000, description="entries to skip")] = 0,
) -> Response:
    if week is not None:
        week = week - dt.timedelta(days=week.weekday())
        if not _FIRST_WEEK <= week <= dt.date.today() + dt.timedelta(days=7):
            raise HTTPException(422, f"week {week} is outside {_FIRST_WEEK} .. next week")
    if household_id is not None:  # the one scoping rule: not yours → 404
        await authorized_household(engine, principal, household_id)
    request = _Request(scope, household_id, region, building_type, limit, offset)
    if cache_is_local(cache):
        body = _answer(request, week, cache)
    else:
        body = await run_in_threadpool(_answer, request, week, cache)
    if principal.sees_all_households:
        mine: frozenset[str] = frozenset()
    else:
        mine = await recently_owned_household_ids(engine, principal.user_id)
    _present(body, mine, reveal=principal.sees_all_households, key=_pseudonym_key(jwt_secret(settings)))
    return Response(orjson.dumps(body), media_type="application/json")


class _Request:
    __slots__ = ("building_type", "household_id", "limit", "offset", "region", "scope")

    def __init__(
        self,
        scope: Scope,
        household_id: str | None,
        region: str | None,
        building_type: str | None,
        limit: int,
        offset: int,
    ) -> None:
        self.scope, self.household_id, self.region, self.building_type = (
            scope,
            household_id,
            region,
            building_type,
        )
        self.limit, self.offset = limit, offset


def _prefix(version: str, week: dt.date) -> str:
    return f"leaderboard:{version}:{week.isoformat()}:"


def _answer(request: _Request, week: dt.date | None, cache: Cache) -> dict[str, Any]:
    """The page with real household ids (pseudonyms are applied per caller afterwards)."""
    version = marts_version(cache)
    if week is None:
        week = _newest_week(cache, version)
        if week is None:
            return _empty(request, None, None, version)
    prefix = _prefix(version, week)
    meta = cache.get_json(prefix + "meta")
    if meta is None:
        meta = build_week(cache, version, week)
    group = _group(request, prefix, cache)
    set_key = prefix + ("all" if request.scope == "all" else f"{request.scope}:{group}")
    total = int(meta["groups"].get(set_key[len(prefix) :], 0))
    top = cache.ztop(set_key, request.limit, request.offset)
    wanted = [m for m, _ in top]
    me = None
    if request.household_id is not None:
        rank = cache.zrank_desc(set_key, request.household_id)
        if rank is not None:
            me = (request.household_id, rank)
            wanted.append(request.household_id)
    details = dict(zip(wanted, cache.hget_json_many(prefix + "rows", wanted), strict=True))
    items = [_entry(m, request.offset + i + 1, details.get(m)) for i, (m, _) in enumerate(top)]
    body = _empty(request, week, group, version)
    body.update(
        total=total, items=items, me=None if me is None else _entry(me[0], me[1] + 1, details.get(me[0]))
    )
    return body


def _empty(request: _Request, week: dt.date | None, group: str | None, version: str) -> dict[str, Any]:
    return {
        "week_start": None if week is None else week.isoformat(),
        "scope": request.scope,
        "group": group,
        "total": 0,
        "limit": request.limit,
        "offset": request.offset,
        "items": [],
        "me": None,
        "marts_version": version,
    }


def _group(request: _Request, prefix: str, cache: Cache) -> str | None:
    if request.scope == "all":
        return None
    given = request.region if request.scope == "region" else request.building_type
    if given is not None:
        return given
    if request.household_id is None:
        raise HTTPException(422, f"scope={request.scope} needs {request.scope}= or household_id=")
    (row,) = cache.hget_json_many(prefix + "rows", [request.household_id])
    if row is None or row.get(request.scope) is None:
        raise HTTPException(
            422,
            f"household {request.household_id!r} has no {request.scope} on this week's board; "
            f"pass {request.scope}=",
        )
    return str(row[request.scope])


def _entry(household_id: str, rank: int, row: dict[str, Any] | None) -> dict[str, Any]:
    row = row or {}
    ratio = row.get("saved_ratio")
    return {
        "rank": rank,
        "household": household_id,
        "mine": False,
        "saved_pct": 0.0 if ratio is None else round(float(ratio) * 100, 2),
        "saved_kwh": _round(row.get("saved_kwh")),
        "kwh": _round(row.get("kwh")),
        "baseline_kwh": _round(row.get("baseline_kwh")),
        "metered_days": row.get("metered_days"),
    }


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


def _present(body: dict[str, Any], mine: frozenset[str], *, reveal: bool, key: bytes) -> None:
    """Mark the caller's households; replace every other id by its pseudonym unless ``reveal``."""
    for entry in [*body["items"], *([body["me"]] if body["me"] else [])]:
        entry["mine"] = entry["household"] in mine
        if not (reveal or entry["mine"]):
            entry["household"] = pseudonym(entry["household"], key)


@lru_cache(maxsize=4)
def _pseudonym_key(secret: str) -> bytes:
    return hashlib.sha256(b"hems leaderboard pseudonym\x00" + secret.encode()).digest()


def pseudonym(household_id: str, key: bytes) -> str:
    """A stable short alias: HMAC-SHA256 under a key derived from the JWT secret (10 hex)."""
    return PSEUDONYM_PREFIX + hmac.new(key, household_id.encode(), hashlib.sha256).hexdigest()[:10]


# --- building the sets ---------------------------------------------------------------------


def _newest_week(cache: Cache, version: str) -> dt.date | None:
    key = f"leaderboard:{version}:newest_week"
    cached = cache.get_json(key)
    if cached is None:
        frame = get_warehouse().query("SELECT max(week_start) AS week FROM marts.fct_community_leaderboard")
        newest = frame["week"][0] if frame.height else None
        cached = {"week": None if newest is None else str(newest)[:10]}
        cache.set_json(key, cached, ttl_s=LEADERBOARD_TTL_S)
    return None if cached["week"] is None else dt.date.fromisoformat(cached["week"])


def build_week(cache: Cache, version: str, week: dt.date) -> dict[str, Any]:
    """Load one week of ``fct_community_leaderboard`` into sorted sets (score = savings rate) and
    a hash of figures; the ``meta`` marker is written last, so a reader that finds it finds the
    sets. Households without a baseline are in the hash but not ranked."""
    frame = get_warehouse().query(
        "SELECT household_id, region, building_type, metered_days, kwh, baseline_kwh, saved_kwh, saved_ratio "
        "FROM marts.fct_community_leaderboard WHERE week_start = $week",
        {"week": week},
    )
    prefix = _prefix(version, week)
    sets: dict[str, dict[str, float]] = {}
    rows: dict[str, Any] = {}
    for record in frame.iter_rows(named=True):
        household = str(record["household_id"])
        rows[household] = {f: _plain(record[f]) for f in _ROW_FIELDS}
        ratio = record["saved_ratio"]
        if ratio is None:
            continue
        sets.setdefault("all", {})[household] = float(ratio)
        for scope in ("region", "building_type"):
            if record[scope] is not None:
                sets.setdefault(f"{scope}:{record[scope]}", {})[household] = float(ratio)
    cache.hreplace_json(prefix + "rows", rows, ttl_s=LEADERBOARD_TTL_S)
    for name, members in sets.items():
        cache.zreplace(prefix + name, members, ttl_s=LEADERBOARD_TTL_S)
    meta = {"week": week.isoformat(), "households": len(rows), "groups": {k: len(v) for k, v in sets.items()}}
    cache.set_json(prefix + "meta", meta, ttl_s=LEADERBOARD_TTL_S)
    return meta


def _plain(value: Any) -> Any:
    """JSON-ready: Decimal (PostgreSQL numerics) → float."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return float(value)
