"""Modbus poller against the simulated meters over real loopback TCP."""

from __future__ import annotations

import asyncio
import itertools
import math
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from pymodbus.client import AsyncModbusTcpClient

from hems.contracts import READING_SCHEMA
from hems.services.manager import free_port
from ingest.modbus import (
    REJECT_NAN,
    REJECT_NEGATIVE_ENERGY,
    ModbusConfigError,
    ModbusPoller,
    PollerStats,
    load_config,
)
from ingest.register_maps import FieldSpec, RegisterMapError, load_map, parse_map
from ingest.simulator.fleet import Fleet
from ingest.simulator.modbus_server import MeterSpec, ModbusMeterServer

DT = AsyncModbusTcpClient.DATATYPE
F32_REL = 2.0**-23


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return Fleet.generate(n_households=4, seed=7)


class Collector:
    """Sink that records frames and when each device's reading arrived."""

    def __init__(self) -> None:
        self.frames: list[pl.DataFrame] = []
        self.arrivals: dict[str, list[float]] = {}

    def __call__(self, frame: pl.DataFrame) -> None:
        now = time.monotonic()
        self.frames.append(frame)
        for dev in frame["device_id"]:
            self.arrivals.setdefault(dev, []).append(now)

    def readings(self) -> pl.DataFrame:
        return pl.concat(self.frames) if self.frames else pl.DataFrame(schema=READING_SCHEMA)


async def poll_for(
    config: dict[str, Any],
    seconds: float,
    sink: Collector,
    on_reject: Callable[..., Any] | None = None,
    during: Callable[[], Any] | None = None,
) -> PollerStats:
    poller = ModbusPoller(config, sink, on_reject=on_reject)
    stop = asyncio.Event()
    task = asyncio.create_task(poller.run(stop))
    if during is not None:
        await during()
    else:
        await asyncio.sleep(seconds)
    stop.set()
    return await asyncio.wait_for(task, 5)


# --------------------------------------------------------------------------- codec
@pytest.mark.parametrize("type_", ["int16", "uint16", "int32", "uint32", "float32"])
@pytest.mark.parametrize("word_order", ["big", "little"])
@pytest.mark.parametrize("byte_order", ["big", "little"])
def test_codec_roundtrip(type_: str, word_order: Any, byte_order: Any) -> None:
    values = {
        "int16": [-32768, -1, 0, 1234, 32767],
        "uint16": [0, 1, 40000, 65535],
        "int32": [-(2**31), -5, 0, 123456789, 2**31 - 1],
        "uint32": [0, 1, 3_000_000_000, 2**32 - 1],
        "float32": [0.0, -1.5, 230.25, 12345.678, 1e-20],
    }[type_]
    spec = FieldSpec("x", 0, type=type_, word_order=word_order, byte_order=byte_order)
    for v in values:
        regs = spec.encode(v)
        assert all(0 <= r <= 0xFFFF for r in regs)
        back = spec.decode(regs)
        expected = struct.unpack(">f", struct.pack(">f", v))[0] if type_ == "float32" else v
        assert back == expected
        if byte_order == "big":  # independent oracle: pymodbus' own converter
            assert DT[type_.upper()] is not None
            oracle = AsyncModbusTcpClient.convert_from_registers(
                regs, DT[type_.upper()], word_order=word_order
            )
            assert oracle == pytest.approx(expected, rel=0, abs=0) if type_ != "float32" else oracle == back
        else:  # little byte order = bytes swapped inside each register
            swapped = [((r & 0xFF) << 8) | (r >> 8) for r in regs]
            plain = FieldSpec("x", 0, type=type_, word_order=word_order).decode(swapped)
            assert plain == back


def test_known_layouts_and_scale() -> None:
    # 230.0 as float32 is 0x43660000: ABCD, CDAB (word swap), BADC (byte swap), DCBA
    assert FieldSpec("v", 0).encode(230.0) == [0x4366, 0x0000]
    assert FieldSpec("v", 0, word_order="little").encode(230.0) == [0x0000, 0x4366]
    assert FieldSpec("v", 0, byte_order="little").encode(230.0) == [0x6643, 0x0000]
    assert FieldSpec("v", 0, word_order="little", byte_order="little").encode(230.0) == [0x0000, 0x6643]
    wh = FieldSpec("e", 0, type="uint32", scale=0.001, offset=0.0)  # Wh register → kWh
    assert wh.encode(12345.678) == [0x00BC, 0x614E]
    assert wh.decode([0x00BC, 0x614E]) == pytest.approx(12345.678)
    dv = FieldSpec("v", 0, type="int16", scale=0.1, offset=-10.0)
    assert dv.decode(dv.encode(229.9)) == pytest.approx(229.9)
    assert FieldSpec("pf", 0, absolute=True).decode(FieldSpec("pf", 0).encode(-0.9)) == pytest.approx(0.9)


def test_plan_groups_into_few_requests() -> None:
    sdm120, sdm630 = load_map("eastron_sdm120"), load_map("eastron_sdm630")
    assert [(b.address, b.count) for b in sdm120.plan()] == [(0x0000, 76)]
    assert [(b.address, b.count) for b in sdm630.plan()] == [(0x0000, 76)]
    everything = sdm120.plan(sdm120.fields)  # incl. 0x0156: beyond 125 registers → second request
    assert [(b.address, b.count) for b in everything] == [(0x0000, 76), (0x0156, 2)]
    tight = parse_map(
        {"max_gap": 0, "fields": {"a": {"address": 0, "canonical": "power_w"}, "b": {"address": 4}}}, name="t"
    )
    assert len(tight.plan(tight.fields)) == 2
    assert all(b.count <= 125 for b in everything)


# --------------------------------------------------------------------------- bad maps
BAD_MAPS = {
    "unknown type": ("fields:\n  volts: {address: 0, type: float16, canonical: voltage_v}\n", "float16"),
    "overlap": (
        "fields:\n  a: {address: 0, canonical: voltage_v}\n  b: {address: 1, canonical: current_a}\n",
        "overlaps",
    ),
    "missing address": ("fields:\n  volts: {canonical: voltage_v}\n", "missing 'address'"),
    "unknown canonical": ("fields:\n  volts: {address: 0, canonical: volts}\n", "unknown canonical"),
    "bad order": ("fields:\n  volts: {address: 0, word_order: middle}\n", "word_order"),
    "group without combine": (
        "fields:\n  a: {address: 0, canonical: voltage_v}\n  b: {address: 2, canonical: voltage_v}\n",
        "combine",
    ),
    "not yaml": ("fields: [unclosed\n", "not valid YAML"),
}


@pytest.mark.parametrize("case", sorted(BAD_MAPS))
def test_bad_map_gives_one_clear_error(tmp_path: Path, case: str) -> None:
    text, needle = BAD_MAPS[case]
    path = tmp_path / "broken_meter.yaml"
    path.write_text(text)
    with pytest.raises(RegisterMapError) as err:
        load_map(path)
    msg = str(err.value)
    assert "broken_meter.yaml" in msg and needle in msg and "\n" not in msg
    if case not in ("not yaml", "overlap", "group without combine"):
        assert "field " in msg


def test_bad_device_config(tmp_path: Path) -> None:
    cfg = tmp_path / "devices.yaml"
    dev = "{device_id: m1, household_id: h1, host: 127.0.0.1, map: eastron_sdm120}"
    cfg.write_text(f"devices:\n  - {dev}\n  - {dev}\n")
    with pytest.raises(ModbusConfigError, match=r"devices\.yaml.*appears twice"):
        load_config(cfg)
    cfg.write_text("devices:\n  - {device_id: m1, household_id: h1, host: h, map: x, unit_id: 300}\n")
    with pytest.raises(ModbusConfigError, match=r"devices\.0\.unit_id"):
        load_config(cfg)
    cfg.write_text(f"devices:\n  - {dev.replace('eastron_sdm120', 'no_such_meter')}\n")
    with pytest.raises(RegisterMapError, match="unknown register map 'no_such_meter'"):
        ModbusPoller(cfg, lambda f: None)


# --------------------------------------------------------------------------- polling
def test_polled_values_equal_what_the_server_encoded(fleet: Fleet) -> None:
    async def main() -> None:
        server = ModbusMeterServer(
            [MeterSpec(1, "eastron_sdm120"), MeterSpec(2, "eastron_sdm630")], fleet=fleet
        )
        async with server:
            sink = Collector()
            cfg = {"interval_s": 0.1, "timeout_s": 1.0, "devices": server.device_configs()}
            stats = await poll_for(cfg, 0.55, sink)
            readings = sink.readings()
            assert readings.schema == pl.Schema(READING_SCHEMA)
            for uid in (1, 2):
                dev = server.device_configs()[uid - 1]["device_id"]
                rows = readings.filter(pl.col("device_id") == dev)
                assert rows.height >= 3 and stats.devices[dev].polls_ok == rows.height
                assert set(rows["device_type"]) == {"smart_meter"}
                ts_ms = rows["ts"].dt.epoch("ms")
                assert (ts_ms % 100 == 0).all()  # aligned to the 0.1 s interval
                expected, source = server.expected(uid), server.source_values(uid)
                last = rows.row(-1, named=True)
                for name, value in expected.items():
                    assert last[name] == value, name  # bit-exact decode of what was encoded
                    assert last[name] == pytest.approx(source[name], rel=4 * F32_REL, abs=1e-6), name

    asyncio.run(main())


def test_energy_registers_are_monotonic(fleet: Fleet) -> None:
    async def main() -> None:
        server = ModbusMeterServer(
            [MeterSpec(1, "eastron_sdm120"), MeterSpec(2, "eastron_sdm630")], fleet=fleet
        )
        async with server:
            sink = Collector()

            async def advance() -> None:
                for _ in range(12):
                    await asyncio.sleep(0.1)
                    server.advance(45)  # 45 simulated minutes per step (crosses midnight too)

            cfg = {"interval_s": 0.1, "timeout_s": 1.0, "devices": server.device_configs()}
            await poll_for(cfg, 0, sink, during=advance)
            for _, rows in sink.readings().sort("ts").group_by("device_id"):
                imp = rows["energy_import_kwh"].to_list()
                assert len(imp) >= 8
                assert all(b >= a for a, b in itertools.pairwise(imp))
                assert imp[-1] > imp[0]
                exp = rows["energy_export_kwh"].to_list()
                assert all(b >= a for a, b in itertools.pairwise(exp))

    asyncio.run(main())


def test_slow_and_dead_devices_do_not_delay_a_healthy_one(fleet: Fleet) -> None:
    interval = 0.2

    async def main() -> None:
        server = ModbusMeterServer(
            [
                MeterSpec(1, "eastron_sdm120"),
                MeterSpec(2, "eastron_sdm120", delay_s=1.0),  # answers after the 0.3 s timeout
                MeterSpec(3, "eastron_sdm630", dead=True),  # never answers
            ],
            fleet=fleet,
        )
        async with server:
            devices = server.device_configs()
            devices.append(
                {"device_id": "unplugged", "household_id": "hh-x", "host": "127.0.0.1",
                 "port": free_port(), "map": "eastron_sdm120"}
            )  # fmt: skip
            cfg = {
                "interval_s": interval,
                "timeout_s": 0.3,
                "backoff_initial_s": 0.0,  # retry every tick: the harshest case for the others
                "devices": devices,
            }
            sink = Collector()
            stats = await poll_for(cfg, 3.0, sink)
        healthy, slow, dead = (d["device_id"] for d in devices[:3])
        arrivals = sink.arrivals[healthy]
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        assert len(arrivals) >= 13, stats.devices[healthy]
        assert max(gaps) <= 1.5 * interval, gaps
        ts = sink.readings().filter(pl.col("device_id") == healthy)["ts"].dt.epoch("ms").to_list()
        assert all(b - a == 200 for a, b in itertools.pairwise(ts))  # no tick skipped
        assert stats.devices[healthy].polls_failed == 0
        for dev in (slow, dead):
            st = stats.devices[dev]
            assert st.polls_ok == 0 and st.polls_failed >= 3 and "timeout" in (st.last_error or "")
        assert stats.devices["unplugged"].polls_failed >= 3
        assert "cannot connect" in (stats.devices["unplugged"].last_error or "")
        assert set(sink.arrivals) == {healthy}

    asyncio.run(main())


def test_reconnects_after_server_restart(fleet: Fleet) -> None:
    async def main() -> None:
        server = ModbusMeterServer([MeterSpec(1, "eastron_sdm120")], fleet=fleet)
        dev = server.device_configs()[0]["device_id"]
        cfg = {
            "interval_s": 0.1,
            "timeout_s": 0.3,
            "backoff_initial_s": 0.05,
            "backoff_max_s": 0.2,
            "devices": server.device_configs(),
        }
        sink = Collector()
        poller = ModbusPoller(cfg, sink)
        stop = asyncio.Event()
        await server.start()
        task = asyncio.create_task(poller.run(stop))
        await asyncio.sleep(0.5)
        st = poller.stats.devices[dev]
        before = st.polls_ok
        assert before >= 3
        await server.stop()
        await asyncio.sleep(0.6)
        assert st.polls_failed >= 1
        ok_while_down = st.polls_ok
        await server.start()
        await asyncio.sleep(0.8)
        stop.set()
        await asyncio.wait_for(task, 5)
        await server.stop()
        assert st.polls_ok >= ok_while_down + 3, st
        assert st.connects >= 2 and st.consecutive_failures == 0

    asyncio.run(main())


def test_nan_and_negative_energy_are_rejected_with_a_reason(fleet: Fleet) -> None:
    async def main() -> None:
        server = ModbusMeterServer(
            [MeterSpec(1, "eastron_sdm120"), MeterSpec(2, "eastron_sdm630")], fleet=fleet
        )
        server.set_override(1, "voltage", math.nan)
        server.set_override(1, "import_active_energy", -3.0)
        server.set_override(2, "phase2_voltage", math.inf)
        rejects: list[tuple[str, str, float, str]] = []
        async with server:
            sink = Collector()
            cfg = {"interval_s": 0.1, "timeout_s": 1.0, "devices": server.device_configs()}
            stats = await poll_for(cfg, 0.35, sink, on_reject=lambda *a: rejects.append(a))
        d1, d2 = (d["device_id"] for d in server.device_configs())
        got = {(d, f, r) for d, f, _, r in rejects}
        assert got == {
            (d1, "voltage_v", REJECT_NAN),
            (d1, "energy_import_kwh", REJECT_NEGATIVE_ENERGY),
            (d2, "voltage_v", "infinite"),
        }
        assert any(v == -3.0 for _, f, v, _ in rejects if f == "energy_import_kwh")
        assert stats.devices[d1].rejects >= 2
        readings = sink.readings()
        assert readings["voltage_v"].null_count() == readings.height  # rejected: null, not dropped
        assert readings.filter(pl.col("device_id") == d1)["energy_import_kwh"].null_count() > 0
        assert readings["power_w"].null_count() == 0  # the rest of the reading still flows

    asyncio.run(main())
