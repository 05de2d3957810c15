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
  query string, so every household-scoped route declares just
  ``household: Annotated[HouseholdRef, Depends(household_access)]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, cast

import sqlalchemy as sa
from fastapi import Depends, HTTPException, Query
from fastapi.security import OAuth2PasswordBearer
from pydantic import StringConstraints
from sqlalchemy.engine import Engine

from hems.settings import Settings, get_settings
from hems.stores import appdb
from hems.stores.appdb.models import Household, Role
from hems.stores.cache import Cache, get_cache
from hems.stores.raw_store import RawStore, get_raw_store
from serving.security.tokens import InvalidToken, Principal, decode_access_token

ID_PATTERN = r"^[A-Za-z0-9_.:-]+$"
HouseholdId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=ID_PATTERN)]

_households = cast(sa.Table, Household.__table__)

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)


def settings_dep() -> Settings:
    return get_settings()


@lru_cache(maxsize=1)
def raw_store_dep() -> RawStore:
    return get_raw_store()


def cache_dep() -> Cache:
    return get_cache()


def engine_dep() -> Engine:
    return appdb.get_engine(get_settings().app_database_url)


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


def current_user(
    token: Annotated[str | None, Depends(oauth2_scheme)], settings: Annotated[Settings, Depends(settings_dep)]
) -> Principal:
    """The authenticated caller (any role)."""
    return principal_from_token(token, settings)


CurrentUser = Annotated[Principal, Depends(current_user)]


def require_role(*roles: Role) -> Callable[[Principal], Principal]:
    """``Depends(require_role(Role.admin))``: the caller, when they hold one of ``roles`` (else 403)."""
    allowed = frozenset(roles)

    def dependency(principal: CurrentUser) -> Principal:
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


def authorize_household(
    engine: Engine, principal: Principal, household_id: str, *, write: bool = False
) -> HouseholdRef:
    """The scoping rule itself (also used by the WebSocket, which has no HTTP dependencies).

    ``write``: acting for the household (joining a challenge ...) — owners and admins only;
    analysts read everything but act for nobody (403).
    """
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(_households.c.id, _households.c.user_id, _households.c.timezone).where(
                _households.c.id == household_id
            )
        ).first()
    own = row is not None and row.user_id == principal.user_id
    if row is None or not (own or principal.sees_all_households):
        raise not_found(household_id)
    if write and not own and principal.role is not Role.admin:
        raise HTTPException(403, f"a {principal.role.value} cannot act for household {household_id!r}")
    return HouseholdRef(id=row.id, user_id=row.user_id, timezone=row.timezone)


def household_access(
    household_id: HouseholdId, principal: CurrentUser, engine: Annotated[Engine, Depends(engine_dep)]
) -> HouseholdRef:
    """The household named by the request, if the caller may read it (404 otherwise)."""
    return authorize_household(engine, principal, household_id)


def household_write_access(
    household_id: HouseholdId, principal: CurrentUser, engine: Annotated[Engine, Depends(engine_dep)]
) -> HouseholdRef:
    """The household named by the request, if the caller may act for it (owner or admin)."""
    return authorize_household(engine, principal, household_id, write=True)


def owned_household_ids(engine: Engine, user_id: int) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(sa.select(_households.c.id).where(_households.c.user_id == user_id)).scalars()
        )


# --- pagination ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PageParams:
    limit: int
    offset: int


def pagination(
    limit: Annotated[int, Query(ge=1, le=100, description="items per page")] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000, description="items to skip")] = 0,
) -> PageParams:
    return PageParams(limit=limit, offset=offset)


Pagination = Annotated[PageParams, Depends(pagination)]
