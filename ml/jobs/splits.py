"""Training/holdout splits shared by the jobs: by time for three models, by household for one.

Why a fixed holdout per run: the challenger, the champion and the reference must be scored on
exactly the same rows, or "beats the champion" means nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import polars as pl

from ml.data import MLInputs
from ml.features import hourly_features, hourly_indoor, hourly_load, hourly_meter_stats
from ml.models.anomaly_detector import anomaly_features, label_faults

#: fault kinds that change what the meter reports (duplicates and arrival order do not)
VALUE_FAULTS = ("gap", "counter_reset", "meter_swap", "spike")


@dataclass(frozen=True)
class Splits:
    inputs: MLInputs
    cutoff: datetime  # first holdout local midnight (UTC); training uses data before it
    holdout_days: int
    test_households: tuple[str, ...]  # the efficiency regressor's held-out homes
    anomaly_test: pl.DataFrame | None = None  # labelled anomaly features (is_fault)

    @property
    def hourly(self) -> pl.DataFrame:
        return self.inputs.hourly

    @property
    def daily_train(self) -> pl.DataFrame:
        return self.inputs.daily.filter(pl.col("local_date") < self.cutoff_date)

    @property
    def daily_test(self) -> pl.DataFrame:
        return self.inputs.daily.filter(pl.col("local_date") >= self.cutoff_date)

    @property
    def cutoff_date(self):
        return self.hourly.filter(pl.col("ts") == self.cutoff)["local_date"][0]

    def regressor_split(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        d = self.inputs.daily
        test = pl.col("household_id").is_in(list(self.test_households))
        return d.filter(~test), d.filter(test)

    def anomaly_train(self) -> pl.DataFrame:
        stats = self.inputs.stats.filter(pl.col("ts") < self.cutoff)
        return anomaly_features(stats, self.hourly.filter(pl.col("ts") < self.cutoff))

    def lineage(self) -> dict[str, str]:
        return {
            **self.inputs.lineage(),
            "holdout_start": self.cutoff.isoformat(),
            "holdout_days": str(self.holdout_days),
            "test_households": str(len(self.test_households)),
        }


def make_splits(
    inputs: MLInputs,
    holdout_days: int | None = None,
    test_household_share: float = 0.2,
    anomaly_test: pl.DataFrame | None = None,
    seed: int = 0,
) -> Splits:
    """Hold out the last ``holdout_days`` local days (default: a fifth of the days, 1..7)."""
    hourly = inputs.hourly
    midnights = sorted(
        set(hourly.filter((pl.col("hour") == 0) & pl.col("kwh").is_not_null())["ts"].to_list())
    )
    n_days = len(midnights)
    if holdout_days is None:
        holdout_days = min(7, max(1, n_days // 5))
    if holdout_days < 1:
        raise ValueError(f"holdout_days must be at least 1, got {holdout_days}")
    if n_days < holdout_days + 8:
        raise ValueError(
            f"{n_days} days of hourly load is too little: the forecaster needs 8 days of history "
            f"before a {holdout_days}-day holdout"
        )
    ids = sorted(inputs.households["household_id"].to_list())
    rng = np.random.default_rng(seed)
    n_test = max(1, round(len(ids) * test_household_share)) if len(ids) > 1 else 0
    test_ids = tuple(sorted(rng.choice(ids, size=n_test, replace=False).tolist())) if n_test else ()
    return Splits(inputs, midnights[-holdout_days], holdout_days, test_ids, anomaly_test)


def labelled_anomaly_set(
    faulted_readings: pl.DataFrame, fault_log: pl.DataFrame, inputs: MLInputs
) -> pl.DataFrame:
    """Anomaly features of readings with injected faults, with ``is_fault`` from the fault log."""
    stats = hourly_meter_stats(faulted_readings)
    hourly = hourly_features(
        hourly_load(stats),
        inputs.weather,
        hourly_indoor(faulted_readings),
        inputs.households,
        inputs.timezone,
    )
    feats = anomaly_features(stats, hourly)
    return feats.with_columns(label_faults(feats, fault_log, VALUE_FAULTS))


__all__ = ["VALUE_FAULTS", "Splits", "labelled_anomaly_set", "make_splits"]
