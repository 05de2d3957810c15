"""Anomaly detector: IsolationForest on hourly meter behaviour and daily context, with reasons.

Each row is one household-hour as the meter reported it (:func:`anomaly_features`): how many
readings arrived, how far power and the register moved, whether the register stepped backwards
or jumped, and how the hour and its day compare with the household's usual.  IsolationForest
scores how easy a row is to isolate; the ``contamination`` share of training rows sets the
threshold.  IsolationForest says *that* a row is odd, not *why*, so every flagged row also gets
its features ranked by robust z-score, |x − median| / (1.4826 · MAD), against the training
rows: the top ones are the features that made it anomalous.  A forest only splits on features
that vary in training, so the few meter-integrity features (:data:`GUARDED`) also flag a row on
their own beyond :data:`GUARD_Z` robust z.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np
import polars as pl
from sklearn.ensemble import IsolationForest

from ml.metrics import precision_recall
from ml.models.base import Model, require_columns

#: meter-integrity features that normal operation keeps tight; beyond GUARD_Z robust z a row is
#: flagged even when the forest has never seen such a value (a meter that never missed a reading
#: in training gives the forest no split on the reading count)
#: (feature, sign): +1 flags only high values, −1 only low ones, 0 both
GUARDED = (
    ("reading_ratio", 0),
    ("missing_hours_before", 1),
    ("step_min_kwh", -1),
    ("register_vs_power_kwh", 0),
)
GUARD_Z = 8.0
#: smallest spread a z-score divides by, per feature (its units): what counts as a real deviation
#: for a feature that barely varies in training (a 2 % shortfall of readings, a 0.05 kWh mismatch)
SPREAD_FLOOR = {
    "reading_ratio": 0.02,
    "missing_hours_before": 0.1,
    "step_min_kwh": 0.05,
    "register_vs_power_kwh": 0.05,
}
FEATURES = (
    "reading_ratio",
    "missing_hours_before",
    "power_max_kw",
    "power_mean_kw",
    "register_span_kwh",
    "register_vs_power_kwh",
    "step_max_kwh",
    "step_min_kwh",
    "hour_kwh_ratio",
    "day_kwh_ratio",
)


def _signed_log(expr: pl.Expr) -> pl.Expr:
    """sign(x) · log1p(|x|): keeps the order, tames megawatt spikes for the trees and the z-scores."""
    return expr.sign() * expr.abs().log1p()


def anomaly_features(stats: pl.DataFrame, hourly: pl.DataFrame | None = None) -> pl.DataFrame:
    """One row per household-hour with a meter reading (``stats`` from ``hourly_meter_stats``).

    ``hourly`` (from ``hourly_features``) adds the usage context: the hour's kWh against the
    household's median for that hour of day and the day's kWh against its median day.
    """
    require_columns(stats, ("household_id", "ts", "n_readings", "power_span_kwh", "power_max_w"), "stats")
    # each household's newest hour is still filling (or is the closing register reading): left out
    s = stats.sort("household_id", "ts").filter(pl.col("ts") < pl.col("ts").max().over("household_id"))
    span = pl.col("last_kwh") - pl.col("first_kwh")
    gap = ((pl.col("ts") - pl.col("ts").shift(1).over("household_id")).dt.total_hours() - 1).fill_null(0)
    out = s.with_columns(
        (pl.col("n_readings") / pl.col("n_readings").median().over("household_id")).alias("reading_ratio"),
        gap.clip(lower_bound=0).cast(pl.Float64).alias("missing_hours_before"),
        (pl.col("ts").shift(1).over("household_id") + pl.duration(hours=1)).alias("cover_start"),
        _signed_log(pl.col("power_max_w").fill_null(0) / 1000).alias("power_max_kw"),
        _signed_log(pl.col("power_mean_w").fill_null(0) / 1000).alias("power_mean_kw"),
        _signed_log(span.fill_null(0)).alias("register_span_kwh"),
        _signed_log((span - pl.col("power_span_kwh")).fill_null(0)).alias("register_vs_power_kwh"),
        _signed_log(pl.col("step_max_kwh").fill_null(0)).alias("step_max_kwh"),
        _signed_log(pl.col("step_min_kwh").fill_null(0)).alias("step_min_kwh"),
    ).with_columns(pl.coalesce("cover_start", "ts").alias("cover_start"))
    if hourly is not None and hourly.height:
        h = hourly.select("household_id", "ts", "kwh", "hour", "local_date")
        h = h.with_columns(
            (pl.col("kwh") / (pl.col("kwh").median().over("household_id", "hour") + 0.01)).alias(
                "hour_kwh_ratio"
            ),
            pl.col("kwh").sum().over("household_id", "local_date").alias("_day"),
        ).with_columns(
            (pl.col("_day") / (pl.col("_day").median().over("household_id") + 0.1)).alias("day_kwh_ratio")
        )
        out = out.join(
            h.select("household_id", "ts", "hour_kwh_ratio", "day_kwh_ratio"),
            on=["household_id", "ts"],
            how="left",
        )
    else:
        out = out.with_columns(
            pl.lit(None, pl.Float64).alias("hour_kwh_ratio"), pl.lit(None, pl.Float64).alias("day_kwh_ratio")
        )
    out = out.with_columns(
        _signed_log(pl.col("hour_kwh_ratio").fill_null(1.0).fill_nan(1.0)).alias("hour_kwh_ratio"),
        _signed_log(pl.col("day_kwh_ratio").fill_null(1.0).fill_nan(1.0)).alias("day_kwh_ratio"),
    )
    return out.select("household_id", "ts", "cover_start", *FEATURES)


def label_faults(
    features: pl.DataFrame, faults: pl.DataFrame, kinds: tuple[str, ...] | None = None
) -> pl.Series:
    """True for rows whose covered time overlaps an injected fault (the simulator's fault log).

    Gaps count over their whole window; counter resets, meter swaps and spikes at their instant.

    A row covers ``[cover_start, ts + 1 h)``: its own hour and any whole hours missing before it,
    so a gap that removed hours entirely is charged to the first hour after it.
    """
    require_columns(features, ("household_id", "ts", "cover_start"), "features")
    if faults.is_empty():
        return pl.Series("is_fault", [False] * features.height)
    require_columns(faults, ("kind", "household_id", "ts_start", "ts_end"), "fault log")
    f = faults if kinds is None else faults.filter(pl.col("kind").is_in(list(kinds)))
    # a reset, a swap or a spike is wrong at one instant; the log's window runs to the data's end
    f = f.with_columns(
        pl.when(pl.col("kind") == "gap").then(pl.col("ts_end")).otherwise(pl.col("ts_start")).alias("ts_end")
    )
    rows = features.select("household_id", "ts", "cover_start").with_row_index("_i")
    hit = rows.join(f.select("household_id", "ts_start", "ts_end"), on="household_id").filter(
        (pl.col("ts_start") < pl.col("ts") + pl.duration(hours=1))
        & (pl.col("ts_end") >= pl.col("cover_start"))
    )
    flagged = set(hit["_i"].to_list())
    return pl.Series("is_fault", [i in flagged for i in range(features.height)])


class AnomalyDetector(Model):
    """Household-hours whose meter behaviour or usage is unlike the training rows."""

    name: ClassVar[str] = "hems-anomaly-detector"
    primary_metric: ClassVar[str] = "f1"
    higher_is_better: ClassVar[bool] = True

    def __init__(
        self, contamination: float = 0.005, n_estimators: int = 200, top_k: int = 3, seed: int = 0
    ) -> None:
        if not 0 < contamination < 0.5:
            raise ValueError(f"contamination must be in (0, 0.5), got {contamination}")
        self.contamination, self.n_estimators, self.top_k, self.seed = (
            contamination,
            n_estimators,
            top_k,
            seed,
        )
        self._fitted = False

    def params(self) -> dict[str, Any]:
        return {
            "contamination": self.contamination,
            "n_estimators": self.n_estimators,
            "features": len(FEATURES),
        }

    def fit(self, frame: pl.DataFrame) -> Self:
        require_columns(frame, FEATURES, "anomaly features")
        x = _matrix(frame)
        self._forest = IsolationForest(
            n_estimators=self.n_estimators, contamination=self.contamination, n_jobs=2, random_state=self.seed
        ).fit(x)
        self.median = np.median(x, axis=0)
        mad = 1.4826 * np.median(np.abs(x - self.median), axis=0)
        floor = np.array([SPREAD_FLOOR.get(f, 1e-3) for f in FEATURES])
        self.spread = np.maximum(np.where(mad > 1e-9, mad, x.std(axis=0)), floor)
        self._fitted = True
        return self

    def predict(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``score`` (higher = more anomalous), ``is_anomaly`` and ``reasons`` (top features, |z|)."""
        self._check_fitted()
        require_columns(frame, FEATURES, "anomaly features")
        x = _matrix(frame)
        score = -self._forest.score_samples(x)  # sklearn: lower = more abnormal
        z = (x - self.median) / self.spread
        guard = np.zeros(x.shape[0], dtype=bool)
        for feature, sign in GUARDED:
            zf = z[:, FEATURES.index(feature)]
            guard |= (np.abs(zf) if sign == 0 else sign * zf) > GUARD_Z
        flagged = (self._forest.predict(x) == -1) | guard
        order = np.argsort(-np.abs(z), axis=1)[:, : self.top_k]
        reasons = [
            ", ".join(f"{FEATURES[j]} (z={z[i, j]:+.1f})" for j in order[i]) if flagged[i] else ""
            for i in range(x.shape[0])
        ]
        keys = [c for c in ("household_id", "ts") if c in frame.columns]
        return frame.select(keys).with_columns(
            pl.Series("score", score),
            pl.Series("is_anomaly", flagged),
            pl.Series("reasons", reasons, dtype=pl.String),
            pl.Series("top_feature", [FEATURES[o[0]] for o in order], dtype=pl.String),
        )

    def evaluate(self, frame: pl.DataFrame) -> dict[str, float]:
        """Precision/recall/F1 against an ``is_fault`` column (injected faults)."""
        require_columns(frame, ("is_fault",), "labelled anomaly features")
        flags = self.predict(frame)["is_anomaly"].to_numpy()
        out = precision_recall(frame["is_fault"].to_numpy(), flags)
        out["flagged_share"] = float(flags.mean())
        return out


def _matrix(frame: pl.DataFrame) -> np.ndarray:
    return frame.select(
        [pl.col(c).cast(pl.Float64).fill_null(0.0).fill_nan(0.0) for c in FEATURES]
    ).to_numpy()


__all__ = ["FEATURES", "GUARDED", "GUARD_Z", "AnomalyDetector", "anomaly_features", "label_faults"]
