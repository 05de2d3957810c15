"""Modbus TCP poller: reads meters' registers on a fixed cadence and hands canonical readings on.

Why one asyncio task and one TCP client per device: a meter that is slow, dead or unplugged only
ever costs its own task a bounded timeout; the other devices keep their cadence.  Why aligned
ticks: every device samples at multiples of its interval (UTC epoch), so the timestamps of a
fleet line up and a re-polled tick overwrites itself in the raw store (idempotent writes).

Readings leave through one emitter task that calls ``sink(frame)`` (a sync sink runs in a worker
thread), so a slow sink delays neither the polls nor the event loop.  Values a meter should never
report (NaN, ±inf, negative energy registers) are not silently dropped: ``on_reject`` is called
with a reason code and the field is left null in the reading.

    stats = asyncio.run(run_poller("devices.yaml", sink, stop_event=stop))
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import random
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import yaml  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pymodbus.client import AsyncModbusTcpClient

from hems.contracts import DeviceType, conform_readings
from hems.errors import HemsError
from ingest.register_maps import Block, RegisterMap, load_map, yaml_error

log = logging.getLogger(__name__)

Sink = Callable[[pl.DataFrame], Any]
RejectCallback = Callable[[str, str, float, str], Any]

#: reject reason codes passed to ``on_reject``
REJECT_NAN = "nan"
REJECT_INFINITE = "infinite"
REJECT_NEGATIVE_ENERGY = "negative_energy"
_ENERGY_FIELDS = ("energy_import_kwh", "energy_export_kwh")


class ModbusConfigError(HemsError):
    """The device list is invalid; the message names the file and the entry."""


class ModbusReadError(RuntimeError):
    """The device answered with a Modbus exception (illegal address, busy, ...)."""


# --------------------------------------------------------------------------- configuration
class DeviceConfig(BaseModel):
    """One meter: where it is, which map decodes it, whose readings it makes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: str = Field(min_length=1)
    household_id: str = Field(min_length=1)
    host: str = Field(min_length=1)
    port: int = Field(502, ge=1, le=65535)
    unit_id: int = Field(1, ge=0, le=255)
    map: str = Field(min_length=1)
    device_type: DeviceType = DeviceType.smart_meter
    interval_s: float | None = Field(None, gt=0)
    timeout_s: float | None = Field(None, gt=0)


class PollerConfig(BaseModel):
    """Device list plus defaults (a device's own ``interval_s``/``timeout_s`` win)."""

    model_config = ConfigDict(extra="forbid")

    interval_s: float = Field(10.0, gt=0)
    timeout_s: float = Field(2.0, gt=0)
    backoff_initial_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(60.0, ge=0)
    #: 0: hand over whatever is ready at once; > 0: collect readings this long per sink call
    batch_window_s: float = Field(0.0, ge=0)
    #: readings waiting for the sink before the oldest are dropped (counted in ``dropped``)
    max_pending: int = Field(100_000, ge=1)
    maps_dir: Path | None = None
    devices: list[DeviceConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_devices(self) -> PollerConfig:
        seen: set[str] = set()
        for d in self.devices:
            if d.device_id in seen:
                raise ValueError(f"device_id {d.device_id!r} appears twice")
            seen.add(d.device_id)
        return self

    def interval(self, d: DeviceConfig) -> float:
        return d.interval_s or self.interval_s

    def timeout(self, d: DeviceConfig) -> float:
        return d.timeout_s or self.timeout_s


def load_config(source: str | Path | Mapping[str, Any] | PollerConfig) -> PollerConfig:
    """A validated :class:`PollerConfig` from a YAML file, a dict or an existing config.

    ``maps_dir`` in a file is relative to that file.  Every error is one line naming the file.
    """
    if isinstance(source, PollerConfig):
        return source
    where = "device config"
    base: Path | None = None
    if isinstance(source, str | Path):
        path = Path(source)
        where, base = str(path), path.parent
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ModbusConfigError(f"{where}: cannot read ({exc.strerror})") from None
        except yaml.YAMLError as exc:
            raise ModbusConfigError(f"{where}: not valid YAML ({yaml_error(exc)})") from None
    else:
        data = dict(source)
    try:
        cfg = PollerConfig.model_validate(data)
    except ValidationError as exc:
        parts = [f"{'.'.join(str(p) for p in e['loc']) or 'top level'}: {e['msg']}" for e in exc.errors()]
        raise ModbusConfigError(f"{where}: " + "; ".join(parts)) from None
    if base is not None and cfg.maps_dir is not None and not cfg.maps_dir.is_absolute():
        cfg = cfg.model_copy(update={"maps_dir": base / cfg.maps_dir})
    return cfg


# --------------------------------------------------------------------------- stats
@dataclass
class DeviceStats:
    """What one device's task did (read while running: it is updated in place)."""

    polls_ok: int = 0
    polls_failed: int = 0
    consecutive_failures: int = 0
    skipped_ticks: int = 0  # ticks not polled: still busy with an earlier one, or backing off
    connects: int = 0
    rejects: int = 0
    last_error: str | None = None
    last_latency_s: float | None = None
    max_latency_s: float = 0.0
    last_ok_at: datetime | None = None
    connected: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PollerStats:
    devices: dict[str, DeviceStats] = field(default_factory=dict)
    frames: int = 0
    readings: int = 0
    dropped: int = 0  # readings dropped because the sink fell behind by more than max_pending
    sink_errors: int = 0


# --------------------------------------------------------------------------- poller
ClientFactory = Callable[[DeviceConfig, float], AsyncModbusTcpClient]


def _default_client(d: DeviceConfig, timeout: float) -> AsyncModbusTcpClient:
    # retries=0 and reconnect_delay=0: the poller owns timeouts and reconnection, so a request
    # never outlives its tick budget behind pymodbus' own retry loop
    return AsyncModbusTcpClient(
        d.host, port=d.port, timeout=timeout, retries=0, reconnect_delay=0, name=d.device_id
    )


class ModbusPoller:
    """Polls every configured device concurrently; see the module docstring for the guarantees."""

    def __init__(
        self,
        config: str | Path | Mapping[str, Any] | PollerConfig,
        sink: Sink,
        *,
        on_reject: RejectCallback | None = None,
        client_factory: ClientFactory = _default_client,
    ) -> None:
        self.config = load_config(config)
        self.sink = sink
        self.on_reject = on_reject
        self.client_factory = client_factory
        extra = [self.config.maps_dir] if self.config.maps_dir else []
        self.maps: dict[str, RegisterMap] = {}
        for d in self.config.devices:
            if d.map not in self.maps:
                self.maps[d.map] = load_map(d.map, extra)
        self.plans: dict[str, list[Block]] = {name: m.plan() for name, m in self.maps.items()}
        self.stats = PollerStats(devices={d.device_id: DeviceStats() for d in self.config.devices})
        self._queue: asyncio.Queue[dict[str, Any]] | None = None
        self._stop = asyncio.Event()

    # ---------------------------------------------------------------- running
    async def run(self, stop_event: asyncio.Event | threading.Event | None = None) -> PollerStats:
        """Poll until ``stop_event`` is set (or the task is cancelled); flushes pending readings."""
        self._stop = asyncio.Event()
        self._queue = asyncio.Queue()
        watcher = asyncio.create_task(self._watch(stop_event)) if stop_event is not None else None
        emitter = asyncio.create_task(self._emitter(), name="modbus-emitter")
        tasks = [
            asyncio.create_task(self._device_loop(d), name=f"modbus-{d.device_id}")
            for d in self.config.devices
        ]
        try:
            await self._stop.wait()
        finally:
            self._stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if watcher:
                watcher.cancel()
            await self._queue.put({})  # wakes the emitter for its final flush
            await asyncio.gather(emitter, return_exceptions=True)
        return self.stats

    def stop(self) -> None:
        self._stop.set()

    async def _watch(self, event: asyncio.Event | threading.Event) -> None:
        if isinstance(event, asyncio.Event):
            await event.wait()
        else:
            while not event.is_set():
                await asyncio.sleep(0.05)
        self._stop.set()

    async def _sleep_until_stopped(self, seconds: float) -> bool:
        """Sleep, but wake at once on stop; True when stopping."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), seconds)
        return self._stop.is_set()

    # ---------------------------------------------------------------- one device
    async def _device_loop(self, d: DeviceConfig) -> None:
        cfg, st = self.config, self.stats.devices[d.device_id]
        interval, timeout = cfg.interval(d), cfg.timeout(d)
        rmap, blocks = self.maps[d.map], self.plans[d.map]
        client: AsyncModbusTcpClient | None = None
        backoff_until = 0.0
        tick = math.floor(time.time() / interval) + 1
        try:
            while True:
                due = tick * interval
                if await self._sleep_until_stopped(due - time.time()):
                    return
                behind = math.floor((time.time() - due) / interval)
                if behind > 0:  # an earlier poll overran: skip, never bunch up
                    st.skipped_ticks += behind
                    tick += behind
                    due = tick * interval
                tick += 1
                if time.monotonic() < backoff_until:
                    st.skipped_ticks += 1
                    continue
                t0 = time.monotonic()
                try:
                    if client is None or not client.connected:
                        client = await self._connect(d, timeout, st)
                    values = await self._read(client, d, rmap, blocks, timeout)
                except Exception as exc:
                    if client is not None:
                        client.close()
                    client, st.connected = None, False
                    st.polls_failed += 1
                    st.consecutive_failures += 1
                    st.last_error = _describe(exc, timeout)
                    delay = min(cfg.backoff_max_s, cfg.backoff_initial_s * 2 ** (st.consecutive_failures - 1))
                    backoff_until = time.monotonic() + delay * random.uniform(0.8, 1.0)
                    log.warning("modbus %s (%s:%s): %s", d.device_id, d.host, d.port, st.last_error)
                    continue
                latency = time.monotonic() - t0
                st.polls_ok += 1
                st.consecutive_failures = 0
                st.last_latency_s = latency
                st.max_latency_s = max(st.max_latency_s, latency)
                st.last_ok_at = datetime.now(UTC)
                self._emit(d, rmap, values, due, st)
        finally:
            if client is not None:
                client.close()
            st.connected = False

    async def _connect(self, d: DeviceConfig, timeout: float, st: DeviceStats) -> AsyncModbusTcpClient:
        client = self.client_factory(d, timeout)
        ok = await asyncio.wait_for(client.connect(), timeout)
        if not ok:
            client.close()
            raise ConnectionError(f"cannot connect to {d.host}:{d.port}")
        st.connects += 1
        st.connected = True
        return client

    @staticmethod
    async def _read(
        client: AsyncModbusTcpClient, d: DeviceConfig, rmap: RegisterMap, blocks: list[Block], timeout: float
    ) -> dict[str, float]:
        read = client.read_input_registers if rmap.function == "input" else client.read_holding_registers
        values: dict[str, float] = {}
        for block in blocks:
            rr = await asyncio.wait_for(read(block.address, count=block.count, device_id=d.unit_id), timeout)
            if rr.isError():
                raise ModbusReadError(
                    f"device answered {rr} for {block.count} registers at {block.address:#06x}"
                )
            values.update(rmap.decode_block(block, rr.registers))
        return values

    # ---------------------------------------------------------------- readings
    def _emit(
        self, d: DeviceConfig, rmap: RegisterMap, values: dict[str, float], due: float, st: DeviceStats
    ) -> None:
        bad: set[str] = set()
        for spec in rmap.polled:
            v = values[spec.name]
            if not math.isfinite(v):
                assert spec.canonical is not None
                bad.add(spec.canonical)
                self._reject(d, spec.canonical, v, REJECT_NAN if math.isnan(v) else REJECT_INFINITE, st)
        canonical = {k: v for k, v in rmap.combine(values).items() if k not in bad}
        for name in _ENERGY_FIELDS:
            if name in canonical and canonical[name] < 0:
                self._reject(d, name, canonical.pop(name), REJECT_NEGATIVE_ENERGY, st)
        if not canonical:
            return
        row = {
            "ts": datetime.fromtimestamp(round(due * 1000) / 1000, UTC),
            "household_id": d.household_id,
            "device_id": d.device_id,
            "device_type": d.device_type.value,
            **canonical,
        }
        assert self._queue is not None
        if self._queue.qsize() >= self.config.max_pending:
            self._queue.get_nowait()
            self.stats.dropped += 1
        self._queue.put_nowait(row)

    def _reject(self, d: DeviceConfig, name: str, value: float, reason: str, st: DeviceStats) -> None:
        st.rejects += 1
        if self.on_reject is None:
            log.warning("modbus %s: rejected %s=%r (%s)", d.device_id, name, value, reason)
            return
        try:
            self.on_reject(d.device_id, name, value, reason)
        except Exception:
            log.exception("modbus on_reject callback failed")

    async def _emitter(self) -> None:
        """Single consumer: batches queued rows into frames and calls the sink, one call at a time."""
        assert self._queue is not None
        q = self._queue
        window = self.config.batch_window_s
        while True:
            rows: list[dict[str, Any]] = []
            done = False
            item = await q.get()
            while True:
                if item:
                    rows.append(item)
                else:
                    done = True  # the stop sentinel: nothing is queued after it
                if q.empty():
                    break
                item = q.get_nowait()
            if window > 0 and not done:
                await self._sleep_until_stopped(window)
                while not q.empty():
                    item = q.get_nowait()
                    if item:
                        rows.append(item)
                    else:
                        done = True
            if rows:
                await self._deliver(rows)
            if done:
                return

    async def _deliver(self, rows: list[dict[str, Any]]) -> None:
        frame = conform_readings(pl.DataFrame(rows))
        try:
            if inspect.iscoroutinefunction(self.sink):
                await self.sink(frame)
            else:
                result = await asyncio.to_thread(self.sink, frame)
                if inspect.isawaitable(result):
                    await result
        except Exception:
            self.stats.sink_errors += 1
            log.exception("modbus sink failed on a frame of %d readings", frame.height)
            return
        self.stats.frames += 1
        self.stats.readings += frame.height


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"timeout after {timeout:g} s"
    return f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- entry points
async def run_poller(
    config: str | Path | Mapping[str, Any] | PollerConfig,
    sink: Sink,
    *,
    stop_event: asyncio.Event | threading.Event | None = None,
    on_reject: RejectCallback | None = None,
    stats_every_s: float | None = None,
) -> PollerStats:
    """Poll the configured devices until ``stop_event`` is set; returns the final stats.

    ``stats_every_s`` logs one line per device at that period (the CLI uses it).
    """
    poller = ModbusPoller(config, sink, on_reject=on_reject)
    reporter = asyncio.create_task(_report(poller, stats_every_s)) if stats_every_s else None
    try:
        return await poller.run(stop_event)
    finally:
        if reporter:
            reporter.cancel()


async def _report(poller: ModbusPoller, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        for name, st in poller.stats.devices.items():
            log.info(
                "modbus %s: ok=%d failed=%d skipped=%d rejects=%d latency=%s last_error=%s",
                name,
                st.polls_ok,
                st.polls_failed,
                st.skipped_ticks,
                st.rejects,
                f"{st.last_latency_s * 1000:.1f} ms" if st.last_latency_s is not None else "-",
                st.last_error or "-",
            )


def run_forever(
    config: str | Path | Mapping[str, Any] | PollerConfig,
    sink: Sink,
    *,
    on_reject: RejectCallback | None = None,
    stats_every_s: float | None = 60.0,
) -> PollerStats:
    """Blocking entry for the CLI: runs until SIGINT/SIGTERM, then flushes and returns the stats."""
    cfg = load_config(config)  # fail fast, before the loop starts

    async def main() -> PollerStats:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        return await run_poller(cfg, sink, stop_event=stop, on_reject=on_reject, stats_every_s=stats_every_s)

    return asyncio.run(main())


__all__ = [
    "REJECT_INFINITE",
    "REJECT_NAN",
    "REJECT_NEGATIVE_ENERGY",
    "DeviceConfig",
    "DeviceStats",
    "ModbusConfigError",
    "ModbusPoller",
    "PollerConfig",
    "PollerStats",
    "load_config",
    "run_forever",
    "run_poller",
]
