"""Stack services (PostgreSQL, Redis, Mosquitto, InfluxDB): `hems services up|status|down`."""

from hems.services.manager import (
    DOWN,
    ERROR,
    RUNNING_EXISTING,
    RUNNING_PRIVATE,
    SERVICE_NAMES,
    STARTED_PRIVATE,
    STOPPED,
    ServicesError,
    ServiceStatus,
    down,
    free_port,
    listening,
    status,
    up,
)

__all__ = [
    "DOWN",
    "ERROR",
    "RUNNING_EXISTING",
    "RUNNING_PRIVATE",
    "SERVICE_NAMES",
    "STARTED_PRIVATE",
    "STOPPED",
    "ServiceStatus",
    "ServicesError",
    "down",
    "free_port",
    "listening",
    "status",
    "up",
]
