"""Device state: latest readings, last_seen and online/offline per device (issue 3, item 6).

Why the cache holds it: apps poll "what is my house doing now" far more often than readings
arrive, and the raw store is the wrong place to ask for the last value of every device. The app
database only hears about *transitions* (``iot_devices.status/last_seen``, one notification when a
device goes offline), so steady-state ingest costs no database writes.

Cache layout (keys are relative; RedisCache adds its ``key_prefix``):

* ``device_state:<household>`` hash: device_id → {device_type, status, status_since, last_seen,
  offline_since, latest}; ``latest`` is the newest reading ({ts, ts_ms, device_type, fields…}).
* ``household_latest:<household>`` hash: device_type → newest reading of that type (+ device_id).
* ``device_last_seen`` sorted set: member ``[household, device]`` (JSON), score = last_seen (epoch
  seconds): the index :meth:`DeviceStateTracker.sweep` scans for missed reporting intervals.

``last_seen`` is the time a reading or an ``online`` status *arrived* (this tracker's clock), not
the reading's own timestamp: a device replaying a buffer of old readings is alive now.

One outage, one notification: the dedupe key is ``device-offline:<device>:<last_seen>`` — the
last contact before the outage, which the status topic (last will) and the sweep agree on even
when they run in different processes; coming back online is a new contact, so a later outage
gets a new key.

Wiring: ``IngestPipeline(..., on_valid=tracker.observe)`` and ``MqttWorker(..., on_status=
tracker.on_status)``; call :meth:`~DeviceStateTracker.sweep` every interval (or
:meth:`~DeviceStateTracker.run_sweeper` in a thread).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

import orjson
import polars as pl
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from hems.contracts import READING_FIELDS, DeviceType, conform_readings
from hems.errors import ServiceUnavailable
from hems.stores.appdb.engine import get_engine, write_connection
from hems.stores.appdb.models import Household, IotDevice, Notification

if TYPE_CHECKING:
    from hems.settings import Settings
    from hems.stores.cache import Cache
    from hems.stores.live_bus import LiveBus

log = logging.getLogger(__name__)

STATE_KEY = "device_state:{}"
LATEST_KEY = "household_latest:{}"
LAST_SEEN_KEY = "device_last_seen"

#: how often devices report by default (the simulator's meters: every minute)
DEFAULT_EXPECTED_INTERVAL_S = 60.0
#: missed intervals before a silent device counts as offline
DEFAULT_GRACE_FACTOR = 3.0

STATUSES = frozenset({"online", "offline"})
REQUIRED_COLUMNS = ("ts", "household_id", "device_id", "device_type")
_ISO_MS = "%Y-%m-%dT%H:%M:%S%.3f+00:00"  # the Polars twin of _iso(): one string format, sortable
_ID_CHUNK = 500
_DEVICE_TYPES = frozenset(t.value for t in DeviceType)

# device ids such as "hh-0001-meter" (simulator) name their type; used when a status message
# arrives for a device the platform has never seen a reading from
_TYPE_TOKENS: tuple[tuple[str, DeviceType], ...] = (
    ("meter", DeviceType.smart_meter),
    ("plug", DeviceType.smart_plug),
    ("pv", DeviceType.solar_inverter),
    ("solar", DeviceType.solar_inverter),
    ("inverter", DeviceType.solar_inverter),
    ("env", DeviceType.env_sensor),
    ("sensor", DeviceType.env_sensor),
)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _iso(value: dt.datetime) -> str:
    return _aware(value).isoformat(timespec="milliseconds")


def _parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def _member(household_id: str, device_id: str) -> str:
    return orjson.dumps([household_id, device_id]).decode()


def _unmember(member: str) -> tuple[str, str]:
    household_id, device_id = orjson.loads(member)
    return household_id, device_id


def _check_id(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def infer_device_type(device_id: str) -> str | None:
    """The device type a conventional id names (``…-meter``, ``…-plug-…``, ``…-pv``, ``…-env``)."""
    tokens = set(device_id.lower().replace("_", "-").split("-"))
    for token, device_type in _TYPE_TOKENS:
        if token in tokens:
            return device_type.value
    return None


class DeviceStateTracker:
    """Latest readings and liveness of devices; see the module docstring for the layout.

    Thread-safe as far as its stores are (the pipeline and the MQTT worker call it from their own
    threads). Read-then-write on the cache is not atomic across processes: two ingest workers
    updating the *same* device at the same instant may keep either reading as latest.
    """

    def __init__(
        self,
        cache: Cache,
        app_database_url: str,
        *,
        settings: Settings | None = None,
        clock: Callable[[], dt.datetime] | None = None,
        live_bus: LiveBus | None = None,
        expected_interval_s: float = DEFAULT_EXPECTED_INTERVAL_S,
        grace_factor: float = DEFAULT_GRACE_FACTOR,
    ) -> None:
        _check_sweep(expected_interval_s, grace_factor)
        self.cache = cache
        self.app_database_url = app_database_url
        self.settings = settings
        self.clock = clock or _utc_now
        self.live_bus = live_bus
        self.expected_interval_s = expected_interval_s
        self.grace_factor = grace_factor

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **kwargs: Any) -> DeviceStateTracker:
        """The profile's cache, app database and live bus (what the worker and the API use)."""
        from hems.settings import get_settings
        from hems.stores.cache import get_cache
        from hems.stores.live_bus import get_live_bus

        settings = settings or get_settings()
        return cls(
            get_cache(settings),
            settings.app_database_url,
            settings=settings,
            live_bus=get_live_bus(settings),
            **kwargs,
        )

    def _now(self) -> dt.datetime:
        return _aware(self.clock())

    # --- readings ------------------------------------------------------------------------------
    def observe(self, readings: pl.DataFrame) -> int:
        """Record a written batch of canonical readings; returns the devices it touched.

        Vectorized down to one row per device (Polars), then one pipelined cache read, one
        pipelined write, one ZADD and one pipelined publish per batch, whatever its size.
        """
        frame = _validated(readings)
        if frame.is_empty():
            return 0
        latest = (
            frame.sort("ts")
            .group_by("household_id", "device_id", maintain_order=True)
            .last()
            .with_columns(
                pl.col("ts").dt.epoch("ms").alias("ts_ms"), pl.col("ts").dt.strftime(_ISO_MS).alias("ts")
            )
        )
        by_household: dict[str, list[dict[str, Any]]] = {}
        for row in latest.iter_rows(named=True):
            by_household.setdefault(row["household_id"], []).append(row)
        households = list(by_household)
        current_states = self.cache.hgetall_json_many([STATE_KEY.format(h) for h in households])

        now = self._now()
        now_iso = _iso(now)
        writes: dict[str, dict[str, Any]] = {}
        scores: dict[str, float] = {}
        came_online: list[dict[str, Any]] = []
        publishes: list[tuple[str, dict[str, Any]]] = []
        for household_id, current in zip(households, current_states, strict=True):
            updates: dict[str, Any] = {}
            fresh: list[dict[str, Any]] = []
            for row in by_household[household_id]:
                device_id = row["device_id"]
                prev = current.get(device_id) or {}
                reading = _reading(row)
                prev_latest = prev.get("latest")
                if prev_latest is None or reading["ts_ms"] >= prev_latest.get("ts_ms", -math.inf):
                    kept = reading
                    fresh.append({"device_id": device_id, **_public(reading)})
                else:  # an older reading (spool replay, late device buffer): keep the newer one
                    kept = prev_latest
                was_online = prev.get("status") == "online"
                state = {
                    "household_id": household_id,
                    "device_id": device_id,
                    "device_type": row["device_type"] or prev.get("device_type"),
                    "status": "online",
                    "status_since": prev.get("status_since") if was_online else now_iso,
                    "last_seen": max(prev.get("last_seen") or "", now_iso),
                    "offline_since": None,
                    "latest": kept,
                }
                if not was_online:
                    came_online.append(state)
                updates[device_id] = current[device_id] = state
                scores[_member(household_id, device_id)] = _parse(state["last_seen"]).timestamp()
            writes[STATE_KEY.format(household_id)] = updates
            writes[LATEST_KEY.format(household_id)] = _by_type(current.values())
            if fresh:
                publishes.append(
                    (household_id, {"type": "readings", "household_id": household_id, "readings": fresh})
                )
        self.cache.hset_json_many(writes)
        self.cache.zadd(LAST_SEEN_KEY, scores)
        self._publish(publishes)
        if came_online:
            try:
                self._sync_db(came_online, [])
            except ServiceUnavailable as exc:  # readings are written; the DB catches up next transition
                log.warning("device status not saved to the app database: %s", exc)
            self._publish(_status_events(came_online))
        return latest.height

    # --- status topic --------------------------------------------------------------------------
    def on_status(
        self, household_id: str, device_id: str, status: str, ts: dt.datetime | None = None
    ) -> None:
        """A ``hems/v1/<household>/<device>/status`` message (``online``, or the last will ``offline``).

        Unknown devices are created in ``iot_devices`` when their household exists and their
        type is known (earlier readings or a conventional id); otherwise they live only in the
        cache and a warning is logged — a status message never fails the worker for that.
        """
        _check_id("household_id", household_id)
        _check_id("device_id", device_id)
        value = status.strip().lower() if isinstance(status, str) else status
        if value not in STATUSES:
            raise ValueError(f"status must be 'online' or 'offline', got {status!r}")
        at = _aware(ts) if ts is not None else self._now()
        prev = self.cache.hgetall_json(STATE_KEY.format(household_id)).get(device_id)
        base = prev or {
            "household_id": household_id,
            "device_id": device_id,
            "device_type": infer_device_type(device_id),
            "status": "unknown",
            "status_since": None,
            "last_seen": None,
            "offline_since": None,
            "latest": None,
        }
        if value == "offline":
            if base.get("status") != "offline":
                self._go_offline([(base, base.get("last_seen") or _iso(at))], at, source="status")
            return
        was_online = base.get("status") == "online"
        state = {
            **base,
            "status": "online",
            "status_since": base.get("status_since") if was_online else _iso(at),
            "last_seen": max(base.get("last_seen") or "", _iso(at)),
            "offline_since": None,
        }
        self._sync_db([state], [])  # status messages are rare: always upsert (registers new devices)
        self.cache.hset_json(STATE_KEY.format(household_id), {device_id: state})
        self.cache.zadd(
            LAST_SEEN_KEY, {_member(household_id, device_id): _parse(state["last_seen"]).timestamp()}
        )
        if not was_online:
            self._publish(_status_events([state]))

    # --- missed intervals ----------------------------------------------------------------------
    def sweep(
        self,
        now: dt.datetime | None = None,
        expected_interval_s: float | None = None,
        grace_factor: float | None = None,
    ) -> list[dict[str, Any]]:
        """Mark offline every device silent for more than ``grace_factor`` × ``expected_interval_s``;
        returns the devices that went offline in this call (already-offline ones are not repeated).
        """
        interval = self.expected_interval_s if expected_interval_s is None else expected_interval_s
        grace = self.grace_factor if grace_factor is None else grace_factor
        _check_sweep(interval, grace)
        at = _aware(now) if now is not None else self._now()
        cutoff = at - dt.timedelta(seconds=interval * grace)
        due = self.cache.zrange_by_score(LAST_SEEN_KEY, -math.inf, cutoff.timestamp())
        if not due:
            return []
        pairs = [_unmember(member) for member, _ in due]
        households = sorted({h for h, _ in pairs})
        states = dict(
            zip(
                households,
                self.cache.hgetall_json_many([STATE_KEY.format(h) for h in households]),
                strict=True,
            )
        )
        cutoff_iso = _iso(cutoff)
        going: list[tuple[dict[str, Any], str]] = []
        done: list[str] = []
        for (household_id, device_id), (member, _) in zip(pairs, due, strict=True):
            state = states[household_id].get(device_id)
            if state is None or state.get("status") == "offline":
                done.append(member)
            elif (state.get("last_seen") or "") <= cutoff_iso:  # re-checked: a reading may just have come
                going.append((state, state.get("last_seen") or cutoff_iso))
                done.append(member)
        offline = self._go_offline(going, at, source="missed_intervals") if going else []
        # An offline device leaves the index until its next contact re-adds it, so sweeps stay
        # proportional to the devices falling silent, not to all the dead ones.
        self.cache.zrem(LAST_SEEN_KEY, *done)
        return offline

    def run_sweeper(self, stop: threading.Event, every_s: float | None = None) -> None:
        """Sweep every ``every_s`` (default: the expected interval) until ``stop`` is set."""
        every = every_s or self.expected_interval_s
        while not stop.wait(every):
            try:
                self.sweep()
            except Exception:  # a store hiccup must not end the loop; the next sweep retries
                log.exception("device sweep failed")

    def _go_offline(
        self, entries: Sequence[tuple[dict[str, Any], str]], at: dt.datetime, *, source: str
    ) -> list[dict[str, Any]]:
        """The one path to offline (status topic and sweep): notification first, then the cache —
        if the database is down the cache still says online, so the next check retries."""
        states = [
            {**state, "status": "offline", "status_since": _iso(at), "offline_since": since}
            for state, since in entries
        ]
        notes = [_notification(s, source) for s in states]
        self._sync_db(states, notes)
        writes: dict[str, dict[str, Any]] = {}
        for s in states:
            writes.setdefault(STATE_KEY.format(s["household_id"]), {})[s["device_id"]] = s
        self.cache.hset_json_many(writes)
        self._publish(_status_events(states))
        return states

    # --- app database --------------------------------------------------------------------------
    def _sync_db(self, states: Sequence[dict[str, Any]], notes: Sequence[dict[str, Any]]) -> int:
        """Save device status (update, or insert when its household exists) and insert notifications
        (ON CONFLICT (dedupe_key) DO NOTHING) in one transaction; returns notifications created."""
        household_ids = sorted({s["household_id"] for s in states} | {n["household_id"] for n in notes})
        skipped: list[str] = []
        created = 0
        with write_connection(self.app_database_url) as conn:
            insert = _insert_for(conn.dialect.name)
            owners = _existing_households(conn, household_ids)
            known = _existing_devices(conn, [s["device_id"] for s in states])
            updates, inserts = [], []
            for s in states:
                last_seen = _parse(s["last_seen"]) if s.get("last_seen") else None
                if s["device_id"] in known:
                    updates.append(
                        {"b_id": s["device_id"], "b_status": s["status"], "b_last_seen": last_seen}
                    )
                elif s["household_id"] in owners and s.get("device_type") in _DEVICE_TYPES:
                    inserts.append(
                        {
                            "id": s["device_id"],
                            "household_id": s["household_id"],
                            "device_type": s["device_type"],
                            "status": s["status"],
                            "last_seen": last_seen,
                        }
                    )
                else:
                    skipped.append(s["device_id"])
            if updates:
                table = cast(sa.Table, IotDevice.__table__)
                stmt = (
                    sa.update(table)
                    .where(table.c.id == sa.bindparam("b_id"))
                    .values(
                        status=sa.bindparam("b_status", type_=table.c.status.type),
                        last_seen=sa.func.coalesce(
                            sa.bindparam("b_last_seen", type_=table.c.last_seen.type), table.c.last_seen
                        ),
                    )
                )
                conn.execute(stmt, updates)
            if inserts:
                stmt = insert(IotDevice.__table__)
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["id"],
                        set_={"status": stmt.excluded.status, "last_seen": stmt.excluded.last_seen},
                    ),
                    inserts,
                )
            for note in notes:
                household_id = note["household_id"]
                row = {
                    **note,
                    "household_id": household_id if household_id in owners else None,
                    "user_id": owners.get(household_id),
                }
                result = conn.execute(
                    insert(Notification.__table__)
                    .values(row)
                    .on_conflict_do_nothing(index_elements=["dedupe_key"])
                )
                created += max(result.rowcount, 0)
        if skipped:
            log.warning(
                "devices kept in the cache only (household not in the app database or type unknown): %s",
                ", ".join(sorted(skipped)[:20]),
            )
        return created

    # --- queries for the API -------------------------------------------------------------------
    def household_exists(self, household_id: str) -> bool:
        with get_engine(self.app_database_url).connect() as conn:
            return (
                conn.execute(sa.select(Household.id).where(Household.id == household_id)).first() is not None
            )

    def latest_for_household(self, household_id: str) -> dict[str, Any]:
        """Newest reading per device type and per device, with each device's status (cache only)."""
        states = self.cache.hgetall_json(STATE_KEY.format(household_id))
        by_type = self.cache.hgetall_json(LATEST_KEY.format(household_id))
        devices = []
        for device_id in sorted(states):
            s = states[device_id]
            devices.append(
                {
                    "device_id": device_id,
                    "device_type": s.get("device_type"),
                    "status": s.get("status", "unknown"),
                    "last_seen": s.get("last_seen"),
                    "reading": _public(s["latest"]) if s.get("latest") else None,
                }
            )
        stamps = [entry["ts"] for entry in by_type.values() if entry.get("ts")]
        return {
            "household_id": household_id,
            "as_of": max(stamps) if stamps else None,
            "by_type": {t: _public(entry) for t, entry in sorted(by_type.items())},
            "devices": devices,
        }

    def devices_status(self, household_id: str) -> list[dict[str, Any]]:
        """Registered devices (app DB) and devices seen by ingest (cache); the cache is fresher."""
        states = self.cache.hgetall_json(STATE_KEY.format(household_id))
        table = cast(sa.Table, IotDevice.__table__)
        with get_engine(self.app_database_url).connect() as conn:
            rows = conn.execute(
                sa.select(table.c.id, table.c.device_type, table.c.status, table.c.last_seen).where(
                    table.c.household_id == household_id
                )
            ).all()
        out: dict[str, dict[str, Any]] = {}
        for r in rows:
            out[r.id] = {
                "device_id": r.id,
                "device_type": str(r.device_type.value if hasattr(r.device_type, "value") else r.device_type),
                "status": str(r.status.value if hasattr(r.status, "value") else r.status),
                "last_seen": _iso(r.last_seen) if r.last_seen else None,
                "offline_since": None,
                "registered": True,
            }
        for device_id, s in states.items():
            entry = out.setdefault(device_id, {"device_id": device_id, "registered": False})
            entry.update(
                {
                    "device_type": s.get("device_type") or entry.get("device_type"),
                    "status": s.get("status", "unknown"),
                    "last_seen": s.get("last_seen"),
                    "offline_since": s.get("offline_since"),
                }
            )
        return [out[k] for k in sorted(out)]

    # --- live bus ------------------------------------------------------------------------------
    def _publish(self, items: Iterable[tuple[str, dict[str, Any]]]) -> None:
        items = list(items)
        if self.live_bus is None or not items:
            return
        try:
            self.live_bus.publish_many(items)
        except ServiceUnavailable as exc:  # live updates are best effort; state is already saved
            log.warning("live bus publish failed: %s", exc)


# --- helpers -------------------------------------------------------------------------------------


def _check_sweep(interval: float, grace: float) -> None:
    if not interval > 0 or not grace > 0:
        raise ValueError(f"expected_interval_s and grace_factor must be positive, got {interval}, {grace}")


def _validated(readings: pl.DataFrame) -> pl.DataFrame:
    """Canonical readings or a ValueError saying what is wrong (a caller bug, not bad device data)."""
    if not isinstance(readings, pl.DataFrame):
        raise ValueError(f"observe() takes a Polars DataFrame of readings, got {type(readings).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in readings.columns]
    if missing:
        raise ValueError(
            f"readings frame lacks column(s) {missing}: "
            "expected canonical readings (hems.contracts.READING_SCHEMA)"
        )
    if readings.is_empty():
        return readings
    try:
        frame = conform_readings(readings)
    except pl.exceptions.PolarsError as exc:
        raise ValueError(f"readings frame does not match the canonical schema: {exc}") from None
    nulls = [c for c in ("ts", "household_id", "device_id") if frame[c].null_count()]
    if nulls:
        raise ValueError(f"readings have null {nulls}: every reading needs ts, household_id and device_id")
    return frame


def _reading(row: dict[str, Any]) -> dict[str, Any]:
    values = {f: row[f] for f in READING_FIELDS if row.get(f) is not None}
    return {"ts": row["ts"], "ts_ms": row["ts_ms"], "device_type": row["device_type"], **values}


def _public(reading: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in reading.items() if k != "ts_ms"}


def _by_type(states: Iterable[dict[str, Any]]) -> dict[str, Any]:
    best: dict[str, dict[str, Any]] = {}
    for s in states:
        latest, device_type = s.get("latest"), s.get("device_type")
        if not latest or not device_type:
            continue
        if device_type not in best or latest["ts_ms"] > best[device_type]["ts_ms"]:
            best[device_type] = {"device_id": s["device_id"], **latest}
    return best


def _status_events(states: Iterable[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for s in states:
        grouped.setdefault(s["household_id"], []).append(
            {k: s.get(k) for k in ("device_id", "device_type", "status", "last_seen", "offline_since")}
        )
    return [(h, {"type": "status", "household_id": h, "devices": d}) for h, d in grouped.items()]


def _notification(state: dict[str, Any], source: str) -> dict[str, Any]:
    device_id, since = state["device_id"], state["offline_since"]
    why = "its last will (status topic)" if source == "status" else "missed reporting intervals"
    return {
        "household_id": state["household_id"],
        "kind": "device_offline",
        "title": f"Device {device_id} is offline",
        "body": f"No contact from {device_id} since {since} ({why}).",
        "payload": {
            "device_id": device_id,
            "household_id": state["household_id"],
            "device_type": state.get("device_type"),
            "offline_since": since,
            "source": source,
        },
        "dedupe_key": f"device-offline:{device_id}:{since}"[:200],
    }


def _insert_for(dialect: str) -> Any:
    if dialect == "postgresql":
        return postgresql.insert
    if dialect == "sqlite":
        return sqlite.insert
    raise NotImplementedError(f"device state supports PostgreSQL and SQLite, not {dialect}")


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), _ID_CHUNK):
        yield values[start : start + _ID_CHUNK]


def _existing_households(conn: sa.Connection, ids: Sequence[str]) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for chunk in _chunks(ids):
        for row in conn.execute(sa.select(Household.id, Household.user_id).where(Household.id.in_(chunk))):
            out[row.id] = row.user_id
    return out


def _existing_devices(conn: sa.Connection, ids: Sequence[str]) -> set[str]:
    out: set[str] = set()
    for chunk in _chunks(sorted(set(ids))):
        out.update(conn.execute(sa.select(IotDevice.id).where(IotDevice.id.in_(chunk))).scalars())
    return out
