"""Usage-pattern classifier: RandomForest on daily features, labels from clustering load shapes.

How the labels are made (and why): a day's *shape* is its 24 hourly kWh divided by the day's
total, so a small flat and a large house with the same habits look alike.  KMeans (k clusters,
k-means++ with several restarts) groups the training days' shapes; each centroid is then named by
fixed rules, so a name always means the same thing whatever the data:

1. ``flat`` when the centroid's busiest hour is less than ``flat_peak_to_mean`` × its mean hour;
2. otherwise by the time window whose share of the day most exceeds the fleet's average share
   for that window (the lift): 06–10 → ``morning peak``, 10–17 → ``daytime at home``,
   17–22 → ``evening peak``, 22–03 → ``night owl``.

Clusters that receive the same name are merged (a name is a label, a cluster is not).  The
RandomForest then learns to tell the labels from daily features — the shape plus its statistics,
calendar, weather and household attributes — so new days are labelled without re-clustering and
the feature importances say what distinguishes the patterns.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np
import polars as pl
from sklearn.cluster import KMeans
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, f1_score

from ml.features import SHAPE_COLUMNS
from ml.models.base import Model, require_columns

PATTERNS = ("evening peak", "morning peak", "daytime at home", "night owl", "flat")
#: the windows of the naming rule (local hours, end exclusive; night wraps midnight)
WINDOWS: dict[str, tuple[int, ...]] = {
    "morning peak": tuple(range(6, 10)),
    "daytime at home": tuple(range(10, 17)),
    "evening peak": tuple(range(17, 22)),
    "night owl": (22, 23, 0, 1, 2),
}
FEATURES = (
    *SHAPE_COLUMNS,
    "kwh",
    "peak_hour",
    "peak_to_mean",
    "night_share",
    "morning_share",
    "daytime_share",
    "evening_share",
    "outdoor_mean_c",
    "day_off",
    "dow",
    "area_m2",
    "residents",
)


def name_centroids(centroids: np.ndarray, reference: np.ndarray, flat_peak_to_mean: float = 1.6) -> list[str]:
    """Names of KMeans centroids (rows of 24 shares) by the rules in the module docstring."""
    centroids = np.asarray(centroids, dtype=np.float64)
    if centroids.ndim != 2 or centroids.shape[1] != 24:
        raise ValueError(f"centroids must be k × 24 shares, got shape {centroids.shape}")
    names = []
    for c in centroids:
        if c.max() / c.mean() < flat_peak_to_mean:
            names.append("flat")
            continue
        lifts = {name: c[list(h)].sum() / reference[list(h)].sum() for name, h in WINDOWS.items()}
        names.append(max(lifts, key=lambda k: lifts[k]))
    return names


class PatternClassifier(Model):
    """Daily usage pattern (one of :data:`PATTERNS`) of a household-day."""

    name: ClassVar[str] = "hems-usage-pattern-classifier"
    primary_metric: ClassVar[str] = "macro_f1"
    higher_is_better: ClassVar[bool] = True

    def __init__(
        self, n_clusters: int = 6, n_estimators: int = 200, flat_peak_to_mean: float = 1.6, seed: int = 0
    ) -> None:
        if n_clusters < 2:
            raise ValueError(f"n_clusters must be at least 2, got {n_clusters}")
        self.n_clusters, self.n_estimators, self.flat, self.seed = (
            n_clusters,
            n_estimators,
            flat_peak_to_mean,
            seed,
        )
        self._fitted = False
        self.cluster_names: list[str] = []
        self.centroids: np.ndarray | None = None

    def params(self) -> dict[str, Any]:
        return {
            "n_clusters": self.n_clusters,
            "n_estimators": self.n_estimators,
            "flat_peak_to_mean": self.flat,
            "seed": self.seed,
            "features": len(FEATURES),
        }

    # the labels ---------------------------------------------------------------------------
    def fit_labels(self, daily: pl.DataFrame) -> pl.Series:
        """Cluster the shapes of ``daily`` and return each day's pattern name."""
        require_columns(daily, SHAPE_COLUMNS, "daily features")
        shapes = daily.select(SHAPE_COLUMNS).to_numpy()
        k = min(self.n_clusters, len(np.unique(shapes.round(6), axis=0)))
        if k < 2:
            raise ValueError("need at least two distinct daily load shapes to cluster")
        km = KMeans(n_clusters=k, n_init=10, random_state=self.seed).fit(shapes)
        self.centroids = km.cluster_centers_
        self.cluster_names = name_centroids(km.cluster_centers_, shapes.mean(axis=0), self.flat)
        self._kmeans = km
        return pl.Series("pattern", [self.cluster_names[i] for i in km.labels_])

    def label(self, daily: pl.DataFrame) -> pl.Series:
        """Pattern names of days by their nearest centroid (the ground truth for evaluation)."""
        self._check_fitted()
        idx = self._kmeans.predict(daily.select(SHAPE_COLUMNS).to_numpy())
        return pl.Series("pattern", [self.cluster_names[i] for i in idx])

    # the model ----------------------------------------------------------------------------
    def fit(self, frame: pl.DataFrame) -> Self:
        require_columns(frame, FEATURES, "daily features")
        labels = self.fit_labels(frame)
        self._rf = RandomForestClassifier(
            n_estimators=self.n_estimators, min_samples_leaf=2, n_jobs=2, random_state=self.seed
        ).fit(_matrix(frame), labels.to_numpy())
        self.majority = str(labels.mode().sort()[0])
        self._fitted = True
        return self

    def predict(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``household_id``, ``local_date`` (when present), ``pattern`` and its probability."""
        self._check_fitted()
        require_columns(frame, FEATURES, "daily features")
        proba = self._rf.predict_proba(_matrix(frame))
        best = proba.argmax(axis=1)
        keys = [c for c in ("household_id", "local_date") if c in frame.columns]
        return frame.select(keys).with_columns(
            pl.Series("pattern", self._rf.classes_[best].tolist(), dtype=pl.String),
            pl.Series("probability", proba[np.arange(len(best)), best]),
        )

    def evaluate(self, frame: pl.DataFrame) -> dict[str, float]:
        truth = self.label(frame).to_numpy()
        pred = self.predict(frame)["pattern"].to_numpy()
        return {
            "macro_f1": float(f1_score(truth, pred, average="macro", zero_division=0)),
            "accuracy": float(accuracy_score(truth, pred)),
            "n_days": float(len(truth)),
        }

    def feature_importances(self) -> dict[str, float]:
        self._check_fitted()
        return dict(zip(FEATURES, map(float, self._rf.feature_importances_), strict=True))


def _matrix(frame: pl.DataFrame) -> np.ndarray:
    return frame.select([pl.col(c).cast(pl.Float64).fill_null(0.0) for c in FEATURES]).to_numpy()


__all__ = ["FEATURES", "PATTERNS", "WINDOWS", "PatternClassifier", "name_centroids"]
