"""App database against real SQLite files and a real throwaway PostgreSQL database."""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from hems.errors import ServiceUnavailable
from hems.stores import appdb

TABLES = {
    "users",
    "households",
    "iot_devices",
    "energy_usage_daily",
    "reward_programs",
    "rewards",
    "points_ledger",
    "notifications",
    "challenges",
    "challenge_participants",
}


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'nested' / 'app.sqlite3'}"  # parent dir does not exist yet
    yield url
    appdb.dispose_engine(url)


@pytest.fixture
def pg_url(postgres_database: str) -> Iterator[str]:
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{postgres_database}"
    yield url
    appdb.dispose_engine(url)  # before the fixture drops the database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.stack)])
def url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture
def migrated(url: str) -> str:
    appdb.migrate(url)
    appdb.upsert_households([{"id": "hh-0001", "name": "first"}, {"id": "hh-0002", "name": "second"}], url)
    return url


def _usage(url: str) -> dict[tuple[str, dt.date], dict]:
    with appdb.get_engine(url).connect() as conn:
        rows = conn.execute(sa.select(appdb.EnergyUsageDaily.__table__)).mappings().all()
    return {(r["household_id"], r["date"]): dict(r) for r in rows}


def test_migrate_creates_schema_at_head_and_is_idempotent(url: str) -> None:
    assert appdb.current_revision(url) is None
    assert appdb.migrate(url) == appdb.head_revision()
    assert set(sa.inspect(appdb.get_engine(url)).get_table_names()) >= TABLES

    assert appdb.migrate(url) == appdb.head_revision()  # second run: nothing to do, no error
    with appdb.get_engine(url).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 1
    assert appdb.current_revision(url) == appdb.head_revision()


def test_models_agree_with_migrations(url: str) -> None:
    appdb.migrate(url)
    with appdb.get_engine(url).connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, appdb.Base.metadata) == []


def test_household_date_is_unique(migrated: str) -> None:
    table = appdb.EnergyUsageDaily.__table__
    row = {"household_id": "hh-0001", "date": dt.date(2025, 7, 1), "total_consumption_kwh": 9.0}
    with appdb.get_engine(migrated).begin() as conn:
        conn.execute(sa.insert(table), row)
    with pytest.raises(sa.exc.IntegrityError), appdb.get_engine(migrated).begin() as conn:
        conn.execute(sa.insert(table), row)


def test_upsert_energy_usage_daily_inserts_then_updates(migrated: str) -> None:
    d1, d2 = dt.date(2025, 7, 1), dt.date(2025, 7, 2)
    first = pl.DataFrame(
        {
            "household_id": ["hh-0001", "hh-0001", "hh-0002"],
            "date": [d1, d2, d1],
            "total_consumption_kwh": [10.0, 11.0, 12.0],
            "cost_krw": [1200.0, 1300.0, 1400.0],
        }
    )
    assert appdb.upsert_energy_usage_daily(first, migrated, chunk_size=2) == 3

    second = [
        {"household_id": "hh-0001", "date": "2025-07-01", "total_consumption_kwh": 99.5},  # ISO string ok
        {"household_id": "hh-0002", "date": d2, "total_consumption_kwh": 7.25, "cost_krw": None},
        {"household_id": "hh-0002", "date": d2, "total_consumption_kwh": 7.5, "cost_krw": 800.0},  # last wins
    ]
    assert appdb.upsert_energy_usage_daily(second, migrated) == 2

    usage = _usage(migrated)
    assert len(usage) == 4
    assert usage[("hh-0001", d1)]["total_consumption_kwh"] == pytest.approx(99.5)
    assert usage[("hh-0001", d1)]["cost_krw"] == pytest.approx(1200.0)  # absent column left alone
    assert usage[("hh-0001", d2)]["total_consumption_kwh"] == pytest.approx(11.0)
    assert usage[("hh-0002", d2)]["cost_krw"] == pytest.approx(800.0)
    assert usage[("hh-0002", d1)]["peak_usage_kwh"] is None  # not computed yet: NULL


def test_upsert_rejects_unknown_columns_and_missing_keys(migrated: str) -> None:
    with pytest.raises(ValueError, match="unknown column"):
        appdb.upsert_energy_usage_daily(
            [{"household_id": "hh-0001", "date": "2025-07-01", "kwh": 1}], migrated
        )
    with pytest.raises(ValueError, match="key column"):
        appdb.upsert_energy_usage_daily([{"household_id": "hh-0001", "total_consumption_kwh": 1}], migrated)
    assert appdb.upsert_energy_usage_daily([], migrated) == 0


def test_upsert_households_and_devices_by_primary_key(migrated: str) -> None:
    with appdb.session_scope(migrated) as s:
        created = s.get(appdb.Household, "hh-0001").created_at
    assert created.tzinfo is not None and created.utcoffset() == dt.timedelta(0)

    appdb.upsert_households(
        [{"id": "hh-0001", "region": "Seoul", "building_type": "apartment", "has_pv": True, "pv_kwp": 3.0}],
        migrated,
    )
    seen = dt.datetime(2025, 7, 1, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=9)))
    device = {
        "id": "hh-0001-meter",
        "household_id": "hh-0001",
        "device_type": "smart_meter",
        "protocol": "mqtt",
    }
    appdb.upsert_devices([device], migrated)
    appdb.upsert_devices([{**device, "status": "online", "last_seen": seen}], migrated)

    with appdb.session_scope(migrated) as s:
        hh = s.get(appdb.Household, "hh-0001")
        assert (hh.name, hh.region, hh.has_pv, hh.timezone) == ("first", "Seoul", True, "Asia/Seoul")
        assert hh.building_type is appdb.BuildingType.apartment
        assert hh.created_at == created
        devices = s.scalars(sa.select(appdb.IotDevice)).all()
        assert len(devices) == 1
        assert devices[0].status is appdb.DeviceStatus.online
        assert devices[0].last_seen == seen  # aware, same instant, back as UTC
        assert devices[0].last_seen.utcoffset() == dt.timedelta(0)


def test_foreign_keys_are_enforced(migrated: str) -> None:
    with pytest.raises(sa.exc.IntegrityError):
        appdb.upsert_energy_usage_daily([{"household_id": "hh-missing", "date": "2025-07-01"}], migrated)
    with pytest.raises(sa.exc.IntegrityError), appdb.session_scope(migrated) as s:
        s.add(
            appdb.IotDevice(id="x-meter", household_id="hh-missing", device_type=appdb.DeviceType.smart_meter)
        )
    assert _usage(migrated) == {}


def test_enum_and_check_constraints_hold(migrated: str) -> None:
    with pytest.raises(sa.exc.IntegrityError), appdb.get_engine(migrated).begin() as conn:
        conn.execute(sa.text("INSERT INTO households (id, building_type) VALUES ('hh-9', 'castle')"))
    with pytest.raises(sa.exc.IntegrityError), appdb.session_scope(migrated) as s:
        s.add(
            appdb.Challenge(
                code="c1", title="no goal", starts_on=dt.date(2025, 7, 1), ends_on=dt.date(2025, 7, 31)
            )
        )


def test_incentive_tables_roundtrip(migrated: str) -> None:
    with appdb.session_scope(migrated) as s:
        program = appdb.RewardProgram(
            code="kepco-cashback-2024",
            name="Energy cashback",
            kind=appdb.ProgramKind.cashback,
            rules={"tiers": [[0.03, 30], [0.05, 60]], "cap_pct": 0.3},
            effective_from=dt.date(2024, 1, 1),
        )
        s.add(program)
        s.flush()
        s.add(appdb.Reward(household_id="hh-0001", program_id=program.id, period="2025-07", reward_krw=1800))
        s.add(
            appdb.PointsLedger(
                household_id="hh-0001",
                program_id=program.id,
                period="2025-07",
                entry_type=appdb.LedgerEntryType.accrual,
                points=1800,
                balance_after=1800,
                idempotency_key="accrual:kepco-cashback-2024:hh-0001:2025-07",
            )
        )
        s.add(appdb.Notification(household_id="hh-0001", kind="device_offline", title="t", dedupe_key="k1"))
    with pytest.raises(sa.exc.IntegrityError), appdb.session_scope(migrated) as s:
        s.add(appdb.Notification(household_id="hh-0001", kind="device_offline", title="t", dedupe_key="k1"))
    with appdb.session_scope(migrated) as s:
        entry = s.scalars(sa.select(appdb.PointsLedger)).one()
        assert s.scalars(sa.select(appdb.RewardProgram)).one().rules["tiers"][1] == [0.05, 60]
        entry.points = 0
        with pytest.raises(ValueError, match="append-only"):
            s.flush()
        s.rollback()


def test_sqlite_reader_is_not_blocked_by_a_write_transaction(sqlite_url: str) -> None:
    appdb.migrate(sqlite_url)
    appdb.upsert_households([{"id": "hh-0001", "name": "before"}], sqlite_url)
    with appdb.get_engine(sqlite_url).connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"

    path = sa.engine.make_url(sqlite_url).database
    writer = sqlite3.connect(path, isolation_level=None, timeout=0.1)
    try:
        # EXCLUSIVE would lock readers out in rollback-journal mode; in WAL mode it does not.
        writer.execute("BEGIN EXCLUSIVE")
        writer.execute("UPDATE households SET name = 'after' WHERE id = 'hh-0001'")
        started = time.monotonic()
        with appdb.session_scope(sqlite_url) as s:
            assert s.get(appdb.Household, "hh-0001").name == "before"  # last committed state
        assert time.monotonic() - started < 2
        writer.execute("COMMIT")
    finally:
        writer.close()
    with appdb.session_scope(sqlite_url) as s:
        assert s.get(appdb.Household, "hh-0001").name == "after"


@pytest.mark.stack
def test_unreachable_postgres_is_one_clear_error() -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/hems"
    with pytest.raises(
        ServiceUnavailable, match=r"PostgreSQL is not reachable at 127\.0\.0\.1:1/hems"
    ) as err:
        appdb.migrate(url)
    assert "hems services up" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(ServiceUnavailable), appdb.session_scope(url) as s:
        s.execute(sa.text("SELECT 1"))
    appdb.dispose_engine(url)


@pytest.mark.stack
def test_missing_postgres_database_names_it() -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/hems_test_does_not_exist"
    with pytest.raises(ServiceUnavailable, match=r"127\.0\.0\.1:5432/hems_test_does_not_exist.*createdb"):
        appdb.current_revision(url)
    appdb.dispose_engine(url)


def test_unusable_sqlite_path_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(ServiceUnavailable, match="SQLite is not reachable"):
        appdb.migrate(f"sqlite:///{blocker / 'app.sqlite3'}")
