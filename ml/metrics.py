"""Error metrics with the definitions the docs quote (ASHRAE Guideline 14 for CV(RMSE) and NMBE).

Why hand-written: each is one line of numpy, and the exact convention matters (NMBE sign, MASE
scale) — sklearn has no CV(RMSE), NMBE or MASE.  Pairs with a missing actual or forecast are
dropped first; an empty or all-missing input raises rather than returning a quiet NaN.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def _pairs(actual: ArrayLike, predicted: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(actual, dtype=np.float64).ravel()
    p = np.asarray(predicted, dtype=np.float64).ravel()
    if a.shape != p.shape:
        raise ValueError(f"actual and predicted differ in length ({a.size} vs {p.size})")
    keep = np.isfinite(a) & np.isfinite(p)
    if not keep.any():
        raise ValueError("no pair of finite actual and predicted values to score")
    return a[keep], p[keep]


def mae(actual: ArrayLike, predicted: ArrayLike) -> float:
    a, p = _pairs(actual, predicted)
    return float(np.mean(np.abs(a - p)))


def rmse(actual: ArrayLike, predicted: ArrayLike) -> float:
    a, p = _pairs(actual, predicted)
    return float(np.sqrt(np.mean((a - p) ** 2)))


def cv_rmse(actual: ArrayLike, predicted: ArrayLike) -> float:
    """RMSE as a percentage of the mean actual (ASHRAE Guideline 14, p = 0)."""
    a, p = _pairs(actual, predicted)
    mean = a.mean()
    if mean == 0:
        raise ValueError("CV(RMSE) is undefined when the mean actual is 0")
    return float(100.0 * np.sqrt(np.mean((a - p) ** 2)) / mean)


def nmbe(actual: ArrayLike, predicted: ArrayLike) -> float:
    """Σ(actual − predicted) / (n · mean actual) in %: positive means the model predicts too little."""
    a, p = _pairs(actual, predicted)
    mean = a.mean()
    if mean == 0:
        raise ValueError("NMBE is undefined when the mean actual is 0")
    return float(100.0 * np.sum(a - p) / (a.size * mean))


def mase(actual: ArrayLike, predicted: ArrayLike, scale: float) -> float:
    """MAE divided by ``scale``, the in-sample MAE of the seasonal naive forecast (Hyndman & Koehler)."""
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"MASE needs a positive in-sample naive MAE, got {scale}")
    return mae(actual, predicted) / scale


def seasonal_naive_scale(series: ArrayLike, season: int = 24) -> float:
    """In-sample MAE of y(t) − y(t − season) over a training series (NaNs skipped)."""
    y = np.asarray(series, dtype=np.float64).ravel()
    if y.size <= season:
        raise ValueError(f"a series of {y.size} values is too short for a season of {season}")
    d = np.abs(y[season:] - y[:-season])
    d = d[np.isfinite(d)]
    if d.size == 0:
        raise ValueError("no finite seasonal difference in the training series")
    return float(d.mean())


def forecast_metrics(
    actual: ArrayLike, predicted: ArrayLike, mase_scale: float | None = None
) -> dict[str, float]:
    """MAE, RMSE, CV(RMSE), NMBE and (with a scale) MASE of one forecast."""
    out = {
        "mae": mae(actual, predicted),
        "rmse": rmse(actual, predicted),
        "cv_rmse": cv_rmse(actual, predicted),
        "nmbe": nmbe(actual, predicted),
    }
    if mase_scale is not None:
        out["mase"] = mase(actual, predicted, mase_scale)
    return out


def precision_recall(truth: ArrayLike, flagged: ArrayLike) -> dict[str, float]:
    """Precision, recall and F1 of boolean flags against boolean truth (0 when undefined)."""
    t = np.asarray(truth, dtype=bool).ravel()
    f = np.asarray(flagged, dtype=bool).ravel()
    if t.shape != f.shape:
        raise ValueError(f"truth and flags differ in length ({t.size} vs {f.size})")
    tp = int(np.sum(t & f))
    precision = tp / int(f.sum()) if f.any() else 0.0
    recall = tp / int(t.sum()) if t.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "true_positives": float(tp)}


__all__ = [
    "cv_rmse",
    "forecast_metrics",
    "mae",
    "mase",
    "nmbe",
    "precision_recall",
    "rmse",
    "seasonal_naive_scale",
]
