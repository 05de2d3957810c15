"""Embedded raw store: hive-partitioned Parquet files (one folder per UTC date) read with DuckDB.

Files are immutable and written through a rename, so readers never see a half-written file and
never take a lock: the API, the dashboards and a pipeline run can read while ingest writes.
A later write of the same key wins on read (ordering by the file name, which starts with the
write time), which gives the same overwrite semantics as InfluxDB.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl

from hems.contracts import Measurement
from hems.stores.raw_store import RawStore


class ParquetRawStore(RawStore):
    name = "parquet"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def ping(self) -> None:
        self.ensure()

    def drop(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def _write(self, measurement: Measurement, frame: pl.DataFrame) -> int:
        frame = frame.with_columns(pl.col("ts").dt.date().alias("_date"))
        stamp = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        for (day,), part in frame.partition_by("_date", as_dict=True).items():
            folder = self.root / measurement.name / f"date={day.isoformat()}"
            folder.mkdir(parents=True, exist_ok=True)
            final = folder / f"part-{stamp}.parquet"
            tmp = folder / f".tmp-{stamp}.parquet"
            part.drop("_date").sort([*measurement.tags, "ts"]).write_parquet(tmp, statistics=True)
            os.replace(tmp, final)
        return frame.height

    def files(self, measurement: str, start: datetime, end: datetime) -> list[str]:
        base = self.root / measurement
        first = _utc_date(start)
        last = _utc_date(end - timedelta(microseconds=1))
        out: list[str] = []
        day: date = first
        while day <= last:
            out.extend(sorted(str(p) for p in (base / f"date={day.isoformat()}").glob("part-*.parquet")))
            day += timedelta(days=1)
        return out

    def count_points(self, measurement: str, start: datetime, end: datetime) -> int:
        files = self.files(measurement, start, end)
        if not files:
            return 0
        with duckdb.connect() as con:
            con.execute("SET TimeZone = 'UTC'")
            (n,) = con.execute(  # type: ignore[misc]
                "SELECT count(*) FROM read_parquet($files, union_by_name = true) WHERE ts >= $s AND ts < $e",
                {"files": files, "s": start, "e": end},
            ).fetchone()
        return int(n)

    def _query(
        self,
        measurement: Measurement,
        start: datetime,
        end: datetime,
        where: dict[str, Sequence[str]] | None,
    ) -> pl.DataFrame:
        files = self.files(measurement.name, start, end)
        if not files:
            return pl.DataFrame(schema=measurement.schema)
        cols = ", ".join(f'"{c}"' for c in measurement.schema)
        keys = ", ".join(f'"{c}"' for c in (*measurement.tags, "ts"))
        conditions = ["ts >= $start", "ts < $end"]
        params: dict[str, object] = {"start": start, "end": end}
        for i, (tag, values) in enumerate((where or {}).items()):
            if tag not in measurement.tags:
                raise ValueError(f"{measurement.name} has no tag {tag!r}")
            conditions.append(f'"{tag}" IN (SELECT unnest($w{i}))')
            params[f"w{i}"] = list(values)
        sql = f"""
            SELECT {cols} FROM read_parquet($files, filename = true, union_by_name = true)
            WHERE {" AND ".join(conditions)}
            QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY filename DESC) = 1
        """
        params["files"] = files
        with duckdb.connect() as con:
            con.execute("SET TimeZone = 'UTC'")
            return con.sql(sql, params=params).pl()


def _utc_date(ts: datetime) -> date:
    from datetime import UTC

    return ts.astimezone(UTC).date()
