"""Checks that block payouts on suspicious inputs (blocking, ERROR: the payout step does not run).

They judge what would be PAID, not the population: a household without a baseline simply gets
0 KRW with its reason, which is correct. A payout is stopped when
* a household would be paid although its baseline is not qualified, or with no actual usage;
* a paid household's reporting period is missing more than 10 % of its days (or event hours);
* a reward is an outlier: monthly savings above 60 %, or more than OUTLIER_FACTOR × the
  period's median paid reward and above OUTLIER_FLOOR_KRW (one broken meter must not pay out
  a fortune), or negative.
"""

import polars as pl
from dagster import AssetCheckResult, AssetChecksDefinition, AssetCheckSeverity, AssetKey, asset_check

from orchestration.defs.incentives.assets import REWARD_ASSETS
from orchestration.defs.incentives.partitions import DR_EVENTS

#: a paid reward above this multiple of the median paid reward is an outlier (if above the floor)
OUTLIER_FACTOR = 10.0
OUTLIER_FLOOR_KRW = 20_000
#: a paid household must have metered at least this share of the period's days (or event hours)
MIN_COVERAGE = 0.9
#: monthly savings above this share are implausible (the cashback cap is 30 %); a DR event lasts a
#: few hours, where cutting most of the load (the air conditioner off) is what the program asks
MAX_MONTHLY_SAVINGS_PCT = 60.0


def payout_findings(
    rewards: pl.DataFrame, max_savings_pct: float | None = MAX_MONTHLY_SAVINGS_PCT
) -> dict[str, int]:
    """Count each kind of suspicious paid row (all zero = fit for payout)."""
    paid = rewards.filter(pl.col("reward_krw") > 0)
    median = float(paid["reward_krw"].median() or 0) if paid.height else 0.0  # type: ignore[arg-type]
    return {
        "paid_without_qualified_baseline": paid.filter(pl.col("status") != "qualified").height,
        "paid_without_actual_usage": paid.filter(
            pl.col("actual_kwh").is_null() | (pl.col("actual_kwh") <= 0)
        ).height,
        "paid_with_missing_days": paid.filter(pl.col("coverage") < MIN_COVERAGE).height,
        "paid_savings_above_plausible": (
            paid.filter(pl.col("savings_pct") > max_savings_pct).height if max_savings_pct is not None else 0
        ),
        "reward_outliers": paid.filter(
            (pl.col("reward_krw") > OUTLIER_FACTOR * median) & (pl.col("reward_krw") > OUTLIER_FLOOR_KRW)
        ).height,
        "negative_rewards": rewards.filter(pl.col("reward_krw") < 0).height,
    }


def _check_for(asset_def) -> AssetChecksDefinition:
    key: AssetKey = asset_def.key
    monthly = asset_def.partitions_def is not None and asset_def.partitions_def is not DR_EVENTS

    @asset_check(
        asset=asset_def,
        name="fit_for_payout",
        blocking=True,
        partitions_def=asset_def.partitions_def,  # judge the run's partition, not every partition
        description=(
            "Blocks the payout when a household would be paid without a qualified baseline or "
            "actual usage, with implausible savings, or with an outlier reward."
        ),
    )
    def fit_for_payout(rewards: pl.DataFrame) -> AssetCheckResult:
        findings = payout_findings(rewards, MAX_MONTHLY_SAVINGS_PCT if monthly else None)
        return AssetCheckResult(
            passed=not any(findings.values()),
            severity=AssetCheckSeverity.ERROR,
            metadata={**findings, "rows": rewards.height, "asset": key.to_user_string()},
        )

    return fit_for_payout


PAYOUT_CHECKS = [_check_for(a) for a in REWARD_ASSETS]
