"""Device state on real stores: Redis + PostgreSQL (stack) and MemoryCache + SQLite (embedded)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from hems.settings import RedisSettings, Settings
from hems.stores import appdb
from hems.stores.cache import Cache, MemoryCache, RedisCache
from ingest.device_state import DeviceStateTracker

T0 = dt.datetime(2025, 7, 1, 10, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture(params=["stack", "embedded"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Cache, str]]:
    if request.param == "stack":
        prefix = request.getfixturevalue("redis_prefix")
        database = request.getfixturevalue("postgres_database")
        url = Settings().postgres.url(database)
        cache: Cache = RedisCache(RedisSettings(key_prefix=prefix))
    else:
        url = f"sqlite:///{tmp_path / 'app.sqlite3'}"
        cache = MemoryCache()
    appdb.migrate(url)
    with appdb.write_connection(url) as conn:
        user_id: int = conn.execute(
            sa.text("INSERT INTO users (email, password_hash) VALUES ('a@example.org', 'x') RETURNING id")
        ).scalar_one()
    appdb.upsert_households([{"id": "hh-1", "name": "one", "user_id": user_id}], url=url)
    yield cache, url
    cache.close()
    appdb.dispose_engine(url)


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def tracker(stores: tuple[Cache, str], clock: Clock) -> DeviceStateTracker:
    cache, url = stores
    return DeviceStateTracker(cache, url, clock=clock, expected_interval_s=60, grace_factor=3)


def readings(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows).with_columns(pl.col("ts").cast(pl.Datetime("ms", "UTC")))


def meter(ts: dt.datetime, power: float, hh: str = "hh-1", dev: str = "hh-1-meter") -> dict:
    return {
        "ts": ts,
        "household_id": hh,
        "device_id": dev,
        "device_type": "smart_meter",
        "power_w": power,
        "energy_import_kwh": 100.0 + power / 1000,
    }


def db_rows(url: str, sql: str, **params: object) -> list[sa.Row]:
    with appdb.get_engine(url).connect() as conn:
        return list(conn.execute(sa.text(sql), params).all())


def offline_notifications(url: str) -> list[sa.Row]:
    return db_rows(
        url,
        "SELECT household_id, user_id, dedupe_key, payload FROM notifications "
        "WHERE kind = 'device_offline' ORDER BY id",
    )


def test_observe_keeps_latest_per_device_and_type_and_last_seen(
    tracker: DeviceStateTracker, clock: Clock
) -> None:
    env = {
        "ts": T0,
        "household_id": "hh-1",
        "device_id": "hh-1-env",
        "device_type": "env_sensor",
        "temperature_c": 24.5,
        "co2_ppm": 600.0,
    }
    batch = readings([meter(T0 + dt.timedelta(minutes=m), 500.0 + m) for m in (2, 0, 1)] + [env])
    assert tracker.observe(batch) == 2

    latest = tracker.latest_for_household("hh-1")
    assert latest["by_type"]["smart_meter"]["power_w"] == 502.0
    assert latest["by_type"]["smart_meter"]["device_id"] == "hh-1-meter"
    assert latest["by_type"]["env_sensor"]["temperature_c"] == 24.5
    assert "power_w" not in latest["by_type"]["env_sensor"]  # nulls are not values
    assert latest["as_of"].startswith("2025-07-01T10:02:00")
    assert {d["device_id"]: d["last_seen"] for d in latest["devices"]} == {
        "hh-1-meter": T0.isoformat(timespec="milliseconds"),
        "hh-1-env": T0.isoformat(timespec="milliseconds"),
    }

    # an older reading arriving later (spool replay) refreshes last_seen but not the latest value
    clock.advance(30)
    tracker.observe(readings([meter(T0 - dt.timedelta(hours=1), 1.0)]))
    latest = tracker.latest_for_household("hh-1")
    assert latest["by_type"]["smart_meter"]["power_w"] == 502.0
    meter_state = next(d for d in latest["devices"] if d["device_id"] == "hh-1-meter")
    assert meter_state["last_seen"] == (T0 + dt.timedelta(seconds=30)).isoformat(timespec="milliseconds")

    # first contact registers the devices in the app database as online
    status = {d["device_id"]: d for d in tracker.devices_status("hh-1")}
    assert status["hh-1-meter"]["status"] == "online" and status["hh-1-meter"]["registered"]
    url = tracker.app_database_url
    rows = db_rows(url, "SELECT id, status, device_type FROM iot_devices ORDER BY id")
    assert [(r.id, r.status, r.device_type) for r in rows] == [
        ("hh-1-env", "online", "env_sensor"),
        ("hh-1-meter", "online", "smart_meter"),
    ]


def test_offline_notifies_once_per_outage_across_sweeps_and_status(
    tracker: DeviceStateTracker, clock: Clock
) -> None:
    url = tracker.app_database_url
    tracker.observe(readings([meter(T0, 500.0)]))

    clock.advance(150)  # 2.5 intervals: still within the grace of 3
    assert tracker.sweep() == []
    clock.advance(60)  # 3.5 intervals
    gone = tracker.sweep()
    assert [d["device_id"] for d in gone] == ["hh-1-meter"]
    for _ in range(3):  # repeated checks and the device's last will: no second record
        clock.advance(60)
        assert tracker.sweep() == []
        tracker.on_status("hh-1", "hh-1-meter", "offline", clock())
    notes = offline_notifications(url)
    assert len(notes) == 1
    assert notes[0].dedupe_key == f"device-offline:hh-1-meter:{T0.isoformat(timespec='milliseconds')}"
    assert notes[0].household_id == "hh-1" and notes[0].user_id is not None
    assert db_rows(url, "SELECT status FROM iot_devices WHERE id = 'hh-1-meter'")[0].status == "offline"
    assert tracker.devices_status("hh-1")[0]["offline_since"] == T0.isoformat(timespec="milliseconds")

    # back online (a reading), then silent again: a new outage, a new notification
    clock.advance(60)
    tracker.observe(readings([meter(clock(), 400.0)]))
    assert db_rows(url, "SELECT status FROM iot_devices WHERE id = 'hh-1-meter'")[0].status == "online"
    clock.advance(400)
    assert len(tracker.sweep()) == 1
    assert tracker.sweep(now=clock() + dt.timedelta(hours=1)) == []
    assert len(offline_notifications(url)) == 2

    # online via the status topic, then the last will: the third outage, noticed by the status path
    clock.advance(10)
    tracker.on_status("hh-1", "hh-1-meter", "online", clock())
    clock.advance(5)
    tracker.on_status("hh-1", "hh-1-meter", "offline", clock())
    clock.advance(1000)
    assert tracker.sweep() == []  # already offline: the sweep does not notify it again
    notes = offline_notifications(url)
    assert len(notes) == 3
    assert notes[-1].dedupe_key.endswith(
        (clock.now - dt.timedelta(seconds=1005)).isoformat(timespec="milliseconds")
    )


def test_status_for_unknown_device_creates_it_or_keeps_it_in_the_cache(tracker: DeviceStateTracker) -> None:
    url = tracker.app_database_url
    tracker.on_status("hh-1", "hh-1-plug-tv", "online", T0)
    rows = db_rows(
        url, "SELECT household_id, device_type, status, last_seen FROM iot_devices WHERE id = 'hh-1-plug-tv'"
    )
    assert [(r.household_id, r.device_type, r.status) for r in rows] == [("hh-1", "smart_plug", "online")]

    # household not in the app database: recorded in the cache, nothing fails
    tracker.on_status("hh-unknown", "dev-7", "online", T0)
    tracker.on_status("hh-unknown", "dev-7", "offline", T0 + dt.timedelta(minutes=5))
    assert tracker.devices_status("hh-unknown") == [
        {
            "device_id": "dev-7",
            "registered": False,
            "device_type": None,
            "status": "offline",
            "last_seen": T0.isoformat(timespec="milliseconds"),
            "offline_since": T0.isoformat(timespec="milliseconds"),
        }
    ]
    assert db_rows(url, "SELECT id FROM iot_devices WHERE id = 'dev-7'") == []
    notes = offline_notifications(url)
    assert len(notes) == 1 and notes[0].household_id is None  # still recorded, not tied to a household


def test_bad_input_raises_clear_value_errors(tracker: DeviceStateTracker) -> None:
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['household_id'\]"):
        tracker.observe(readings([meter(T0, 1.0)]).drop("household_id"))
    with pytest.raises(ValueError, match="null"):
        tracker.observe(readings([meter(T0, 1.0), {**meter(T0, 2.0), "device_id": None}]))
    with pytest.raises(ValueError, match="canonical schema"):
        tracker.observe(readings([meter(T0, 1.0)]).with_columns(pl.lit("lots").alias("power_w")))
    with pytest.raises(ValueError, match="DataFrame"):
        tracker.observe([meter(T0, 1.0)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="online' or 'offline"):
        tracker.on_status("hh-1", "hh-1-meter", "sleepy", T0)
    with pytest.raises(ValueError, match="household_id"):
        tracker.on_status("", "hh-1-meter", "online", T0)
    with pytest.raises(ValueError, match="positive"):
        tracker.sweep(expected_interval_s=0)
    assert tracker.observe(readings([meter(T0, 1.0)]).clear()) == 0


def test_a_10k_reading_batch_is_cheap(tracker: DeviceStateTracker, clock: Clock) -> None:
    n_households, per_device = 500, 5
    rows = {
        "ts": [T0 + dt.timedelta(seconds=k) for _ in range(n_households * 4) for k in range(per_device)],
    }
    ids = [
        (f"hh-{h:04d}", f"hh-{h:04d}-{kind}")
        for h in range(n_households)
        for kind in ("meter", "pv", "env", "plug")
    ]
    frame = pl.DataFrame(
        {
            **rows,
            "household_id": [hh for hh, _ in ids for _ in range(per_device)],
            "device_id": [dev for _, dev in ids for _ in range(per_device)],
            "device_type": ["smart_meter", "solar_inverter", "env_sensor", "smart_plug"]
            * n_households
            * per_device,
            "power_w": [float(i % 3000) for i in range(n_households * 4 * per_device)],
        }
    ).with_columns(pl.col("ts").cast(pl.Datetime("ms", "UTC")))
    assert frame.height == 10_000
    started = time.perf_counter()
    assert tracker.observe(frame) == 2_000
    first = time.perf_counter() - started
    started = time.perf_counter()
    tracker.observe(frame)  # steady state: no transitions, no database work
    steady = time.perf_counter() - started
    assert steady < 1.0, f"10k readings took {steady:.2f}s"
    assert first < 5.0
    assert len(tracker.latest_for_household("hh-0499")["devices"]) == 4
    clock.advance(3600)
    assert len(tracker.sweep()) == 2_000
