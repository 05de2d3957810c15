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

Why the passes over the rows are cheap: rows are grouped by household once (a comparison of
neighbouring ids), then read in place in chunks of whole households, so no 73 M-row temporary is
materialized and every per-household sum adds the same values in the same order as one pass.

Input columns (rename upstream): daily ``household_id, date, kwh[, temperature_c]``; hourly
``household_id, date, hour, kwh`` (local calendar day and local hour 0–23). One row per
household and day (hour); deduplication and gap repair happen upstream (DESIGN §5).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Any, Literal

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


#: rows per chunk of the numpy passes: small enough that the temporaries stay in the CPU cache
#: and are recycled by the allocator (a fresh 73 M-row temporary costs more in page faults than
#: the arithmetic on it), large enough that the per-chunk Python overhead does not count
CHUNK_ROWS = 1 << 19


@dataclass(frozen=True)
class _Blocks:
    """Rows grouped by household: household ``i`` (id ``keys[i]``) owns rows
    ``offsets[i]:offsets[i + 1]`` of ``frame``, in their original order."""

    frame: pl.DataFrame
    keys: pl.Series
    offsets: np.ndarray

    @property
    def size(self) -> int:
        return self.keys.len()

    def spans(self, rows: int = CHUNK_ROWS) -> Iterator[tuple[int, int, int, int]]:
        """``(first household, end household, first row, end row)`` of whole-household chunks.

        A household never straddles two chunks, so a per-household sum over a chunk adds the
        same values in the same order as one pass over the whole frame (bit-identical results).
        """
        off, h0 = self.offsets, 0
        while h0 < self.size:
            h1 = min(max(int(np.searchsorted(off, off[h0] + rows, side="right")) - 1, h0 + 1), self.size)
            yield h0, h1, int(off[h0]), int(off[h1])
            h0 = h1

    def codes(self, h0: int, h1: int) -> np.ndarray:
        """Household code (relative to ``h0``) of every row of households ``h0:h1``."""
        return np.repeat(np.arange(h1 - h0), np.diff(self.offsets[h0 : h1 + 1]))


def _household_blocks(frame: pl.DataFrame, columns: Iterable[str]) -> _Blocks:
    """Group the rows of ``frame`` (keeping ``columns``) by household without copying them.

    Meter data arrive sorted by household; then one comparison of neighbouring ids finds the
    blocks (≈ 0.1 s for 73 M string ids, against ≈ 1.5 s for a categorical cast) and the columns
    are read in place. Interleaved input is stably sorted by household first, which keeps each
    household's rows in their order, so both paths give identical sums. Ids may be strings,
    integers or categoricals; the result's ``household_id`` has the input's dtype.
    """
    ids = frame["household_id"]
    if ids.null_count():
        raise ValueError("household_id has nulls")
    cols = list(dict.fromkeys(columns))
    starts = ids.ne_missing(ids.shift(1)).arg_true()  # first row of every run of equal ids
    values = ids.gather(starts).alias("household_id")
    if values.n_unique() == values.len():
        offsets = np.append(starts.to_numpy().astype(np.int64), ids.len())
        return _Blocks(frame.select(cols), values, offsets)
    codes, keys = _dense_codes(ids)
    ordered = (
        frame.select(cols)
        .with_columns(_code=pl.Series(codes))
        .sort("_code", maintain_order=True)
        .drop("_code")
    )
    offsets = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=keys.len()))])
    return _Blocks(ordered, keys.alias("household_id"), offsets)


def _slice(series: pl.Series, a: int, b: int) -> np.ndarray:
    """Rows a:b of a column as numpy (a view when the column has no nulls; nulls → NaN)."""
    return series.slice(a, b - a).to_numpy()


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
def monthly_kwh(daily: pl.DataFrame) -> pl.DataFrame:
    """Daily → monthly kWh per household, with ``complete`` = every day of the month metered."""
    _require(daily, ("household_id", "date", "kwh"), "daily")
    empty = pl.DataFrame(schema={"household_id": daily.schema["household_id"], "month": pl.Date,
                                 "kwh": pl.Float64, "days": pl.Int64, "complete": pl.Boolean})  # fmt: skip
    blocks = _household_blocks(daily, ("date", "kwh"))
    dates = blocks.frame["date"].cast(pl.Date).to_physical()
    kwh_s = blocks.frame["kwh"].cast(pl.Float64)
    if blocks.size == 0:
        return empty
    # months since 0000-01 of every calendar day in range: a table lookup instead of date math per row
    d_lo, d_hi = int(dates.min()), int(dates.max())  # type: ignore[arg-type]
    month_of = np.arange(d_lo, d_hi + 1).astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    month_of += 1970 * 12
    lo, width = int(month_of[0]), int(month_of[-1] - month_of[0]) + 1
    month_of -= lo
    keys = blocks.keys
    kwh = np.zeros(keys.len() * width)
    days = np.zeros(keys.len() * width, dtype=np.int64)
    missing = _has_missing(kwh_s)
    for h0, h1, a, b in blocks.spans():
        k = _slice(kwh_s, a, b)
        key = month_of[_slice(dates, a, b) - d_lo]
        key += blocks.codes(h0, h1) * width
        if missing:
            present = ~np.isnan(k)
            key, k = key[present], k[present]
        kwh[h0 * width : h1 * width] = np.bincount(key, k, minlength=(h1 - h0) * width)
        days[h0 * width : h1 * width] = np.bincount(key, minlength=(h1 - h0) * width)
    if not days.any():
        return empty
    cell = np.flatnonzero(days)
    # first day and length of every month in range, from a table (no date math per row)
    since_1970 = np.arange(lo, lo + width + 1) - 1970 * 12
    first_day = since_1970.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    month = cell % width
    return pl.DataFrame(
        {
            "household_id": keys.gather(cell // width),
            "month": pl.Series(first_day[:-1][month].astype(np.int32)).cast(pl.Date),
            "kwh": kwh[cell],
            "days": days[cell],
            "complete": days[cell] == np.diff(first_day)[month],
        }
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
    # rows straight in output order (household, period): no sort of the long frame
    n_p = cols.size
    order_h = keys.arg_sort().to_numpy()
    order_p = np.argsort(np.array(period_names, dtype=object), kind="stable")
    grid = np.ix_(order_h, order_p)
    baseline, actual, years = baseline[grid].ravel(), actual[grid].ravel(), years[grid].ravel()
    # the reason depends on the period only: each text is written once per period
    why = np.select(
        [np.isnan(actual), ~actual_complete[grid].ravel(), years == 0, baseline <= 0], [1, 2, 3, 4], 0
    )
    names = [period_names[i] for i in order_p]
    texts = pl.Series(
        [None] * n_p
        + [f"no usage metered in {p}" for p in names]
        + [f"{p} is not completely metered" for p in names]
        + [f"no complete {p[5:7]} in the previous two years" for p in names]
        + ["baseline is 0 kWh"] * n_p,
        dtype=pl.String,
    )
    row_h = np.repeat(order_h, n_p)
    row_p = np.tile(np.arange(n_p), keys.len())
    if periods is None:  # every month present: drop the months a household has no data for
        keep = np.flatnonzero(~np.isnan(actual))
        baseline, actual, years, why, row_h, row_p = (
            a[keep] for a in (baseline, actual, years, why, row_h, row_p)
        )
    ids = keys.gather(row_h)
    plain = ids.dtype == pl.String or ids.dtype.is_integer()
    out = pl.DataFrame(
        {
            "household_id": ids.set_sorted() if plain else ids,
            "period": pl.Series(names, dtype=pl.String).gather(row_p),
            "baseline_kwh": baseline,
            "actual_kwh": actual,
            "baseline_years": years.astype(np.int64),
            "qualified": why == 0,
            "reason": texts.gather(why * n_p + row_p),
        },
        nan_to_null=True,
    )
    return out if plain else out.sort("household_id", "period")


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


def _cbl_values(
    blocks: _Blocks,
    event_day: date,
    method: str,
    earlier_event_days: Iterable[date],
    lookback_days: int,
    event_hours: list[int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CBL per household and hour ``(households, 24)``, eligible days used per household, and
    (with ``event_hours``) the rows of the event day's event hours — in one pass over the rows.

    Per chunk of whole households: a cube (households, eligible days newest first, hour) of the
    chunk's kWh, the first ``need`` complete days of each household, sorted per hour.
    """
    need, drop_low, drop_high = CBL_METHODS[method]
    candidates = cbl_eligible_days(event_day, earlier_event_days, lookback_days)
    epoch = date(1970, 1, 1)
    lookup_lo = (candidates[-1] - epoch).days if candidates else 0
    lookup = np.full(lookback_days + 2, -1, dtype=np.int64)  # day − oldest candidate → position
    for i, d in enumerate(candidates):
        lookup[(d - epoch).days - lookup_lo] = i  # 0 = newest
    n_h = blocks.size
    dates = blocks.frame["date"].cast(pl.Date).to_physical()
    hours = blocks.frame["hour"]
    kwh_s = blocks.frame["kwh"].cast(pl.Float64)
    if hours.len() and (hours.min() < 0 or hours.max() > 23):  # type: ignore[operator]
        raise ValueError("hour must be 0–23 (local hour of the day)")
    values = np.full((n_h, 24), np.nan)
    days_used = np.zeros(n_h, dtype=np.int64)
    event_rows: list[np.ndarray] = []
    if n_h == 0:
        return values, days_used, np.zeros(0, dtype=np.int64)
    # position among the candidates (0 = newest) of every day in the data's range; a day that
    # is not eligible goes to one spare day slot after the last candidate the data reach
    d_lo, d_hi = int(dates.min()), int(dates.max())  # type: ignore[arg-type]
    pos_of_day = np.full(d_hi - d_lo + 1, -1, dtype=np.int64)
    inside = np.arange(max(d_lo, lookup_lo), min(d_hi, lookup_lo + lookup.size - 1) + 1)
    pos_of_day[inside - d_lo] = lookup[inside - lookup_lo]
    n_d = int(pos_of_day.max()) + 1  # only as far back as the data reach
    if n_d == 0:  # no eligible day in the data at all
        n_d = 1
    pos_of_day[pos_of_day < 0] = n_d
    slots = n_d + 1
    missing = _has_missing(kwh_s)
    event_hour = np.zeros(24, dtype=bool)
    event_hour[event_hours or []] = True
    event_no = (event_day - epoch).days
    for h0, h1, a, b in blocks.spans():
        day, hour, kwh = _slice(dates, a, b), _slice(hours, a, b), _slice(kwh_s, a, b)
        if event_hours is not None:
            on_day = np.flatnonzero(day == event_no)
            event_rows.append(a + on_day[event_hour[hour[on_day]]])
        # cube (households, day slots newest first, hour); rows without kWh land in a spare cell
        nh = h1 - h0
        flat = np.repeat(np.arange(0, nh * slots, slots), np.diff(blocks.offsets[h0 : h1 + 1]))
        flat += pos_of_day[day - d_lo]
        flat *= 24
        flat += hour
        spare = nh * slots * 24
        if missing:
            flat[np.isnan(kwh)] = spare
        cells = np.full(spare + 1, np.nan)
        cells[flat] = kwh
        cube = cells[:spare].reshape(nh, slots, 24)[:, :n_d]
        complete = ~np.isnan(cube).any(axis=2)  # (households, days newest first)
        chosen = complete & (np.cumsum(complete, axis=1) <= need)
        used = chosen.sum(axis=1)
        days_used[h0:h1] = used
        full = np.flatnonzero(used == need)
        if full.size:
            # the first `need` chosen days of each household, newest first (stable sort keeps order)
            idx = np.argsort(~chosen[full], axis=1, kind="stable")[:, :need]
            ordered = np.sort(cube[full[:, None], idx], axis=1)[:, drop_low : need - drop_high, :]
            values[h0 + full] = ordered.mean(axis=1)
    rows = np.concatenate(event_rows) if event_rows else np.zeros(0, dtype=np.int64)
    return values, days_used, rows


def _cbl_frame(
    keys: pl.Series,
    values: np.ndarray,
    days_used: np.ndarray,
    hours: list[int],
    event_day: date,
    method: str,
    lookback_days: int,
) -> pl.DataFrame:
    """The CBL rows of ``hours`` per household, sorted by household and hour (built in order)."""
    need = CBL_METHODS[method][0]
    order = keys.arg_sort().to_numpy()  # households in output order: no sort of the long frame
    n_h, n_hours = keys.len(), len(hours)
    label = "Mid(6/10)" if method == "mid_6_10" else "Max(4/5)"
    # the reason depends only on days_used (0..need): format each distinct text once
    texts = pl.Series(
        [
            None
            if used == need
            else f"{label} needs {need} eligible weekdays with 24 metered hours in the "
            f"{lookback_days} days before {event_day.isoformat()}; found {used}"
            for used in range(need + 1)
        ],
        dtype=pl.String,
    )
    used_rows = np.repeat(days_used[order], n_hours)
    ids = keys.gather(np.repeat(order, n_hours))
    plain = ids.dtype == pl.String or ids.dtype.is_integer()
    frame = pl.DataFrame(
        {
            # sorted by construction; the flag lets polars take the same (sorted) paths downstream
            "household_id": ids.set_sorted() if plain else ids,
            "hour": np.tile(np.asarray(hours, dtype=np.int8), n_h),
            "cbl_kwh": values[order][:, hours].ravel(),
            "days_used": used_rows,
            "qualified": used_rows == need,
            "reason": texts.gather(np.minimum(used_rows, need)),
        },
        nan_to_null=True,
    )
    return frame if plain else frame.sort("household_id", "hour")  # categorical: polars' own order


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
    blocks = _household_blocks(hourly, ("date", "hour", "kwh"))  # every household gets rows
    values, days_used, _ = _cbl_values(blocks, event_day, method, earlier_event_days, lookback_days)
    return _cbl_frame(blocks.keys, values, days_used, list(range(24)), event_day, method, lookback_days)


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
    if method not in CBL_METHODS:
        raise ValueError(f"unknown CBL method {method!r}; use one of {', '.join(CBL_METHODS)}")
    _require(hourly, ("household_id", "date", "hour", "kwh"), "hourly")
    # one pass gives the CBL and the event rows (no second scan of the hourly frame)
    blocks = _household_blocks(hourly, ("household_id", "date", "hour", "kwh"))
    values, days_used, rows = _cbl_values(
        blocks, event_day, method, earlier_event_days, lookback_days, event_hours=hours
    )
    cbl = _cbl_frame(blocks.keys, values, days_used, hours, event_day, method, lookback_days)
    actual = blocks.frame[rows].select("household_id", pl.col("hour").cast(pl.Int8), "kwh")
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
    # rows read in place chunk by chunk (whole households), reduced to sufficient statistics
    blocks = _household_blocks(daily, ("date", "kwh", "temperature_c"))
    keys = blocks.keys
    sums = _cell_sums(blocks, _start_days(reporting_start, keys), cfg)
    fit = _fit_sums(sums, cfg)
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


def _uniform_step(grid: np.ndarray) -> float | None:
    """The grid's step when it is evenly spaced (then cells come from arithmetic), else None."""
    step = np.diff(grid)
    if grid.size > 1 and np.allclose(step, step[0], rtol=0, atol=1e-12):
        return float(step[0])
    return None


def _grid_cells(
    temp: np.ndarray, grid: np.ndarray, step: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid cell of every temperature, which days sit exactly on a grid point (row indices),
    and that point.

    Cell 0: T < g0; cell i: g(i-1) ≤ T < g(i); cell m: T ≥ g(m-1).
    """
    m = grid.size
    if step is not None:
        # uniform grid: arithmetic instead of a binary search. A day exactly on a grid point adds
        # 0 degree-days on either side, so the sums are exact whichever cell rounding picks;
        # ``on_grid`` uses the same arithmetic, so the non-zero-day counts agree with the cells.
        r = temp - grid[0]
        if step != 1.0:  # x / 1.0 is x: skip a pass for the default 1 °C grid
            r /= step
        fl = np.floor(r)
        exact = np.flatnonzero(r == fl)  # few days: check the range on those only
        inside = (fl[exact] >= 0) & (fl[exact] <= m - 1)
        on_grid = exact[inside]
        eq_index = fl[on_grid].astype(np.int64)
        fl += 1
        np.clip(fl, 0, m, out=fl)
        return fl.astype(np.int64), on_grid, eq_index
    cell = np.searchsorted(grid, temp, side="right")
    on_grid = np.flatnonzero((cell > 0) & (temp == grid[np.maximum(cell - 1, 0)]))
    return cell, on_grid, cell[on_grid] - 1


def _has_missing(series: pl.Series) -> bool:
    """Whether a float column has nulls or NaN (when not, the per-row NaN masks are skipped)."""
    return bool(series.null_count()) or bool(series.is_nan().any())


@dataclass(frozen=True)
class _CellSums:
    """Per household and grid cell: days n, ΣT, ΣT², Σy, ΣyT (households, cells); days exactly
    on each grid point (households, grid); Σy² (households,)."""

    n: np.ndarray
    t: np.ndarray
    tt: np.ndarray
    y: np.ndarray
    yt: np.ndarray
    eq: np.ndarray
    yy: np.ndarray

    def rows(self, h0: int, h1: int) -> _CellSums:
        return _CellSums(*(getattr(self, f)[h0:h1] for f in ("n", "t", "tt", "y", "yt", "eq", "yy")))


def _cell_sums(blocks: _Blocks, starts: np.ndarray, cfg: CaltrackConfig) -> _CellSums:
    """One pass over the baseline-period days (those with kWh and temperature), chunk by chunk."""
    grid = np.asarray(cfg.balance_points_c, dtype=float)
    step = _uniform_step(grid)
    m, n_h = grid.size, blocks.size
    nb = m + 1
    out = _CellSums(
        n=np.zeros((n_h, nb)),
        t=np.zeros((n_h, nb)),
        tt=np.zeros((n_h, nb)),
        y=np.zeros((n_h, nb)),
        yt=np.zeros((n_h, nb)),
        eq=np.zeros((n_h, m), dtype=np.int64),
        yy=np.zeros(n_h),
    )
    dates = blocks.frame["date"].cast(pl.Date).to_physical()
    kwh_s = blocks.frame["kwh"].cast(pl.Float64)
    temp_s = blocks.frame["temperature_c"].cast(pl.Float64)
    missing = _has_missing(kwh_s) or _has_missing(temp_s)
    one_start = int(starts[0]) if n_h and (starts == starts[0]).all() else None
    for h0, h1, a, b in blocks.spans():
        day, kwh, temp = _slice(dates, a, b), _slice(kwh_s, a, b), _slice(temp_s, a, b)
        codes = blocks.codes(h0, h1)
        if one_start is not None:  # one reporting start: compare with scalars
            mask = (day >= one_start - cfg.baseline_days) & (day < one_start)
        else:
            start = np.repeat(starts[h0:h1], np.diff(blocks.offsets[h0 : h1 + 1]))
            mask = (day >= start - cfg.baseline_days) & (day < start)
        if missing:
            mask &= ~np.isnan(kwh) & ~np.isnan(temp)
        codes, t, y = codes[mask], temp[mask], kwh[mask]
        cell, on_grid, eq_index = _grid_cells(t, grid, step)
        key = codes * nb
        key += cell
        nh = h1 - h0
        for target, weights in ((out.n, None), (out.t, t), (out.tt, t * t), (out.y, y), (out.yt, y * t)):
            target[h0:h1] = np.bincount(key, weights, minlength=nh * nb).reshape(nh, nb)
        out.eq[h0:h1] = np.bincount(codes[on_grid] * m + eq_index, minlength=nh * m).reshape(nh, m)
        out.yy[h0:h1] = np.bincount(codes, y * y, minlength=nh)
    return out


def _t_critical(q: float, dof: np.ndarray) -> np.ndarray:
    """Student-t quantile per household, evaluated once per distinct degrees of freedom
    (households mostly share one day count, and ``t.ppf`` is costly per element)."""
    distinct, where = np.unique(dof, return_inverse=True)
    return np.asarray(stats.t.ppf(q, distinct))[where]


#: households per chunk of the model algebra: its (households × grid) temporaries stay in cache
FIT_CHUNK_HOUSEHOLDS = 256


def _fit_sums(sums: _CellSums, cfg: CaltrackConfig) -> dict:
    """The grid search for every household, chunk by chunk; arrays (households,)."""
    n_h = sums.yy.size
    parts = [
        _fit_chunk(sums.rows(h0, min(h0 + FIT_CHUNK_HOUSEHOLDS, n_h)), cfg)
        for h0 in range(0, n_h, FIT_CHUNK_HOUSEHOLDS)
    ] or [_fit_chunk(sums, cfg)]
    out: dict[str, Any] = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    out["model_type"] = pl.Series(np.array(MODEL_TYPES, dtype=object)[out["model_type"]], dtype=pl.String)
    return out


def _fit_chunk(sums: _CellSums, cfg: CaltrackConfig) -> dict:
    """The grid search on sufficient statistics; arrays (households,) or (households, grid)."""
    grid = np.asarray(cfg.balance_points_c, dtype=float)
    m = grid.size
    n_h = sums.yy.size
    c_n, c_t, c_tt, c_y, c_yt, eq = sums.n, sums.t, sums.tt, sums.y, sums.yt, sums.eq
    n = c_n.sum(axis=1)
    sy, syy = c_y.sum(axis=1), sums.yy
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
        t1 = _t_critical(1 - cfg.max_p_value / 2, np.maximum(n - 2, 1))[:, None]
        t2 = _t_critical(1 - cfg.max_p_value / 2, np.maximum(n - 3, 1))
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
        # HDD+CDD: n and k are fixed per household, so the best adjusted R² is the least SSE.
        # Every pair Th ≤ Tc at once, as (households, pairs) in (j, k) order: argmin takes the
        # first least SSE in that order, as a loop over j and then k would. Pairs that no
        # household of the chunk can use (too few heating or cooling degree days) are skipped.
        jj, kk = np.triu_indices(m)
        usable = h_ok.any(axis=0)[jj] & c_ok.any(axis=0)[kk]
        jj, kk = jj[usable], kk[usable]
        both_sse = np.full(n_h, np.inf)
        both_j = np.zeros(n_h, dtype=np.int64)
        both_k = np.zeros(n_h, dtype=np.int64)
        if jj.size:
            t2sq_dof = (t2 * t2 / (n - 3))[:, None]
            a, ay = hh[:, jj], hy[:, jj]
            c_, cy_ = cc[:, kk], cy[:, kk]
            hc = (-sh / nn)[:, jj] * sc[:, kk]  # centered Σ HDD·CDD (the raw sum is 0)
            det = a * c_ - hc * hc
            b_h = (ay * c_ - cy_ * hc) / det
            b_c = (cy_ * a - ay * hc) / det
            sse = yy[:, None] - b_h * ay - b_c * cy_
            thr = t2sq_dof * sse / det  # t² > t_crit² ⇔ β² > t_crit²·σ²·(X'X)⁻¹ᵢᵢ, without a sqrt
            valid = c_ok[:, kk] & (b_h > 0) & (b_c > 0) & (b_h * b_h > thr * c_) & (b_c * b_c > thr * a)
            valid &= h_ok[:, jj] & (nn > 4)
            sse[~valid] = np.inf
            pair = sse.argmin(axis=1)
            both_sse = sse[rows, pair]
            found = np.isfinite(both_sse)
            both_j = np.where(found, jj[pair], 0)
            both_k = np.where(found, kk[pair], 0)
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
        "model_type": choice,
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
    blocks = _household_blocks(daily, ("date", "kwh", "temperature_c"))
    keys = blocks.keys
    params = pl.DataFrame({"household_id": keys}).join(
        model, on="household_id", how="left", maintain_order="left"
    )

    def arr(name: str) -> np.ndarray:
        return params[name].cast(pl.Float64).fill_null(np.nan).to_numpy()

    mu, bh, bc, th, tc = (arr(c) for c in ("intercept", "beta_hdd", "beta_cdd", "heating_balance_point_c",
                                           "cooling_balance_point_c"))  # fmt: skip
    first = (reporting_start - date(1970, 1, 1)).days
    last = ((reporting_end or date(9999, 12, 31)) - date(1970, 1, 1)).days
    n_h = keys.len()
    days = np.zeros(n_h, dtype=np.int64)
    actual = np.zeros(n_h)
    counterfactual = np.zeros(n_h)
    dates = blocks.frame["date"].cast(pl.Date).to_physical()
    kwh_s = blocks.frame["kwh"].cast(pl.Float64)
    temp_s = blocks.frame["temperature_c"].cast(pl.Float64)
    missing = _has_missing(kwh_s) or _has_missing(temp_s)
    # per household once, not per row: which terms count, coefficients with NaN as 0
    heating, cooling = bh > 0, bc > 0
    bh0, bc0 = np.nan_to_num(bh), np.nan_to_num(bc)
    for h0, h1, a, b in blocks.spans():
        day, kwh, temp = _slice(dates, a, b), _slice(kwh_s, a, b), _slice(temp_s, a, b)
        mask = (day >= first) & (day <= last)
        if missing:
            mask &= ~np.isnan(kwh) & ~np.isnan(temp)
        c, t = blocks.codes(h0, h1)[mask], temp[mask]
        count = np.bincount(c, minlength=h1 - h0)
        # each household's parameters on its rows: rows are grouped, so a repeat (not a gather)
        p_mu, p_bh, p_bc, p_th, p_tc, p_heat, p_cool = (
            np.repeat(v[h0:h1], count) for v in (mu, bh0, bc0, th, tc, heating, cooling)
        )
        hdd = p_th
        hdd -= t
        np.maximum(hdd, 0, out=hdd)
        np.copyto(hdd, 0.0, where=~p_heat)
        cdd = t - p_tc
        np.maximum(cdd, 0, out=cdd)
        np.copyto(cdd, 0.0, where=~p_cool)
        predicted = p_mu + p_bh * hdd + p_bc * cdd
        days[h0:h1] = count
        actual[h0:h1] = np.bincount(c, kwh[mask], minlength=h1 - h0)
        counterfactual[h0:h1] = np.bincount(c, predicted, minlength=h1 - h0)
    with np.errstate(invalid="ignore"):
        sums = pl.DataFrame(
            {
                "household_id": keys,
                "reporting_days": days,
                "actual_kwh": np.where(days > 0, actual, np.nan),
                "counterfactual_kwh": np.where(days > 0, counterfactual, np.nan),
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
