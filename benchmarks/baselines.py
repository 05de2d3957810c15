"""All baseline methods for 100,000 households × 2 years of daily data, beside a per-household loop.

    python3 -m uv run --locked --no-sync python benchmarks/baselines.py [--households 100000]
        [--reference-households 200] [--reference-caltrack-households 30]

Synthetic data (numpy, outside the clock): 730 local days per household, daily mean temperature
from 16 regions, usage = μ + βH·HDD + βC·CDD + noise with 10 % less in the second year; for the
CBL, hourly kWh of the 30 days before a demand-response event (what the CBL reads). Household
ids are strings ("hh-000001"), as in the warehouse.

Timed, in one run (``transforms.baselines`` / ``transforms.rewards``):

* cashback: daily → monthly, baseline for every month of year 2, rewards;
* CBL Mid(6/10) and Max(4/5) for one event, event savings and rewards;
* CalTRACK daily: fit on year 1 (full balance-point grid), counterfactual and savings on year 2,
  rewards.

Reference, same run: a per-household pandas/statsmodels loop (the way the per-household code is
usually written) on a sample — ``--reference-households`` for cashback and CBL,
``--reference-caltrack-households`` for CalTRACK (≈ 663 OLS fits a household) — extrapolated
linearly to the full count: pandas resample for cashback, a sort per hour for the CBL, and for CalTRACK one
``statsmodels.OLS`` per candidate model and balance point with the same rules. Its CalTRACK
choices are compared with ours (agreement). Prints one JSON line: per method wall and CPU
seconds (CPU = all threads of the process) and peak RSS (the kernel's high-water mark, reset
before each method; it includes the input frames held by the run), totals, and the 1-minute
load average before and after the timed part (the machine is shared).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import time
import warnings
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from transforms.baselines import (
    CaltrackConfig,
    caltrack_savings,
    cashback_baseline,
    cbl_eligible_days,
    dr_event_savings,
    fit_caltrack_daily,
    monthly_kwh,
)
from transforms.rewards import CASHBACK_PROGRAM, DR_PROGRAM, GENERIC_PROGRAM, compute_rewards

FIRST = date(2023, 1, 1)
DAYS = 730
REPORTING_START = date(2024, 1, 1)  # 365 days of baseline, then the reporting year
EVENT = date(2024, 8, 6)  # a Tuesday
REGIONS = 16


def synthetic_daily(n: int, seed: int = 0) -> tuple[pl.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    doy = np.arange(DAYS)
    temps = 13 - 14 * np.cos(2 * np.pi * (doy - 15) / 365)[None, :] + rng.normal(0, 3, (REGIONS, DAYS))
    region = rng.integers(0, REGIONS, n)
    t = temps[region]
    mu, bh, bc = rng.uniform(4, 12, n), rng.uniform(0, 0.5, n), rng.uniform(0, 0.9, n)
    th, tc = rng.integers(12, 19, n), rng.integers(21, 26, n)
    kwh = (
        mu[:, None]
        + bh[:, None] * np.maximum(th[:, None] - t, 0)
        + bc[:, None] * np.maximum(t - tc[:, None], 0)
        + rng.normal(0, 1.0, (n, DAYS))
    )
    kwh = np.maximum(kwh, 0.1)
    kwh[:, 365:] *= 0.9
    ids = pl.Series([f"hh-{i:06d}" for i in range(n)])
    dates = pl.date_range(FIRST, FIRST + timedelta(days=DAYS - 1), eager=True)
    frame = pl.DataFrame(
        {
            "household_id": ids.gather(np.repeat(np.arange(n), DAYS)),
            "date": pl.Series(np.tile(dates.to_numpy(), n)),
            "kwh": kwh.ravel(),
            "temperature_c": t.ravel(),
        }
    )
    return frame, mu


def synthetic_hourly(n: int, mu: np.ndarray, seed: int = 1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    days = 30
    shape = 0.6 + 0.4 * np.sin(np.pi * (np.arange(24) - 6) / 16).clip(0)
    kwh = (mu[:, None, None] / 24) * shape[None, None, :] * rng.uniform(0.7, 1.3, (n, days, 1))
    kwh[:, -1, 14:18] *= 0.7  # the event day: 30 % less 14–18 h
    dates = pl.date_range(EVENT - timedelta(days=days - 1), EVENT, eager=True).to_numpy()
    ids = pl.Series([f"hh-{i:06d}" for i in range(n)])
    return pl.DataFrame(
        {
            "household_id": ids.gather(np.repeat(np.arange(n), days * 24)),
            "date": pl.Series(np.tile(np.repeat(dates, 24), n)),
            "hour": np.tile(np.arange(24, dtype=np.int8), n * days),
            "kwh": kwh.ravel(),
        }
    )


def _reset_peak() -> None:
    """Restart the kernel's peak-RSS counter (VmHWM), so each method's peak is its own."""
    with contextlib.suppress(OSError):  # not Linux, or not permitted: peaks are then cumulative
        Path("/proc/self/clear_refs").write_text("5")


def _rss_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Clock:
    """Wall, CPU (all threads of the process) and peak RSS of one timed section."""

    def __init__(self, out: dict[str, dict[str, float]], name: str) -> None:
        self.out, self.name = out, name

    def __enter__(self) -> None:
        _reset_peak()
        self.rss0 = _rss_mb("VmRSS")
        self.t0, self.c0 = time.perf_counter(), time.process_time()

    def __exit__(self, *exc: object) -> None:
        wall, cpu = time.perf_counter() - self.t0, time.process_time() - self.c0
        peak = _rss_mb("VmHWM")
        self.out[self.name] = {
            "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2),
            "peak_rss_mb": round(peak),
            "peak_above_start_mb": round(peak - self.rss0),
        }


def run_ours(daily: pl.DataFrame, hourly: pl.DataFrame) -> tuple[dict[str, dict[str, float]], pl.DataFrame]:
    """Each method end to end (baseline → savings → rewards); dr_event_savings includes the CBL."""
    out: dict[str, dict[str, float]] = {}
    with _Clock(out, "cashback"):
        monthly = monthly_kwh(daily)
        periods = [f"2024-{m:02d}" for m in range(1, 13)]
        cash = cashback_baseline(monthly, periods)
        compute_rewards(cash, CASHBACK_PROGRAM)
    for method in ("mid_6_10", "max_4_5"):
        with _Clock(out, f"cbl_{method}"):
            event = dr_event_savings(hourly, "dr-2024-08-06", EVENT, range(14, 18), method)  # type: ignore[arg-type]
            compute_rewards(event, DR_PROGRAM, on=EVENT)
    with _Clock(out, "caltrack_fit"):
        model = fit_caltrack_daily(daily, REPORTING_START)
    with _Clock(out, "caltrack_savings"):
        savings = caltrack_savings(model, daily, REPORTING_START).with_columns(period=pl.lit("2024"))
        compute_rewards(savings, GENERIC_PROGRAM, on=REPORTING_START)
    return out, model


# --- the per-household reference ------------------------------------------------------------
def reference_cashback(df: pd.DataFrame) -> None:
    for _, g in df.groupby("household_id"):
        monthly = g.set_index("date")["kwh"].resample("MS").sum()
        for month in monthly.index[monthly.index.year == 2024]:
            prev = [monthly.get(month - pd.DateOffset(years=k)) for k in (1, 2)]
            prev = [p for p in prev if p is not None and not np.isnan(p)]
            _ = (np.mean(prev) if prev else np.nan) - monthly[month]


def reference_cbl(df: pd.DataFrame, need: int, low: int, high: int) -> None:
    days = set(cbl_eligible_days(EVENT, (), 60))
    for _, g in df.groupby("household_id"):
        g = g[g["date"].isin(days)]
        pivot = (
            g.pivot(index="date", columns="hour", values="kwh")
            .dropna()
            .sort_index(ascending=False)
            .head(need)
        )
        values = np.sort(pivot.to_numpy(), axis=0)[low : need - high]
        _ = values.mean(axis=0)


def reference_caltrack(df: pd.DataFrame, cfg: CaltrackConfig) -> dict[str, str]:
    """One statsmodels OLS per candidate, the same qualification rules; returns the chosen type."""
    import statsmodels.api as sm

    grid = np.asarray(cfg.balance_points_c)
    chosen: dict[str, str] = {}
    for hh, g in df.groupby("household_id"):
        base = g[
            (g["date"] >= pd.Timestamp(REPORTING_START - timedelta(days=365)))
            & (g["date"] < pd.Timestamp(REPORTING_START))
        ]
        t, y = base["temperature_c"].to_numpy(), base["kwh"].to_numpy()
        best, best_type = 0.0, "intercept_only"
        sm.OLS(y, np.ones_like(y)).fit()
        hdd = {g_: np.maximum(g_ - t, 0) for g_ in grid}
        cdd = {g_: np.maximum(t - g_, 0) for g_ in grid}

        def ok(x: np.ndarray) -> bool:
            return (x > 0).sum() >= cfg.min_nonzero_degree_days and x.sum() >= cfg.min_total_degree_days_c

        candidates = [("hdd_only", [hdd[a]]) for a in grid if ok(hdd[a])]
        candidates += [("cdd_only", [cdd[b]]) for b in grid if ok(cdd[b])]
        candidates += [
            ("hdd_cdd", [hdd[a], cdd[b]]) for a in grid for b in grid if b >= a and ok(hdd[a]) and ok(cdd[b])
        ]
        for kind, cols in candidates:
            fit = sm.OLS(y, sm.add_constant(np.column_stack(cols), has_constant="add")).fit()
            if (
                np.all(fit.params[1:] > 0)
                and np.all(fit.pvalues[1:] < cfg.max_p_value)
                and fit.rsquared_adj > best
            ):
                best, best_type = fit.rsquared_adj, kind
        chosen[str(hh)] = best_type
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=100_000)
    parser.add_argument("--reference-households", type=int, default=200, help="cashback and CBL loops")
    parser.add_argument("--reference-caltrack-households", type=int, default=30, help="statsmodels loop")
    parser.add_argument("--target-s", type=float, default=30.0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    cbl_eligible_days(EVENT)  # warm the holiday tables outside the clock

    t0 = time.perf_counter()
    daily, mu = synthetic_daily(args.households)
    hourly = synthetic_hourly(args.households, mu)
    generate_s = time.perf_counter() - t0

    peak_generate_mb = _rss_mb("VmHWM")  # before the per-method resets below
    load_before = os.getloadavg()[0]
    t0, cpu0 = time.perf_counter(), time.process_time()
    ours, model = run_ours(daily, hourly)
    total = time.perf_counter() - t0
    cpu_s = time.process_time() - cpu0  # all threads: on a busy shared machine wall time inflates
    load_after = os.getloadavg()[0]

    def sample(frame: pl.DataFrame, count: int) -> pd.DataFrame:
        ids = [f"hh-{i:06d}" for i in range(count)]
        out = frame.filter(pl.col("household_id").is_in(ids)).to_pandas()
        out["date"] = pd.to_datetime(out["date"])
        return out

    k, kc = args.reference_households, args.reference_caltrack_households
    sample_daily, sample_hourly = sample(daily, k), sample(hourly, k)
    sample_hourly["date"] = sample_hourly["date"].dt.date
    ref: dict[str, float] = {}
    t0 = time.perf_counter()
    reference_cashback(sample_daily)
    ref["cashback_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    reference_cbl(sample_hourly, 10, 2, 2)
    reference_cbl(sample_hourly, 5, 1, 0)
    ref["cbl_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    chosen = reference_caltrack(sample(daily, kc), CaltrackConfig())
    ref["caltrack_s"] = time.perf_counter() - t0
    ours_types = dict(zip(model["household_id"].to_list(), model["model_type"].to_list(), strict=True))
    agreement = sum(ours_types[h] == chosen[h] for h in chosen) / len(chosen)
    n = args.households
    ref_total = (ref["cashback_s"] + ref["cbl_s"]) * n / k + ref["caltrack_s"] * n / kc
    result = {
        "benchmark": "baselines",
        "households": args.households,
        "days": DAYS,
        "daily_rows": daily.height,
        "hourly_rows_cbl": hourly.height,
        "generate_s": round(generate_s, 2),
        "methods": ours,
        "total_s": round(total, 2),
        "total_cpu_s": round(cpu_s, 2),
        "peak_rss_mb_timed": max(m["peak_rss_mb"] for m in ours.values()),
        # the whole process (data generation, timed run, reference); the resets lower the
        # kernel's counter, so the maximum of the pieces
        "peak_rss_mb_process": round(
            max(peak_generate_mb, _rss_mb("VmHWM"), *(m["peak_rss_mb"] for m in ours.values()))
        ),
        "load_average_1min": [round(load_before, 1), round(load_after, 1)],
        "target_s": args.target_s,
        "meets_target": total <= args.target_s,
        "reference_households": k,
        "reference_caltrack_households": kc,
        "reference_sample_s": {k_: round(v, 2) for k_, v in ref.items()},
        "reference_extrapolated_caltrack_s": round(ref["caltrack_s"] * n / kc, 1),
        "reference_extrapolated_s": round(ref_total, 1),
        "speedup_vs_reference": round(ref_total / total, 1),
        "caltrack_model_agreement_with_statsmodels": round(agreement, 3),
        "qualified_share": round(float(model["qualified"].mean()), 3),  # type: ignore[arg-type]
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
