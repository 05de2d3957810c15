"""Shared fixtures.

Nothing is started silently: a stack test whose service is down fails with one line naming the
service, its address and the command that starts it (``make services`` / ``hems services up``).
Every stack test works in its own throwaway database or key prefix, created and dropped here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hems.settings import Profile, Settings
from tests.support import require_service, unique_name


@pytest.fixture
def local_settings(tmp_path: Path) -> Settings:
    """Embedded-profile settings rooted in a fresh temporary data directory."""
    return Settings(profile=Profile.local, data_dir=tmp_path / "var")


@pytest.fixture
def influx_settings() -> Iterator[Settings]:
    """Stack settings pointing at a throwaway InfluxDB database (dropped afterwards)."""
    require_service("influxdb")
    settings = Settings(profile=Profile.stack, influx={"database": unique_name()})
    yield settings
    import httpx

    httpx.post(f"{settings.influx.url}/query", params={"q": f'DROP DATABASE "{settings.influx.database}"'})


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A throwaway PostgreSQL database name (created, dropped afterwards)."""
    import psycopg

    host, port = require_service("postgresql")
    name = unique_name()
    admin = f"postgresql://postgres@{host}:{port}/postgres"
    with psycopg.connect(admin, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    yield name
    with psycopg.connect(admin, autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A throwaway Redis key prefix (its keys deleted afterwards)."""
    import redis

    host, port = require_service("redis")
    prefix = unique_name("hems_test") + ":"
    yield prefix
    client = redis.Redis(host=host, port=port)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
