"""The warehouse marts against the simulator's ground truth, with real faults injected.

A small fleet (with solar) is simulated with counter resets, meter swaps, register spikes and gaps,
landed and built through the real Dagster pipeline on the embedded profile. The repaired daily
usage must match the truth, and the repair audit must name every injected register fault.
"""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from hems.settings import Profile, Settings
from hems.stores.warehouse import get_warehouse
from ingest.history import simulate_history, truth_path
from ingest.simulator.faults import FaultPlan

pytestmark = pytest.mark.slow

HOUSEHOLDS, DAYS, START = 8, 3, date(2025, 6, 2)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    import os

    from hems.settings import get_settings
    from orchestration.lib.runner import run_energy_pipeline

    data_dir = tmp_path_factory.mktemp("marts") / "var"
    old = {k: os.environ.get(k) for k in ("HEMS_PROFILE", "HEMS_DATA_DIR")}
    os.environ.update({"HEMS_PROFILE": "local", "HEMS_DATA_DIR": str(data_dir)})
    get_settings.cache_clear()
    try:
        settings = Settings(profile=Profile.local, data_dir=data_dir)
        plan = FaultPlan(gaps=1, counter_resets=1, meter_swaps=1, spikes=1)
        simulate_history(settings, households=HOUSEHOLDS, days=DAYS, start=START, seed=7, faults=plan)
        result = run_energy_pipeline(START, date.fromordinal(START.toordinal() + DAYS - 1), settings)
        wh = get_warehouse(settings)
        yield {
            "settings": settings,
            "checks": result.checks,
            "daily": wh.query("select * from marts.energy_usage_daily"),
            "repairs": wh.query("select * from marts.fct_meter_repairs"),
            "households": wh.query("select * from marts.dim_households"),
            "devices": wh.query("select * from marts.fct_device_status"),
            "leaderboard": wh.query("select * from marts.fct_community_leaderboard"),
            "truth": pl.read_parquet(truth_path(settings)),
            "faults": pl.read_parquet(truth_path(settings).with_name("faults.parquet")),
        }
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()


def test_daily_usage_matches_truth_despite_faults(built) -> None:
    daily, truth, faults = built["daily"], built["truth"], built["faults"]
    assert daily.height == HOUSEHOLDS * DAYS
    assert (daily["grid_consumption_kwh"] >= 0).all()
    joined = daily.join(truth, left_on=["household_id", "date"], right_on=["household_id", "date"])
    # a gap's energy is exact but lands on the day the gap started; compare such households in total
    gapped = set(faults.filter(pl.col("kind") == "gap")["household_id"].to_list())
    clean = joined.filter(~pl.col("household_id").is_in(list(gapped)))
    assert clean.height > 0
    for row in clean.iter_rows(named=True):
        assert row["grid_consumption_kwh"] == pytest.approx(row["import_kwh"], rel=5e-3, abs=0.02)
        assert row["total_consumption_kwh"] == pytest.approx(row["load_kwh"], rel=2e-2, abs=0.05)
        assert row["solar_generation_kwh"] == pytest.approx(row["pv_kwh"], rel=2e-2, abs=0.05)
    per_household = joined.group_by("household_id").agg(
        pl.col("grid_consumption_kwh").sum(), pl.col("import_kwh").sum()
    )
    for row in per_household.iter_rows(named=True):
        assert row["grid_consumption_kwh"] == pytest.approx(row["import_kwh"], rel=5e-3)
    # the spikes were 10,000+ kWh: no day may carry one
    assert daily["grid_consumption_kwh"].max() < 100  # type: ignore[operator]
    # solar households report generation and self-consumption lifts total above grid import
    assert (daily["solar_generation_kwh"] > 0).any()
    assert (daily["total_consumption_kwh"] >= daily["grid_consumption_kwh"] - 1e-9).all()


def test_every_injected_register_fault_is_in_the_repair_audit(built) -> None:
    repairs, faults = built["repairs"], built["faults"]
    for kind in ("counter_reset", "meter_swap"):
        injected = faults.filter(pl.col("kind") == kind)
        assert injected.height > 0
        for row in injected.iter_rows(named=True):
            found = repairs.filter(
                (pl.col("household_id") == row["household_id"]) & (pl.col("repair_kind") == kind)
            )
            assert found.height >= 1, f"{kind} of {row['household_id']} not in fct_meter_repairs"
    register_spikes = [
        r
        for r in faults.filter(pl.col("kind") == "spike").iter_rows(named=True)
        if '"energy_import_kwh"' in r["details"]
    ]
    for row in register_spikes:
        found = repairs.filter(
            (pl.col("household_id") == row["household_id"]) & (pl.col("repair_kind") == "spike")
        )
        assert found.height == 1
    assert set(repairs["repair_kind"].unique()) <= {
        "gap",
        "spike",
        "counter_reset",
        "register_backwards",
        "meter_swap",
    }
    assert (repairs["used_kwh"] >= 0).all()
    daily = built["daily"]
    assert int(daily["repaired_intervals"].sum()) == repairs.filter(pl.col("repair_kind") != "gap").height


def test_households_devices_and_leaderboard(built) -> None:
    households, devices, leaderboard = built["households"], built["devices"], built["leaderboard"]
    assert households.height == HOUSEHOLDS
    assert households["household_id"].n_unique() == HOUSEHOLDS
    assert (households["smart_meters"] >= 1).all()
    assert (households["metered_days"] == DAYS).all()
    assert set(households["region"].to_list()) != {"unknown"}
    # a meter swapped out on the last day stops reporting: offline; its replacement is online
    # (the simulator injects faults per day, so an earlier day's swapped meter reports again)
    swaps = built["faults"].filter(pl.col("kind") == "meter_swap").sort("ts_start")
    old = swaps["device_id"][-1]
    status = dict(zip(devices["device_id"], devices["status"], strict=True))
    assert status[old] == "offline"
    assert any(s == "online" and d.startswith(old + "-r") for d, s in status.items())
    # one row per household and week; per-resident rank always present
    assert leaderboard.select("household_id", "week_start").is_duplicated().sum() == 0
    assert leaderboard["rank_per_resident"].null_count() == 0


def test_quality_checks_ran_in_the_pipeline(built) -> None:
    checks = built["checks"]
    # the Great Expectations suites and the dbt tests ran as asset checks of the marts run
    assert {"raw_readings_expectations", "energy_usage_daily_expectations"} <= set(checks)
    assert len(checks) > 20
    # repaired data is fit for money: the blocking daily suite passes, and so does every dbt test
    assert checks["energy_usage_daily_expectations"]
    assert [name for name, ok in checks.items() if not ok] in ([], ["raw_readings_expectations"])
