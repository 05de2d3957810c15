"""Daily marts on the duckdb and postgres dbt targets beside a plain pandas reference, in one run.

    python benchmarks/daily_aggregates.py [--households 1000] [--days 30] [--start 2025-06-16]

Smart-meter readings at 1-minute resolution (1,000 households × 30 days = 43.2 M, plus one boundary
register reading per meter at the midnight after the last day) come from the household simulator
(``ingest.simulator``) and are written once to Parquet, one file per local day. Then, per target:

* landing (timed apart): each day file goes through the pipeline's own
  ``Warehouse.land_readings`` (DuckDB: register + insert; PostgreSQL: CSV + COPY) into
  ``raw.energy_readings`` of a throwaway DuckDB file / PostgreSQL database;
* marts (the figure): one ``dbt build`` of the seeds and models of ``+energy_usage_daily
  +fct_bills_monthly``, as the subprocess the pipeline runs (``.venv/bin/dbt``), tests left out
  (``--dbt-tests`` runs them afterwards, untimed). Per-model times come from run_results.json.

The reference is a straightforward pandas implementation of the same aggregates — register deltas
per meter, the interval's local day and hour in Asia/Seoul, TOU split off-peak 22–08 / mid 08–16 /
peak 16–22, daily total, carbon = kWh × 0.4173, and the KEPCO cost through hems.domain.tariff
(day = month-to-date bill difference, month = bill of the metered days) — run in a fresh process
(its own peak RSS) over chunks of households so memory stays bounded. Its Parquet read is timed
apart; the speed-up is pandas compute (usage + cost) over the duckdb marts.

The three results must agree: every household-day present in all three, kWh and carbon within
1e-6, cost and monthly bill to the won; pandas must also equal the simulator's ground truth.
stdout gets one result line; stderr gets progress and a small table. Exit status 1 on disagreement.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hems.contracts import ENERGY_CONSUMPTION, DeviceType  # noqa: E402
from hems.settings import Profile, Settings  # noqa: E402
from hems.stores.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse  # noqa: E402

DEFAULT_START = date(2025, 6, 16)  # 30 days cross a month, the summer tiers and the 2025-07-01 fund rate
MARTS = ("energy_usage_daily", "fct_bills_monthly")
KWH_TOLERANCE = 1e-6
TARGET_DUCKDB_S = 60.0
TARGET_SPEEDUP = 10.0
USAGE_COLUMNS = ("total_kwh", "grid_kwh", "peak_kwh", "mid_kwh", "off_peak_kwh", "carbon_kg")


def log(message: str) -> None:
    print(f"[daily_aggregates {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Dataset:
    """Meter readings written once as Parquet (one file per local day) and the simulator's truth."""

    parquet_dir: Path
    files: tuple[Path, ...]
    readings: int
    household_ids: tuple[str, ...]
    start: date
    days: int
    truth: pl.DataFrame  # household_id, date, import_kwh and its off-peak / mid / peak parts


def _meter_rows(readings: pl.DataFrame) -> pl.DataFrame:
    """Smart-meter readings in the raw table's columns (ENERGY_CONSUMPTION), as the pipeline lands them."""
    sources = ENERGY_CONSUMPTION.field_sources or {}
    return readings.filter(pl.col("device_type") == DeviceType.smart_meter.value).select(
        "ts",
        *ENERGY_CONSUMPTION.tags,
        *[pl.col(src).cast(pl.Float64).alias(dst) for dst, src in sources.items()],
    )


def generate(households: int, days: int, start: date, out_dir: Path, seed: int = 42) -> Dataset:
    """Simulate the fleet day by day and keep the smart-meter readings (memory bounded by one day)."""
    from ingest.simulator import Fleet, simulate_days

    if households <= 0 or days <= 0:
        raise ValueError(f"households and days must be positive, got {households} and {days}")
    out_dir.mkdir(parents=True, exist_ok=True)
    fleet = Fleet.generate(households, seed=seed, timezone="Asia/Seoul")
    files, truths, total = [], [], 0
    # row groups of 50 households' day, so a reader filtering on household_id skips the rest
    for chunk in simulate_days(fleet, start, days, env_freq_minutes=60):
        meter = _meter_rows(chunk.readings)
        path = out_dir / f"readings-{chunk.day.isoformat()}.parquet"
        meter.write_parquet(path, row_group_size=50 * 1440, statistics=True)
        files.append(path)
        truths.append(chunk.truth)
        total += meter.height
        log(f"generated {chunk.day}: {meter.height:,} meter readings")
    truth = pl.concat(truths).select(
        "household_id", "date", "import_kwh", "import_off_peak_kwh", "import_mid_kwh", "import_peak_kwh"
    )
    return Dataset(out_dir, tuple(files), total, tuple(fleet.household_ids), start, days, truth)


# ------------------------------------------------------------------------------------- warehouses


def land(warehouse: Warehouse, dataset: Dataset) -> int:
    """Land every day file through the pipeline's own landing (idempotent replace of its range)."""
    rows = 0
    for path in dataset.files:
        frame = pl.read_parquet(path)
        first, last = frame["ts"].min(), frame["ts"].max()
        rows += warehouse.land_readings(frame, first, last + timedelta(milliseconds=1))  # type: ignore[operator]
    return rows


@dataclass
class DbtRun:
    seconds: float = 0.0  # wall time of the `dbt build` subprocess (seeds + models, dbt start-up included)
    seed_s: float = 0.0  # execution time of the seeds (run_results.json)
    models_s: float = 0.0  # execution time of the models, summed (they run on 2 dbt threads)
    models: dict[str, float] = field(default_factory=dict)  # execution_time per model (run_results.json)
    peak_rss_mb: float = 0.0  # largest dbt process (DuckDB runs inside it; PostgreSQL does not)
    # CPU seconds (user + sys) of the dbt process: DuckDB's work runs inside it, so on duckdb this is
    # the build's compute, which other load on the machine does not inflate the way it does wall time
    cpu_s: float = 0.0
    tests_s: float | None = None


def _dbt(args: list[str], settings: Settings, work: Path, name: str) -> tuple[float, float, float]:
    """One dbt subprocess as the pipeline runs it; returns (wall seconds, peak RSS MB, CPU seconds)."""
    from orchestration.lib.environment import DBT_PROJECT_DIR, dbt_env

    exe = Path(sys.executable).parent / "dbt"
    cmd = [
        str(exe) if exe.exists() else "dbt",
        *args,
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target-path",
        str(work / "target"),
        "--log-path",
        str(work / "logs"),
    ]
    out = work / f"dbt-{name}.out"
    with out.open("wb") as sink:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env={**os.environ, **dbt_env(settings)}, stdout=sink, stderr=sink)
        _, status, usage = os.wait4(proc.pid, 0)  # wait4 gives this child's own rusage
        seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"dbt {' '.join(args)} failed ({proc.returncode}):\n{out.read_text()[-6000:]}")
    return seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def build_marts(settings: Settings, work: Path, run_tests: bool = False) -> DbtRun:
    """Parse (untimed), then time one `dbt build` of the seeds and models of the daily marts.

    One invocation, as the pipeline's `dbt build`, with the tests left out (run afterwards and
    untimed when asked), so dbt's start-up is paid once.
    """
    work.mkdir(parents=True, exist_ok=True)
    selection = ["--select", *(f"+{m}" for m in MARTS)]
    _dbt(["parse"], settings, work, "parse")
    result = DbtRun()
    result.seconds, result.peak_rss_mb, result.cpu_s = _dbt(
        ["build", *selection, "--resource-type", "seed", "--resource-type", "model"], settings, work, "build"
    )
    run_results = json.loads((work / "target" / "run_results.json").read_text())
    for r in run_results["results"]:
        seconds = float(r["execution_time"])
        if r["unique_id"].startswith("seed."):
            result.seed_s += seconds
        else:
            result.models[r["unique_id"].rsplit(".", 1)[-1]] = round(seconds, 2)
    result.models_s = sum(result.models.values())
    if run_tests:
        result.tests_s, _, _ = _dbt(["test", *selection], settings, work, "test")
    return result


_MART_SQL = {
    # meters only (no inverter rows), so the home's total equals grid import: both are checked
    "daily": """select household_id, date, total_consumption_kwh as total_kwh,
        grid_consumption_kwh as grid_kwh, peak_usage_kwh as peak_kwh,
        mid_usage_kwh as mid_kwh, off_peak_usage_kwh as off_peak_kwh, carbon_emission_kg as carbon_kg,
        cost_krw from marts.energy_usage_daily""",
    "monthly": """select household_id, billing_month, cast(kwh as double precision) as kwh,
        cast(total_krw as double precision) as total_krw from marts.fct_bills_monthly""",
}


@dataclass(frozen=True)
class Aggregates:
    """Daily usage per household-day and the monthly bill per household-month, one implementation."""

    daily: pl.DataFrame
    monthly: pl.DataFrame


def _normalize(agg: Aggregates) -> Aggregates:
    daily = agg.daily.select(
        pl.col("household_id").cast(pl.String),
        pl.col("date").cast(pl.Date),
        *[pl.col(c).cast(pl.Float64) for c in (*USAGE_COLUMNS, "cost_krw")],
    ).sort("household_id", "date")
    monthly = agg.monthly.select(
        pl.col("household_id").cast(pl.String),
        pl.col("billing_month").cast(pl.Date),
        pl.col("kwh").cast(pl.Float64),
        pl.col("total_krw").cast(pl.Float64),
    ).sort("household_id", "billing_month")
    return Aggregates(daily, monthly)


def read_marts(settings: Settings) -> Aggregates:
    if settings.profile is Profile.stack:
        pg = settings.postgres
        wh = PostgresWarehouse(pg.url(pg.warehouse_database, driver="postgresql"), pg.warehouse_database)
        return _normalize(Aggregates(wh.query(_MART_SQL["daily"]), wh.query(_MART_SQL["monthly"])))
    import duckdb

    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return _normalize(Aggregates(con.sql(_MART_SQL["daily"]).pl(), con.sql(_MART_SQL["monthly"]).pl()))


@contextmanager
def throwaway_postgres(host: str, port: int) -> Iterator[str]:
    """A PostgreSQL database created for the run and dropped afterwards, whatever happens."""
    import psycopg

    name = f"hems_bench_{uuid.uuid4().hex[:10]}"
    admin = f"postgresql://postgres@{host}:{port}/postgres"
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(admin, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---------------------------------------------------------------------------------------- pandas


@dataclass
class Reference:
    aggregates: Aggregates
    read_s: float
    usage_s: float
    cost_s: float
    peak_rss_mb: float
    chunks: int
    compute_cpu_s: float = 0.0  # CPU seconds (user + sys) of usage + cost, this process

    @property
    def compute_s(self) -> float:
        return self.usage_s + self.cost_s


def pandas_daily_usage(readings: Any, timezone: str, carbon_factor: float) -> Any:
    """Daily kWh per household and local day, split by TOU band, from register deltas (pandas).

    A reading is the register through its instant, so a delta belongs to the interval that began at
    the previous reading of the same meter; a negative delta (reset, swap) counts as 0.
    """
    import pandas as pd

    meters = readings[
        (readings["device_type"] == DeviceType.smart_meter.value) & readings["energy_import_kwh"].notna()
    ]
    meters = meters.sort_values(["device_id", "ts"])
    by_meter = meters.groupby("device_id", sort=False)
    delta = by_meter["energy_import_kwh"].diff()
    interval_start = by_meter["ts"].shift()
    has_start = interval_start.notna()
    local = interval_start[has_start].dt.tz_convert(timezone).dt.tz_localize(None)
    hour = local.dt.hour
    band = np.select(
        [(hour >= 16) & (hour < 22), (hour >= 8) & (hour < 16)], ["peak_kwh", "mid_kwh"], "off_peak_kwh"
    )
    intervals = pd.DataFrame(
        {
            "household_id": meters["household_id"][has_start],
            "date": local.dt.normalize(),
            "band": band,
            "kwh": delta[has_start].clip(lower=0),
        }
    )
    daily = (
        intervals.groupby(["household_id", "date", "band"], observed=True)["kwh"]
        .sum()
        .unstack("band", fill_value=0.0)
        .reindex(columns=["peak_kwh", "mid_kwh", "off_peak_kwh"], fill_value=0.0)
    )
    daily["total_kwh"] = intervals.groupby(["household_id", "date"], observed=True)["kwh"].sum()
    daily["grid_kwh"] = daily["total_kwh"]  # meters only: the home's total is its grid import
    daily["carbon_kg"] = daily["total_kwh"] * carbon_factor
    return daily.reset_index()


def pandas_costs(daily: Any) -> tuple[Any, Any]:
    """Day cost = month-to-date bill difference; month bill = bill of its metered days (KEPCO, DESIGN §5)."""
    import pandas as pd

    from hems.domain.tariff import daily_costs, kepco_bill, metered_kwh

    daily = daily.sort_values(["household_id", "date"]).copy()
    daily["billing_month"] = daily["date"].dt.to_period("M").dt.to_timestamp()
    costs: list[Decimal] = []
    months = []
    for (household, month), days in daily.groupby(["household_id", "billing_month"], sort=False):
        first = month.date()
        costs.extend(daily_costs(days["total_kwh"].tolist(), first))
        kwh = sum((metered_kwh(v) for v in days["total_kwh"].tolist()), Decimal(0))
        months.append((household, first, float(kwh), float(kepco_bill(kwh, first).total)))
    daily["cost_krw"] = [float(c) for c in costs]
    monthly = pd.DataFrame(months, columns=["household_id", "billing_month", "kwh", "total_krw"])
    return daily.drop(columns="billing_month"), monthly


def pandas_reference(
    parquet_dir: Path, household_ids: Sequence[str], chunk: int, timezone: str, carbon_factor: float
) -> Reference:
    """The reference over chunks of ``chunk`` households (each read with a household filter)."""
    import pandas as pd

    columns = ["ts", "household_id", "device_id", "device_type", "energy_import_kwh"]
    read_s = usage_s = cost_s = cpu_s = 0.0
    dailies, monthlies = [], []
    ids = list(household_ids)
    parts = [ids[i : i + chunk] for i in range(0, len(ids), chunk)]
    for part in parts:
        t0 = time.perf_counter()
        readings = pd.read_parquet(parquet_dir, columns=columns, filters=[("household_id", "in", part)])
        t1, c1 = time.perf_counter(), _cpu_seconds()
        daily = pandas_daily_usage(readings, timezone, carbon_factor)
        del readings
        t2 = time.perf_counter()
        daily, monthly = pandas_costs(daily)
        t3, c3 = time.perf_counter(), _cpu_seconds()
        cpu_s += c3 - c1
        read_s, usage_s, cost_s = read_s + t1 - t0, usage_s + t2 - t1, cost_s + t3 - t2
        dailies.append(daily)
        monthlies.append(monthly)
    daily_all = pd.concat(dailies, ignore_index=True)
    daily_all["date"] = daily_all["date"].dt.date
    monthly_all = pd.concat(monthlies, ignore_index=True)
    aggregates = _normalize(Aggregates(pl.from_pandas(daily_all), pl.from_pandas(monthly_all)))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return Reference(aggregates, read_s, usage_s, cost_s, peak, len(parts), cpu_s)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def pandas_reference_in_fresh_process(
    parquet_dir: Path, household_ids: Sequence[str], chunk: int, timezone: str, carbon_factor: float
) -> Reference:
    """Run the reference in a spawned process, so its peak RSS is its own (not the generator's)."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(
            pandas_reference, (parquet_dir, tuple(household_ids), chunk, timezone, carbon_factor)
        )


# --------------------------------------------------------------------------------------- compare


@dataclass
class Agreement:
    ok: bool
    max_kwh_diff: float
    problems: list[str]


def compare(results: dict[str, Aggregates], truth: pl.DataFrame, expected_days: int) -> Agreement:
    """All implementations give the same household-days and values; the first also equals the truth."""
    problems: list[str] = []
    names = list(results)
    base_name, base = names[0], results[names[0]]
    max_diff = 0.0
    if base.daily.height != expected_days:
        problems.append(f"{base_name}: {base.daily.height} household-days, expected {expected_days}")
    for name in names[1:]:
        other = results[name]
        for kind, keys in (
            ("daily", ["household_id", "date"]),
            ("monthly", ["household_id", "billing_month"]),
        ):
            left, right = getattr(base, kind), getattr(other, kind)
            missing = (
                left.join(right, on=keys, how="anti").height + right.join(left, on=keys, how="anti").height
            )
            if missing or left.height != right.height:
                problems.append(f"{kind} keys differ between {base_name} and {name} ({missing} unmatched)")
        joined = base.daily.join(other.daily, on=["household_id", "date"], suffix="_other")
        for col in USAGE_COLUMNS:
            diff = float((joined[col] - joined[f"{col}_other"]).abs().max() or 0.0)
            max_diff = max(max_diff, diff)
            if not diff <= KWH_TOLERANCE:
                problems.append(f"daily {col}: {base_name} vs {name} differ by up to {diff:.3g}")
        cost = int((joined["cost_krw"] != joined["cost_krw_other"]).sum())
        if cost:
            problems.append(f"daily cost_krw: {cost} household-days differ between {base_name} and {name}")
        months = base.monthly.join(other.monthly, on=["household_id", "billing_month"], suffix="_other")
        kwh = float((months["kwh"] - months["kwh_other"]).abs().max() or 0.0)
        bills = int((months["total_krw"] != months["total_krw_other"]).sum())
        if kwh > KWH_TOLERANCE or bills:
            problems.append(f"monthly bills: {bills} differ, kWh by up to {kwh:.3g} ({base_name} vs {name})")
    true = truth.rename(
        {
            "import_kwh": "total_kwh_truth",
            "import_peak_kwh": "peak_kwh_truth",
            "import_mid_kwh": "mid_kwh_truth",
            "import_off_peak_kwh": "off_peak_kwh_truth",
        }
    )
    joined = base.daily.join(true, on=["household_id", "date"], how="full", coalesce=True)
    for col in ("total_kwh", "peak_kwh", "mid_kwh", "off_peak_kwh"):
        diff = (joined[col] - joined[f"{col}_truth"]).abs()
        if diff.null_count() or not float(diff.max() or 0.0) <= KWH_TOLERANCE:
            problems.append(f"{base_name} {col} differs from the simulator's truth (max {diff.max()})")
    return Agreement(not problems, max_diff, problems)


# ------------------------------------------------------------------------------------------- run


@dataclass
class TargetRun:
    land_s: float
    landed: int
    dbt: DbtRun
    aggregates: Aggregates


def run_target(
    target: str, dataset: Dataset, work: Path, pg_address: tuple[str, int], tests: bool
) -> TargetRun:
    """Land the dataset into a throwaway warehouse of ``target`` and build the marts there."""
    if target == "duckdb":
        settings = Settings(profile=Profile.local, data_dir=work / "var")
        warehouse: Warehouse = DuckDBWarehouse(settings.warehouse_path, settings.warehouse_snapshot_path)
        return _land_build_read(warehouse, settings, dataset, work, tests)
    host, port = pg_address
    with throwaway_postgres(host, port) as database:
        settings = Settings(
            profile=Profile.stack, postgres={"host": host, "port": port, "warehouse_database": database}
        )
        pg = settings.postgres
        warehouse = PostgresWarehouse(pg.url(database, driver="postgresql"), f"{host}:{port}/{database}")
        return _land_build_read(warehouse, settings, dataset, work, tests)


def _land_build_read(
    warehouse: Warehouse, settings: Settings, dataset: Dataset, work: Path, tests: bool
) -> TargetRun:
    target = warehouse.dbt_target
    t0 = time.perf_counter()
    landed = land(warehouse, dataset)
    land_s = time.perf_counter() - t0
    log(f"{target}: landed {landed:,} readings in {land_s:.1f} s; building the marts")
    dbt = build_marts(settings, work / f"dbt-{target}", run_tests=tests)
    log(f"{target}: marts in {dbt.seconds:.1f} s (seeds {dbt.seed_s:.1f} s) {dbt.models}")
    return TargetRun(land_s, landed, dbt, read_marts(settings))


@dataclass(frozen=True)
class Outcome:
    """The figures (what the result line prints) and the three results they were checked on."""

    figures: dict[str, Any]
    results: dict[str, Aggregates]
    truth: pl.DataFrame


def run(
    households: int = 1000,
    days: int = 30,
    start: date = DEFAULT_START,
    seed: int = 42,
    work: Path | None = None,
    targets: Sequence[str] = ("duckdb", "postgres"),
    pandas_chunk: int = 100,
    pg_address: tuple[str, int] = ("127.0.0.1", 5432),
    dbt_tests: bool = False,
    fresh_process: bool = True,
) -> Outcome:
    """The whole benchmark: generate, land and build on each target, the pandas reference, compare."""
    if pandas_chunk <= 0:
        raise ValueError(f"pandas_chunk must be positive, got {pandas_chunk}")
    unknown = set(targets) - {"duckdb", "postgres"}
    if unknown or not targets:
        raise ValueError(f"targets must be duckdb and/or postgres, got {list(targets)}")
    own_work = work is None
    work = Path(tempfile.mkdtemp(prefix="hems-daily-agg-")) if work is None else work
    domain = Settings().domain
    try:
        t0 = time.perf_counter()
        dataset = generate(households, days, start, work / "parquet", seed)
        generate_s = time.perf_counter() - t0
        log(f"generated {dataset.readings:,} readings in {generate_s:.1f} s")
        runs = {t: run_target(t, dataset, work / t, pg_address, dbt_tests) for t in targets}
        log("pandas reference")
        reference_fn = pandas_reference_in_fresh_process if fresh_process else pandas_reference
        ref = reference_fn(
            dataset.parquet_dir,
            dataset.household_ids,
            pandas_chunk,
            domain.timezone,
            domain.carbon_factor_kg_per_kwh,
        )
        results = {"pandas": ref.aggregates, **{t: r.aggregates for t, r in runs.items()}}
        agreement = compare(results, dataset.truth, households * days)
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)
    n = dataset.readings
    out: dict[str, Any] = {
        "readings": n,
        "households": households,
        "days": days,
        "start": start.isoformat(),
        "cores": os.cpu_count(),
        "generate_s": round(generate_s, 1),
    }
    for t, r in runs.items():
        out |= {
            f"{t}_s": round(r.dbt.seconds, 2),
            f"{t}_rows_per_s": round(n / r.dbt.seconds),
            f"{t}_seeds_s": round(r.dbt.seed_s, 2),
            f"{t}_models_s": round(r.dbt.models_s, 2),
            f"{t}_dbt_cpu_s": round(r.dbt.cpu_s, 1),
            f"{t}_land_s": round(r.land_s, 1),
            f"{t}_land_rows_per_s": round(r.landed / r.land_s),
            f"{t}_dbt_peak_rss_mb": round(r.dbt.peak_rss_mb),
            f"{t}_models": r.dbt.models,
        }
        if r.dbt.tests_s is not None:
            out[f"{t}_tests_s"] = round(r.dbt.tests_s, 1)
    out |= {
        "pandas_s": round(ref.compute_s, 2),
        "pandas_rows_per_s": round(n / ref.compute_s),
        "pandas_usage_s": round(ref.usage_s, 2),
        "pandas_cpu_s": round(ref.compute_cpu_s, 1),
        "pandas_cost_s": round(ref.cost_s, 2),
        "pandas_read_s": round(ref.read_s, 2),
        "pandas_chunk_households": pandas_chunk,
        "pandas_peak_rss_mb": round(ref.peak_rss_mb),
    }
    if "duckdb" in runs:
        out["speedup_vs_pandas"] = round(ref.compute_s / runs["duckdb"].dbt.seconds, 1)
        out["met_duckdb_60s"] = runs["duckdb"].dbt.seconds <= TARGET_DUCKDB_S
        out["met_speedup_10x"] = out["speedup_vs_pandas"] >= TARGET_SPEEDUP
    out["agree"] = agreement.ok
    out["max_kwh_diff"] = agreement.max_kwh_diff
    out["problems"] = agreement.problems
    return Outcome(out, results, dataset.truth)


def result_line(result: dict[str, Any]) -> str:
    """`daily_aggregates key=value …` with the scalar figures (nested and list values as JSON)."""

    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, dict | list):
            return json.dumps(v, separators=(",", ":"))
        return str(v)

    return "daily_aggregates " + " ".join(f"{k}={fmt(v)}" for k, v in result.items())


def table(result: dict[str, Any]) -> str:
    n = result["readings"]
    rows = [("implementation", "seconds", "readings/s", "landing s")]
    for t in ("duckdb", "postgres"):
        if f"{t}_s" in result:
            rows.append(
                (
                    f"dbt {t} (build)",
                    f"{result[f'{t}_s']:.1f}",
                    f"{n / result[f'{t}_s']:,.0f}",
                    f"{result[f'{t}_land_s']:.1f}",
                )
            )
    rows.append(
        (
            "pandas (usage+cost)",
            f"{result['pandas_s']:.1f}",
            f"{n / result['pandas_s']:,.0f}",
            f"{result['pandas_read_s']:.1f} (read)",
        )
    )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.append(
        f"readings={n:,}  agree={str(result['agree']).lower()}  "
        f"speedup_vs_pandas={result.get('speedup_vs_pandas')}"
    )
    lines.extend(f"PROBLEM: {p}" for p in result["problems"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--start", type=date.fromisoformat, default=DEFAULT_START, help="first local day")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--targets", default="duckdb,postgres", help="comma-separated dbt targets")
    parser.add_argument("--pandas-chunk", type=int, default=100, help="households per pandas chunk")
    parser.add_argument("--pg-host", default=os.environ.get("HEMS_POSTGRES__HOST", "127.0.0.1"))
    parser.add_argument("--pg-port", type=int, default=int(os.environ.get("HEMS_POSTGRES__PORT", "5432")))
    parser.add_argument("--dbt-tests", action="store_true", help="also run the dbt tests (untimed)")
    parser.add_argument("--work-dir", type=Path, help="keep Parquet, warehouses and dbt logs here")
    args = parser.parse_args(argv)
    if args.households <= 0 or args.days <= 0 or args.pandas_chunk <= 0:
        parser.error("--households, --days and --pandas-chunk must be positive")
    result = run(
        args.households,
        args.days,
        args.start,
        args.seed,
        args.work_dir,
        [t.strip() for t in args.targets.split(",") if t.strip()],
        args.pandas_chunk,
        (args.pg_host, args.pg_port),
        args.dbt_tests,
    ).figures
    print(table(result), file=sys.stderr)
    print(result_line(result), flush=True)
    return 0 if result["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
