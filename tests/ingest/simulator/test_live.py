"""Live MQTT publishing against the real Mosquitto broker (a throwaway topic prefix per test)."""

from __future__ import annotations

import math
import os
import re
import socket
import threading
import time
import uuid
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import orjson
import paho.mqtt.client as mqtt
import polars as pl
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hems.contracts import READING_FIELDS
from hems.settings import MqttSettings
from ingest.simulator import Fleet, simulate
from ingest.simulator.live import LivePublisher, payload_for, publish_live

START = datetime(2025, 7, 1, 12, 0, tzinfo=UTC)  # 21:00 in Seoul
DEVICE_TYPES = {"smart_meter", "smart_plug", "solar_inverter", "env_sensor"}


def broker() -> MqttSettings:
    """The broker from the environment; fails (not skips) with one clear line when it is down."""
    host = os.environ.get("HEMS_MQTT__HOST", "127.0.0.1")
    port = int(os.environ.get("HEMS_MQTT__PORT", "1883"))
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        pytest.fail(
            f"mosquitto is not reachable at {host}:{port} ({exc}); start it with `hems services up`",
            pytrace=False,
        )
    return MqttSettings(host=host, port=port)


class Subscriber:
    """Collects every message under a prefix (subscribed before anything is published)."""

    def __init__(self, settings: MqttSettings, prefix: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._ready = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"test-sub-{uuid.uuid4().hex[:8]}"
        )
        self.client.on_connect = lambda c, *_: c.subscribe(f"{prefix}/#", qos=1)
        self.client.on_subscribe = lambda *_: self._ready.set()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        self.client.connect(settings.host, settings.port)
        self.client.loop_start()
        assert self._ready.wait(5), "subscription not acknowledged"

    def wait_for(self, predicate, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.messages) and time.monotonic() < deadline:
            time.sleep(0.02)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def prefix() -> str:
    return f"hems_test_{uuid.uuid4().hex[:10]}/v1"


@pytest.fixture
def fleet() -> Fleet:
    return Fleet.generate(3, seed=18)


def test_payload_for_builds_the_v1_json_payload(fleet):
    sim = simulate(fleet, date(2025, 7, 1), 1, freq_minutes=60)
    meter = sim.readings.filter(pl.col("device_type") == "smart_meter").row(5, named=True)
    body = orjson.loads(payload_for(meter, "Asia/Seoul"))
    assert body["ts"] == meter["ts"].astimezone(ZoneInfo("Asia/Seoul")).isoformat()
    assert body["ts"].endswith("+09:00")
    assert body["device_type"] == "smart_meter"
    assert set(body) - {"ts", "device_type"} == {
        "power_w",
        "energy_import_kwh",
        "energy_export_kwh",
        "voltage_v",
        "current_a",
        "power_factor",
    }
    assert body["energy_import_kwh"] == meter["energy_import_kwh"]  # floats survive exactly
    env = sim.readings.filter(pl.col("device_type") == "env_sensor").row(0, named=True)
    assert set(orjson.loads(payload_for(env, "Asia/Seoul"))) == {
        "ts",
        "device_type",
        "temperature_c",
        "humidity_pct",
        "co2_ppm",
        "air_quality_index",
    }


@pytest.mark.stack
def test_live_publishes_telemetry_and_status(fleet, prefix):
    settings = broker()
    sub = Subscriber(settings, prefix)
    try:
        stats = publish_live(
            fleet,
            settings,
            ticks=6,
            prefix=prefix,
            speed=math.inf,
            start=START,
            retain_status=False,
            client_id_prefix=f"test-{uuid.uuid4().hex[:6]}",
        )
        expected = stats.published + stats.status_published
        sub.wait_for(lambda msgs: len(msgs) >= expected)
    finally:
        sub.close()
    devices = fleet.devices
    assert stats.ticks == 6 and stats.devices == devices.height
    assert stats.acked == stats.published + stats.status_published
    assert stats.first_ts == START and (stats.last_ts - START).total_seconds() == 300

    pattern = re.compile(rf"^{re.escape(prefix)}/([^/]+)/([^/]+)/(telemetry|status)$")
    owner = dict(devices.select("device_id", "household_id").iter_rows())
    telemetry: dict[str, list[dict]] = {}
    status: dict[str, list[bytes]] = {}
    for topic, payload in sub.messages:
        match = pattern.match(topic)
        assert match, topic
        hh, dev, kind = match.groups()
        assert owner[dev] == hh
        if kind == "status":
            status.setdefault(dev, []).append(payload)
            continue
        body = orjson.loads(payload)
        assert body["device_type"] in DEVICE_TYPES
        assert datetime.fromisoformat(body["ts"]).utcoffset().total_seconds() == 9 * 3600
        assert set(body) - {"ts", "device_type"} <= set(READING_FIELDS)
        telemetry.setdefault(dev, []).append(body)
    assert sum(len(v) for v in telemetry.values()) == stats.published
    # every device said online first and offline last
    assert set(status) == set(devices["device_id"])
    assert all(v[0] == b"online" and v[-1] == b"offline" for v in status.values())
    for dev, kind in devices.select("device_id", "device_type").iter_rows():
        msgs = telemetry[dev]
        if kind == "env_sensor":
            assert len(msgs) == 2  # every 5 minutes: 12:00 and 12:05
            continue
        assert len(msgs) == 6
        if kind in ("smart_meter", "smart_plug"):
            regs = [m["energy_import_kwh"] for m in msgs]
            assert regs == sorted(regs)


@pytest.mark.stack
def test_live_paces_qos1_and_stops_on_duration(fleet, prefix):
    settings = broker()
    pub = LivePublisher(
        fleet,
        settings=settings,
        prefix=prefix,
        speed=600.0,
        start=START,
        max_inflight=3,
        retain_status=False,
        client_id_prefix=f"test-{uuid.uuid4().hex[:6]}",
    )
    stats = pub.run(duration_s=0.55)
    assert stats.max_inflight_seen <= 3
    assert 3 <= stats.ticks <= 7  # a tick every 0.1 s
    assert stats.acked == stats.published + stats.status_published
    assert stats.elapsed_s < 10


@pytest.mark.stack
def test_last_will_announces_devices_that_vanish(fleet, prefix):
    settings = broker()
    sub = Subscriber(settings, prefix)
    try:
        pub = LivePublisher(
            fleet,
            settings=settings,
            prefix=prefix,
            retain_status=False,
            start=START,
            client_id_prefix=f"test-{uuid.uuid4().hex[:6]}",
        )
        pub._connect_all()  # connect, then die without sending DISCONNECT
        n = fleet.devices.height
        sub.wait_for(lambda msgs: sum(p == b"online" for _, p in msgs) >= n)
        pub._close_sockets()
        sub.wait_for(lambda msgs: sum(p == b"offline" for _, p in msgs) >= n)
    finally:
        sub.close()
    offline = {t for t, p in sub.messages if p == b"offline"}
    assert offline == {
        f"{prefix}/{hh}/{dev}/status"
        for hh, dev in fleet.devices.select("household_id", "device_id").iter_rows()
    }


def test_live_runs_must_be_bounded_and_reach_a_broker(fleet):
    with pytest.raises(ValueError, match="bounded"):
        LivePublisher(fleet).run()
    with pytest.raises(ValueError, match="speed"):
        LivePublisher(fleet, speed=0)
    with pytest.raises(ValueError, match="max_inflight"):
        LivePublisher(fleet, max_inflight=70_000)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionError, match=f"not reachable at 127.0.0.1:{port}"):
        LivePublisher(fleet, settings=MqttSettings(port=port), start=START).run(ticks=1)
