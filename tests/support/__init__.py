"""Helpers shared by tests: where the stack services are, and throwaway names."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

SERVICES = {
    "postgresql": ("HEMS_POSTGRES__HOST", "HEMS_POSTGRES__PORT", "127.0.0.1", 5432),
    "redis": ("HEMS_REDIS__HOST", "HEMS_REDIS__PORT", "127.0.0.1", 6379),
    "mosquitto": ("HEMS_MQTT__HOST", "HEMS_MQTT__PORT", "127.0.0.1", 1883),
    "influxdb": ("HEMS_INFLUX__HOST", "HEMS_INFLUX__PORT", "127.0.0.1", 8086),
}


def service_address(name: str) -> tuple[str, int]:
    host_var, port_var, host, port = SERVICES[name]
    return os.environ.get(host_var, host), int(os.environ.get(port_var, port))


def require_service(name: str) -> tuple[str, int]:
    """Fail (not skip) with a clear line when a stack service is not listening."""
    host, port = service_address(name)
    try:
        with socket.create_connection((host, port), timeout=2):
            pass
    except OSError as exc:
        pytest.fail(
            f"{name} is not reachable at {host}:{port} ({exc}); start it with `hems services up` "
            "(or `make services`)",
            pytrace=False,
        )
    return host, port


def unique_name(prefix: str = "hems_test") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"
