"""API tests on the embedded profile: one fresh data dir, migrated app DB and in-process stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hems.settings import Settings, get_settings
from hems.stores import appdb


@pytest.fixture
def embedded_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings of a fresh embedded profile with the app DB migrated; the app is built by the test."""
    monkeypatch.setenv("HEMS_PROFILE", "local")
    monkeypatch.setenv("HEMS_DATA_DIR", str(tmp_path / "var"))
    # fresh process-wide in-memory cache and live bus, settings and raw store for this test
    monkeypatch.setattr("hems.stores.cache._instances._local", None)
    monkeypatch.setattr("hems.stores.live_bus._instances._local", None)
    get_settings.cache_clear()
    from serving import deps

    deps.raw_store_dep.cache_clear()
    settings = get_settings()
    appdb.migrate(settings.app_database_url)
    yield settings
    appdb.dispose_engine(settings.app_database_url)
    deps.raw_store_dep.cache_clear()
    get_settings.cache_clear()
