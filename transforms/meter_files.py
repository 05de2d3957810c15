"""Analysts' own CSV files for ``hems baseline``: load, check, aggregate to local days, report.

Meter file: a timestamp column (``timestamp``/``ts``/``time``/``datetime``/``date``/
``interval_start``) and one kWh column (``kwh`` or a single column whose name contains "kwh").
Each row is the energy of the interval that *starts* at the timestamp; intervals are hourly (or
any step dividing a day, e.g. 15 min) or daily. Temperature file: a timestamp column and one
column whose name contains "temp"; hourly or daily values, averaged per local day.

Timestamps either all carry an offset (``2025-01-01T00:00:00+09:00``, ``…Z``) and are converted to
the local zone, or none does and they are local wall-clock times (a bare date is local midnight).
A local day counts only when all its intervals are present. Every problem is one
:class:`MeterFileError` naming the file and what is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from hems.errors import HemsError
from transforms.baselines import (
    CaltrackConfig,
    caltrack_savings,
    cashback_baseline,
    cbl_hourly,
    fit_caltrack_daily,
    monthly_kwh,
)
from transforms.rewards import CASHBACK_PROGRAM, DR_PROGRAM, GENERIC_PROGRAM, compute_rewards

METHODS = ("caltrack-daily", "cashback", "cbl-mid-6-10", "cbl-max-4-5")
TIMESTAMP_NAMES = ("timestamp", "ts", "time", "datetime", "date", "interval_start")
#: an offset after a time of day (a bare date such as 2025-01-01 has none)
_OFFSET = re.compile(r"\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|[+-]\d{2}(:?\d{2})?)$", re.IGNORECASE)
_HOUSEHOLD = "meter"  # the single household of an analyst's file


class MeterFileError(HemsError):
    """A meter or temperature file cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class MeterData:
    """Complete local days (``date, kwh``) and, for sub-daily files, complete local hours."""

    daily: pl.DataFrame
    hourly: pl.DataFrame | None
    interval_minutes: int


def _read(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise MeterFileError(f"{path}: no such file")
    try:
        frame = pl.read_csv(path, infer_schema=False)  # all strings: we parse and report ourselves
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        raise MeterFileError(f"{path}: not a readable CSV file ({str(exc).splitlines()[0]})") from None
    if frame.height == 0:
        raise MeterFileError(f"{path}: too little data: the file has no rows")
    frame.columns = [c.strip() for c in frame.columns]
    return frame


def _column(path: Path, frame: pl.DataFrame, exact: tuple[str, ...], contains: str, what: str) -> str:
    lower = {c.lower(): c for c in frame.columns}
    for name in exact:
        if name in lower:
            return lower[name]
    found = [c for c in frame.columns if contains in c.lower()] if contains else []
    if len(found) == 1:
        return found[0]
    hint = f"found {', '.join(found)}" if found else f"columns are {', '.join(frame.columns)}"
    raise MeterFileError(f"{path}: missing {what} column ({' or '.join(exact) or contains}); {hint}")


def _timestamps(path: Path, raw: pl.Series, timezone: str) -> pl.Series:
    """Parse to the local zone; the first bad value is reported with its line number."""
    text = raw.str.strip_chars()
    if text.null_count() or (text == "").any():
        line = int((text.is_null() | (text == "")).arg_true()[0]) + 2
        raise MeterFileError(f"{path}: line {line}: empty timestamp")
    has_offset = text.str.contains("(?i)" + _OFFSET.pattern)
    if has_offset.any() and not has_offset.all():
        line = int((~has_offset).arg_true()[0]) + 2
        raise MeterFileError(f"{path}: line {line}: timestamps mix values with and without a UTC offset")
    try:
        if has_offset.all():
            parsed = text.str.to_datetime(time_zone="UTC", strict=False).dt.convert_time_zone(timezone)
        else:
            parsed = text.str.to_datetime(strict=False).dt.replace_time_zone(
                timezone, ambiguous="earliest", non_existent="null"
            )
    except pl.exceptions.PolarsError:
        parsed = pl.Series([None] * text.len(), dtype=pl.Datetime("us", timezone))
    if parsed.null_count():
        line = int(parsed.is_null().arg_true()[0]) + 2
        raise MeterFileError(f"{path}: line {line}: unparsable timestamp {text[line - 2]!r}")
    return parsed


def _numbers(path: Path, raw: pl.Series, what: str) -> pl.Series:
    text = raw.str.strip_chars()
    values = text.cast(pl.Float64, strict=False)
    bad = values.is_null() | values.is_nan()
    if bad.any():
        line = int(bad.arg_true()[0]) + 2
        raise MeterFileError(f"{path}: line {line}: {what} value {text[line - 2]!r} is not a number")
    return values


def _step_minutes(path: Path, ts: pl.Series) -> int:
    steps = ts.sort().diff().drop_nulls()
    if (steps == timedelta(0)).any():
        dup = ts.filter(ts.is_duplicated())[0]
        raise MeterFileError(f"{path}: duplicate timestamp {dup.isoformat()}")
    minutes = int(steps.median().total_seconds() // 60)  # type: ignore[union-attr]
    if minutes >= 23 * 60:
        return 1440
    if minutes <= 0 or 1440 % minutes:
        raise MeterFileError(
            f"{path}: interval of {minutes} min does not divide a day (use hourly or daily rows)"
        )
    return minutes


def load_meter(path: str | Path, timezone: str = "Asia/Seoul") -> MeterData:
    """Read a meter CSV into complete local days (and hours when sub-daily)."""
    path = Path(path)
    frame = _read(path)
    ts_col = _column(path, frame, TIMESTAMP_NAMES, "", "timestamp")
    kwh_col = _column(path, frame, ("kwh",), "kwh", "kWh")
    ts = _timestamps(path, frame[ts_col], timezone)
    kwh = _numbers(path, frame[kwh_col], "kWh")
    if (kwh < 0).any():
        line = int((kwh < 0).arg_true()[0]) + 2
        raise MeterFileError(
            f"{path}: line {line}: negative kWh {kwh[line - 2]} (give interval energy, not a register)"
        )
    if frame.height < 2:
        raise MeterFileError(f"{path}: too little data: one row; at least two intervals are needed")
    step = _step_minutes(path, ts)
    rows = pl.DataFrame({"ts": ts, "kwh": kwh}).with_columns(
        date=pl.col("ts").dt.date(), hour=pl.col("ts").dt.hour()
    )
    per_day = 1440 // step
    daily = (
        rows.group_by("date")
        .agg(kwh=pl.col("kwh").sum(), intervals=pl.len())
        .filter(pl.col("intervals") == per_day)
        .select("date", "kwh")
        .sort("date")
    )
    hourly = None
    if step <= 60:
        hourly = (
            rows.group_by("date", "hour")
            .agg(kwh=pl.col("kwh").sum(), intervals=pl.len())
            .filter(pl.col("intervals") == 60 // step)
            .select("date", pl.col("hour").cast(pl.Int8), "kwh")
            .sort("date", "hour")
        )
    if daily.height == 0:
        raise MeterFileError(
            f"{path}: too little data: no complete local day ({per_day} intervals of {step} min)"
        )
    return MeterData(daily=daily, hourly=hourly, interval_minutes=step)


def load_temperature(path: str | Path, unit: str = "C", timezone: str = "Asia/Seoul") -> pl.DataFrame:
    """Read a temperature CSV into local daily means in °C (``date, temperature_c``)."""
    path = Path(path)
    if unit.upper() not in ("C", "F"):
        raise MeterFileError(f"{path}: temperature unit must be C or F, got {unit!r}")
    frame = _read(path)
    ts_col = _column(path, frame, TIMESTAMP_NAMES, "", "timestamp")
    t_col = _column(path, frame, ("temperature", "temp"), "temp", "temperature")
    ts = _timestamps(path, frame[ts_col], timezone)
    values = _numbers(path, frame[t_col], "temperature")
    celsius = (values - 32) * 5 / 9 if unit.upper() == "F" else values
    out_of_range = (celsius < -60) | (celsius > 60)
    if out_of_range.any():
        line = int(out_of_range.arg_true()[0]) + 2
        raise MeterFileError(
            f"{path}: line {line}: temperature {values[line - 2]} °{unit.upper()} is outside −60…60 °C; "
            "is --temperature-unit right?"
        )
    return (
        pl.DataFrame({"date": ts.dt.date(), "temperature_c": celsius})
        .group_by("date")
        .agg(pl.col("temperature_c").mean())
        .sort("date")
    )


def _r(value: Any, digits: int = 3) -> Any:
    return None if value is None else round(float(value), digits) + 0.0  # no "-0.0"


def _bp(value: float | None, unit: str) -> float | None:
    if value is None:
        return None
    return round(value * 9 / 5 + 32, 1) if unit == "F" else round(value, 1)


def baseline_report(
    meter_path: str | Path,
    temperature_path: str | Path | None,
    reporting_start: date,
    method: str = "caltrack-daily",
    temperature_unit: str = "C",
    timezone: str = "Asia/Seoul",
    config: CaltrackConfig | None = None,
) -> dict[str, Any]:
    """Baseline, counterfactual, savings and verdict for one meter file (see docs/incentives.md).

    caltrack-daily: baseline = the 365 days before ``reporting_start``, reporting period = from
    ``reporting_start`` to the last complete day. cashback: the calendar month of
    ``reporting_start`` against the same month one and two years earlier. cbl-*: the 24 hours of
    ``reporting_start`` as the event day against the KPX CBL.
    """
    if method not in METHODS:
        raise MeterFileError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    unit = temperature_unit.upper()
    meter = load_meter(meter_path, timezone)
    temperature = None
    if temperature_path is not None:
        temperature = load_temperature(temperature_path, unit, timezone)
    elif method == "caltrack-daily":
        raise MeterFileError("caltrack-daily needs a temperature file (--temperature)")
    report: dict[str, Any] = {"method": method, "reporting_start": reporting_start.isoformat()}
    if method == "caltrack-daily":
        assert temperature is not None
        report |= _caltrack(
            Path(meter_path), meter, temperature, reporting_start, unit, config or CaltrackConfig()
        )
    elif method == "cashback":
        report |= _cashback(Path(meter_path), meter, reporting_start)
    else:
        report |= _cbl(
            Path(meter_path), meter, reporting_start, "mid_6_10" if method == "cbl-mid-6-10" else "max_4_5"
        )
    return report


def _reward(row: dict[str, Any], program: str, period: str, on: date) -> dict[str, Any]:
    frame = pl.DataFrame(
        [{"household_id": _HOUSEHOLD, "period": period, **row}],
        schema={
            "household_id": pl.String,
            "period": pl.String,
            "baseline_kwh": pl.Float64,
            "actual_kwh": pl.Float64,
            "qualified": pl.Boolean,
            "reason": pl.String,
        },
    )
    out = compute_rewards(frame, program, on=on).row(0, named=True)
    return {
        "program_code": program,
        "reward_krw": out["reward_krw"],
        "status": out["status"],
        "reward_reason": out["reason"],
    }


def _caltrack(
    path: Path, meter: MeterData, temperature: pl.DataFrame, start: date, unit: str, cfg: CaltrackConfig
) -> dict[str, Any]:
    daily = meter.daily.join(temperature, on="date", how="inner").with_columns(
        household_id=pl.lit(_HOUSEHOLD)
    )
    first = start - timedelta(days=cfg.baseline_days)
    base = daily.filter((pl.col("date") >= first) & (pl.col("date") < start))
    if base.height < cfg.min_fit_days:
        raise MeterFileError(
            f"{path}: too little data: {base.height} complete days with temperature in the "
            f"{cfg.baseline_days} days before {start}; the model needs at least {cfg.min_fit_days}"
        )
    reporting = daily.filter(pl.col("date") >= start)
    if reporting.height == 0:
        raise MeterFileError(f"{path}: too little data: no complete day with temperature on or after {start}")
    model = fit_caltrack_daily(daily, start, cfg)
    m = model.row(0, named=True)
    s = caltrack_savings(model, daily, start).row(0, named=True)
    end = reporting["date"].max()
    return {
        "baseline_start": first.isoformat(),
        "baseline_end": (start - timedelta(days=1)).isoformat(),
        "baseline_days": m["n_days"],
        "baseline_coverage_pct": _r(m["coverage"] * 100, 1),
        "baseline_kwh": _r(m["baseline_period_kwh"]),
        "reporting_end": end.isoformat(),  # type: ignore[union-attr]
        "reporting_days": s["reporting_days"],
        "reporting_kwh": _r(s["actual_kwh"]),
        "counterfactual_kwh": _r(s["counterfactual_kwh"]),
        "savings_kwh": _r(s["savings_kwh"]),
        "savings_pct": _r(s["savings_pct"], 2),
        "model_type": m["model_type"],
        "intercept_kwh_per_day": _r(m["intercept"], 4),
        "beta_hdd_kwh_per_degree_day": _r(m["beta_hdd"] * (5 / 9 if unit == "F" else 1), 4),
        "beta_cdd_kwh_per_degree_day": _r(m["beta_cdd"] * (5 / 9 if unit == "F" else 1), 4),
        "heating_balance_point": _bp(m["heating_balance_point_c"], unit),
        "cooling_balance_point": _bp(m["cooling_balance_point_c"], unit),
        "temperature_unit": unit,
        "cvrmse": _r(m["cvrmse"], 4),
        "nmbe": _r(m["nmbe"], 6),
        "r_squared": _r(m["r_squared"], 4),
        "r_squared_adj": _r(m["r_squared_adj"], 4),
        "qualified": s["qualified"],
        "reason": s["reason"],
        **_reward(
            {
                "baseline_kwh": s["counterfactual_kwh"],
                "actual_kwh": s["actual_kwh"],
                "qualified": s["qualified"],
                "reason": s["reason"],
            },
            GENERIC_PROGRAM,
            f"{start}..{end}",
            start,
        ),
    }


def _cashback(path: Path, meter: MeterData, start: date) -> dict[str, Any]:
    period = f"{start:%Y-%m}"
    monthly = monthly_kwh(meter.daily.with_columns(household_id=pl.lit(_HOUSEHOLD)))
    row = cashback_baseline(monthly, [period]).row(0, named=True)
    if row["actual_kwh"] is None:
        raise MeterFileError(f"{path}: too little data: no metered day in {period}")
    savings = None if row["baseline_kwh"] is None else row["baseline_kwh"] - row["actual_kwh"]
    return {
        "period": period,
        "baseline_years": row["baseline_years"],
        "baseline_kwh": _r(row["baseline_kwh"]),
        "reporting_kwh": _r(row["actual_kwh"]),
        "counterfactual_kwh": _r(row["baseline_kwh"]),
        "savings_kwh": _r(savings),
        "savings_pct": _r(None if savings is None else savings / row["baseline_kwh"] * 100, 2),
        "qualified": row["qualified"],
        "reason": row["reason"],
        **_reward(
            {k: row[k] for k in ("baseline_kwh", "actual_kwh", "qualified", "reason")},
            CASHBACK_PROGRAM,
            period,
            date(start.year, start.month, 1),
        ),
    }


def _cbl(path: Path, meter: MeterData, event_day: date, method: str) -> dict[str, Any]:
    if meter.hourly is None:
        raise MeterFileError(f"{path}: the CBL methods need hourly (or finer) intervals; this file is daily")
    hourly = meter.hourly.with_columns(household_id=pl.lit(_HOUSEHOLD))
    cbl = cbl_hourly(hourly, event_day, method)  # type: ignore[arg-type]
    actual = hourly.filter(pl.col("date") == event_day).select(pl.col("hour").cast(pl.Int8), "kwh")
    if actual.height < 24:
        raise MeterFileError(f"{path}: too little data: {actual.height} of 24 hours metered on {event_day}")
    hours = cbl.join(actual, on="hour", how="left").sort("hour")
    first = hours.row(0, named=True)
    baseline = hours["cbl_kwh"].sum() if first["qualified"] else None
    reporting = float(hours["kwh"].sum())
    savings = None if baseline is None else baseline - reporting
    return {
        "event_day": event_day.isoformat(),
        "event_hours": "00-24",
        "baseline_days": first["days_used"],
        "baseline_kwh": _r(baseline),
        "reporting_kwh": _r(reporting),
        "counterfactual_kwh": _r(baseline),
        "savings_kwh": _r(savings),
        "savings_pct": _r(None if savings is None or not baseline else savings / baseline * 100, 2),
        "qualified": first["qualified"],
        "reason": first["reason"],
        "hourly": [
            {"hour": r["hour"], "cbl_kwh": _r(r["cbl_kwh"]), "actual_kwh": _r(r["kwh"])}
            for r in hours.iter_rows(named=True)
        ],
        **_reward(
            {
                "baseline_kwh": baseline,
                "actual_kwh": reporting,
                "qualified": first["qualified"],
                "reason": first["reason"],
            },
            DR_PROGRAM,
            f"{event_day}",
            event_day,
        ),
    }
