"""Generation-rate benchmark: ``python -m ingest.simulator.benchmark --households 200 --days 7``.

Prints one machine-readable JSON line (readings per second of generation), so the figure quoted
in docs can be re-measured on any machine.  Library imports (holidays compiles ~300 modules when
bytecode caching is off) happen before the clock starts.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date

import polars as pl

from ingest.simulator.calendar import is_day_off
from ingest.simulator.engine import simulate_days
from ingest.simulator.fleet import Fleet


def measure(households: int, days: int, start: date, freq_minutes: int = 1, seed: int = 42) -> dict:
    is_day_off(start)  # warm the holiday tables outside the timing
    fleet = Fleet.generate(households, seed=seed)
    rows = meter_rows = 0
    t0 = time.perf_counter()
    for chunk in simulate_days(fleet, start, days, freq_minutes):
        rows += chunk.readings.height
        meter_rows += chunk.readings.select((pl.col("device_type") == "smart_meter").sum()).item()
    elapsed = time.perf_counter() - t0
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
