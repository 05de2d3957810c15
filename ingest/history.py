"""Bulk history: simulate a fleet and land it in the configured stores.

This is how the demo and the end-to-end tests fill the platform: readings and weather into the
raw store (the same path real devices take after validation), households and devices into the
app database (as registration would), and the simulator's ground truth next to the data so
anyone can check the marts against it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from hems.settings import Settings
from hems.stores import appdb
from hems.stores.raw_store import get_raw_store
from ingest.simulator.faults import FaultPlan


@dataclass(frozen=True)
class HistorySummary:
    households: int
    days: int
    first_day: date
    last_day: date
    readings: int
    truth_path: Path
    truth_import_kwh: float


def truth_path(settings: Settings) -> Path:
    return settings.data_dir / "simulator" / "truth.parquet"


def simulate_history(
    settings: Settings,
    households: int,
    days: int,
    start: date,
    seed: int = 42,
    progress: Callable[[int, int], None] | None = None,
    faults: FaultPlan | None = None,
) -> HistorySummary:
    """Simulate ``households`` × ``days`` from local day ``start`` into the raw store and app DB.

    With ``faults``, each day's readings get that many faults of each kind (gaps, resets, swaps,
    spikes, duplicates, late, out of order); the fault log is written beside the ground truth.
    """
    from ingest.simulator import Fleet, simulate_days
    from ingest.simulator.faults import inject_faults

    fleet = Fleet.generate(n_households=households, seed=seed, timezone=settings.domain.timezone)
    raw = get_raw_store(settings)
    raw.ensure()
    url = settings.app_database_url
    appdb.migrate(url)
    appdb.upsert_households(_household_rows(fleet.households), url=url)

    truths: list[pl.DataFrame] = []
    fault_logs: list[pl.DataFrame] = []
    devices: dict[str, tuple[str, str]] = {}
    written = 0
    for i, chunk in enumerate(simulate_days(fleet, start=start, days=days), start=1):
        readings = chunk.readings
        if faults is not None:
            injected = inject_faults(readings, faults, seed=seed + i)
            readings = injected.readings
            fault_logs.append(injected.log)
        written += raw.write_readings(readings)
        if chunk.weather is not None and chunk.weather.height:
            raw.write("weather", chunk.weather)
        for row in readings.select("device_id", "household_id", "device_type").unique().iter_rows():
            devices[row[0]] = (row[1], row[2])
        truths.append(chunk.truth)
        if progress:
            progress(i, days)
    appdb.upsert_devices(
        [
            {"id": dev, "household_id": hh, "device_type": kind, "protocol": "mqtt", "status": "unknown"}
            for dev, (hh, kind) in sorted(devices.items())
        ],
        url=url,
    )
    truth = pl.concat(truths)
    path = truth_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    truth.write_parquet(path)
    faults_path = path.with_name("faults.parquet")
    faults_path.unlink(missing_ok=True)
    if fault_logs:
        pl.concat(fault_logs, how="diagonal_relaxed").write_parquet(faults_path)
    return HistorySummary(
        households=households,
        days=days,
        first_day=start,
        last_day=truth["date"].max(),  # type: ignore[arg-type]
        readings=written,
        truth_path=path,
        truth_import_kwh=float(truth["import_kwh"].sum()),
    )


def _household_rows(attrs: pl.DataFrame) -> list[dict]:
    keep = {
        "household_id": "id",
        "region": "region",
        "building_type": "building_type",
        "area_m2": "area_m2",
        "residents": "residents",
        "household_type": "household_type",
        "timezone": "timezone",
        "has_pv": "has_pv",
        "pv_kwp": "pv_kwp",
        "has_ev": "has_ev",
        "electric_heating": "electric_heating",
    }
    frame = attrs.select([pl.col(k).alias(v) for k, v in keep.items() if k in attrs.columns])
    rows = frame.to_dicts()
    for row in rows:
        row.setdefault("name", f"Household {row['id']}")
    return rows
