"""Points ledger at fleet scale: one monthly accrual run for N households, its re-runs, expiry, export.

Usage: python benchmarks/ledger.py [--households 100000] [--backend sqlite|postgresql|both]
Each backend gets a fresh app database (a temporary SQLite file; a throwaway PostgreSQL database
at HEMS_POSTGRES__HOST:PORT, dropped afterwards), migrated, with N households and one program.
Timed: the first ``record_rewards`` (N accruals), the same frame again (pays nothing), the frame
with 1% of results changed (adjustments), a second month on top of a non-empty ledger,
``expire_points`` over every household, ``export_settlement`` and 200 single redemptions.
Prints one JSON line per backend.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hems.stores import appdb
from transforms import ledger

PROGRAM = {"code": "bench-cashback", "name": "bench", "kind": "cashback", "effective_from": "2024-01-01"}


def rewards_frame(ids: list[str], period: str, seed: int) -> pl.DataFrame:
    """Deterministic results: points 0-720 in steps of 60, about 1 in 13 households saving nothing."""
    points = ((pl.int_range(0, len(ids), eager=True) * 7919 + seed) % 13) * 60
    return pl.DataFrame({"household_id": ids, "points": points}).with_columns(
        program_code=pl.lit(PROGRAM["code"]),
        period=pl.lit(period),
        baseline_kwh=pl.lit(310.0),
        actual_kwh=310.0 - pl.col("points") / 60,
        savings_kwh=pl.col("points") / 60,
        savings_pct=pl.col("points") / 60 / 3.1,
        reward_krw=pl.col("points"),
        status=pl.when(pl.col("points") > 0).then(pl.lit("qualified")).otherwise(pl.lit("no_savings")),
        reason=pl.lit(None, dtype=pl.String),
    )


@contextmanager
def database(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/app.sqlite3"
            yield url
            appdb.dispose_engine(url)
        return
    import psycopg

    host = os.environ.get("HEMS_POSTGRES__HOST", "127.0.0.1")
    port = os.environ.get("HEMS_POSTGRES__PORT", "5432")
    name = f"hems_bench_{uuid.uuid4().hex[:10]}"
    admin = f"postgresql://postgres@{host}:{port}/postgres"
    with psycopg.connect(admin, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@{host}:{port}/{name}"
    try:
        yield url
    finally:
        appdb.dispose_engine(url)
        with psycopg.connect(admin, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(backend: str, households: int) -> dict[str, object]:
    ids = [f"hh-{i:06d}" for i in range(households)]
    with database(backend) as url:
        appdb.migrate(url)
        appdb.upsert_households([{"id": hh} for hh in ids], url, chunk_size=5_000)
        engine = appdb.get_engine(url)
        ledger.upsert_programs(engine, [PROGRAM])
        july = rewards_frame(ids, "2025-07", seed=1)
        changed = july.with_columns(
            points=pl.when(pl.int_range(pl.len()) % 100 == 0).then(pl.col("points") + 60).otherwise("points")
        ).with_columns(
            reward_krw=pl.col("points"),
            status=pl.when(pl.col("points") > 0).then(pl.lit("qualified")).otherwise(pl.lit("no_savings")),
        )
        august = rewards_frame(ids, "2025-08", seed=5)
        posted = dt.datetime(2025, 8, 5, tzinfo=dt.UTC)

        first = ledger.record_rewards(engine, july, at=posted)
        again = ledger.record_rewards(engine, july, at=posted)
        adjusted = ledger.record_rewards(engine, changed, at=posted)
        second = ledger.record_rewards(engine, august, at=posted + dt.timedelta(days=31))

        payers = [hh for hh in ids[:2_000] if ledger.balance(engine, hh) >= 60][:200]
        started = time.perf_counter()
        for i, hh in enumerate(payers):
            ledger.redeem(engine, hh, 60, f"bench-{i}")
        redeem_ms = (time.perf_counter() - started) * 1000 / max(1, len(payers))

        started = time.perf_counter()
        expired = ledger.expire_points(engine, dt.date(2027, 9, 1), validity_months=24)
        expire_s = time.perf_counter() - started

        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            export = ledger.export_settlement(engine, PROGRAM["code"], "2025-07", out)
            export_s = time.perf_counter() - started
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT count(*) FROM points_ledger").scalar()
    return {
        "benchmark": "ledger",
        "backend": backend,
        "households": households,
        "first_run_s": round(first.seconds, 2),
        "first_run_entries": first.accruals,
        "rerun_same_s": round(again.seconds, 2),
        "rerun_same_entries": again.accruals + again.adjustments,
        "rerun_changed_s": round(adjusted.seconds, 2),
        "rerun_changed_adjustments": adjusted.accruals + adjusted.adjustments,
        "second_month_s": round(second.seconds, 2),
        "expire_all_s": round(expire_s, 2),
        "expired_households": expired.households,
        "export_s": round(export_s, 2),
        "export_households": export.settlement.households,
        "redeem_ms_each": round(redeem_ms, 1),
        "ledger_rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=100_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    for backend in ("sqlite", "postgresql") if args.backend == "both" else (args.backend,):
        print(json.dumps(run(backend, args.households)), flush=True)


if __name__ == "__main__":
    main()
