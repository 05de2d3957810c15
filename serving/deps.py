"""Dependencies shared by the routers: settings and stores, the caller, roles and household scope.

Authorization lives here and only here:

- :func:`current_user` — the :class:`~serving.security.Principal` of a valid access token (401
  otherwise);
- :func:`require_role` — a dependency factory refusing other roles with 403;
- :func:`household_access` — the one household-scoping rule: a resident reaches only households
  whose ``user_id`` is theirs, analysts and admins reach every household; anything else is a
  404 identical to "no such household", so a resident cannot even learn that another id exists.
  :func:`household_write_access` is the same rule for acting on a household's behalf, where
  analysts (read-only) get 403.
  It reads ``household_id`` from the path when the route has ``{household_id}``, else from the
  query string, so every household-scoped route declares just ``household: HouseholdAccess``
  (``Annotated[HouseholdRef, Depends(household_access)]``; the other ``*Dep`` aliases below
  name the shared stores and settings the same way).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, cast

import sqlalchemy as sa
from cachetools import TTLCache
from fastapi import Depends, HTTPException, Query, Request
from fastapi.security import OAuth2PasswordBearer
from pydantic import StringConstraints
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from hems.settings import Settings, get_settings
from hems.stores import appdb
from hems.stores.appdb.models import Household, Role
from hems.stores.cache import Cache, MemoryCache, get_cache
from hems.stores.raw_store import RawStore, get_raw_store
from serving.request_context import PRINCIPAL_KEY
from serving.security.tokens import InvalidToken, Principal, decode_access_token

ID_PATTERN = r"^[A-Za-z0-9_.:-]+$"
HouseholdId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=ID_PATTERN)]

_households = cast(sa.Table, Household.__table__)

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)


# Cheap dependencies are ``async def``: FastAPI runs a plain ``def`` dependency in the thread
# pool, a hop that costs more than the work here (and the dashboard's p99 target is 25 ms).


async def settings_dep() -> Settings:
    return get_settings()


SettingsDep = Annotated[Settings, Depends(settings_dep)]


@lru_cache(maxsize=1)
def raw_store_dep() -> RawStore:
    return get_raw_store()


RawStoreDep = Annotated[RawStore, Depends(raw_store_dep)]


async def cache_dep() -> Cache:
    return get_cache()


CacheDep = Annotated[Cache, Depends(cache_dep)]


_engine_of: tuple[Settings, Engine] | None = None


def app_engine() -> Engine:
    """The app database engine (for code outside dependencies, e.g. the WebSocket); remembered
    for the current settings object, since rendering its URL costs more than the cached lookups
    the dashboard makes with it."""
    global _engine_of
    settings = get_settings()
    known = _engine_of
    if known is not None and known[0] is settings:
        return known[1]
    engine = appdb.get_engine(settings.app_database_url)
    _engine_of = (settings, engine)
    return engine


async def engine_dep() -> Engine:
    return app_engine()


EngineDep = Annotated[Engine, Depends(engine_dep)]


def cache_is_local(cache: Cache) -> bool:
    """True when the cache is in-process, so calling it cannot block the event loop on I/O."""
    return isinstance(cache, MemoryCache)


# --- the caller ------------------------------------------------------------------------------


def unauthorized(detail: str, *, invalid: bool = True) -> HTTPException:
    """401 with the RFC 6750 challenge (``error="invalid_token"`` when a token was presented)."""
    safe = detail.replace('"', "'").replace("\\", "/").encode("ascii", "replace").decode()
    challenge = f'Bearer error="invalid_token", error_description="{safe}"' if invalid else "Bearer"
    return HTTPException(401, detail, headers={"WWW-Authenticate": challenge})


def principal_from_token(token: str | None, settings: Settings) -> Principal:
    """The principal of a bearer token, or a 401 (shared by HTTP routes and the WebSocket)."""
    if not token:
        raise unauthorized("not authenticated: send Authorization: Bearer <access token>", invalid=False)
    try:
        return decode_access_token(token, settings)
    except InvalidToken as exc:
        raise unauthorized(str(exc)) from None


async def current_user(
    request: Request,
    token: Annotated[str | None, Depends(oauth2_scheme)],
    settings: SettingsDep,
) -> Principal:
    """The authenticated caller (any role); the token the rate limiter verified is not verified again."""
    verified = request.scope.get(PRINCIPAL_KEY)
    if token and verified is not None and verified[0] == token:
        return cast(Principal, verified[1])
    return principal_from_token(token, settings)


CurrentUser = Annotated[Principal, Depends(current_user)]


def require_role(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """``Depends(require_role(Role.admin))``: the caller, when they hold one of ``roles`` (else 403)."""
    allowed = frozenset(roles)

    async def dependency(principal: CurrentUser) -> Principal:
        if principal.role not in allowed:
            names = ", ".join(sorted(r.value for r in allowed))
            raise HTTPException(403, f"this operation needs the role {names}; you are {principal.role.value}")
        return principal

    dependency.__name__ = "require_" + "_or_".join(sorted(r.value for r in allowed))
    return dependency


# --- household scope -------------------------------------------------------------------------


@dataclass(frozen=True)
class HouseholdRef:
    """A household the caller may reach (its row's id, owner and time zone)."""

    id: str
    user_id: int | None
    timezone: str | None


def not_found(household_id: str) -> HTTPException:
    return HTTPException(404, f"household {household_id!r} not found")


#: How long a household row read for the scoping rule is reused. Why at all: the dashboard is
#: served from the cache in well under a millisecond, and this lookup was the rest of the work.
#: Why so short: an ownership change must take effect quickly (access tokens themselves are
#: trusted for up to 15 minutes without a lookup). Only households that exist are remembered,
#: so a household created after a 404 is found at once.
HOUSEHOLD_ROW_TTL_S = 5.0


class _RecentHouseholds:
    """Household rows (id, owner, time zone) read in the last ``ttl_s`` seconds, per database."""

    def __init__(self, ttl_s: float, maxsize: int = 50_000) -> None:
        self._rows: TTLCache[tuple[str, str], HouseholdRef] = TTLCache(maxsize=maxsize, ttl=ttl_s)
        self._lock = threading.Lock()

    def get(self, engine: Engine, household_id: str) -> HouseholdRef | None:
        with self._lock:
            return self._rows.get((_db_key(engine), household_id))

    def put(self, engine: Engine, ref: HouseholdRef) -> None:
        with self._lock:
            self._rows[(_db_key(engine), ref.id)] = ref

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
        with _recent_owned_lock:
            _recent_owned.clear()


def _db_key(engine: Engine) -> str:
    key = engine.__dict__.get("_hems_db_key")
    if key is None:  # rendering the URL every request costs more than the lookup it keys
        key = engine.__dict__["_hems_db_key"] = engine.url.render_as_string(hide_password=True)
    return cast(str, key)


recent_households = _RecentHouseholds(HOUSEHOLD_ROW_TTL_S)


def lookup_household(engine: Engine, household_id: str) -> HouseholdRef | None:
    """The household's row (recently read ones from memory), None when there is none."""
    ref = recent_households.get(engine, household_id)
    if ref is not None:
        return ref
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(_households.c.id, _households.c.user_id, _households.c.timezone).where(
                _households.c.id == household_id
            )
        ).first()
    if row is None:
        return None
    ref = HouseholdRef(id=row.id, user_id=row.user_id, timezone=row.timezone)
    recent_households.put(engine, ref)
    return ref


def check_household(
    ref: HouseholdRef | None, principal: Principal, household_id: str, *, write: bool = False
) -> HouseholdRef:
    """The scoping rule itself: the household if the caller may reach it, else 404 (or 403).

    ``write``: acting for the household (joining a challenge, redeeming points) — owners and
    admins only; analysts read everything but act for nobody (403).
    """
    own = ref is not None and ref.user_id == principal.user_id
    if ref is None or not (own or principal.sees_all_households):
        raise not_found(household_id)
    if write and not own and principal.role is not Role.admin:
        raise HTTPException(403, f"a {principal.role.value} cannot act for household {household_id!r}")
    return ref


def authorize_household(
    engine: Engine, principal: Principal, household_id: str, *, write: bool = False
) -> HouseholdRef:
    """Look up and check (also used by the WebSocket, which has no HTTP dependencies)."""
    return check_household(lookup_household(engine, household_id), principal, household_id, write=write)


#: lookups in flight, per event loop, database and household (see :func:`recent_household`)
_inflight: dict[tuple[int, str, str], asyncio.Future[HouseholdRef | None]] = {}


async def recent_household(engine: Engine, household_id: str) -> HouseholdRef | None:
    """:func:`lookup_household` for async code: from memory when recently read, else one database
    read in the thread pool that every concurrent request for the household awaits — when a
    busy household's row expires, 64 requests in flight cost one read, not 64."""
    ref = recent_households.get(engine, household_id)
    if ref is not None:
        return ref
    key = (id(asyncio.get_running_loop()), _db_key(engine), household_id)
    future = _inflight.get(key)
    if future is None:
        future = _inflight[key] = asyncio.ensure_future(
            run_in_threadpool(lookup_household, engine, household_id)
        )
        future.add_done_callback(lambda _: _inflight.pop(key, None))
    return await asyncio.shield(future)  # a cancelled request does not cancel the others' read


async def authorized_household(
    engine: Engine, principal: Principal, household_id: str, *, write: bool = False
) -> HouseholdRef:
    """:func:`authorize_household` for async code: a database read only when not recently read."""
    return check_household(await recent_household(engine, household_id), principal, household_id, write=write)


async def household_access(
    household_id: HouseholdId, principal: CurrentUser, engine: EngineDep
) -> HouseholdRef:
    """The household named by the request, if the caller may read it (404 otherwise)."""
    return await authorized_household(engine, principal, household_id)


async def household_write_access(
    household_id: HouseholdId, principal: CurrentUser, engine: EngineDep
) -> HouseholdRef:
    """The household named by the request, if the caller may act for it (owner or admin)."""
    return await authorized_household(engine, principal, household_id, write=True)


HouseholdAccess = Annotated[HouseholdRef, Depends(household_access)]
HouseholdWriteAccess = Annotated[HouseholdRef, Depends(household_write_access)]


def owned_household_ids(engine: Engine, user_id: int) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(sa.select(_households.c.id).where(_households.c.user_id == user_id)).scalars()
        )


_recent_owned: TTLCache[tuple[str, int], frozenset[str]] = TTLCache(maxsize=50_000, ttl=HOUSEHOLD_ROW_TTL_S)
_recent_owned_lock = threading.Lock()


async def recently_owned_household_ids(engine: Engine, user_id: int) -> frozenset[str]:
    """:func:`owned_household_ids`, reused for ``HOUSEHOLD_ROW_TTL_S`` (marking "mine" in rankings)."""
    key = (_db_key(engine), user_id)
    with _recent_owned_lock:
        found = _recent_owned.get(key)
    if found is None:
        found = frozenset(await run_in_threadpool(owned_household_ids, engine, user_id))
        with _recent_owned_lock:
            _recent_owned[key] = found
    return found


# --- pagination ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PageParams:
    limit: int
    offset: int


async def pagination(
    limit: Annotated[int, Query(ge=1, le=100, description="items per page")] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000, description="items to skip")] = 0,
) -> PageParams:
    return PageParams(limit=limit, offset=offset)


Pagination = Annotated[PageParams, Depends(pagination)]
