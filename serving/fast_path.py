"""Cached dashboard answers without FastAPI's request machinery (pure ASGI, inside the gateway).

A cached ``GET /dashboard/energy`` is two cache reads; FastAPI's routing, dependency resolution
and exception layers around them cost several times that. This middleware sits innermost among
the gateway middleware — request id, access log, metrics, CORS and the rate limit have all run —
and answers a request itself only when every check the route would make has the same outcome
without I/O:

- the caller: the principal the rate limiter verified from this request's bearer token;
- the household: its row as the route reads it (:func:`serving.deps.recent_household`: from
  memory within a few seconds of the last read) and :func:`serving.deps.check_household`, the
  one scoping rule;
- the query: only ``household_id``, ``start``, ``end``, each at most once, an id matching
  :data:`serving.deps.ID_PATTERN`, ``YYYY-MM-DD`` dates, a range the route accepts;
- the answer: cached (:func:`serving.api.routes.dashboard.cached_answer`, the route's own code).

Anything else — no or a bad token, no such household, someone else's household, an
unusual query, a cache miss, dependency overrides (tests), a cache error — goes on to FastAPI
unchanged, which answers it (401, 404, 422, 503, a miss built from the marts) as before. So the
fast path changes how fast a hit is answered, never what is answered.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from hems.errors import HemsError
from hems.settings import get_settings
from hems.stores.cache import get_cache
from serving.api.routes import dashboard
from serving.deps import ID_PATTERN, app_engine, check_household, recent_household
from serving.request_context import PRINCIPAL_KEY

PATH = "/dashboard/energy"
_ID = re.compile(ID_PATTERN)
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_KEYS = frozenset({"household_id", "start", "end"})
_HIT_HEADERS = [(b"content-type", b"application/json"), (dashboard.CACHE_HEADER.lower().encode(), b"hit")]


def _params(query_string: bytes) -> dict[str, str] | None:
    """household_id, start and end when the query is exactly what a plain client sends, else None."""
    try:
        pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return None
    params = dict(pairs)
    if len(params) != len(pairs) or not params.keys() <= _KEYS or "household_id" not in params:
        return None
    household_id = params["household_id"]
    if not (len(household_id) <= 64 and _ID.match(household_id)):
        return None
    if any(k in params and not _DAY.match(params[k]) for k in ("start", "end")):
        return None
    return params


def _day(text: str | None) -> date | None:
    return None if text is None else date.fromisoformat(text)


class DashboardHitFastPath:
    """Answers cache hits of ``GET /dashboard/energy`` (see the module); the rest goes to ``app``."""

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app, self.api = app, api
        self._route: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "GET":
            body = await self._hit(scope)
            if body is not None:
                scope["route"] = self._route  # the metrics and access log label it as the route would
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [(b"content-length", str(len(body)).encode()), *_HIT_HEADERS],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    async def _hit(self, scope: Scope) -> bytes | None:
        verified = scope.get(PRINCIPAL_KEY)
        if verified is None or self.api.dependency_overrides:
            return None
        params = _params(scope.get("query_string", b""))
        if params is None:
            return None
        if self._route is None:
            self._route = next(r for r in dashboard.router.routes if getattr(r, "path", None) == PATH)
        household_id = params["household_id"]
        try:
            ref = await recent_household(app_engine(), household_id)
            if ref is None:
                return None  # FastAPI answers 404
            check_household(ref, verified[1], household_id)
            query = dashboard._query(ref, get_settings(), _day(params.get("start")), _day(params.get("end")))
            return await dashboard.cached_answer(query, get_cache())
        except (HTTPException, HemsError, ValueError):
            return None  # FastAPI answers it, with the same checks and its error format
