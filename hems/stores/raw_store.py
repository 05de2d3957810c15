"""The raw time-series store: one interface, InfluxDB (stack) and Parquet+DuckDB (embedded).

A point is keyed by measurement + tags + timestamp; writing the same key again replaces it, so
re-delivered readings and replayed batches never double-count (DESIGN §4).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime

import polars as pl

from hems.contracts import (
    ENERGY_CONSUMPTION,
    ENVIRONMENTAL_DATA,
    MEASUREMENTS,
    Measurement,
    conform,
    conform_readings,
    empty_readings,
    measurement_to_readings,
    readings_to_measurements,
)


class RawStore(ABC):
    """Write and read measurement frames (``ts`` UTC + tag columns + field columns)."""

    name: str

    @abstractmethod
    def ensure(self) -> None:
        """Create the database / directories if missing."""

    @abstractmethod
    def ping(self) -> None:
        """Raise :class:`hems.errors.ServiceUnavailable` when the store cannot be reached."""

    @abstractmethod
    def _write(self, measurement: Measurement, frame: pl.DataFrame) -> int: ...

    @abstractmethod
    def _query(
        self,
        measurement: Measurement,
        start: datetime,
        end: datetime,
        where: dict[str, Sequence[str]] | None,
    ) -> pl.DataFrame: ...

    @abstractmethod
    def count_points(self, measurement: str, start: datetime, end: datetime) -> int:
        """Points written with ``start <= ts < end`` — a cheap change signal for micro-batching
        (re-delivered duplicates may count twice on Parquet until read; that only triggers a refresh)."""

    @abstractmethod
    def drop(self) -> None:
        """Delete everything this store holds (tests and `hems demo --reset`)."""

    # --- shared behaviour -------------------------------------------------------------
    def write(self, measurement: str, frame: pl.DataFrame) -> int:
        """Write a frame of one measurement; returns the number of points written."""
        m = _measurement(measurement)
        missing = [c for c in ("ts", *m.tags) if c not in frame.columns]
        if missing:
            raise ValueError(f"{measurement}: frame lacks columns {missing}")
        frame = conform(frame, m.schema).filter(pl.col("ts").is_not_null())
        if frame.is_empty():
            return 0
        return self._write(m, frame)

    def query(
        self,
        measurement: str,
        start: datetime,
        end: datetime,
        where: dict[str, Sequence[str]] | None = None,
    ) -> pl.DataFrame:
        """Points with ``start <= ts < end`` (timezone-aware bounds), one row per key, sorted."""
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("query bounds must be timezone-aware")
        m = _measurement(measurement)
        out = self._query(m, start, end, where)
        out = conform(out, m.schema)
        return out.sort([*m.tags, "ts"])

    def write_readings(self, readings: pl.DataFrame) -> int:
        return sum(self.write(name, frame) for name, frame in readings_to_measurements(readings).items())

    def read_readings(
        self, start: datetime, end: datetime, household_ids: Sequence[str] | None = None
    ) -> pl.DataFrame:
        where: dict[str, Sequence[str]] | None = (
            {"household_id": list(household_ids)} if household_ids is not None else None
        )
        parts = [
            measurement_to_readings(m.name, self.query(m.name, start, end, where))
            for m in (ENERGY_CONSUMPTION, ENVIRONMENTAL_DATA)
        ]
        parts = [p for p in parts if p.height]
        if not parts:
            return empty_readings()
        return conform_readings(pl.concat(parts)).sort(["household_id", "device_id", "ts"])


def _measurement(name: str) -> Measurement:
    try:
        return MEASUREMENTS[name]
    except KeyError:
        raise ValueError(f"unknown measurement {name!r}; known: {sorted(MEASUREMENTS)}") from None


def get_raw_store(settings=None) -> RawStore:
    """The raw store of the configured profile."""
    from hems.settings import Profile, get_settings

    settings = settings or get_settings()
    if settings.profile is Profile.stack:
        from hems.stores.raw_influx import InfluxRawStore

        return InfluxRawStore(settings.influx)
    from hems.stores.raw_parquet import ParquetRawStore

    return ParquetRawStore(settings.raw_dir)
