"""Liveness, readiness and Prometheus metrics (the gateway duties of the seed design)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from serving.deps import CacheDep, EngineDep, RawStoreDep

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness: the process answers")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="Readiness: every dependency answers; names the ones that do not")
def ready(
    engine: EngineDep,
    raw: RawStoreDep,
    cache: CacheDep,
) -> JSONResponse:
    checks: dict[str, Any] = {}

    def check(name: str, fn: Any) -> None:
        try:
            fn()
            checks[name] = "ok"
        except Exception as exc:  # a readiness probe reports, it does not raise
            checks[name] = f"down: {exc}"

    def app_db() -> None:
        with engine.connect() as con:
            con.execute(text("SELECT 1"))

    check("app_database", app_db)
    check("raw_store", raw.ping)
    check("cache", cache.ping)
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ok else "not ready", "checks": checks}, status_code=200 if ok else 503
    )


@router.get("/metrics", summary="Prometheus metrics: request latency per route, statuses, rate limiting")
def metrics(request: Request) -> Response:
    api_metrics = request.app.state.metrics
    return Response(api_metrics.render(), media_type=api_metrics.content_type)
