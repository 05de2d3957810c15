"""Baselines for incentive programs (DESIGN §5), vectorized across households.

Three methods, each a function of long Polars frames (one row per household and local day or
hour) that returns one row per household (or household and hour):

* **energy cashback** (:func:`cashback_baseline`): the same calendar month of the previous two
  years, averaged (one year suffices); only complete months count.
* **KPX demand-response CBL** (:func:`cbl_hourly`): Mid(6/10) and Max(4/5) per hour over the latest
  eligible weekdays before the event (weekends, Korean public holidays and earlier event days
  excluded; a day counts only with all 24 hours metered).
* **CalTRACK daily** (:func:`fit_caltrack_daily`, :func:`caltrack_savings`): usage/day =
  μ + βH·HDD(Th) + βC·CDD(Tc) with a balance-point grid search over four candidate models.

Why the CalTRACK fit is fast: with balance points on a fixed grid, HDD and CDD are linear in the
temperature inside every grid cell, so five sums per (household, cell) — n, ΣT, ΣT², Σy, ΣyT — give
the exact normal equations of *every* candidate by cumulative sums over cells. One ``bincount``
pass over the data replaces a least-squares fit per household and balance point; the loop left
is over the grid (tens of values), never over households or days. With Th ≤ Tc a day never has
both HDD and CDD, so ΣHDD·CDD = 0 and the two-variable model needs no extra statistic.

Input columns (rename upstream): daily ``household_id, date, kwh[, temperature_c]``; hourly
``household_id, date, hour, kwh`` (local calendar day and local hour 0–23). One row per
household and day (hour); deduplication and gap repair happen upstream (DESIGN §5).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Literal

import holidays
import numpy as np
import polars as pl
from scipy import stats

CblMethod = Literal["mid_6_10", "max_4_5"]
#: per method: how many latest eligible days, how many lowest and highest to drop per hour
CBL_METHODS: dict[str, tuple[int, int, int]] = {"mid_6_10": (10, 2, 2), "max_4_5": (5, 1, 0)}
MODEL_TYPES = ("intercept_only", "hdd_only", "cdd_only", "hdd_cdd")


# --- shared -------------------------------------------------------------------------------
def _dense_codes(ids: pl.Series) -> tuple[np.ndarray, pl.Series]:
    """Household ids → dense codes 0..H-1 and the id of each code, in O(rows) (no sort)."""
    if ids.null_count():
        raise ValueError("household_id has nulls")
    if ids.dtype.is_integer() and ids.len() and ids.min() >= 0 and ids.max() < 4 * ids.len() + 1_000_000:  # type: ignore[operator]
        raw = ids.to_numpy().astype(np.int64, copy=False)
    elif ids.dtype.is_integer():
        raw = ids.rank("dense").to_numpy().astype(np.int64) - 1
    else:
        raw = ids.cast(pl.String).cast(pl.Categorical).to_physical().to_numpy().astype(np.int64)
    size = int(raw.max()) + 1 if raw.size else 0
    first = np.full(size, -1, dtype=np.int64)
    first[raw[::-1]] = np.arange(raw.size - 1, -1, -1)  # the last write wins: the first occurrence
    present = first >= 0
    remap = np.cumsum(present) - 1
    return remap[raw], ids.gather(first[present])


def _require(frame: pl.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{what} frame lacks column(s) {', '.join(missing)}; it has {', '.join(frame.columns)}"
        )


@lru_cache(maxsize=64)
def kr_holidays(year: int) -> frozenset[date]:
    """Korean public holidays (incl. substitute and election days) from the ``holidays`` package."""
    return frozenset(holidays.country_holidays("KR", years=year))


def is_kr_business_day(d: date) -> bool:
    return d.weekday() < 5 and d not in kr_holidays(d.year)


# --- energy cashback ----------------------------------------------------------------------
def _days(column: pl.Series) -> np.ndarray:
    """A Date column as days since 1970-01-01 (int64)."""
    return column.cast(pl.Date).to_physical().to_numpy().astype(np.int64)


def monthly_kwh(daily: pl.DataFrame) -> pl.DataFrame:
    """Daily → monthly kWh per household, with ``complete`` = every day of the month metered."""
    _require(daily, ("household_id", "date", "kwh"), "daily")
    kwh_all = daily["kwh"].cast(pl.Float64).to_numpy()
    present = ~np.isnan(kwh_all)
    if not present.any():
        return pl.DataFrame(schema={"household_id": daily.schema["household_id"], "month": pl.Date,
                                    "kwh": pl.Float64, "days": pl.Int64, "complete": pl.Boolean})  # fmt: skip
    codes, keys = _dense_codes(daily["household_id"])
    # months since 1970-01 straight from the day numbers
    mi = _days(daily["date"]).astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) + 1970 * 12
    codes, mi, kwh_v = codes[present], mi[present], kwh_all[present]
    lo, width = int(mi.min()), int(mi.max() - mi.min()) + 1
    key = codes * width + (mi - lo)
    kwh = np.bincount(key, kwh_v, minlength=keys.len() * width)
    days = np.bincount(key, minlength=keys.len() * width)
    cell = np.flatnonzero(days)
    month = lo + cell % width
    return (
        pl.DataFrame(
            {
                "household_id": keys.gather(cell // width),
                "_y": month // 12,
                "_m": month % 12 + 1,
                "kwh": kwh[cell],
                "days": days[cell],
            }
        )
        .with_columns(month=pl.date(pl.col("_y"), pl.col("_m"), 1))
        .with_columns(complete=pl.col("days") == pl.col("month").dt.month_end().dt.day())
        .select("household_id", "month", "kwh", "days", "complete")
    )


def cashback_baseline(monthly: pl.DataFrame, periods: Iterable[str] | None = None) -> pl.DataFrame:
    """Energy-cashback baseline per household and month: mean of the same month 1 and 2 years back.

    ``monthly`` has ``household_id, month (Date, first of month), kwh`` and optionally ``complete``
    (from :func:`monthly_kwh`; incomplete months neither count in a baseline nor get judged).
    ``periods`` ('YYYY-MM') defaults to every month present. Returns ``household_id, period,
    baseline_kwh, actual_kwh, baseline_years, qualified, reason``.
    """
    _require(monthly, ("household_id", "month", "kwh"), "monthly")
    m = monthly.with_columns(pl.col("month").cast(pl.Date))
    if "complete" not in m.columns:
        m = m.with_columns(complete=pl.lit(True))
    m = m.with_columns(mi=pl.col("month").dt.year().cast(pl.Int64) * 12 + pl.col("month").dt.month() - 1)
    codes, keys = _dense_codes(m["household_id"])
    mi = m["mi"].to_numpy()
    lo = int(mi.min()) if mi.size else 0
    width = (int(mi.max()) - lo + 1) if mi.size else 1
    kwh = np.full((keys.len(), width), np.nan)
    complete = np.zeros((keys.len(), width), dtype=bool)
    kwh[codes, mi - lo] = m["kwh"].to_numpy()
    complete[codes, mi - lo] = m["complete"].to_numpy()
    counted = np.where(complete, kwh, np.nan)

    wanted = (
        np.arange(width) + lo
        if periods is None
        else np.array([int(p[:4]) * 12 + int(p[5:7]) - 1 for p in _check_periods(periods)])
    )
    cols = wanted - lo
    inside = (cols >= 0) & (cols < width)

    def take(offset: int) -> np.ndarray:
        c = cols - offset
        ok = (c >= 0) & (c < width)
        out = np.full((keys.len(), cols.size), np.nan)
        out[:, ok] = counted[:, c[ok]]
        return out

    one, two = take(12), take(24)
    years = (~np.isnan(one)).astype(np.int64) + (~np.isnan(two))
    with np.errstate(invalid="ignore"):
        baseline = np.where(years > 0, np.nansum(np.stack([one, two]), axis=0) / np.maximum(years, 1), np.nan)
    actual = np.full((keys.len(), cols.size), np.nan)
    actual[:, inside] = kwh[:, cols[inside]]
    actual_complete = np.zeros((keys.len(), cols.size), dtype=bool)
    actual_complete[:, inside] = complete[:, cols[inside]]

    period_names = [f"{w // 12:04d}-{w % 12 + 1:02d}" for w in wanted]
    out = pl.DataFrame(
        {
            "household_id": keys.gather(np.repeat(np.arange(keys.len()), cols.size)),
            "period": pl.Series(period_names * keys.len(), dtype=pl.String),
            "baseline_kwh": baseline.ravel(),
            "actual_kwh": actual.ravel(),
            "baseline_years": years.ravel(),
            "actual_complete": actual_complete.ravel(),
        },
        nan_to_null=True,
    )
    reason = (
        pl.when(pl.col("actual_kwh").is_null())
        .then(pl.format("no usage metered in {}", pl.col("period")))
        .when(~pl.col("actual_complete"))
        .then(pl.format("{} is not completely metered", pl.col("period")))
        .when(pl.col("baseline_years") == 0)
        .then(pl.format("no complete {} in the previous two years", pl.col("period").str.slice(5, 2)))
        .when(pl.col("baseline_kwh") <= 0)
        .then(pl.lit("baseline is 0 kWh"))
    )
    if periods is None:  # every month present: drop the months a household has no data for
        out = out.filter(pl.col("actual_kwh").is_not_null())
    return (
        out.with_columns(reason=reason)
        .with_columns(qualified=pl.col("reason").is_null())
        .select(
            "household_id", "period", "baseline_kwh", "actual_kwh", "baseline_years", "qualified", "reason"
        )
        .sort("household_id", "period")
    )


def _check_periods(periods: Iterable[str]) -> list[str]:
    out = list(periods)
    for p in out:
        if (
            len(p) != 7
            or p[4] != "-"
            or not (p[:4].isdigit() and p[5:].isdigit())
            or not 1 <= int(p[5:]) <= 12
        ):
            raise ValueError(f"period {p!r} is not YYYY-MM")
    return out


# --- KPX demand-response CBL --------------------------------------------------------------
def cbl_eligible_days(
    event_day: date, earlier_event_days: Iterable[date] = (), lookback_days: int = 60
) -> list[date]:
    """Calendar days a CBL may use, newest first: weekdays before the event that are not Korean
    public holidays nor earlier event days (per household, days without 24 metered hours are
    skipped later)."""
    events = set(earlier_event_days)
    days = (event_day - timedelta(days=k) for k in range(1, lookback_days + 1))
    return [d for d in days if is_kr_business_day(d) and d not in events]


def cbl_hourly(
    hourly: pl.DataFrame,
    event_day: date,
    method: CblMethod = "mid_6_10",
    earlier_event_days: Iterable[date] = (),
    lookback_days: int = 60,
) -> pl.DataFrame:
    """KPX customer baseline load per household and hour of ``event_day``.

    Mid(6/10): the latest 10 eligible days, per hour drop the 2 highest and 2 lowest, mean of 6.
    Max(4/5): the latest 5 eligible days, per hour drop the lowest, mean of 4. Eligible: see
    :func:`cbl_eligible_days`, and the household has all 24 hours of the day. A household with
    fewer eligible days within ``lookback_days`` gets ``qualified = False`` and a reason.
    Returns ``household_id, hour, cbl_kwh, days_used, qualified, reason`` (24 rows a household).
    """
    if method not in CBL_METHODS:
        raise ValueError(f"unknown CBL method {method!r}; use one of {', '.join(CBL_METHODS)}")
    _require(hourly, ("household_id", "date", "hour", "kwh"), "hourly")
    need, drop_low, drop_high = CBL_METHODS[method]
    candidates = cbl_eligible_days(event_day, earlier_event_days, lookback_days)
    # numpy over the whole frame (codes once, masks instead of filtered copies of the rows)
    codes, keys = _dense_codes(hourly["household_id"])  # every household gets rows, eligible days or not
    n_h = keys.len()
    day = _days(hourly["date"])
    lookup_lo = (candidates[-1] - date(1970, 1, 1)).days if candidates else 0
    lookup = np.full(lookback_days + 2, -1, dtype=np.int64)  # day − oldest candidate → position
    for i, d in enumerate(candidates):
        lookup[(d - date(1970, 1, 1)).days - lookup_lo] = i  # 0 = newest
    offset = day - lookup_lo
    pos = np.where((offset >= 0) & (offset < lookup.size), lookup[np.clip(offset, 0, lookup.size - 1)], -1)
    kwh = hourly["kwh"].cast(pl.Float64).to_numpy()
    hour = hourly["hour"].to_numpy().astype(np.int64)
    if hour.size and (hour.min() < 0 or hour.max() > 23):
        raise ValueError("hour must be 0–23 (local hour of the day)")
    keep = np.flatnonzero((pos >= 0) & ~np.isnan(kwh))
    n_d = int(pos[keep].max()) + 1 if keep.size else 1  # only as far back as the data reach
    cube = np.full((n_h, n_d, 24), np.nan)
    cube[codes[keep], pos[keep], hour[keep]] = kwh[keep]
    complete = ~np.isnan(cube).any(axis=2)  # (households, days newest first)
    chosen = complete & (np.cumsum(complete, axis=1) <= need)
    days_used = chosen.sum(axis=1)
    values = np.full((n_h, 24), np.nan)
    if n_d >= need:
        # the first `need` chosen days of each household, newest first (stable sort keeps order)
        idx = np.argsort(~chosen, axis=1, kind="stable")[:, :need]
        picked = np.take_along_axis(cube, idx[:, :, None], axis=1)
        ordered = np.sort(picked, axis=1)[:, drop_low : need - drop_high, :]
        full = days_used == need
        values[full] = ordered[full].mean(axis=1)
    frame = pl.DataFrame(
        {
            "household_id": keys.gather(np.repeat(np.arange(n_h), 24)),
            "hour": np.tile(np.arange(24, dtype=np.int8), n_h),
            "cbl_kwh": values.ravel(),
            "days_used": np.repeat(days_used, 24).astype(np.int64),
        },
        nan_to_null=True,
    )
    label = "Mid(6/10)" if method == "mid_6_10" else "Max(4/5)"
    return (
        frame.with_columns(qualified=pl.col("days_used") == need)
        .with_columns(
            reason=pl.when(~pl.col("qualified")).then(
                pl.format(
                    "{} needs {} eligible weekdays with 24 metered hours in the {} days before {}; found {}",
                    pl.lit(label),
                    pl.lit(need),
                    pl.lit(lookback_days),
                    pl.lit(event_day.isoformat()),
                    pl.col("days_used"),
                )
            )
        )
        .sort("household_id", "hour")
    )


def dr_event_savings(
    hourly: pl.DataFrame,
    event_id: str,
    event_day: date,
    event_hours: Iterable[int],
    method: CblMethod = "mid_6_10",
    earlier_event_days: Iterable[date] = (),
    lookback_days: int = 60,
) -> pl.DataFrame:
    """Per household: CBL and actual kWh summed over the event hours, and the reduction.

    The reduction is net over the event hours (an hour above CBL offsets one below). An event
    hour without a metered value leaves the household ``qualified = False``.
    Returns ``household_id, period (= event_id), baseline_kwh, actual_kwh, qualified, reason``.
    """
    hours = sorted(set(event_hours))
    if not hours or hours[0] < 0 or hours[-1] > 23:
        raise ValueError(f"event hours must be a non-empty subset of 0–23, got {hours}")
    cbl = cbl_hourly(hourly, event_day, method, earlier_event_days, lookback_days).filter(
        pl.col("hour").is_in(hours)
    )
    actual = hourly.filter((pl.col("date") == event_day) & pl.col("hour").is_in(hours)).select(
        "household_id", pl.col("hour").cast(pl.Int8), "kwh"
    )
    joined = cbl.join(actual, on=["household_id", "hour"], how="left")
    return (
        joined.group_by("household_id")
        .agg(
            baseline_kwh=pl.col("cbl_kwh").sum(),
            actual_kwh=pl.col("kwh").sum(),
            metered_hours=pl.col("kwh").is_not_null().sum(),
            cbl_ok=pl.col("qualified").all(),
            cbl_reason=pl.col("reason").first(),
        )
        .with_columns(
            reason=pl.when(~pl.col("cbl_ok"))
            .then(pl.col("cbl_reason"))
            .when(pl.col("metered_hours") < len(hours))
            .then(
                pl.format(
                    "{} of {} event hours metered on {}",
                    "metered_hours",
                    pl.lit(len(hours)),
                    pl.lit(str(event_day)),
                )
            )
        )
        .with_columns(
            period=pl.lit(event_id),
            qualified=pl.col("reason").is_null(),
            baseline_kwh=pl.when(pl.col("cbl_ok")).then(pl.col("baseline_kwh")),
        )
        .select("household_id", "period", "baseline_kwh", "actual_kwh", "qualified", "reason")
        .sort("household_id")
    )


# --- CalTRACK daily -----------------------------------------------------------------------
@dataclass(frozen=True)
class CaltrackConfig:
    """Thresholds of the CalTRACK daily method; every number is configurable.

    Defaults follow CalTRACK 2.0 where it has a number (balance points searched over 30–90 °F,
    here −1…32 °C in 1 °C steps; ≥ 10 days with non-zero degree days and ≥ 20 °F·days (≈ 11.1
    °C·days) for a degree-day term; p < 0.1; a 365-day baseline with ≥ 90 % of days). CalTRACK
    only warns about a poor fit; this platform pays money, so it refuses a baseline whose
    CV(RMSE) exceeds ``max_cvrmse`` (0.5: a daily household model is noisier than the 15–30 % of
    ASHRAE Guideline 14, which targets monthly/hourly whole-building models).
    """

    balance_points_c: tuple[float, ...] = tuple(float(t) for t in range(-1, 33))
    baseline_days: int = 365
    min_coverage: float = 0.9
    min_fit_days: int = 30
    max_cvrmse: float = 0.5
    max_p_value: float = 0.1
    min_nonzero_degree_days: int = 10
    min_total_degree_days_c: float = 20 * 5 / 9

    def __post_init__(self) -> None:
        grid = np.asarray(self.balance_points_c, dtype=float)
        if grid.size < 1 or np.any(np.diff(grid) <= 0):
            raise ValueError("balance_points_c must be a non-empty, strictly increasing grid")
        if not 0 < self.min_coverage <= 1:
            raise ValueError(f"min_coverage must be in (0, 1], got {self.min_coverage}")
        if self.baseline_days < 1 or self.min_fit_days < 4:
            raise ValueError("baseline_days must be ≥ 1 and min_fit_days ≥ 4")


def _start_days(reporting_start: date | pl.DataFrame, keys: pl.Series) -> np.ndarray:
    """Reporting start per household code as days since 1970-01-01 (scalar or per-household frame)."""
    if isinstance(reporting_start, date):
        return np.full(keys.len(), (reporting_start - date(1970, 1, 1)).days, dtype=np.int64)
    _require(reporting_start, ("household_id", "reporting_start"), "reporting_start")
    starts = pl.DataFrame({"household_id": keys}).join(
        reporting_start.select("household_id", pl.col("reporting_start").cast(pl.Date)),
        on="household_id",
        how="left",
        maintain_order="left",
    )["reporting_start"]
    if starts.null_count():
        raise ValueError(f"reporting_start lacks {starts.null_count()} household(s) of the daily frame")
    return starts.to_physical().to_numpy().astype(np.int64)


def fit_caltrack_daily(
    daily: pl.DataFrame, reporting_start: date | pl.DataFrame, config: CaltrackConfig | None = None
) -> pl.DataFrame:
    """Fit the CalTRACK daily model per household on the ``baseline_days`` before ``reporting_start``.

    ``daily``: ``household_id, date, kwh, temperature_c`` (a day without kWh or temperature is
    missing). ``reporting_start``: one date, or a frame ``household_id, reporting_start``.

    Candidates: intercept-only; HDD-only and CDD-only for every grid balance point; HDD+CDD for
    every pair Th ≤ Tc. A degree-day candidate is dropped when its balance point has fewer than
    ``min_nonzero_degree_days`` non-zero days or less than ``min_total_degree_days_c``, or when a
    degree-day coefficient is not positive or not significant (two-sided p ≥ ``max_p_value``).
    The survivor with the highest adjusted R² wins (ties: the simpler model).

    Returns one row per household: ``model_type, intercept, beta_hdd, beta_cdd,
    heating_balance_point_c, cooling_balance_point_c, n_days, coverage, baseline_period_kwh,
    r_squared, r_squared_adj, cvrmse, nmbe, qualified, reason``.
    """
    cfg = config or CaltrackConfig()
    _require(daily, ("household_id", "date", "kwh", "temperature_c"), "daily")
    if daily.height == 0:
        raise ValueError("daily frame is empty")
    # one conversion to numpy, then masks: no per-household work and no wide joins
    codes, keys = _dense_codes(daily["household_id"])
    day = daily["date"].cast(pl.Date).to_physical().to_numpy().astype(np.int64)  # days since 1970-01-01
    kwh = daily["kwh"].cast(pl.Float64).to_numpy()
    temp = daily["temperature_c"].cast(pl.Float64).to_numpy()
    start = _start_days(reporting_start, keys)[codes]
    mask = (day >= start - cfg.baseline_days) & (day < start) & ~np.isnan(kwh) & ~np.isnan(temp)
    fit = _fit_arrays(codes[mask], keys.len(), temp[mask], kwh[mask], cfg)
    out = pl.DataFrame({"household_id": keys, **fit}, nan_to_null=True).with_columns(
        coverage=pl.col("n_days") / cfg.baseline_days
    )
    reason = (
        pl.when(pl.col("n_days") < cfg.min_fit_days)
        .then(
            pl.format(
                "too few days: {} metered days with temperature in the baseline, at least {} needed",
                "n_days",
                pl.lit(cfg.min_fit_days),
            )
        )
        .when(pl.col("coverage") < cfg.min_coverage)
        .then(
            pl.format(
                "insufficient data: {}% of the {} baseline days metered, at least {}% needed",
                (pl.col("coverage") * 100).round(1),
                pl.lit(cfg.baseline_days),
                pl.lit(round(cfg.min_coverage * 100, 1)),
            )
        )
        .when(pl.col("cvrmse").is_null() | (pl.col("cvrmse") > cfg.max_cvrmse))
        .then(
            pl.format(
                "poor fit: CV(RMSE) {}% above the {}% limit",
                (pl.col("cvrmse") * 100).round(1),
                pl.lit(round(cfg.max_cvrmse * 100, 1)),
            )
        )
    )
    model_cols = [
        "model_type",
        "intercept",
        "beta_hdd",
        "beta_cdd",
        "heating_balance_point_c",
        "cooling_balance_point_c",
    ]
    return (
        out.with_columns(reason=reason)
        .with_columns(qualified=pl.col("reason").is_null())
        .with_columns(  # a model is fitted only with min_fit_days; below that there is nothing to report
            [pl.when(pl.col("n_days") >= cfg.min_fit_days).then(pl.col(c)).alias(c) for c in model_cols]
        )
        .select(
            "household_id",
            *model_cols,
            "n_days",
            "coverage",
            "baseline_period_kwh",
            "r_squared",
            "r_squared_adj",
            "cvrmse",
            "nmbe",
            "qualified",
            "reason",
        )
        .sort("household_id")
    )


def _fit_arrays(codes: np.ndarray, n_h: int, temp: np.ndarray, y: np.ndarray, cfg: CaltrackConfig) -> dict:
    """The grid search on sufficient statistics; arrays (households,) or (households, grid)."""
    grid = np.asarray(cfg.balance_points_c, dtype=float)
    m = grid.size
    nb = m + 1  # cell 0: T < g0; cell i: g(i-1) ≤ T < g(i); cell m: T ≥ g(m-1)
    step = np.diff(grid)
    if m > 1 and np.allclose(step, step[0], rtol=0, atol=1e-12):
        # uniform grid: arithmetic instead of a binary search. A day exactly on a grid point adds
        # 0 degree-days on either side, so the sums are exact whichever cell rounding picks;
        # ``on_grid`` uses the same arithmetic, so the non-zero-day counts agree with the cells.
        r = (temp - grid[0]) / step[0]
        fl = np.floor(r)
        cell = np.clip(fl + 1, 0, m).astype(np.int64)
        on_grid = (r == fl) & (fl >= 0) & (fl <= m - 1)
        eq_index = fl[on_grid].astype(np.int64)
    else:
        cell = np.searchsorted(grid, temp, side="right")
        on_grid = (cell > 0) & (temp == grid[np.maximum(cell - 1, 0)])
        eq_index = cell[on_grid] - 1
    key = codes * nb + cell
    size = n_h * nb

    def cells(weights: np.ndarray | None) -> np.ndarray:
        return np.bincount(key, weights, minlength=size).reshape(n_h, nb).astype(float)

    c_n, c_t, c_tt, c_y, c_yt = cells(None), cells(temp), cells(temp * temp), cells(y), cells(y * temp)
    eq = np.bincount(codes[on_grid] * m + eq_index, minlength=n_h * m).reshape(n_h, m)
    n = c_n.sum(axis=1)
    sy, syy = c_y.sum(axis=1), np.bincount(codes, y * y, minlength=n_h)
    st, stt, syt = c_t.sum(axis=1), c_tt.sum(axis=1), c_yt.sum(axis=1)
    # cumulative over cells 0..j = days with T < g(j): the heating side of grid point j
    cum = {
        k: np.cumsum(v, axis=1)[:, :m]
        for k, v in (("n", c_n), ("t", c_t), ("tt", c_tt), ("y", c_y), ("yt", c_yt))
    }
    g = grid[None, :]
    h_nz = cum["n"]
    sh = g * cum["n"] - cum["t"]
    shh = g * g * cum["n"] - 2 * g * cum["t"] + cum["tt"]
    shy = g * cum["y"] - cum["yt"]
    rn, rt, rtt, ry, ryt = (n[:, None] - cum["n"], st[:, None] - cum["t"], stt[:, None] - cum["tt"],
                            sy[:, None] - cum["y"], syt[:, None] - cum["yt"])  # fmt: skip
    c_nz = rn - eq
    sc = rt - g * rn
    scc = rtt - 2 * g * rt + g * g * rn
    scy = ryt - g * ry

    with np.errstate(divide="ignore", invalid="ignore"):
        nn = n[:, None]
        ybar = sy / n
        yy = syy - sy * sy / n  # centered total sum of squares
        hh, hy = shh - sh * sh / nn, shy - sh * sy[:, None] / nn
        cc, cy = scc - sc * sc / nn, scy - sc * sy[:, None] / nn
        t1 = stats.t.ppf(1 - cfg.max_p_value / 2, np.maximum(n - 2, 1))[:, None]
        t2 = stats.t.ppf(1 - cfg.max_p_value / 2, np.maximum(n - 3, 1))
        h_ok = (h_nz >= cfg.min_nonzero_degree_days) & (sh >= cfg.min_total_degree_days_c)
        c_ok = (c_nz >= cfg.min_nonzero_degree_days) & (sc >= cfg.min_total_degree_days_c)

        def single(
            xx: np.ndarray, xy: np.ndarray, ok: np.ndarray
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            beta = xy / xx
            sse = yy[:, None] - beta * xy
            se = np.sqrt(sse / (nn - 2) / xx)
            valid = ok & (beta > 0) & (beta / se > t1) & (nn > 3)
            adj = 1 - (sse / yy[:, None]) * (nn - 1) / (nn - 2)
            return beta, sse, np.where(valid, adj, -np.inf)

        bh, sse_h, adj_h = single(hh, hy, h_ok)
        bc, sse_c, adj_c = single(cc, cy, c_ok)
        rows = np.arange(n_h)
        # best per model type: (adj R², index of Th, index of Tc)
        best = {
            "hdd_only": (adj_h.max(axis=1), adj_h.argmax(axis=1)),
            "cdd_only": (adj_c.max(axis=1), adj_c.argmax(axis=1)),
        }
        # HDD+CDD: n and k are fixed per household, so the best adjusted R² is the least SSE
        both_sse = np.full(n_h, np.inf)
        both_j = np.zeros(n_h, dtype=np.int64)
        both_k = np.zeros(n_h, dtype=np.int64)
        t2sq_dof = (t2 * t2 / (n - 3))[:, None]
        yy_col = yy[:, None]
        for j in range(m):  # heating balance point j; cooling balance points k ≥ j
            if not h_ok[:, j].any():
                continue
            a, ay = hh[:, j : j + 1], hy[:, j : j + 1]
            c_, cy_ = cc[:, j:], cy[:, j:]
            hc = (-sh[:, j : j + 1] / nn) * sc[:, j:]  # centered Σ HDD·CDD (the raw sum is 0)
            det = a * c_ - hc * hc
            b_h = (ay * c_ - cy_ * hc) / det
            b_c = (cy_ * a - ay * hc) / det
            sse = yy_col - b_h * ay - b_c * cy_
            thr = t2sq_dof * sse / det  # t² > t_crit² ⇔ β² > t_crit²·σ²·(X'X)⁻¹ᵢᵢ, without a sqrt
            valid = c_ok[:, j:] & (b_h > 0) & (b_c > 0) & (b_h * b_h > thr * c_) & (b_c * b_c > thr * a)
            valid &= h_ok[:, j : j + 1] & (nn > 4)
            sse = np.where(valid, sse, np.inf)
            k = sse.argmin(axis=1)
            top = sse[rows, k]
            better = top < both_sse
            both_sse = np.where(better, top, both_sse)
            both_j = np.where(better, j, both_j)
            both_k = np.where(better, j + k, both_k)
        both_adj = np.where(np.isfinite(both_sse), 1 - (both_sse / yy) * (n - 1) / (n - 3), -np.inf)
        best["hdd_cdd"] = (both_adj, both_j)

        # choose: intercept-only (adj R² 0) unless a degree-day model beats it
        choice = np.zeros(n_h, dtype=np.int64)
        top = np.zeros(n_h)  # a constant series has no finite candidate and stays intercept-only
        for i, name in enumerate(MODEL_TYPES[1:], start=1):
            better = best[name][0] > top
            choice = np.where(better, i, choice)
            top = np.where(better, best[name][0], top)
        jh, jc = best["hdd_only"][1], best["cdd_only"][1]
        bh_sel, bc_sel = bh[rows, jh], bc[rows, jc]
        # two-variable coefficients at the chosen pair
        hh2, hy2, cc2, cy2 = hh[rows, both_j], hy[rows, both_j], cc[rows, both_k], cy[rows, both_k]
        hc2 = -sh[rows, both_j] * sc[rows, both_k] / n
        det2 = hh2 * cc2 - hc2 * hc2
        bh2, bc2 = (hy2 * cc2 - cy2 * hc2) / det2, (cy2 * hh2 - hy2 * hc2) / det2

        beta_h = np.select([choice == 1, choice == 3], [bh_sel, bh2], 0.0)
        beta_c = np.select([choice == 2, choice == 3], [bc_sel, bc2], 0.0)
        th = np.select([choice == 1, choice == 3], [grid[jh], grid[both_j]], np.nan)
        tc = np.select([choice == 2, choice == 3], [grid[jc], grid[both_k]], np.nan)
        jh_all = np.select([choice == 1, choice == 3], [jh, both_j], 0)
        jc_all = np.select([choice == 2, choice == 3], [jc, both_k], 0)
        sh_s = np.where(beta_h > 0, sh[rows, jh_all], 0.0)
        sc_s = np.where(beta_c > 0, sc[rows, jc_all], 0.0)
        intercept = (sy - beta_h * sh_s - beta_c * sc_s) / n
        sse = np.select(
            [choice == 0, choice == 1, choice == 2, choice == 3],
            [yy, sse_h[rows, jh], sse_c[rows, jc], yy - bh2 * hy2 - bc2 * cy2],
        )
        k_params = np.array([1, 2, 2, 3])[choice]
        r2 = np.where(yy > 0, 1 - sse / yy, np.nan)
        r2_adj = np.where(yy > 0, 1 - (sse / yy) * (n - 1) / (n - k_params), np.nan)
        residual_sum = sy - n * intercept - beta_h * sh_s - beta_c * sc_s
        dof = np.maximum(n - k_params, 1)
        cvrmse = np.sqrt(np.maximum(sse, 0) / dof) / ybar
        nmbe = residual_sum / dof / ybar
    return {
        "model_type": pl.Series(np.array(MODEL_TYPES, dtype=object)[choice], dtype=pl.String),
        "intercept": intercept,
        "beta_hdd": beta_h,
        "beta_cdd": beta_c,
        "heating_balance_point_c": th,
        "cooling_balance_point_c": tc,
        "n_days": n.astype(np.int64),
        "baseline_period_kwh": sy,
        "r_squared": r2,
        "r_squared_adj": r2_adj,
        "cvrmse": cvrmse,
        "nmbe": nmbe,
    }


def caltrack_predict(model: pl.DataFrame, daily: pl.DataFrame) -> pl.DataFrame:
    """Add ``predicted_kwh`` (the baseline model under each day's temperature) to ``daily``."""
    _require(daily, ("household_id", "date", "temperature_c"), "daily")
    params = model.select(
        "household_id",
        pl.col("intercept").alias("_mu"),
        pl.col("beta_hdd").alias("_bh"),
        pl.col("beta_cdd").alias("_bc"),
        pl.col("heating_balance_point_c").alias("_th"),
        pl.col("cooling_balance_point_c").alias("_tc"),
    )
    t = pl.col("temperature_c")
    hdd = pl.when(pl.col("_bh") > 0).then((pl.col("_th") - t).clip(lower_bound=0)).otherwise(0.0)
    cdd = pl.when(pl.col("_bc") > 0).then((t - pl.col("_tc")).clip(lower_bound=0)).otherwise(0.0)
    return (
        daily.join(params, on="household_id", how="left")
        .with_columns(predicted_kwh=pl.col("_mu") + pl.col("_bh") * hdd + pl.col("_bc") * cdd)
        .drop("_mu", "_bh", "_bc", "_th", "_tc")
    )


def caltrack_savings(
    model: pl.DataFrame, daily: pl.DataFrame, reporting_start: date, reporting_end: date | None = None
) -> pl.DataFrame:
    """Counterfactual and savings over the reporting period [start, end] (end: the last day present).

    Only days with both kWh and temperature count, on both sides of the subtraction. Returns
    ``household_id, reporting_days, actual_kwh, counterfactual_kwh, savings_kwh, savings_pct,
    qualified, reason`` (the model's verdict, or "no reporting-period days").
    """
    _require(daily, ("household_id", "date", "kwh", "temperature_c"), "daily")
    codes, keys = _dense_codes(daily["household_id"])
    params = pl.DataFrame({"household_id": keys}).join(
        model, on="household_id", how="left", maintain_order="left"
    )

    def arr(name: str) -> np.ndarray:
        return params[name].cast(pl.Float64).fill_null(np.nan).to_numpy()

    mu, bh, bc, th, tc = (arr(c) for c in ("intercept", "beta_hdd", "beta_cdd", "heating_balance_point_c",
                                           "cooling_balance_point_c"))  # fmt: skip
    day = _days(daily["date"])
    kwh = daily["kwh"].cast(pl.Float64).to_numpy()
    temp = daily["temperature_c"].cast(pl.Float64).to_numpy()
    last = (reporting_end or date(9999, 12, 31)) - date(1970, 1, 1)
    mask = (
        (day >= (reporting_start - date(1970, 1, 1)).days)
        & (day <= last.days)
        & ~np.isnan(kwh)
        & ~np.isnan(temp)
    )
    c, t = codes[mask], temp[mask]
    hdd = np.where(bh[c] > 0, np.maximum(th[c] - t, 0), 0.0)
    cdd = np.where(bc[c] > 0, np.maximum(t - tc[c], 0), 0.0)
    predicted = mu[c] + np.nan_to_num(bh[c]) * hdd + np.nan_to_num(bc[c]) * cdd
    n_h = keys.len()
    days = np.bincount(c, minlength=n_h)
    with np.errstate(invalid="ignore"):
        sums = pl.DataFrame(
            {
                "household_id": keys,
                "reporting_days": days,
                "actual_kwh": np.where(days > 0, np.bincount(c, kwh[mask], minlength=n_h), np.nan),
                "counterfactual_kwh": np.where(days > 0, np.bincount(c, predicted, minlength=n_h), np.nan),
            },
            nan_to_null=True,
        )
    return (
        model.select("household_id", "qualified", "reason")
        .join(sums, on="household_id", how="left")
        .with_columns(
            reporting_days=pl.col("reporting_days").fill_null(0),
            savings_kwh=pl.col("counterfactual_kwh") - pl.col("actual_kwh"),
        )
        .with_columns(savings_pct=pl.col("savings_kwh") / pl.col("counterfactual_kwh") * 100)
        .with_columns(
            reason=pl.when(pl.col("reason").is_not_null())
            .then(pl.col("reason"))
            .when(pl.col("reporting_days") == 0)
            .then(pl.lit("no reporting-period days with usage and temperature")),
        )
        .with_columns(qualified=pl.col("reason").is_null())
        .select(
            "household_id",
            "reporting_days",
            "actual_kwh",
            "counterfactual_kwh",
            "savings_kwh",
            "savings_pct",
            "qualified",
            "reason",
        )
        .sort("household_id")
    )
