"""API tests on the embedded profile: one fresh data dir, migrated app DB and in-process stores.

Accounts are made directly in the app database with one pre-computed Argon2 hash (hashing is
deliberately ~0.1 s), and tokens are minted by the same code ``POST /auth/token`` uses; the
login route itself is tested in test_auth_routes.py.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from hems.settings import Settings, get_settings
from hems.stores import appdb
from hems.stores.appdb.models import Role

PASSWORD = "correct horse battery"
JWT_SECRET = "test-secret-" + "x" * 40
KEY_A = "ka:" + base64.b64encode(bytes(range(32))).decode()
KEY_B = "kb:" + base64.b64encode(bytes(range(32, 64))).decode()


@cache
def password_hash() -> str:
    from serving.security import hash_password

    return hash_password(PASSWORD)


@pytest.fixture
def embedded_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings of a fresh embedded profile with the app DB migrated; the app is built by the test."""
    monkeypatch.setenv("HEMS_PROFILE", "local")
    monkeypatch.setenv("HEMS_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("HEMS_API__JWT_SECRET", JWT_SECRET)
    monkeypatch.setenv("HEMS_API__FIELD_KEYS", KEY_A)
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


@dataclass(frozen=True)
class Account:
    id: int
    role: Role
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def make_account(settings: Settings, email: str, role: Role = Role.resident, **fields: str) -> Account:
    from serving.security import create_access_token, create_user

    engine = appdb.get_engine(settings.app_database_url)
    user_id = create_user(engine, email, role=role, password_hash=password_hash(), **fields)
    token, _ = create_access_token(user_id, role, settings)
    return Account(user_id, role, token)


@pytest.fixture
def accounts(embedded_api: Settings) -> dict[str, Account]:
    """Two residents (owning hh-1 and hh-2), an analyst and an admin; hh-3 has no owner."""
    made = {
        "alice": make_account(embedded_api, "alice@example.kr"),
        "bob": make_account(embedded_api, "bob@example.kr"),
        "analyst": make_account(embedded_api, "ana@example.kr", Role.analyst),
        "admin": make_account(embedded_api, "root@example.kr", Role.admin),
    }
    appdb.upsert_households(
        [
            {"id": "hh-1", "name": "one", "timezone": "Asia/Seoul", "user_id": made["alice"].id},
            {"id": "hh-2", "name": "two", "timezone": "Asia/Seoul", "user_id": made["bob"].id},
            {"id": "hh-3", "name": "three", "timezone": "Asia/Seoul"},
        ],
        url=embedded_api.app_database_url,
    )
    return made


def write_marts(
    settings: Settings,
    *,
    households: list[dict] | None = None,
    daily: list[dict] | None = None,
    leaderboard: list[dict] | None = None,
) -> None:
    """Write the warehouse's serving snapshot with the marts the API reads (only their columns the
    API selects), as ``publish_snapshot`` would: a new file swapped in atomically."""
    import os

    import duckdb
    import polars as pl

    schemas = {
        "dim_households": {
            "household_id": pl.String,
            "household_name": pl.String,
            "region": pl.String,
            "building_type": pl.String,
            "residents": pl.Int32,
        },
        "energy_usage_daily": {
            "household_id": pl.String,
            "date": pl.Date,
            "total_consumption_kwh": pl.Float64,
        },
        "fct_community_leaderboard": {
            "household_id": pl.String,
            "week_start": pl.Date,
            "region": pl.String,
            "building_type": pl.String,
            "metered_days": pl.Int32,
            "kwh": pl.Float64,
            "baseline_kwh": pl.Float64,
            "saved_kwh": pl.Float64,
            "saved_ratio": pl.Float64,
        },
    }
    rows = {
        "dim_households": households,
        "energy_usage_daily": daily,
        "fct_community_leaderboard": leaderboard,
    }
    path = settings.warehouse_snapshot_path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".building")
    tmp.unlink(missing_ok=True)
    with duckdb.connect(str(tmp)) as con:
        con.execute("CREATE SCHEMA marts")
        for table, schema in schemas.items():
            frame = pl.DataFrame(rows[table] or [], schema=schema)  # noqa: F841 - read by duckdb
            con.execute(f"CREATE TABLE marts.{table} AS SELECT * FROM frame")
    os.replace(tmp, path)
