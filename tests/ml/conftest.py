"""Small simulated fleets for the ML tests (built once per session, seconds not minutes)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from ingest.simulator import Fleet, simulate
from ingest.simulator.faults import FaultPlan, inject_faults
from ml.data import MLInputs, inputs_from_frames
from ml.jobs.splits import Splits, labelled_anomaly_set, make_splits


@pytest.fixture(scope="session")
def fleet() -> Fleet:
    return Fleet.generate(10, seed=11, timezone="Asia/Seoul")


@pytest.fixture(scope="session")
def simulation(fleet: Fleet):
    # 15-minute readings keep the frames small; the hourly maths is the same as at 1 minute
    return simulate(fleet, start=date(2025, 7, 1), days=16, freq_minutes=15, env_freq_minutes=30)


@pytest.fixture(scope="session")
def inputs(simulation, fleet: Fleet) -> MLInputs:
    return inputs_from_frames(simulation.readings, simulation.weather, fleet.households, source="simulator")


@pytest.fixture(scope="session")
def splits(simulation, inputs: MLInputs) -> Splits:
    base = make_splits(inputs, holdout_days=3)
    holdout = simulation.readings.filter(pl.col("ts") >= base.cutoff)
    injected = inject_faults(holdout, FaultPlan(gaps=4, spikes=4, counter_resets=2, meter_swaps=1), seed=5)
    labelled = labelled_anomaly_set(injected.readings, injected.log, inputs)
    return make_splits(inputs, holdout_days=3, anomaly_test=labelled)


@pytest.fixture
def mlflow_tracking(tmp_path: Path):
    """A real MLflow tracking store: SQLite in tmp_path, artifacts beside it."""
    from ml import registry

    uri = registry.configure(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=tmp_path / "art"
    )
    yield uri
