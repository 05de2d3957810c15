"""Great Expectations suites as Dagster asset checks.

Both checks are blocking, so they run before anything downstream of their asset in the same run.
The daily-usage suite fails with ERROR severity: bills, cashback and rewards are computed from that
mart, so a failing day stops the publish and the incentive assets. The raw-readings suite warns
(WARN does not block): gaps and odd voltages are facts about the field, already repaired or
recorded by the marts, and the data engineer sees them in the check's history.
"""

from datetime import datetime
from zoneinfo import ZoneInfo

from dagster import AssetCheckResult, AssetCheckSeverity, AssetKey, asset_check

from hems.settings import get_settings
from orchestration.defs.energy.resources import StoresResource
from orchestration.defs.quality.suites import DAILY_SQL, RAW_PROFILE_SQL, validate_daily, validate_raw


@asset_check(
    asset=AssetKey(["staging", "stg_raw__energy_readings"]),
    blocking=True,
    description=(
        "Great Expectations suite raw_readings on a household-day profile of the landed readings: "
        "completeness ≥ 90 % of the meter's expected readings, voltage 180–260 V, power ≥ 0, "
        "registers never backwards, every inventory device reporting (95 % of household-days)."
    ),
)
def raw_readings_expectations(stores: StoresResource) -> AssetCheckResult:
    profile = stores.warehouse().read_live(RAW_PROFILE_SQL)
    today = datetime.now(ZoneInfo(get_settings().domain.timezone)).date()
    result = validate_raw(profile, today)
    return AssetCheckResult(
        passed=result.success, severity=AssetCheckSeverity.WARN, metadata=result.metadata()
    )


@asset_check(
    asset=AssetKey(["marts", "energy_usage_daily"]),
    blocking=True,
    description=(
        "Great Expectations suite energy_usage_daily (blocks bills and rewards): unique household-day, "
        "no nulls in usage, cost and carbon, 0–200 kWh a day, TOU bands summing to grid import, cost ≥ 0."
    ),
)
def energy_usage_daily_expectations(stores: StoresResource) -> AssetCheckResult:
    result = validate_daily(stores.warehouse().read_live(DAILY_SQL))
    return AssetCheckResult(
        passed=result.success, severity=AssetCheckSeverity.ERROR, metadata=result.metadata()
    )


QUALITY_CHECKS = [raw_readings_expectations, energy_usage_daily_expectations]
