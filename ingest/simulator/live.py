"""Live mode: publish a fleet's readings over MQTT as its devices would, in real or accelerated time.

Why one MQTT connection per device: a device's last will (``offline`` on its status topic) only
exists per connection, so the broker can only announce a dead device if the device has its own
session — exactly like real meters.  All connections are driven from one thread with a selector
(paho's external-loop API), so a fleet of thousands of devices needs no thousand threads, and
publishing is paced: never more than ``max_inflight`` QoS-1 messages await their PUBACK.

    stats = publish_live(fleet, ticks=10, speed=60)   # ten simulated minutes in ten seconds
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import paho.mqtt.client as mqtt
import polars as pl
from paho.mqtt.enums import CallbackAPIVersion

from hems.contracts import READING_FIELDS
from hems.settings import MqttSettings
from ingest.simulator.calendar import zone
from ingest.simulator.engine import SimState, simulate_days
from ingest.simulator.fleet import Fleet

log = logging.getLogger(__name__)

ONLINE, OFFLINE = b"online", b"offline"


def telemetry_topic(prefix: str, household_id: str, device_id: str) -> str:
    return f"{prefix}/{household_id}/{device_id}/telemetry"


def status_topic(prefix: str, household_id: str, device_id: str) -> str:
    return f"{prefix}/{household_id}/{device_id}/status"


def format_ts(ts: datetime | int, tz: ZoneInfo) -> str:
    """RFC 3339 with the local offset, milliseconds only when present (e.g. 2025-07-01T21:00:00+09:00)."""
    if isinstance(ts, int):
        ts = datetime.fromtimestamp(ts / 1000, tz=UTC)
    elif ts.tzinfo is None:
        raise ValueError(f"timestamp {ts!r} has no time zone; readings are UTC-aware")
    local = ts.astimezone(tz)
    return local.isoformat(timespec="milliseconds" if local.microsecond else "seconds")


def payload_for(row: Mapping[str, Any], tz: str | ZoneInfo | None = None) -> bytes:
    """The MQTT v1 JSON payload (DESIGN §4) of one canonical reading row; null fields are left out.

    ``tz`` sets the offset written in ``ts`` (default: the platform time zone setting).
    """
    if tz is None:
        from hems.settings import get_settings

        tz = get_settings().domain.timezone
    zi = zone(tz) if isinstance(tz, str) else tz
    body: dict[str, Any] = {"ts": format_ts(row["ts"], zi), "device_type": str(row["device_type"])}
    for name in READING_FIELDS:
        value = row.get(name)
        if value is not None:
            body[name] = value
    return orjson.dumps(body)


@dataclass
class LiveStats:
    """What a live run did."""

    ticks: int = 0
    published: int = 0
    acked: int = 0
    status_published: int = 0
    max_inflight_seen: int = 0
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    elapsed_s: float = 0.0
    devices: int = 0


@dataclass
class _Device:
    household_id: str
    device_id: str
    client: mqtt.Client
    connected: bool = False
    failed: str | None = None
    lost_at: float = 0.0


@dataclass
class LivePublisher:
    """Publishes one fleet; create, then :meth:`run` (blocking) and :meth:`stop` from any thread.

    ``speed`` is simulated seconds per real second (1 = real time, 60 = a minute per second,
    ``math.inf`` = as fast as the broker acknowledges).  ``start`` is the first simulated instant
    (default: now, floored to ``freq_minutes``); registers start from the fleet's initial values at
    the local midnight of that day.
    """

    fleet: Fleet
    settings: MqttSettings = field(default_factory=MqttSettings)
    prefix: str | None = None
    speed: float = 1.0
    freq_minutes: int = 1
    env_freq_minutes: int = 5
    start: datetime | None = None
    max_inflight: int = 1000
    client_id_prefix: str = "hems-sim"
    retain_status: bool = True
    keepalive: int = 30
    connect_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not isinstance(self.fleet, Fleet):
            raise ValueError("fleet must be a Fleet (use Fleet.generate)")
        if not (self.speed > 0):
            raise ValueError(f"speed must be positive (math.inf for as fast as possible), got {self.speed}")
        if not 1 <= self.max_inflight <= 65_535:
            raise ValueError(f"max_inflight must be within 1..65535 (MQTT packet ids): {self.max_inflight}")
        if self.freq_minutes <= 0 or 60 % self.freq_minutes:
            raise ValueError(f"freq_minutes must divide 60, got {self.freq_minutes}")
        if self.start is not None and self.start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self.topic_prefix: str = (self.prefix or self.settings.topic_prefix).rstrip("/")
        self.qos = self.settings.qos
        self.tz = zone(self.fleet.timezone)
        self._stop = threading.Event()
        self._sel = selectors.DefaultSelector()
        self._devices: dict[str, _Device] = {}
        self._pending: set[tuple[str, int]] = set()  # (device_id, mid) awaiting PUBACK
        self._closing = False
        self.stats = LiveStats()

    # ------------------------------------------------------------------ public
    def stop(self) -> None:
        """Ask a running :meth:`run` to finish its tick and shut down cleanly (thread-safe)."""
        self._stop.set()

    def run(
        self,
        *,
        duration_s: float | None = None,
        ticks: int | None = None,
        on_tick: Callable[[datetime, int], None] | None = None,
    ) -> LiveStats:
        """Publish until ``duration_s`` real seconds or ``ticks`` timestamps pass (or :meth:`stop`).

        A bound is required so that nothing runs forever by accident.  ``on_tick(ts, n)`` is
        called after each published timestamp.
        """
        if duration_s is None and ticks is None:
            raise ValueError("give duration_s or ticks: a live run must be bounded")
        if (duration_s is not None and duration_s <= 0) or (ticks is not None and ticks <= 0):
            raise ValueError("duration_s and ticks must be positive")
        started = time.monotonic()
        self._connect_all()
        try:
            real_step = self.freq_minutes * 60.0 / self.speed  # 0.0 when speed is infinite
            for k, (ts, rows) in enumerate(self._ticks(self._first_instant())):
                if self._stop.is_set() or (ticks is not None and k >= ticks):
                    break
                due = started + k * real_step
                if duration_s is not None and max(due, time.monotonic()) - started >= duration_s:
                    break
                self._wait_until(due)
                for hh, dev, payload in rows:
                    self._publish(self._devices[dev], telemetry_topic(self.topic_prefix, hh, dev), payload)
                self.stats.ticks += 1
                self.stats.first_ts = self.stats.first_ts or ts
                self.stats.last_ts = ts
                if on_tick is not None:
                    on_tick(ts, len(rows))
        finally:
            self._shutdown()
            self.stats.elapsed_s = time.monotonic() - started
        return self.stats

    # ------------------------------------------------------------------ simulation feed
    def _first_instant(self) -> datetime:
        if self.start is not None:
            return self.start.astimezone(UTC)
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        return now - timedelta(minutes=now.minute % self.freq_minutes)

    def _ticks(self, first: datetime) -> Iterator[tuple[datetime, list[tuple[str, str, bytes]]]]:
        """(timestamp, [(household_id, device_id, payload)]) for every tick from ``first`` on."""
        day = first.astimezone(self.tz).date()
        state: SimState | None = None
        while True:
            chunks = simulate_days(
                self.fleet,
                day if state is None else None,
                1,
                self.freq_minutes,
                state=state,
                env_freq_minutes=self.env_freq_minutes,
            )
            chunk = next(iter(chunks))
            state = chunk.state
            end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=self.tz)
            end = end.astimezone(UTC)
            # the boundary reading at the next midnight is the next day's first reading
            readings = chunk.readings.filter((pl.col("ts") >= first) & (pl.col("ts") < end)).sort("ts")
            for (ts,), group in readings.group_by("ts", maintain_order=True):
                rows = [
                    (r["household_id"], r["device_id"], payload_for(r, self.tz))
                    for r in group.iter_rows(named=True)
                ]
                yield ts, rows
            day = day + timedelta(days=1)

    # ------------------------------------------------------------------ MQTT plumbing
    def _connect_all(self) -> None:
        devices = self.fleet.devices
        limit = _fd_limit()
        if devices.height + 32 > limit:
            raise ValueError(
                f"{devices.height} devices need as many connections, above the open-file limit "
                f"{limit}; raise `ulimit -n` or simulate fewer households live"
            )
        s = self.settings
        where = f"{s.host}:{s.port}"
        for hh, dev in devices.select("household_id", "device_id").iter_rows():
            client = mqtt.Client(
                callback_api_version=CallbackAPIVersion.VERSION2,
                client_id=f"{self.client_id_prefix}-{dev}",
                clean_session=True,
            )
            if s.username:
                client.username_pw_set(s.username, s.password.get_secret_value() or None)
            will = status_topic(self.topic_prefix, hh, dev)
            client.will_set(will, OFFLINE, qos=1, retain=self.retain_status)
            device = _Device(hh, dev, client)
            client.user_data_set(device)
            client.on_connect = self._on_connect
            client.on_publish = self._on_publish
            client.on_disconnect = self._on_disconnect
            self._devices[dev] = device
            try:
                client.connect(s.host, s.port, keepalive=self.keepalive)
            except OSError as exc:
                self._close_sockets()
                raise ConnectionError(
                    f"MQTT broker not reachable at {where} ({exc}); start Mosquitto "
                    "or set HEMS_MQTT__HOST / HEMS_MQTT__PORT"
                ) from exc
            self._register(device)
        self.stats.devices = len(self._devices)
        deadline = time.monotonic() + self.connect_timeout_s
        while not all(d.connected or d.failed for d in self._devices.values()):
            if time.monotonic() > deadline:
                self._close_sockets()
                raise ConnectionError(
                    f"no CONNACK from the MQTT broker at {where} within {self.connect_timeout_s:.0f} s"
                )
            self._pump(0.05)
        failed = [d for d in self._devices.values() if d.failed]
        if failed:
            self._close_sockets()
            raise ConnectionError(
                f"the broker at {where} refused {len(failed)} device connections ({failed[0].failed})"
            )
        for device in self._devices.values():
            topic = status_topic(self.topic_prefix, device.household_id, device.device_id)
            self._publish(device, topic, ONLINE, retain=self.retain_status, status=True)

    def _register(self, device: _Device) -> None:
        sock = device.client.socket()
        if sock is not None:
            self._sel.register(sock, selectors.EVENT_READ, device)

    def _unregister(self, device: _Device) -> None:
        sock = device.client.socket()
        if sock is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(sock)

    def _on_connect(self, client: mqtt.Client, device: _Device, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            device.failed = str(reason_code)
        else:
            device.connected = True

    def _on_publish(self, client: mqtt.Client, device: _Device, mid, reason_code, properties) -> None:
        if (device.device_id, mid) in self._pending:
            self._pending.discard((device.device_id, mid))
            self.stats.acked += 1

    def _on_disconnect(self, client: mqtt.Client, device: _Device, flags, reason_code, properties) -> None:
        device.connected = False
        device.lost_at = time.monotonic()

    def _publish(
        self, device: _Device, topic: str, payload: bytes, *, retain: bool = False, status: bool = False
    ) -> None:
        while len(self._pending) >= self.max_inflight:
            self._pump(0.05)
        info = device.client.publish(topic, payload, qos=self.qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.warning("publish to %s failed: %s", topic, mqtt.error_string(info.rc))
            return
        if self.qos > 0 and not info.is_published():  # QoS-1 messages stay queued in paho while offline
            self._pending.add((device.device_id, info.mid))
            self.stats.max_inflight_seen = max(self.stats.max_inflight_seen, len(self._pending))
        if status:
            self.stats.status_published += 1
        else:
            self.stats.published += 1

    def _pump(self, timeout: float) -> None:
        """One round of network I/O for every connection: reads, pending writes, keepalive, reconnects."""
        for key, _ in self._sel.select(timeout):
            key.data.client.loop_read()
        now = time.monotonic()
        for device in self._devices.values():
            client = device.client
            if client.want_write():
                client.loop_write()
            client.loop_misc()
            if not device.connected and device.lost_at and not self._closing and now - device.lost_at > 2.0:
                device.lost_at = now  # try again in 2 s if this fails
                self._unregister(device)
                try:
                    client.reconnect()
                    self._register(device)
                except OSError as exc:
                    log.warning("reconnect of %s failed: %s", device.device_id, exc)

    def _wait_until(self, due: float) -> None:
        while True:
            left = due - time.monotonic()
            if left <= 0 or self._stop.is_set():
                self._pump(0.0)
                return
            self._pump(min(left, 0.2))

    def _shutdown(self) -> None:
        """Say ``offline`` on every status topic, wait for the acks, disconnect."""
        for device in self._devices.values():
            if device.connected:
                topic = status_topic(self.topic_prefix, device.household_id, device.device_id)
                self._publish(device, topic, OFFLINE, retain=self.retain_status, status=True)
        self._closing = True
        deadline = time.monotonic() + 10.0
        while self._pending and time.monotonic() < deadline:
            self._pump(0.05)
        for device in self._devices.values():
            if device.connected:
                device.client.disconnect()
        deadline = time.monotonic() + 5.0
        while any(d.connected for d in self._devices.values()) and time.monotonic() < deadline:
            self._pump(0.05)
        self._close_sockets()

    def _close_sockets(self) -> None:
        for device in self._devices.values():
            self._unregister(device)
            sock = device.client.socket()
            if sock is not None:
                sock.close()
        self._sel.close()


def publish_live(
    fleet: Fleet,
    settings: MqttSettings | None = None,
    *,
    duration_s: float | None = None,
    ticks: int | None = None,
    **options: Any,
) -> LiveStats:
    """Publish ``fleet`` live for a bounded run; ``options`` are :class:`LivePublisher` fields
    (``speed``, ``prefix``, ``start``, ``max_inflight``, ...).  Settings default to the platform's."""
    if settings is None:
        from hems.settings import get_settings

        settings = get_settings().mqtt
    return LivePublisher(fleet, settings=settings, **options).run(duration_s=duration_s, ticks=ticks)


run_live = publish_live


def _fd_limit() -> int:
    try:
        import resource

        return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, ValueError, OSError):
        return 1024


__all__ = [
    "LivePublisher",
    "LiveStats",
    "format_ts",
    "payload_for",
    "publish_live",
    "run_live",
    "status_topic",
    "telemetry_topic",
]
