"""The one place Redis connection arguments come from (cache, live bus publisher and subscribers)."""

from __future__ import annotations

from typing import Any

from hems.settings import RedisSettings


def redis_connection_kwargs(settings: RedisSettings) -> dict[str, Any]:
    """Address, database and credentials from settings, and a short connect timeout, so a down
    Redis is reported within seconds; callers add what only they need (timeouts, retries)."""
    return {
        "host": settings.host,
        "port": settings.port,
        "db": settings.db,
        "password": settings.password.get_secret_value() or None,
        "socket_connect_timeout": 2,
    }
