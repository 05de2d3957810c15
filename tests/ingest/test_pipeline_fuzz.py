"""Property-based fuzzing: random and mutated payloads never make `prepare` raise, and every
reading is either valid or rejected with a known reason code."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hems.settings import Settings
from ingest.pipeline import REASONS, IngestPipeline, Message

NOW = datetime(2025, 7, 1, 12, 5, tzinfo=UTC)
TOPIC = "hems/v1/hh-1/hh-1-meter/telemetry"
PIPE = IngestPipeline(None, None, settings=Settings(), clock=lambda: NOW)  # type: ignore[arg-type]
CODES = {r.split(":")[0] for r in REASONS}
FIELDS = [
    "ts",
    "device_type",
    "power_w",
    "power_kw",
    "energy_import_kwh",
    "energy_import_wh",
    "voltage_v",
    "current_a",
    "power_factor",
    "solar_power_w",
    "temperature_c",
    "humidity_pct",
    "co2_ppm",
    "air_quality_index",
    "household_id",
    "device_id",
    "junk",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(
        [
            "2025-07-01T21:00:00+09:00",
            "2025-07-01T12:00:00Z",
            "smart_meter",
            "env_sensor",
            "solar_inverter",
            "smart_plug",
            "hh-1",
            "hh-1-meter",
        ]
    ),
    st.sampled_from([1751371200, 1751371200000, 0, -1, 10**20]),
)
values = st.recursive(
    scalars,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=5,
)
readings = st.dictionaries(st.sampled_from(FIELDS), values, max_size=10)
payload_objs = st.one_of(readings, st.lists(st.one_of(readings, scalars), max_size=5), values)


def check(payloads: list[bytes], topic: str = TOPIC) -> None:
    prepared = PIPE.prepare([Message(topic, p, NOW) for p in payloads])
    rejects = prepared.rejects
    assert rejects["reason"].null_count() == 0
    assert {r.split(":")[0] for r in rejects["reason"].unique()} <= CODES
    # every message is accounted for: some valid reading or a reject points at it
    valid_n = prepared.valid.height + prepared.stats.duplicates
    assert valid_n + rejects.height == prepared.stats.readings
    seen = set(rejects["index"].to_list())
    for i, p in enumerate(payloads):
        try:
            body = orjson.loads(p)
        except orjson.JSONDecodeError:
            assert i in seen
            continue
        if body == [] or not isinstance(body, (list, dict)):
            assert i in seen


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(payload_objs, min_size=1, max_size=8))
def test_random_structured_payloads(objs: list) -> None:
    check([json.dumps(o).encode() for o in objs])


GOOD = orjson.dumps(
    {
        "ts": "2025-07-01T21:00:00+09:00",
        "device_type": "smart_meter",
        "power_w": 412.5,
        "energy_import_kwh": 12345.678,
        "voltage_v": 220.4,
        "power_factor": 0.96,
    }
)


@settings(max_examples=600, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.binary(max_size=4)), max_size=4),
    st.binary(max_size=20),
)
def test_mutated_bytes(mutations: list[tuple[int, bytes]], junk: bytes) -> None:
    data = bytearray(GOOD)
    for pos, b in mutations:
        data[pos : pos + len(b)] = b
    check([bytes(data), junk, GOOD])


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60))
def test_random_topics(topic: str) -> None:
    check([GOOD], topic=topic)
