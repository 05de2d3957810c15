"""The Dagster definitions load and carry the lineage data engineers rely on."""

from __future__ import annotations

from dagster import AssetKey


def test_definitions_load_with_lineage_from_raw_to_app_database() -> None:
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    # dbt models are keyed by their warehouse schema, as a data engineer finds them in SQL
    assert keys >= {
        "raw_energy_readings",
        "raw_households",
        "raw_devices",
        "staging/stg_app__households",
        "intermediate/int_solar_intervals_integrated",
        "marts/dim_households",
        "marts/fct_meter_repairs",
        "marts/fct_device_status",
        "marts/fct_community_leaderboard",
        "staging/stg_raw__energy_readings",
        "intermediate/int_meter_intervals_differenced",
        "intermediate/int_household_days_billed",
        "marts/energy_usage_daily",
        "marts/fct_bills_monthly",
        "reference/tariff_kepco_residential_low_voltage",
        "reference/tariff_kepco_residential_seasons",
        "reference/tariff_kepco_surcharges",
        "app_energy_usage_daily",
    }
    # lineage: the dbt staging model reads the landed raw readings; publishing reads the mart
    assert (
        AssetKey("raw_energy_readings")
        in graph.get(AssetKey(["staging", "stg_raw__energy_readings"])).parent_keys
    )
    assert (
        AssetKey(["marts", "energy_usage_daily"]) in graph.get(AssetKey("app_energy_usage_daily")).parent_keys
    )
    assert AssetKey("raw_households") in graph.get(AssetKey(["staging", "stg_app__households"])).parent_keys

    raw = graph.get(AssetKey("raw_energy_readings"))
    assert raw.partitions_def is not None
    assert raw.partitions_def.timezone == "Asia/Seoul"
    assert raw.group_name == "raw"
    assert raw.owners

    mart = graph.get(AssetKey(["marts", "energy_usage_daily"]))
    assert mart.group_name == "warehouse_marts"
    assert "dagster/column_schema" in raw.metadata

    assert {s.name for s in defs.schedules or []} == {"finalize_yesterday", "settle_last_month"}
    assert {s.name for s in defs.sensors or []} >= {"microbatch_today", "marts_after_landing"}
    # the GE suites are checks of the assets they protect, and blocking
    check_keys = {k.name: k for k in graph.asset_check_keys}
    assert check_keys["energy_usage_daily_expectations"].asset_key == AssetKey(
        ["marts", "energy_usage_daily"]
    )
    assert graph.get_check_spec(check_keys["energy_usage_daily_expectations"]).blocking
    job_names = {j.name for j in defs.jobs or []}
    assert {"energy_landing", "energy_marts"} <= job_names
