"""Household simulator: realistic Korean homes, appliance by appliance, at one-minute resolution.

Produces canonical readings (``hems.contracts.READING_SCHEMA``) for smart meters, solar inverters,
environment sensors and smart plugs, the exact daily ground truth behind them, and regional
weather.  Bulk runs go through :func:`simulate_days`; live MQTT publishing is in
:mod:`ingest.simulator.live`, fault injection in :mod:`ingest.simulator.faults`.

    fleet = Fleet.generate(n_households=20, seed=42)
    for chunk in simulate_days(fleet, start=date(2025, 7, 1), days=30):
        chunk.readings, chunk.truth, chunk.weather
"""

from ingest.simulator.engine import (
    APPLIANCES,
    TRUTH_SCHEMA,
    DayChunk,
    SimState,
    Simulation,
    simulate,
    simulate_days,
)
from ingest.simulator.fleet import HOUSEHOLD_TYPES, Fleet
from ingest.simulator.regions import REGION_NAMES, REGIONS

__all__ = [
    "APPLIANCES",
    "HOUSEHOLD_TYPES",
    "REGIONS",
    "REGION_NAMES",
    "TRUTH_SCHEMA",
    "DayChunk",
    "Fleet",
    "SimState",
    "Simulation",
    "simulate",
    "simulate_days",
]
