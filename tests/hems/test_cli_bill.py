"""`hems bill`: the KEPCO breakdown as a table or JSON; bad values are usage errors, never tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hems.settings import PROJECT_ROOT


def hems(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hems.cli", *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_json_breakdown() -> None:
    proc = hems("bill", "--kwh", "1200", "--month", "2025-08", "--json")
    assert proc.returncode == 0, proc.stderr
    bill = json.loads(proc.stdout)
    assert bill["total_krw"] == 460430
    assert bill["vat_krw"] == 40855
    assert bill["super_user_kwh"] == 200
    assert [b["kwh"] for b in bill["energy_blocks"]] == [300, 150, 550, 200]
    assert {"base_charge_krw", "climate_environment_krw", "fuel_cost_adjustment_krw", "subtotal_krw"} <= set(
        bill
    )
    assert bill["power_industry_fund_krw"] == 11030


def test_table_breakdown() -> None:
    proc = hems("bill", "--kwh", "350", "--month", "2025-03")
    assert proc.returncode == 0, proc.stderr
    for text in ("base charge (tier 2)", "1,600", "56,190", "6,269", "2,000", "total", "70,950"):
        assert text in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--kwh", "-5", "--month", "2025-03"), "--kwh"),
        (("--kwh", "abc", "--month", "2025-03"), "--kwh"),
        (("--kwh", "100", "--month", "2025-3"), "YYYY-MM"),
        (("--kwh", "100", "--month", "2023-04"), "no kepco_residential_low_voltage tariff in force"),
        (("--kwh", "100"), "--month"),
    ],
)
def test_bad_values_are_usage_errors(args: tuple[str, ...], message: str) -> None:
    proc = hems("bill", *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr
