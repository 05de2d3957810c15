"""The daily-aggregates benchmark computes the right thing: at 5 households × 2 days its three
implementations (dbt on duckdb, dbt on postgres, the pandas reference) give the same household-days,
kWh, carbon, costs and monthly bills, equal to the simulator's ground truth — and the comparison
catches a wrong answer, so a benchmark of a broken mart cannot report agree=true."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from benchmarks.daily_aggregates import Aggregates, Outcome, compare, main, result_line, run
from tests.support import require_service

pytestmark = pytest.mark.slow

HOUSEHOLDS, DAYS = 5, 2
START = date(2025, 6, 30)  # the two days straddle a month: two bills per household, two fund rates


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    pg = require_service("postgresql")
    work = tmp_path_factory.mktemp("daily_aggregates")
    # a chunk of 2 households: the reference really runs chunk by chunk (3 chunks here)
    return run(HOUSEHOLDS, DAYS, START, work=work, pandas_chunk=2, pg_address=pg)


def test_duckdb_postgres_and_pandas_agree(outcome: Outcome) -> None:
    figures = outcome.figures
    assert figures["problems"] == []
    assert figures["agree"] is True
    assert figures["max_kwh_diff"] <= 1e-6
    # 1-minute readings of every meter plus its boundary register at the midnight after the last day
    assert figures["readings"] == HOUSEHOLDS * (DAYS * 1440 + 1)
    for name, result in outcome.results.items():
        assert result.daily.height == HOUSEHOLDS * DAYS, name
        assert result.monthly.height == HOUSEHOLDS * 2, name  # June and July
        assert result.daily["total_kwh"].min() > 0, name  # real usage, not an empty mart


def test_result_line_has_the_figures(outcome: Outcome) -> None:
    line = result_line(outcome.figures)
    assert line.startswith("daily_aggregates readings=")
    for key in ("duckdb_s=", "postgres_s=", "pandas_s=", "speedup_vs_pandas=", "agree=true"):
        assert key in line


def _with_daily(result: Aggregates, expr: pl.Expr, column: str) -> Aggregates:
    """The result with ``column`` of its first household-day replaced by ``expr``."""
    first = pl.int_range(pl.len()) == 0
    changed = pl.when(first).then(expr).otherwise(pl.col(column)).alias(column)
    return replace(result, daily=result.daily.with_columns(changed))


@pytest.mark.parametrize(
    ("column", "change", "message"),
    [
        ("total_kwh", pl.col("total_kwh") + 2e-6, "daily total_kwh"),
        ("peak_kwh", pl.col("peak_kwh") - 0.5, "daily peak_kwh"),
        ("cost_krw", pl.col("cost_krw") + 10, "daily cost_krw"),
    ],
)
def test_a_wrong_value_is_caught(outcome: Outcome, column: str, change: pl.Expr, message: str) -> None:
    results = dict(outcome.results)
    results["duckdb"] = _with_daily(results["duckdb"], change, column)
    agreement = compare(results, outcome.truth, HOUSEHOLDS * DAYS)
    assert not agreement.ok
    assert any(message in p and "duckdb" in p for p in agreement.problems), agreement.problems


def test_a_missing_household_day_is_caught(outcome: Outcome) -> None:
    results = dict(outcome.results)
    results["postgres"] = replace(results["postgres"], daily=results["postgres"].daily.slice(1))
    agreement = compare(results, outcome.truth, HOUSEHOLDS * DAYS)
    assert not agreement.ok
    assert any("daily keys differ" in p for p in agreement.problems), agreement.problems


def test_a_reference_that_departs_from_the_truth_is_caught(outcome: Outcome) -> None:
    """All three could share a mistake; the simulator's ground truth catches that too."""
    results = {name: _with_daily(r, pl.col("mid_kwh") * 2, "mid_kwh") for name, r in outcome.results.items()}
    agreement = compare(results, outcome.truth, HOUSEHOLDS * DAYS)
    assert [p for p in agreement.problems if "truth" in p], agreement.problems


@pytest.mark.parametrize(
    "argv",
    [["--households", "0"], ["--days", "-1"], ["--pandas-chunk", "0"], ["--start", "2025-13-01"]],
)
def test_bad_arguments_exit_with_a_usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_unknown_target_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="targets must be duckdb and/or postgres"):
        run(1, 1, START, work=tmp_path, targets=["oracle"])
