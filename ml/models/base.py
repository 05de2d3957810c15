"""The one interface every model implements: fit, predict, evaluate, save and load.

Why an ABC with class-level facts (registered name, primary metric and its direction): the jobs,
the registry and the Dagster assets treat the four models alike — train, score on the holdout,
compare with the champion and the reference, promote — without knowing which one they hold.
"""

from __future__ import annotations

import pickle
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Self

import polars as pl


class Model(ABC):
    """A trainable model on Polars frames.  ``predict`` returns one row per input row or entity."""

    #: registered model name in MLflow
    name: ClassVar[str]
    #: the holdout metric promotion compares, and whether larger is better
    primary_metric: ClassVar[str]
    higher_is_better: ClassVar[bool]

    @abstractmethod
    def fit(self, frame: pl.DataFrame) -> Self:
        """Train on ``frame``; returns self."""

    @abstractmethod
    def predict(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Predictions for ``frame`` (the model's documented input frame)."""

    @abstractmethod
    def evaluate(self, frame: pl.DataFrame) -> dict[str, float]:
        """Holdout metrics of this model on ``frame`` (includes :attr:`primary_metric`)."""

    def params(self) -> dict[str, Any]:
        """Hyper-parameters worth logging."""
        return {}

    # persistence: a directory per model, so the Keras model can keep its own file format
    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with (path / "model.pkl").open("wb") as fh:
            pickle.dump(self, fh)

    @classmethod
    def load(cls, path: Path) -> Self:
        """Load what :meth:`save` wrote (``Model.load`` loads any of the four)."""
        with (Path(path) / "model.pkl").open("rb") as fh:
            model = pickle.load(fh)
        if not isinstance(model, cls):
            raise TypeError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}")
        model._restore(Path(path))
        return model

    def _restore(self, path: Path) -> None:  # noqa: B027 - only models with extra files override it
        """Reload parts that are not pickled (the Keras network)."""

    @property
    def fitted(self) -> bool:
        return getattr(self, "_fitted", False)

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() first")


def require_columns(frame: pl.DataFrame, columns: list[str] | tuple[str, ...], what: str) -> None:
    """A clear error when a frame lacks what a model needs."""
    if not isinstance(frame, pl.DataFrame):
        raise ValueError(f"{what} must be a polars DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks columns {missing}")
    if frame.is_empty():
        raise ValueError(f"{what} is empty")


__all__ = ["Model", "require_columns"]
