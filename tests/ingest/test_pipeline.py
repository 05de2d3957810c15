"""The pipeline's normalization and each validation reason, on plain messages (no services)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import polars as pl
import pytest

from hems.errors import ServiceUnavailable
from hems.settings import Profile, Settings
from hems.stores.raw_parquet import ParquetRawStore
from ingest.pipeline import IngestPipeline, IngestSettings, Message
from ingest.simulator.faults import malformed_payloads

NOW = datetime(2025, 7, 1, 12, 5, tzinfo=UTC)
TOPIC = "hems/v1/hh-1/hh-1-meter/telemetry"


@pytest.fixture
def pipe() -> IngestPipeline:
    return IngestPipeline(None, None, settings=Settings(), clock=lambda: NOW)  # type: ignore[arg-type]


def one(pipe: IngestPipeline, body: object, topic: str = TOPIC) -> tuple[pl.DataFrame, pl.DataFrame]:
    payload = body if isinstance(body, bytes) else orjson.dumps(body)
    prepared = pipe.prepare([Message(topic, payload, NOW)])
    return prepared.valid, prepared.rejects


def meter(**fields: object) -> dict:
    return {"ts": "2025-07-01T21:00:00+09:00", "device_type": "smart_meter", **fields}


def test_units_are_normalized(pipe: IngestPipeline) -> None:
    valid, rejects = one(pipe, meter(power_kw=1.5, energy_import_wh=12_345.0, energy_export_wh=10.0))
    assert rejects.is_empty()
    row = valid.row(0, named=True)
    assert row["power_w"] == 1500.0
    assert row["energy_import_kwh"] == pytest.approx(12.345)
    assert row["energy_export_kwh"] == pytest.approx(0.01)
    # the canonical field wins when both are sent
    valid, _ = one(pipe, meter(power_w=7.0, power_kw=9.0))
    assert valid["power_w"].item() == 7.0


@pytest.mark.parametrize(
    "ts",
    [
        "2025-07-01T21:00:00+09:00",
        "2025-07-01T12:00:00Z",
        "2025-07-01T12:00:00.000+00:00",
        "2025-07-01 07:00:00-05:00",
        1751371200000,  # epoch ms
        1751371200,  # epoch s
        1751371200.0,
    ],
)
def test_timestamps_are_utc(pipe: IngestPipeline, ts: object) -> None:
    valid, rejects = one(pipe, {"ts": ts, "device_type": "smart_meter", "power_w": 1.0})
    assert rejects.is_empty(), rejects
    assert valid["ts"].item() == datetime(2025, 7, 1, 12, 0, tzinfo=UTC)


def test_millisecond_precision_is_kept(pipe: IngestPipeline) -> None:
    valid, _ = one(pipe, meter(ts="2025-07-01T12:00:00.123Z", power_w=1.0))
    assert valid["ts"].item() == datetime(2025, 7, 1, 12, 0, 0, 123_000, tzinfo=UTC)


def test_arrays_duplicates_last_wins_and_unknown_fields_counted(pipe: IngestPipeline) -> None:
    body = [meter(power_w=1.0, firmware="1.2"), meter(power_w=2.0), meter(ts=1751371260000, power_w=3.0)]
    prepared = pipe.prepare([Message(TOPIC, orjson.dumps(body), NOW)])
    assert prepared.valid.sort("ts")["power_w"].to_list() == [2.0, 3.0]
    assert prepared.stats.duplicates == 1
    assert prepared.stats.unknown_fields == Counter({"firmware": 1})
    assert prepared.valid["household_id"].unique().to_list() == ["hh-1"]
    assert prepared.valid["device_id"].unique().to_list() == ["hh-1-meter"]


def test_simulator_malformed_payloads_get_their_reasons(pipe: IngestPipeline) -> None:
    cases = malformed_payloads("hh-1", prefix="hems/v1", ts=NOW)
    prepared = pipe.prepare([Message(c.topic, c.payload, NOW) for c in cases])
    assert prepared.valid.is_empty()
    got: dict[int, set[str]] = {}
    for r in prepared.rejects.iter_rows(named=True):
        got.setdefault(r["index"], set()).add(r["reason"])
    for i, case in enumerate(cases):
        assert got.get(i) == {case.reason}, case.kind


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (meter(power_w=-1.0), "out_of_range:power_w"),
        ({**meter(power_w=5_000.0), "device_type": "smart_plug"}, "out_of_range:power_w"),
        (meter(voltage_v=179.0), "out_of_range:voltage_v"),
        (meter(voltage_v=261.0), "out_of_range:voltage_v"),
        (meter(power_factor=-0.1), "out_of_range:power_factor"),
        (meter(energy_import_kwh=-0.5), "out_of_range:energy_import_kwh"),
        (meter(energy_export_wh=-5), "out_of_range:energy_export_kwh"),
        ({"ts": 1751371200, "device_type": "env_sensor", "humidity_pct": 101}, "out_of_range:humidity_pct"),
        ({"ts": 1751371200, "device_type": "env_sensor", "power_w": 10}, "no_fields"),
        (meter(power_w=True), "wrong_type:power_w"),
        (meter(power_w=[1]), "wrong_type:power_w"),
        ({"ts": 1751371200, "device_type": 3, "power_w": 1}, "wrong_type:device_type"),
        (meter(ts=True, power_w=1.0), "invalid_ts"),
        (meter(ts="2025-07-01T12:20:00Z", power_w=1.0), "ts_in_future"),
        (meter(ts="2025-05-01T12:00:00Z", power_w=1.0), "ts_too_old"),
        (meter(household_id="hh-2", power_w=1.0), "topic_mismatch"),
        (b"[]", "empty_payload"),
        (b"  ", "empty_payload"),
    ],
)
def test_each_reason(pipe: IngestPipeline, body: object, reason: str) -> None:
    valid, rejects = one(pipe, body)
    assert valid.is_empty()
    assert rejects["reason"].to_list() == [reason]
    assert rejects["topic"].item() == TOPIC


@pytest.mark.parametrize(
    "topic", ["hems/v1/hh-1/telemetry", "other/hh-1/d/telemetry", "hems/v1/hh 1/d/telemetry"]
)
def test_bad_topic(pipe: IngestPipeline, topic: str) -> None:
    _, rejects = one(pipe, meter(power_w=1.0), topic=topic)
    assert rejects["reason"].to_list() == ["bad_topic"]


def test_time_bounds_are_configurable() -> None:
    pipe = IngestPipeline(
        None,  # type: ignore[arg-type]
        None,
        settings=Settings(),
        ingest_settings=IngestSettings(max_age_days=365, max_future_s=3_600),
    )
    valid, rejects = one(pipe, meter(ts="2025-05-01T12:00:00Z", power_w=1.0))
    assert rejects.is_empty() and valid.height == 1


def test_process_readings_for_frames_and_write(tmp_path: Path) -> None:
    settings = Settings(profile=Profile.local, data_dir=tmp_path)
    seen: list[int] = []
    pipe = IngestPipeline(
        ParquetRawStore(tmp_path / "raw"),
        None,
        settings=settings,
        clock=lambda: NOW,
        on_valid=lambda f: seen.append(f.height),
    )
    frame = pl.DataFrame(
        {
            "ts": [NOW - timedelta(minutes=1), NOW],
            "household_id": ["hh-1", "hh-1"],
            "device_id": ["m", "m"],
            "device_type": ["smart_meter", "smart_meter"],
            "power_w": [100.0, -3.0],
        }
    )
    result = pipe.process_readings(frame, source="modbus")
    assert (result.written, result.rejected) == (1, 1)
    assert seen == [1]
    stored = ParquetRawStore(tmp_path / "raw").read_readings(
        NOW - timedelta(hours=1), NOW + timedelta(hours=1)
    )
    assert stored["power_w"].to_list() == [100.0]


def test_write_failure_is_service_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    pipe = IngestPipeline(ParquetRawStore(blocker / "raw"), None, settings=Settings(), clock=lambda: NOW)
    with pytest.raises(ServiceUnavailable):
        pipe.process_messages([Message(TOPIC, orjson.dumps(meter(power_w=1.0)), NOW)])


@pytest.mark.parametrize(
    "ts", ["-1e20", "1e20", "1e16", "-1e16", "9223372036854775808", "-9223372036854775809", "1e308"]
)
def test_absurd_epoch_is_rejected_not_a_crash(pipe: IngestPipeline, ts: str) -> None:
    """An epoch far outside any calendar once panicked inside Polars and stalled the worker."""
    good = orjson.dumps(meter(power_w=5.0))
    bad = b'{"ts": ' + ts.encode() + b', "device_type": "smart_meter", "power_w": 1.0}'
    prepared = pipe.prepare([Message(TOPIC, bad, NOW), Message(TOPIC, good, NOW)])
    assert prepared.valid.height == 1
    assert prepared.rejects["reason"].to_list() == ["invalid_ts"]
