"""Realistic data faults, injected on request into canonical readings, each one logged.

Why: the ingest pipeline and the warehouse must survive what real meters do — gaps, counter
resets, meter swaps, spikes, re-delivered duplicates, late and out-of-order arrivals and broken
payloads — and "never emit a negative or spiked day; record every repair" (DESIGN §5) is only
testable when the test knows exactly which faults were injected.  Every function returns the
faulted frame plus log rows saying what was done, where and when.

Value faults are placed on distinct devices while there are enough of them, and otherwise on
non-overlapping time windows, so one fault never hides another and the log stays verifiable.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import polars as pl

from hems.contracts import READING_SCHEMA, DeviceType

FAULT_KINDS = ("gap", "counter_reset", "meter_swap", "spike", "duplicate", "late", "out_of_order")

FAULT_LOG_SCHEMA: dict[str, pl.DataType] = {
    "kind": pl.String(),
    "household_id": pl.String(),
    "device_id": pl.String(),
    "ts_start": pl.Datetime("ms", "UTC"),
    "ts_end": pl.Datetime("ms", "UTC"),
    "rows": pl.Int64(),
    "details": pl.String(),  # JSON object, kind-specific
}

_MIN = 60_000


@dataclass(frozen=True)
class FaultPlan:
    """How many faults of each kind to inject, and their size ranges."""

    gaps: int = 0
    counter_resets: int = 0
    meter_swaps: int = 0
    spikes: int = 0
    duplicates: int = 0
    late: int = 0
    out_of_order: int = 0
    gap_minutes: tuple[int, int] = (10, 240)
    late_minutes: tuple[int, int] = (10, 360)
    #: device types value faults are placed on (registers live on meters and plugs)
    device_types: tuple[str, ...] = (DeviceType.smart_meter.value,)

    def __post_init__(self) -> None:
        for name in ("gaps", "counter_resets", "meter_swaps", "spikes", "duplicates", "late", "out_of_order"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"FaultPlan.{name} must be a non-negative integer, got {value!r}")
        for name in ("gap_minutes", "late_minutes"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"FaultPlan.{name} must be (low, high) with 0 < low <= high, got {(lo, hi)}")
        unknown = set(self.device_types) - {t.value for t in DeviceType}
        if unknown:
            raise ValueError(f"FaultPlan.device_types has unknown device types {sorted(unknown)}")


@dataclass(frozen=True)
class FaultResult:
    """The faulted readings and one log row per injected fault.

    When late or out-of-order faults were requested the frame is in arrival order and carries an
    extra ``arrival`` column (UTC); otherwise rows keep their order (duplicates appended).
    """

    readings: pl.DataFrame
    log: pl.DataFrame


def inject_faults(
    readings: pl.DataFrame, plan: FaultPlan | None = None, *, seed: int = 0, **counts: Any
) -> FaultResult:
    """Apply ``plan`` (or keyword counts such as ``gaps=2, spikes=1``) to canonical readings."""
    if plan is None:
        unknown = set(counts) - set(FaultPlan.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fault options {sorted(unknown)}; see FaultPlan")
        plan = FaultPlan(**counts)
    elif counts:
        raise ValueError("give either a FaultPlan or keyword counts, not both")
    missing = [c for c in ("ts", "household_id", "device_id", "device_type") if c not in readings.columns]
    if missing:
        raise ValueError(f"readings lack columns {missing}; pass a canonical readings frame")
    rng = np.random.default_rng(seed)
    picker = _Picker(readings, plan.device_types, rng)
    frame = readings
    log: list[dict] = []
    for _ in range(plan.gaps):
        frame = _gap(frame, picker, rng, plan.gap_minutes, log)
    for _ in range(plan.counter_resets):
        frame = _counter_reset(frame, picker, rng, log)
    for k in range(plan.meter_swaps):
        frame = _meter_swap(frame, picker, rng, k, log)
    for _ in range(plan.spikes):
        frame = _spike(frame, picker, rng, log)
    extra: list[pl.DataFrame] = []
    for _ in range(plan.duplicates):
        extra.append(_duplicate(frame, picker, rng, log))
    if extra:
        frame = pl.concat([frame, *[e for e in extra if e.height]], how="vertical_relaxed")
    if plan.late or plan.out_of_order:
        frame = _arrival_order(frame, plan, rng, log)
    return FaultResult(frame, pl.DataFrame(log, schema=FAULT_LOG_SCHEMA, orient="row"))


# ----------------------------------------------------------------------------- placement
class _Picker:
    """Chooses a device and a time window for each value fault without overlapping another."""

    def __init__(self, readings: pl.DataFrame, device_types: Sequence[str], rng: np.random.Generator) -> None:
        devices = (
            readings.filter(pl.col("device_type").is_in(list(device_types)))
            .group_by("device_id", maintain_order=True)
            .agg(pl.col("household_id").first())
            .sort("device_id")
        )
        if devices.is_empty():
            raise ValueError(f"no readings of device types {list(device_types)} to put faults on")
        self.devices = list(devices.iter_rows())
        self.order = list(rng.permutation(len(self.devices)))
        self.next = 0
        self.busy: dict[str, list[tuple[int, int]]] = {}

    def pick(
        self,
        frame: pl.DataFrame,
        rng: np.random.Generator,
        span_min: int,
        to_end: bool = False,
        need_register: bool = False,
    ) -> tuple[str, str, np.ndarray] | None:
        """(device_id, household_id, ts array of the window) or None when nothing fits."""
        for _ in range(4 * len(self.devices)):
            device_id, household_id = self.devices[self.order[self.next % len(self.order)]]
            self.next += 1
            rows = frame.filter(pl.col("device_id") == device_id)
            if need_register:
                rows = rows.filter(pl.col("energy_import_kwh").is_not_null())
            ts = np.sort(_epoch_ms(rows["ts"]))
            if ts.size < 3:
                continue
            # never at the very first reading: a fault needs a "before"
            lo_i = int(rng.integers(1, ts.size))
            start = int(ts[lo_i])
            end = int(ts[-1]) if to_end else start + span_min * _MIN - 1
            windows = self.busy.setdefault(device_id, [])
            if any(start <= b and a <= end for a, b in windows):
                continue
            windows.append((start, int(ts[-1]) if to_end else end))
            return device_id, household_id, ts[(ts >= start) & (ts <= end)]
        return None


def _epoch_ms(ts: pl.Series) -> np.ndarray:
    return ts.dt.epoch("ms").to_numpy()


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _entry(
    kind: str, household_id: str, device_id: str, start: int, end: int, rows: int, **details: object
) -> dict:
    return {
        "kind": kind,
        "household_id": household_id,
        "device_id": device_id,
        "ts_start": _dt(start),
        "ts_end": _dt(end),
        "rows": rows,
        "details": json.dumps(details, sort_keys=True, default=str),
    }


def _in_window(device_id: str, start: int, end: int) -> pl.Expr:
    ms = pl.col("ts").dt.epoch("ms")
    return (pl.col("device_id") == device_id) & (ms >= start) & (ms <= end)


# ----------------------------------------------------------------------------- value faults
def _gap(
    frame: pl.DataFrame, picker: _Picker, rng: np.random.Generator, minutes: tuple[int, int], log: list[dict]
) -> pl.DataFrame:
    """A device goes silent: every reading in a window is dropped."""
    span = int(rng.integers(minutes[0], minutes[1] + 1))
    got = picker.pick(frame, rng, span)
    if got is None:
        return frame
    device_id, hh, ts = got
    start, end = int(ts[0]), int(ts[-1])
    log.append(_entry("gap", hh, device_id, start, end, int(ts.size), minutes=span))
    return frame.filter(~_in_window(device_id, start, end))


def _counter_reset(
    frame: pl.DataFrame, picker: _Picker, rng: np.random.Generator, log: list[dict]
) -> pl.DataFrame:
    """The register restarts near zero (firmware reset) and keeps counting from there."""
    got = picker.pick(frame, rng, 0, to_end=True, need_register=True)
    if got is None:
        return frame
    device_id, hh, ts = got
    start, end = int(ts[0]), int(ts[-1])
    at = frame.filter(_in_window(device_id, start, start))
    old_import = float(at["energy_import_kwh"][0])
    new_start = float(np.round(rng.uniform(0.0, 0.5), 3))
    new = {"energy_import_kwh": pl.col("energy_import_kwh") - old_import + new_start}
    details: dict[str, object] = {"import_before_kwh": old_import, "import_after_kwh": new_start}
    old_export = at["energy_export_kwh"][0]
    if old_export is not None:
        new["energy_export_kwh"] = pl.col("energy_export_kwh") - float(old_export)
        details |= {"export_before_kwh": float(old_export), "export_after_kwh": 0.0}
    log.append(_entry("counter_reset", hh, device_id, start, end, int(ts.size), **details))
    cond = _in_window(device_id, start, end)
    return frame.with_columns([pl.when(cond).then(e).otherwise(pl.col(c)).alias(c) for c, e in new.items()])


def _meter_swap(
    frame: pl.DataFrame, picker: _Picker, rng: np.random.Generator, k: int, log: list[dict]
) -> pl.DataFrame:
    """The meter is replaced: a new device id from then on, whose register starts anew."""
    got = picker.pick(frame, rng, 0, to_end=True, need_register=True)
    if got is None:
        return frame
    device_id, hh, ts = got
    start, end = int(ts[0]), int(ts[-1])
    new_id = f"{device_id}-r{k + 1}"
    at = frame.filter(_in_window(device_id, start, start))
    old_import = float(at["energy_import_kwh"][0])
    new_start = float(np.round(rng.uniform(0.0, 5.0), 3))
    old_export = at["energy_export_kwh"][0]
    cond = _in_window(device_id, start, end)
    exprs = [
        pl.when(cond).then(pl.lit(new_id)).otherwise(pl.col("device_id")).alias("device_id"),
        pl.when(cond)
        .then(pl.col("energy_import_kwh") - old_import + new_start)
        .otherwise(pl.col("energy_import_kwh"))
        .alias("energy_import_kwh"),
    ]
    if old_export is not None:
        exprs.append(
            pl.when(cond)
            .then(pl.col("energy_export_kwh") - float(old_export))
            .otherwise(pl.col("energy_export_kwh"))
            .alias("energy_export_kwh")
        )
    log.append(
        _entry(
            "meter_swap",
            hh,
            device_id,
            start,
            end,
            int(ts.size),
            new_device_id=new_id,
            import_before_kwh=old_import,
            import_after_kwh=new_start,
        )
    )
    return frame.with_columns(exprs)


def _spike(frame: pl.DataFrame, picker: _Picker, rng: np.random.Generator, log: list[dict]) -> pl.DataFrame:
    """One absurd value: a power reading of megawatts, or a single register jump that reverts."""
    got = picker.pick(frame, rng, 1, need_register=True)
    if got is None:
        return frame
    device_id, hh, ts = got
    at_ms = int(ts[0])
    row = frame.filter(_in_window(device_id, at_ms, at_ms))
    field = "power_w" if rng.random() < 0.5 else "energy_import_kwh"
    original = row[field][0]
    if original is None:
        field, original = "energy_import_kwh", row["energy_import_kwh"][0]
    jump = rng.uniform(1e6, 5e6) if field == "power_w" else rng.uniform(1e4, 1e5)
    value = float(original) + float(jump)
    log.append(
        _entry("spike", hh, device_id, at_ms, at_ms, 1, field=field, original=float(original), value=value)
    )
    cond = _in_window(device_id, at_ms, at_ms)
    return frame.with_columns(pl.when(cond).then(pl.lit(value)).otherwise(pl.col(field)).alias(field))


def _duplicate(
    frame: pl.DataFrame, picker: _Picker, rng: np.random.Generator, log: list[dict]
) -> pl.DataFrame:
    """A run of readings delivered twice (QoS 1 re-delivery): exact copies of existing rows."""
    got = picker.pick(frame, rng, int(rng.integers(1, 31)))
    if got is None:
        return frame.clear()
    device_id, hh, ts = got
    start, end = int(ts[0]), int(ts[-1])
    copies = frame.filter(_in_window(device_id, start, end))
    log.append(_entry("duplicate", hh, device_id, start, end, copies.height))
    return copies


# ----------------------------------------------------------------------------- arrival order
def _arrival_order(
    frame: pl.DataFrame, plan: FaultPlan, rng: np.random.Generator, log: list[dict]
) -> pl.DataFrame:
    """Give every row an arrival time (ts + a few seconds), delay some, and sort by arrival."""
    ms = _epoch_ms(frame["ts"])
    arrival = ms + rng.integers(200, 3_000, size=ms.size)
    dev = frame["device_id"].to_numpy()
    hh = frame["household_id"].to_numpy()
    order = np.lexsort((ms, dev))  # rows of each device in time order
    # late: a device buffers a run of readings while offline and sends them after a delay
    for _ in range(plan.late):
        i = int(rng.integers(0, ms.size))
        same = order[dev[order] == dev[i]]
        k0 = int(np.searchsorted(ms[same], ms[i]))
        run = same[k0 : k0 + int(rng.integers(1, 16))]
        delay = int(rng.integers(plan.late_minutes[0], plan.late_minutes[1] + 1))
        arrival[run] = ms[run[-1]] + delay * _MIN + np.arange(run.size)
        log.append(
            _entry(
                "late",
                str(hh[i]),
                str(dev[i]),
                int(ms[run[0]]),
                int(ms[run[-1]]),
                int(run.size),
                delay_minutes=delay,
            )
        )
    # out of order: one reading overtakes its predecessor
    for _ in range(plan.out_of_order):
        i = int(rng.integers(0, ms.size))
        same = order[dev[order] == dev[i]]
        if same.size < 2:
            continue
        k = int(rng.integers(1, same.size))
        first, second = same[k - 1], same[k]
        arrival[first] = max(arrival[first], arrival[second]) + 1_000
        log.append(
            _entry(
                "out_of_order",
                str(hh[i]),
                str(dev[i]),
                int(ms[first]),
                int(ms[second]),
                2,
                arrived_after=_dt(int(ms[second])).isoformat(),
            )
        )
    arrival_ts = pl.Series("arrival", arrival).cast(pl.Datetime("ms")).dt.replace_time_zone("UTC")
    return frame.with_columns(arrival_ts).sort("arrival", maintain_order=True)


# ----------------------------------------------------------------------------- payloads
@dataclass(frozen=True)
class MalformedPayload:
    """A bad MQTT message and the rejection the ingest pipeline is expected to quarantine it with."""

    kind: str
    topic: str
    payload: bytes
    #: expected quarantine reason: a short code, with the field after a colon where one applies
    reason: str


def _good(device_type: str, ts: str) -> dict:
    if device_type == DeviceType.env_sensor:
        return {
            "ts": ts,
            "device_type": device_type,
            "temperature_c": 23.4,
            "humidity_pct": 48.0,
            "co2_ppm": 650.0,
            "air_quality_index": 31.0,
        }
    return {
        "ts": ts,
        "device_type": device_type,
        "power_w": 412.5,
        "energy_import_kwh": 12345.678,
        "energy_export_kwh": 0.0,
        "voltage_v": 220.4,
        "current_a": 1.95,
        "power_factor": 0.96,
    }


def malformed_payloads(
    household_id: str = "hh-00001",
    device_id: str | None = None,
    *,
    prefix: str | None = None,
    kinds: Iterable[str] | None = None,
    ts: datetime | None = None,
) -> list[MalformedPayload]:
    """One malformed message per kind for a meter's telemetry topic (all kinds by default).

    Kinds: invalid_json, not_utf8, empty, not_object, array_of_non_objects, missing_ts, bad_ts,
    naive_ts, missing_device_type, unknown_device_type, wrong_type, nan_value, negative_power,
    out_of_range_voltage, out_of_range_power_factor, out_of_range_humidity, no_fields, bad_topic.
    """
    if prefix is None:
        from hems.settings import get_settings

        prefix = get_settings().mqtt.topic_prefix
    device_id = device_id or f"{household_id}-meter"
    topic = f"{prefix}/{household_id}/{device_id}/telemetry"
    when = (ts or datetime(2025, 7, 1, 12, 0, tzinfo=UTC)).astimezone(UTC).isoformat()
    meter = DeviceType.smart_meter.value

    def obj(**changes: object) -> bytes:
        body = _good(meter, when) | changes
        return orjson.dumps({k: v for k, v in body.items() if v is not _DROP})

    catalogue: dict[str, tuple[str, bytes, str]] = {
        "invalid_json": (topic, obj()[:-7], "invalid_json"),
        "not_utf8": (topic, b"\xff\xfe\x00{not json", "invalid_json"),
        "empty": (topic, b"", "empty_payload"),
        "not_object": (topic, b'"hello"', "not_an_object"),
        "array_of_non_objects": (topic, b"[1, 2, 3]", "not_an_object"),
        "missing_ts": (topic, obj(ts=_DROP), "missing_field:ts"),
        "bad_ts": (topic, obj(ts="yesterday at noon"), "invalid_ts"),
        "naive_ts": (topic, obj(ts="2025-07-01T12:00:00"), "invalid_ts"),
        "missing_device_type": (topic, obj(device_type=_DROP), "missing_field:device_type"),
        "unknown_device_type": (topic, obj(device_type="toaster"), "unknown_device_type"),
        "wrong_type": (topic, obj(power_w="four hundred"), "wrong_type:power_w"),
        "nan_value": (topic, obj().replace(b"412.5", b"NaN"), "invalid_json"),
        "negative_power": (topic, obj(power_w=-500.0), "out_of_range:power_w"),
        "out_of_range_voltage": (topic, obj(voltage_v=500.0), "out_of_range:voltage_v"),
        "out_of_range_power_factor": (topic, obj(power_factor=1.7), "out_of_range:power_factor"),
        "out_of_range_humidity": (
            topic,
            orjson.dumps(_good(DeviceType.env_sensor.value, when) | {"humidity_pct": 150.0}),
            "out_of_range:humidity_pct",
        ),
        "no_fields": (topic, orjson.dumps({"ts": when, "device_type": meter}), "no_fields"),
        "bad_topic": (f"{prefix}/{household_id}/telemetry", obj(), "bad_topic"),
    }
    wanted = list(catalogue) if kinds is None else list(kinds)
    unknown = [k for k in wanted if k not in catalogue]
    if unknown:
        raise ValueError(f"unknown malformed payload kinds {unknown}; known: {list(catalogue)}")
    return [MalformedPayload(k, *catalogue[k]) for k in wanted]


_DROP = object()

__all__ = [
    "FAULT_KINDS",
    "FAULT_LOG_SCHEMA",
    "READING_SCHEMA",
    "FaultPlan",
    "FaultResult",
    "MalformedPayload",
    "inject_faults",
    "malformed_payloads",
]
