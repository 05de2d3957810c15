"""The serving API: one FastAPI app, routers by domain (``uvicorn serving.main:app``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from hems.settings import get_settings
from serving import middleware
from serving.api.routes import (
    ai,
    auth,
    bems,
    challenges,
    dashboard,
    health,
    households,
    leaderboard,
    notifications,
    realtime,
    rewards,
    users,
)
from serving.api.routes import ingest as ingest_routes
from serving.fast_path import DashboardHitFastPath
from serving.problems import install_problem_handlers
from serving.rate_limit import RateLimiter
from serving.security import check_configured

DESCRIPTION = """Households, energy dashboards, predictions, rewards and device data for apps.

Authenticate with `POST /auth/token` (OAuth2 password flow) and send
`Authorization: Bearer <access_token>`. Errors are RFC 9457 problem details
(`application/problem+json`). 100 requests per 15 minutes per user; see docs/api.md.
"""


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # refuse to serve without secrets (stack profile); the local profile generates its own
    check_configured(get_settings())
    stop_log_writer = middleware.start_log_writer()
    try:
        yield
    finally:
        if stop_log_writer is not None:
            stop_log_writer()


def create_app(rate_limiter: RateLimiter | None = None) -> FastAPI:
    """The app for the current settings; ``rate_limiter`` replaces the profile's (tests)."""
    settings = get_settings()
    app = FastAPI(title="HEMS platform API", version="0.1.0", description=DESCRIPTION, lifespan=_lifespan)
    # innermost (added first): cached dashboards answered after the gateway duties, before routing
    app.add_middleware(DashboardHitFastPath, api=app)
    middleware.install(app, settings, rate_limiter)
    install_problem_handlers(app)
    app.include_router(health.router)
    app.include_router(auth.router)
    app.include_router(users.router)
    app.include_router(households.router)
    app.include_router(dashboard.router)
    app.include_router(notifications.router)
    app.include_router(challenges.router)
    app.include_router(leaderboard.router)
    app.include_router(rewards.router)
    app.include_router(ingest_routes.router)
    app.include_router(realtime.router)
    app.include_router(ai.router)
    app.include_router(bems.router)
    return app


app = create_app()
