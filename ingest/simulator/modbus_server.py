"""A Modbus TCP server that looks like a row of Eastron meters fed by the household simulator.

Why: the poller must be tested against real TCP and real register encodings, not mocks.  Each
unit id is one meter of one simulated household; its input registers are encoded with the same
register map the poller decodes, and :meth:`ModbusMeterServer.advance` moves every meter one
simulated minute on (power, voltage, current, PF and the cumulative import/export registers).
A unit can be made slow (``delay_s``) or dead (never answers) to test the poller's isolation.

    server = ModbusMeterServer([MeterSpec(1, "eastron_sdm120"), MeterSpec(2, "eastron_sdm630")])
    await server.start()            # 127.0.0.1 on a free port: server.port
    server.advance()                # one simulated minute later
    await server.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import polars as pl
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from hems.services.manager import free_port
from ingest.register_maps import RegisterMap, load_map
from ingest.simulator.engine import SimState, simulate_days
from ingest.simulator.fleet import Fleet

log = logging.getLogger(__name__)

_METER_FIELDS = (
    "power_w",
    "energy_import_kwh",
    "energy_export_kwh",
    "voltage_v",
    "current_a",
    "power_factor",
)
#: relative spread of the three phases (sums to 0, so mean and sum are kept)
_PHASE_IMBALANCE = (0.02, -0.005, -0.015)
GRID_HZ = 60.0  # Korea


@dataclass
class MeterSpec:
    """One served meter: its unit id, register map and household (index into the fleet)."""

    unit_id: int
    map: str = "eastron_sdm120"
    household: int | None = None  # default: unit order
    delay_s: float = 0.0  # answer this much later (a slow meter)
    dead: bool = False  # never answer (a hung meter behind a live gateway)


@dataclass
class _Unit:
    spec: MeterSpec
    rmap: RegisterMap
    household_id: str
    image: list[int]
    values: dict[str, float] = field(default_factory=dict)  # canonical values last encoded
    overrides: dict[str, float] = field(default_factory=dict)  # register field → forced value


class ModbusMeterServer:
    """Serves simulated meters; start/stop in-process (tests) or run forever (CLI)."""

    def __init__(
        self,
        meters: list[MeterSpec],
        *,
        fleet: Fleet | None = None,
        start: date = date(2025, 7, 1),
        start_minute: int = 12 * 60,
        host: str = "127.0.0.1",
        port: int | None = None,
        tick_s: float | None = None,
        seed: int = 42,
    ) -> None:
        if not meters:
            raise ValueError("give at least one MeterSpec")
        ids = [m.unit_id for m in meters]
        if len(set(ids)) != len(ids) or not all(1 <= i <= 247 for i in ids):
            raise ValueError(f"unit ids must be unique and within 1..247, got {ids}")
        households = [m.household if m.household is not None else i for i, m in enumerate(meters)]
        self.fleet = fleet or Fleet.generate(n_households=max(households) + 1, seed=seed)
        self.host, self.port = host, port or free_port(host)
        self.tick_s = tick_s
        self._start = start
        self._state: SimState | None = None
        self._day: dict[str, list[dict[str, float]]] = {}
        self._minute = start_minute
        self._server: ModbusTcpServer | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._release = asyncio.Event()
        maps: dict[str, RegisterMap] = {}
        self.units: dict[int, _Unit] = {}
        hh_ids = self.fleet.household_ids
        for m, h in zip(meters, households, strict=True):
            rmap = maps.setdefault(m.map, load_map(m.map))
            self.units[m.unit_id] = _Unit(m, rmap, hh_ids[h], [0] * rmap.extent())
        self._load_day()
        self._encode_all()

    # ---------------------------------------------------------------- simulation
    def _load_day(self) -> None:
        """Simulate the next local day (continuing the registers) and index meter rows by household."""
        if self._state is None:
            chunks = simulate_days(self.fleet, self._start, 1)
        else:
            chunks = simulate_days(self.fleet, state=self._state, days=1)
        meter = []
        for chunk in chunks:
            meter.append(chunk.readings.filter(pl.col("device_type") == "smart_meter"))
            if chunk.state is not None:
                self._state = chunk.state
        frame = pl.concat(meter).sort("household_id", "ts")
        frame = frame.filter(pl.col("ts") < pl.col("ts").max())  # drop the next-midnight boundary row
        wanted = {u.household_id for u in self.units.values()}
        self._day = {
            hh: part.select(_METER_FIELDS).to_dicts()
            for (hh,), part in frame.filter(pl.col("household_id").is_in(list(wanted))).group_by(
                "household_id"
            )
        }

    def advance(self, minutes: int = 1) -> None:
        """Move every meter ``minutes`` simulated minutes on and re-encode its registers."""
        for _ in range(minutes):
            self._minute += 1
            if self._minute >= len(next(iter(self._day.values()))):
                self._minute = 0
                self._load_day()
        self._encode_all()

    def _encode_all(self) -> None:
        for unit in self.units.values():
            row = self._day[unit.household_id][self._minute]
            unit.values = {k: float(v) for k, v in row.items() if v is not None}
            self._encode(unit)

    def _encode(self, unit: _Unit) -> None:
        image = unit.rmap.encode(unit.values, _PHASE_IMBALANCE)
        for spec in unit.rmap.fields:
            if spec.canonical is None:  # diagnostic registers a real meter also has
                extra = _extra_value(spec.name, unit.values)
                if extra is not None:
                    image.update(enumerate(spec.encode(extra), start=spec.address))
            if spec.name in unit.overrides:
                image.update(enumerate(spec.encode(unit.overrides[spec.name]), start=spec.address))
        for addr, reg in image.items():
            unit.image[addr] = reg

    # ---------------------------------------------------------------- test controls
    def set_override(self, unit_id: int, field_name: str, value: float | None) -> None:
        """Force a register field to ``value`` (e.g. NaN); None removes the override."""
        unit = self.units[unit_id]
        if field_name not in {f.name for f in unit.rmap.fields}:
            raise KeyError(f"{unit.rmap.name} has no field {field_name!r}")
        if value is None:
            unit.overrides.pop(field_name, None)
        else:
            unit.overrides[field_name] = value
        self._encode(unit)

    def set_delay(self, unit_id: int, delay_s: float) -> None:
        self.units[unit_id].spec.delay_s = delay_s

    def set_dead(self, unit_id: int, dead: bool = True) -> None:
        self.units[unit_id].spec.dead = dead

    def expected(self, unit_id: int) -> dict[str, float]:
        """Canonical values as the registers now encode them (float32-rounded, phases combined)."""
        unit = self.units[unit_id]
        values = {
            f.name: f.decode([unit.image[a] for a in range(f.address, f.end)]) for f in unit.rmap.polled
        }
        return unit.rmap.combine(values)

    def source_values(self, unit_id: int) -> dict[str, float]:
        """The simulator's own (float64) canonical values behind the registers."""
        return dict(self.units[unit_id].values)

    def device_configs(self, **extra: Any) -> list[dict[str, Any]]:
        """Poller device entries for every served meter (``extra`` is merged into each)."""
        return [
            {
                "device_id": f"{u.household_id}-meter-u{uid}",
                "household_id": u.household_id,
                "host": self.host,
                "port": self.port,
                "unit_id": uid,
                "map": u.rmap.name,
                **extra,
            }
            for uid, u in self.units.items()
        ]

    # ---------------------------------------------------------------- serving
    async def _action(
        self,
        unit_id: int,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: Any,
    ) -> ExcCodes | None:
        unit = self.units[unit_id]
        if unit.spec.dead:
            await self._release.wait()  # hold the request until shutdown: the client times out
            return ExcCodes.DEVICE_BUSY
        if unit.spec.delay_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), unit.spec.delay_s)
        if function_code != unit.rmap.function_code:
            return ExcCodes.ILLEGAL_FUNCTION
        registers[: len(unit.image)] = unit.image  # index 0 is start_address (0)
        return None

    async def start(self) -> None:
        """Listen on ``host:port`` (returns once listening); restartable after :meth:`stop`."""
        self._release = asyncio.Event()
        devices = [
            SimDevice(
                uid,
                simdata=SimData(0, count=len(u.image) + 1, values=0, datatype=DataType.REGISTERS),
                action=functools.partial(self._action, uid),
            )
            for uid, u in self.units.items()
        ]
        self._server = ModbusTcpServer(devices, address=(self.host, self.port))
        await self._server.serve_forever(background=True)
        if self.tick_s:
            self._ticker = asyncio.create_task(self._tick(self.tick_s))

    async def _tick(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            self.advance()

    async def stop(self) -> None:
        self._release.set()
        if self._ticker:
            self._ticker.cancel()
            self._ticker = None
        if self._server is not None:
            await self._server.shutdown()
            self._server = None
        await asyncio.sleep(0)  # let held requests finish before the loop moves on

    async def __aenter__(self) -> ModbusMeterServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def serve_forever(self, stop_event: asyncio.Event | None = None) -> None:
        """Run until ``stop_event`` is set or the task is cancelled (the CLI path)."""
        await self.start()
        try:
            await (stop_event or asyncio.Event()).wait()
        finally:
            await self.stop()


def _extra_value(name: str, values: dict[str, float]) -> float | None:
    """Values of registers that feed no canonical field, so the served image is complete."""
    if "frequency" in name:
        return GRID_HZ
    if "total" in name and "energy" in name:
        return values.get("energy_import_kwh", 0.0) + values.get("energy_export_kwh", 0.0)
    return None


def sdm_row(n: int, maps: tuple[str, ...] = ("eastron_sdm120", "eastron_sdm630")) -> Iterator[MeterSpec]:
    """``n`` meters on unit ids 1..n, cycling through ``maps`` (household i on unit i+1)."""
    for i in range(n):
        yield MeterSpec(i + 1, maps[i % len(maps)], household=i)


def run_server(
    meters: int = 2,
    *,
    host: str = "127.0.0.1",
    port: int = 5020,
    tick_s: float = 1.0,
    seed: int = 42,
    devices_yaml: str | None = None,
) -> None:
    """Blocking entry for a CLI: serve ``meters`` simulated SDM120/SDM630 meters until Ctrl-C.

    ``devices_yaml`` writes a ready poller config for them (``hems ingest modbus --config``).
    """
    import signal
    from pathlib import Path

    import yaml  # type: ignore[import-untyped]

    async def main() -> None:
        server = ModbusMeterServer(list(sdm_row(meters)), host=host, port=port, tick_s=tick_s, seed=seed)
        if devices_yaml:
            doc = {"interval_s": 5.0, "timeout_s": 1.0, "devices": server.device_configs()}
            Path(devices_yaml).write_text(yaml.safe_dump(doc, sort_keys=False))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        log.info("serving %d simulated meters on %s:%d", meters, host, server.port)
        await server.serve_forever(stop)

    asyncio.run(main())


__all__ = ["GRID_HZ", "MeterSpec", "ModbusMeterServer", "run_server", "sdm_row"]
