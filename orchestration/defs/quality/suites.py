"""Great Expectations suites for raw readings and the daily usage mart.

Why profiles, not rows: a suite runs on a small frame the warehouse computes in SQL (one row per
household-day), so validating 43 M readings costs a GROUP BY, not a 43 M-row pandas frame. The
expectations then read like the rules they enforce: completeness per household-day, value ranges,
registers that never run backwards, devices reporting against the inventory, unique keys.

Thresholds are arguments with the defaults below, so a program can tighten them without code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

#: a household-day counts as complete at this share of its meter's expected readings
MIN_COMPLETENESS = 0.9
#: share of household-days that must pass a "mostly" expectation
MOSTLY = 0.95
#: a day above this is not a home's consumption but a data error (KRW flows from it)
MAX_DAILY_KWH = 200.0

RAW_PROFILE_SQL = """
with meter as (
    select household_id, device_id, ts_utc, ts_local, voltage_v, power_w, energy_import_kwh,
           energy_import_kwh - lag(energy_import_kwh) over (partition by device_id order by ts_utc)
               as import_step
    from staging.stg_raw__energy_readings
    where device_type = 'smart_meter'
),
spacing as (
    select device_id,
           case when count(*) > 1
                then extract(epoch from (max(ts_utc) - min(ts_utc))) / 60.0 / (count(*) - 1) end
               as interval_minutes
    from meter group by device_id
),
days as (
    select m.household_id, cast(m.ts_local as date) as local_date,
           count(*) as meter_readings,
           max(s.interval_minutes) as interval_minutes,
           min(m.voltage_v) as min_voltage_v, max(m.voltage_v) as max_voltage_v,
           min(m.power_w) as min_power_w,
           sum(case when m.import_step < 0 then 1 else 0 end) as backwards_steps
    from meter as m join spacing as s on m.device_id = s.device_id
    group by m.household_id, cast(m.ts_local as date)
),
seen as (
    select household_id, cast(ts_local as date) as local_date, count(distinct device_id) as devices_seen
    from staging.stg_raw__energy_readings group by household_id, cast(ts_local as date)
),
expected as (
    select household_id, count(*) as devices_expected
    from raw.devices where device_type <> 'env_sensor' group by household_id
)
select days.*,
       least(days.meter_readings * coalesce(days.interval_minutes, 1440.0) / 1440.0, 1.0) as completeness,
       seen.devices_seen,
       coalesce(expected.devices_expected, seen.devices_seen) as devices_expected
from days
join seen on days.household_id = seen.household_id and days.local_date = seen.local_date
left join expected on days.household_id = expected.household_id
"""

DAILY_SQL = """
select d.household_id, d.date, d.total_consumption_kwh, d.grid_consumption_kwh,
       d.peak_usage_kwh + d.mid_usage_kwh + d.off_peak_usage_kwh - d.grid_consumption_kwh as band_gap_kwh,
       d.cost_krw, d.carbon_emission_kg, d.interval_count
from marts.energy_usage_daily as d
"""


@dataclass(frozen=True)
class SuiteResult:
    suite: str
    success: bool
    rows: int
    failed: list[dict[str, Any]]
    evaluated: int

    def metadata(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "rows_validated": self.rows,
            "expectations": self.evaluated,
            "failed_expectations": len(self.failed),
            "failures": [
                f"{f['expectation']}({f.get('column') or ''}): {f['unexpected']}" for f in self.failed
            ],
        }


def _drop_incomplete_last_day(profile: pl.DataFrame, today: Any) -> pl.DataFrame:
    """Today is still arriving: judge completeness on finished days only."""
    return profile.filter(pl.col("local_date") < today) if profile.height else profile


def raw_readings_suite(min_completeness: float = MIN_COMPLETENESS, mostly: float = MOSTLY) -> Any:
    import great_expectations as gx

    e = gx.expectations
    suite = gx.ExpectationSuite(name="raw_readings")
    for expectation in (
        e.ExpectColumnValuesToNotBeNull(column="household_id"),
        e.ExpectCompoundColumnsToBeUnique(column_list=["household_id", "local_date"]),
        e.ExpectColumnValuesToBeBetween(column="completeness", min_value=min_completeness, mostly=mostly),
        e.ExpectColumnValuesToBeBetween(column="min_voltage_v", min_value=180, mostly=mostly),
        e.ExpectColumnValuesToBeBetween(column="max_voltage_v", max_value=260, mostly=mostly),
        e.ExpectColumnValuesToBeBetween(column="min_power_w", min_value=0),
        # registers never run backwards (repairs exist for the rare reset or swap, see fct_meter_repairs)
        e.ExpectColumnValuesToBeBetween(column="backwards_steps", max_value=0, mostly=mostly),
        e.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="devices_seen", column_B="devices_expected", or_equal=True, mostly=mostly
        ),
    ):
        suite.add_expectation(expectation)
    return suite


def daily_usage_suite(max_daily_kwh: float = MAX_DAILY_KWH) -> Any:
    import great_expectations as gx

    e = gx.expectations
    suite = gx.ExpectationSuite(name="energy_usage_daily")
    for expectation in (
        e.ExpectTableRowCountToBeBetween(min_value=1),
        e.ExpectColumnValuesToNotBeNull(column="household_id"),
        e.ExpectColumnValuesToNotBeNull(column="date"),
        e.ExpectCompoundColumnsToBeUnique(column_list=["household_id", "date"]),
        e.ExpectColumnValuesToNotBeNull(column="total_consumption_kwh"),
        e.ExpectColumnValuesToBeBetween(column="total_consumption_kwh", min_value=0, max_value=max_daily_kwh),
        e.ExpectColumnValuesToBeBetween(column="grid_consumption_kwh", min_value=0, max_value=max_daily_kwh),
        e.ExpectColumnValuesToBeBetween(column="band_gap_kwh", min_value=-1e-6, max_value=1e-6),
        e.ExpectColumnValuesToNotBeNull(column="cost_krw"),
        e.ExpectColumnValuesToBeBetween(column="cost_krw", min_value=0),
        e.ExpectColumnValuesToNotBeNull(column="carbon_emission_kg"),
    ):
        suite.add_expectation(expectation)
    return suite


def validate(frame: pl.DataFrame, make_suite: Callable[[], Any]) -> SuiteResult:
    """Validate ``frame`` against the suite ``make_suite()`` builds, in an ephemeral GX context
    (nothing written to disk; GX wants the context to exist before a suite is built)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    suite = make_suite()
    batch = (
        context.data_sources.add_pandas("warehouse")
        .add_dataframe_asset(suite.name)
        .add_batch_definition_whole_dataframe("all")
        .get_batch(batch_parameters={"dataframe": frame.to_pandas()})
    )
    result = batch.validate(suite)
    failed = [
        {
            "expectation": r.expectation_config.type,
            "column": r.expectation_config.kwargs.get("column")
            or r.expectation_config.kwargs.get("column_list")
            or r.expectation_config.kwargs.get("column_A"),
            "unexpected": r.result.get("unexpected_count", r.result.get("observed_value")),
        }
        for r in result.results
        if not r.success
    ]
    return SuiteResult(suite.name, bool(result.success), frame.height, failed, len(result.results))


def validate_raw(profile: pl.DataFrame, today: Any, **thresholds: float) -> SuiteResult:
    return validate(_drop_incomplete_last_day(profile, today), lambda: raw_readings_suite(**thresholds))


def validate_daily(daily: pl.DataFrame, **thresholds: float) -> SuiteResult:
    return validate(daily, lambda: daily_usage_suite(**thresholds))
