"""`hems baseline`: analysts' CSV files → baseline report; every bad file is one line and exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hems.cli import app
from hems.settings import PROJECT_ROOT

FIRST = date(2024, 1, 1)
START = date(2024, 12, 31)  # FIRST + 365 days (2024 is a leap year)
DAYS = 365 + 60


def _temps(days: int = DAYS) -> np.ndarray:
    rng = np.random.default_rng(5)
    doy = np.arange(days)
    return 13 - 14 * np.cos(2 * np.pi * (doy - 15) / 365) + rng.normal(0, 3, days)


def _daily_kwh(temps: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(6)
    kwh = (
        8 + 0.3 * np.maximum(16 - temps, 0) + 0.5 * np.maximum(temps - 23, 0) + rng.normal(0, 0.4, temps.size)
    )
    kwh[365:] *= 0.9  # 10 % less from the reporting start
    return kwh


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    temps = _temps()
    kwh = _daily_kwh(temps)
    days = [FIRST + timedelta(days=i) for i in range(DAYS)]
    meter = tmp_path / "meter.csv"
    meter.write_text(
        "timestamp,kWh\n" + "".join(f"{d}T00:00:00+09:00,{k:.3f}\n" for d, k in zip(days, kwh, strict=True))
    )
    # hourly temperature in UTC: the local day of 2024-01-01 starts at 2023-12-31T15:00Z
    lines = []
    for i, d in enumerate(days):
        midnight = datetime(d.year, d.month, d.day) - timedelta(hours=9)
        lines += [f"{(midnight + timedelta(hours=h)).isoformat()}Z,{temps[i]:.2f}" for h in range(24)]
    temp_c = tmp_path / "temp_c.csv"
    temp_c.write_text("time,temperature\n" + "\n".join(lines) + "\n")
    temp_f = tmp_path / "temp_f.csv"
    temp_f.write_text(
        "time,temp_f\n"
        + "\n".join(f"{ln.split(',')[0]},{float(ln.split(',')[1]) * 9 / 5 + 32:.3f}" for ln in lines)
        + "\n"
    )
    # hourly meter for the CBL: 40 local days (no offsets: local wall-clock time), event day 2025-06-20
    hourly = ["ts,energy_kwh"]
    d0 = date(2025, 5, 12)
    for i in range(40):
        d = d0 + timedelta(days=i)
        for h in range(24):
            value = 0.3 + 0.02 * h + (0.0 if d != date(2025, 6, 20) else -0.1)
            hourly.append(f"{d} {h:02d}:00:00,{value:.3f}")
    meter_hourly = tmp_path / "meter_hourly.csv"
    meter_hourly.write_text("\n".join(hourly) + "\n")
    return {"meter": meter, "temp_c": temp_c, "temp_f": temp_f, "meter_hourly": meter_hourly}


runner = CliRunner()


def baseline(*args: str | Path):
    return runner.invoke(app, ["baseline", *map(str, args)], env={"COLUMNS": "200"})


def test_caltrack_json_report(files: dict[str, Path]) -> None:
    result = baseline(
        "--meter", files["meter"], "--temperature", files["temp_c"], "--reporting-start", str(START), "--json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["qualified"] is True and report["reason"] is None
    assert report["baseline_days"] == 365 and report["reporting_days"] == 60
    assert report["savings_pct"] == pytest.approx(10, abs=1.5)
    assert report["savings_kwh"] == pytest.approx(
        report["counterfactual_kwh"] - report["reporting_kwh"], abs=0.01
    )
    assert report["model_type"] == "hdd_cdd"
    assert report["heating_balance_point"] == pytest.approx(16, abs=2)
    for key in ("baseline_kwh", "cvrmse", "nmbe", "r_squared", "cooling_balance_point", "reward_krw"):
        assert report[key] is not None


def test_fahrenheit_gives_the_same_savings(files: dict[str, Path]) -> None:
    args = ("--meter", files["meter"], "--reporting-start", str(START), "--json")
    c = json.loads(baseline(*args, "--temperature", files["temp_c"]).stdout)
    f = json.loads(baseline(*args, "--temperature", files["temp_f"], "--temperature-unit", "F").stdout)
    assert f["savings_kwh"] == pytest.approx(c["savings_kwh"], abs=0.01)
    assert f["heating_balance_point"] == pytest.approx(c["heating_balance_point"] * 9 / 5 + 32, abs=0.1)


def test_table_and_cashback(files: dict[str, Path]) -> None:
    result = baseline(
        "--meter", files["meter"], "--temperature", files["temp_c"], "--reporting-start", str(START)
    )
    assert result.exit_code == 0, result.output
    for text in ("counterfactual_kwh", "savings_pct", "cvrmse", "heating_balance_point", "qualified"):
        assert text in result.stdout
    cash = baseline(
        "--meter", files["meter"], "--reporting-start", "2025-01-15", "--method", "cashback", "--json"
    )
    report = json.loads(cash.stdout)
    assert report["period"] == "2025-01" and report["baseline_years"] == 1
    assert report["program_code"] == "kepco_energy_cashback" and report["reward_krw"] >= 0


def test_cbl_reports_the_event_day_hour_by_hour(files: dict[str, Path]) -> None:
    result = baseline(
        "--meter",
        files["meter_hourly"],
        "--reporting-start",
        "2025-06-20",
        "--method",
        "cbl-mid-6-10",
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["qualified"] and report["baseline_days"] == 10
    assert report["savings_kwh"] == pytest.approx(2.4, abs=1e-6)  # 0.1 kWh less in each of 24 hours
    assert report["hourly"][0] == {"hour": 0, "cbl_kwh": 0.3, "actual_kwh": 0.2}
    table = baseline(
        "--meter", files["meter_hourly"], "--reporting-start", "2025-06-20", "--method", "cbl-max-4-5"
    )
    assert "event day, hour by hour" in table.stdout
    daily = baseline("--meter", files["meter"], "--reporting-start", "2025-01-02", "--method", "cbl-max-4-5")
    assert daily.exit_code == 2 and "need hourly" in daily.stderr


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("when,value\n2024-01-01,1\n", "missing timestamp column"),
        ("timestamp,power_w\n2024-01-01,1\n", "missing kWh column"),
        ("timestamp,kwh\n2024-01-01,1\nnot-a-date,2\n", "line 3: unparsable timestamp 'not-a-date'"),
        ("timestamp,kwh\n2024-01-01,1\n2024-01-02,-3\n", "line 3: negative kWh -3.0"),
        ("timestamp,kwh\n2024-01-01,1\n2024-01-02,abc\n", "line 3: kWh value 'abc' is not a number"),
        (
            "timestamp,kwh\n2024-01-01T00:00+09:00,1\n2024-01-02,2\n",
            "mix values with and without a UTC offset",
        ),
        ("timestamp,kwh\n2024-01-01,1\n2024-01-01,2\n", "duplicate timestamp"),
        ("timestamp,kwh\n", "too little data"),
        ("timestamp,kwh\n2024-12-01,1\n2024-12-02,1\n2025-01-01,1\n", "too little data: 2 complete days"),
    ],
)
def test_bad_meter_files_are_one_line_errors(
    files: dict[str, Path], tmp_path: Path, content: str, message: str
) -> None:
    bad = _write(tmp_path / "bad.csv", content)
    result = baseline("--meter", bad, "--temperature", files["temp_c"], "--reporting-start", str(START))
    assert result.exit_code == 2, result.output
    assert message in result.stderr and str(bad) in result.stderr
    assert "Traceback" not in result.output


def test_bad_temperature_and_options(files: dict[str, Path], tmp_path: Path) -> None:
    hot = _write(tmp_path / "hot.csv", "timestamp,temperature\n2024-01-01,300\n")
    result = baseline("--meter", files["meter"], "--temperature", hot, "--reporting-start", str(START))
    assert result.exit_code == 2 and "is --temperature-unit right?" in result.stderr
    no_temp = baseline("--meter", files["meter"], "--reporting-start", str(START))
    assert no_temp.exit_code == 2 and "needs a temperature file" in no_temp.stderr
    missing = baseline(
        "--meter", tmp_path / "nope.csv", "--temperature", files["temp_c"], "--reporting-start", str(START)
    )
    assert missing.exit_code == 2 and "no such file" in missing.stderr
    for args in (("--method", "magic"), ("--temperature-unit", "K"), ("--reporting-start", "2025/01/01")):
        opts = {"--reporting-start": str(START), **dict([args])}
        r = baseline(
            "--meter",
            files["meter"],
            "--temperature",
            files["temp_c"],
            *[x for kv in opts.items() for x in kv],
        )
        assert r.exit_code == 2, (args, r.output)


def test_installed_command_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.csv", "when,value\n2024-01-01,1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "hems.cli", "baseline", "--meter", str(bad), "--method", "cashback",
         "--reporting-start", "2025-01-01"],
        cwd=PROJECT_ROOT, env={**os.environ, "COLUMNS": "300"}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "missing timestamp column" in proc.stderr
