"""Injected faults do exactly what their log says, and nothing else."""

from __future__ import annotations

import json
from datetime import date

import orjson
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ingest.simulator import Fleet, simulate
from ingest.simulator.faults import FAULT_LOG_SCHEMA, FaultPlan, inject_faults, malformed_payloads

KEY = ["device_id", "ts"]


@pytest.fixture(scope="module")
def clean() -> pl.DataFrame:
    return simulate(Fleet.generate(12, seed=3), date(2025, 5, 1), 2, freq_minutes=5).readings


def window(frame: pl.DataFrame, device_id: str, start, end) -> pl.DataFrame:
    return frame.filter((pl.col("device_id") == device_id) & pl.col("ts").is_between(start, end)).sort("ts")


def test_value_faults_match_their_log(clean):
    plan = FaultPlan(gaps=2, counter_resets=2, meter_swaps=1, spikes=3)
    result = inject_faults(clean, plan, seed=7)
    out, log = result.readings, result.log
    assert log.schema == pl.Schema(FAULT_LOG_SCHEMA)
    assert log["kind"].value_counts().sort("kind").rows() == [
        ("counter_reset", 2),
        ("gap", 2),
        ("meter_swap", 1),
        ("spike", 3),
    ]
    assert "arrival" not in out.columns and out.columns == clean.columns
    # faults never overlap on a device
    spans = log.sort("device_id", "ts_start")
    spans = spans.with_columns(prev_end=pl.col("ts_end").shift(1).over("device_id"))
    assert (spans["prev_end"].is_null() | (spans["prev_end"] < spans["ts_start"])).all()

    touched: set[str] = set()
    for row in log.iter_rows(named=True):
        details = json.loads(row["details"])
        dev, start, end = row["device_id"], row["ts_start"], row["ts_end"]
        before = window(clean, dev, start, end)
        touched.add(dev)
        if row["kind"] == "gap":
            assert window(out, dev, start, end).height == 0
            assert before.height == row["rows"] > 0
        elif row["kind"] == "counter_reset":
            after = window(out, dev, start, end)
            assert after["energy_import_kwh"][0] == pytest.approx(details["import_after_kwh"])
            assert before["energy_import_kwh"][0] == pytest.approx(details["import_before_kwh"])
            assert after["energy_import_kwh"][0] < 1.0 < details["import_before_kwh"]
            assert after["energy_import_kwh"].diff().drop_nulls().min() >= 0  # counts on from near zero
            assert after.height == row["rows"]
        elif row["kind"] == "meter_swap":
            assert window(out, dev, start, end).height == 0  # the old meter is gone from then on
            new = window(out, details["new_device_id"], start, end)
            assert new.height == row["rows"] and new["ts"].min() == start
            assert new["energy_import_kwh"][0] == pytest.approx(details["import_after_kwh"])
            assert window(out, dev, clean["ts"].min(), start)["ts"].max() < start
            touched.add(details["new_device_id"])
        elif row["kind"] == "spike":
            got = window(out, dev, start, start)
            assert got.height == 1 == row["rows"]
            assert got[details["field"]][0] == pytest.approx(details["value"])
            assert before[details["field"]][0] == pytest.approx(details["original"])
            assert details["value"] - details["original"] >= 1e4
    # every other device is untouched
    untouched = lambda f: f.filter(~pl.col("device_id").is_in(touched)).sort(KEY)  # noqa: E731
    assert_frame_equal(untouched(out), untouched(clean))


def test_duplicates_and_arrival_order_match_their_log(clean):
    plan = FaultPlan(duplicates=2, late=3, out_of_order=2)
    result = inject_faults(clean, plan, seed=11)
    out, log = result.readings, result.log
    dups = log.filter(pl.col("kind") == "duplicate")
    assert out.height == clean.height + dups["rows"].sum()
    counts = out.group_by(KEY).len()
    doubled = counts.filter(pl.col("len") > 1)
    assert doubled.height == dups["rows"].sum() and (doubled["len"] == 2).all()
    # rows arrive in arrival order, which is not time order any more
    assert out["arrival"].is_sorted()
    assert not out.sort("arrival")["ts"].is_sorted()
    for row in log.filter(pl.col("kind") == "late").iter_rows(named=True):
        delay = json.loads(row["details"])["delay_minutes"]
        rows = window(out, row["device_id"], row["ts_start"], row["ts_end"])
        late = rows.filter((pl.col("arrival") - pl.col("ts")).dt.total_minutes() >= delay)
        assert late.height == row["rows"] and (late["arrival"] >= row["ts_end"]).all()
    for row in log.filter(pl.col("kind") == "out_of_order").iter_rows(named=True):
        pair = window(out, row["device_id"], row["ts_start"], row["ts_end"])
        first = pair.filter(pl.col("ts") == row["ts_start"])["arrival"].max()
        second = pair.filter(pl.col("ts") == row["ts_end"])["arrival"].min()
        assert first > second
    # values are untouched by reordering and duplication
    assert_frame_equal(out.drop("arrival").unique().sort(KEY), clean.unique().sort(KEY))


def test_faults_are_reproducible_and_validated(clean):
    a = inject_faults(clean, seed=3, gaps=1, spikes=1, late=1)
    b = inject_faults(clean, seed=3, gaps=1, spikes=1, late=1)
    assert_frame_equal(a.log, b.log)
    assert_frame_equal(a.readings, b.readings)
    assert inject_faults(clean, seed=3).log.is_empty()
    with pytest.raises(ValueError, match="non-negative"):
        FaultPlan(gaps=-1)
    with pytest.raises(ValueError, match="gap_minutes"):
        FaultPlan(gaps=1, gap_minutes=(0, 5))
    with pytest.raises(ValueError, match="unknown device types"):
        FaultPlan(device_types=("toaster",))
    with pytest.raises(ValueError, match="no readings"):
        inject_faults(clean.filter(pl.col("device_type") == "env_sensor"), gaps=1)
    with pytest.raises(ValueError, match="unknown fault options"):
        inject_faults(clean, gapz=1)
    with pytest.raises(ValueError, match="either"):
        inject_faults(clean, FaultPlan(gaps=1), gaps=2)


def test_plug_registers_can_be_faulted_too(clean):
    result = inject_faults(clean, FaultPlan(counter_resets=1, device_types=("smart_plug",)), seed=1)
    (row,) = result.log.iter_rows(named=True)
    assert row["device_id"].endswith(("-plug-fridge", "-plug-washer"))
    after = window(result.readings, row["device_id"], row["ts_start"], row["ts_end"])
    assert after["energy_import_kwh"][0] < 1.0


def test_malformed_payloads_are_malformed_for_the_stated_reason():
    bad = malformed_payloads("hh-00001", prefix="hems_test/v1")
    kinds = {b.kind for b in bad}
    assert {
        "invalid_json",
        "missing_ts",
        "wrong_type",
        "out_of_range_voltage",
        "unknown_device_type",
        "empty",
        "naive_ts",
    } <= kinds
    for b in bad:
        if b.reason == "bad_topic":
            assert b.topic.count("/") != "hems_test/v1/hh-00001/hh-00001-meter/telemetry".count("/")
            continue
        assert b.topic == "hems_test/v1/hh-00001/hh-00001-meter/telemetry"
        if b.reason in ("invalid_json", "empty_payload"):
            with pytest.raises(orjson.JSONDecodeError):
                orjson.loads(b.payload)
            continue
        body = orjson.loads(b.payload)
        if b.reason == "not_an_object":
            assert not isinstance(body, dict)
        elif b.reason.startswith("missing_field:"):
            assert b.reason.split(":")[1] not in body
        elif b.reason == "invalid_ts":
            assert "+" not in body["ts"] and "Z" not in body["ts"]
        elif b.reason == "unknown_device_type":
            assert body["device_type"] not in ("smart_meter", "smart_plug", "solar_inverter", "env_sensor")
        elif b.reason.startswith("wrong_type:"):
            assert isinstance(body[b.reason.split(":")[1]], str)
        elif b.reason.startswith("out_of_range:"):
            field = b.reason.split(":")[1]
            lo, hi = {
                "power_w": (0, 1e5),
                "voltage_v": (180, 260),
                "power_factor": (0, 1),
                "humidity_pct": (0, 100),
            }[field]
            assert not lo <= body[field] <= hi
        elif b.reason == "no_fields":
            assert set(body) == {"ts", "device_type"}
    with pytest.raises(ValueError, match="unknown malformed payload kinds"):
        malformed_payloads(kinds=["nope"], prefix="x/v1")
