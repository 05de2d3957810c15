"""The serving API: one FastAPI app, routers by domain (``uvicorn serving.main:app``)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from hems.settings import get_settings
from serving.api.routes import dashboard, health, realtime
from serving.api.routes import ingest as ingest_routes
from serving.problems import install_problem_handlers


def create_app() -> FastAPI:
    settings = get_settings()
    app = FastAPI(
        title="HEMS platform API",
        version="0.1.0",
        description="Households, energy dashboards, predictions, rewards and device data for apps.",
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.api.cors_origins,
        allow_methods=["*"],
        allow_headers=["*"],
        allow_credentials=True,
    )
    install_problem_handlers(app)
    app.include_router(health.router)
    app.include_router(dashboard.router)
    app.include_router(ingest_routes.router)
    app.include_router(realtime.router)
    return app


app = create_app()
