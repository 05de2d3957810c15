"""Simulator generation rate: ``python benchmarks/simulator_throughput.py --households 200 --days 7``.

Prints one machine-readable JSON line. The reference, measured in the same run, is the floor of
any generator: building canonical reading frames of the same size from random arrays. Their
ratio says what the household model costs on top of producing the output at all; the
extrapolated year × 1,000 households at 1-minute resolution is what issue 2 asks to be practical.
Library imports (holidays compiles ~300 modules when bytecode caching is off) happen before the
clock starts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hems.contracts import READING_FIELDS, conform_readings
from ingest.simulator.calendar import is_day_off
from ingest.simulator.engine import simulate_days
from ingest.simulator.fleet import Fleet


def reference_seconds(rows_per_day: list[int], seed: int = 0) -> float:
    """Time to build frames of the same sizes from random numbers (no model at all)."""
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for n in rows_per_day:
        base = np.datetime64("2025-07-01T00:00", "ms")
        frame = pl.DataFrame(
            {
                "ts": base + np.arange(n).astype("timedelta64[m]"),
                **{f: rng.random(n) for f in list(READING_FIELDS)[:6]},
            }
        ).with_columns(
            household_id=pl.lit("hh-00001"),
            device_id=pl.lit("hh-00001-meter"),
            device_type=pl.lit("smart_meter"),
        )
        conform_readings(frame.with_columns(pl.col("ts").dt.replace_time_zone("UTC")))
    return time.perf_counter() - t0


def measure(households: int, days: int, start: date, freq_minutes: int = 1, seed: int = 42) -> dict:
    is_day_off(start)  # warm the holiday tables outside the timing
    fleet = Fleet.generate(households, seed=seed)
    rows = meter_rows = 0
    sizes: list[int] = []
    t0 = time.perf_counter()
    for chunk in simulate_days(fleet, start, days, freq_minutes):
        sizes.append(chunk.readings.height)
        rows += chunk.readings.height
        meter_rows += chunk.readings.select((pl.col("device_type") == "smart_meter").sum()).item()
    elapsed = time.perf_counter() - t0
    reference = reference_seconds(sizes)
    year_1000_min = elapsed * (1000 / households) * (365 / days) * freq_minutes / 60
    return {
        "benchmark": "simulator_generation",
        "households": households,
        "days": days,
        "start": start.isoformat(),
        "freq_minutes": freq_minutes,
        "seconds": round(elapsed, 3),
        "meter_readings": meter_rows,
        "meter_readings_per_s": round(meter_rows / elapsed),
        "all_readings": rows,
        "all_readings_per_s": round(rows / elapsed),
        "reference_seconds": round(reference, 3),
        "ratio_to_reference": round(elapsed / reference, 2),
        "extrapolated_year_1000_households_min": round(year_1000_min, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=200)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2025, 7, 1))
    parser.add_argument("--freq-minutes", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.households, args.days, args.start, args.freq_minutes, args.seed)))


if __name__ == "__main__":
    main()
