"""Raw-store write and read throughput: InfluxDB 1.6 (v1 HTTP API) beside the embedded Parquet store.

Usage: python benchmarks/raw_store_throughput.py [--households 1000] [--minutes 1440]
One local day of 1-minute meter readings for N households is written to each backend and read
back (the landing asset's query). The Parquet store, measured in the same run, is the reference.
Needs InfluxDB at HEMS_INFLUX__HOST:PORT (`hems services up`); uses a throwaway database.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hems.settings import InfluxSettings
from hems.stores.raw_influx import InfluxRawStore
from hems.stores.raw_parquet import ParquetRawStore
from hems.stores.raw_store import RawStore

START = datetime(2025, 7, 1, tzinfo=UTC)


def readings(households: int, minutes: int) -> pl.DataFrame:
    rng = np.random.default_rng(1)
    n = households * minutes
    ts = pl.datetime_range(START, START + timedelta(minutes=minutes - 1), "1m", time_unit="ms", eager=True)
    ids = [f"hh-{i:05d}" for i in range(households)]
    return pl.DataFrame(
        {
            "ts": ts.to_frame("ts").select(pl.col("ts").repeat_by(households).explode())["ts"],
            "household_id": ids * minutes,
            "device_id": [f"{h}-meter" for h in ids] * minutes,
            "device_type": "smart_meter",
            "power_consumption": rng.gamma(2, 300, n).round(1),
            "energy_import_kwh": np.cumsum(rng.random(n)).round(3),
            "voltage": rng.normal(220, 3, n).round(1),
            "current": rng.normal(3, 1, n).round(2),
            "power_factor": rng.uniform(0.8, 1, n).round(3),
        }
    )


def measure(store: RawStore, frame: pl.DataFrame) -> dict[str, float]:
    store.drop()
    store.ensure()
    t0 = time.perf_counter()
    written = store.write("energy_consumption", frame)
    write_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    back = store.query("energy_consumption", START, START + timedelta(days=1))
    read_s = time.perf_counter() - t0
    assert back.height == frame.height == written, (back.height, frame.height, written)
    store.drop()
    return {
        "write_s": round(write_s, 2),
        "write_points_per_s": round(written / write_s),
        "read_s": round(read_s, 2),
        "read_points_per_s": round(back.height / read_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--households", type=int, default=1000)
    parser.add_argument("--minutes", type=int, default=1440)
    args = parser.parse_args()
    frame = readings(args.households, args.minutes)
    influx = measure(InfluxRawStore(InfluxSettings(database=f"hems_bench_{uuid.uuid4().hex[:8]}")), frame)
    with tempfile.TemporaryDirectory() as tmp:
        parquet = measure(ParquetRawStore(Path(tmp)), frame)
    print(
        json.dumps(
            {
                "benchmark": "raw_store_throughput",
                "points": frame.height,
                "influxdb": influx,
                "parquet_reference": parquet,
                "influx_write_vs_parquet": round(influx["write_s"] / parquet["write_s"], 1),
                "influx_read_vs_parquet": round(influx["read_s"] / parquet["read_s"], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
