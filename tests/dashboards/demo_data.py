"""Demo data for the dashboard tests: built once per test session by the real `hems demo`.

``build_demo`` runs ``python -m hems.cli demo --no-serve`` (embedded profile) into a directory
under pytest's session base temp, so the AppTest module and the browser test share one build.
``enrich`` adds to a *copy* what other parts of the platform produce later — forecasts and
anomaly scores in the raw store's ``ai_predictions``, a reward program with rewards, ledger
entries and a settlement in the app database — written through the same store interfaces those
parts use, so the pages' real-data paths are exercised before those parts exist.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import polars as pl
import pytest

from hems.settings import PROJECT_ROOT, Profile, Settings

HOUSEHOLDS, DAYS = 6, 10
#: development shortcut: a data directory already built by `hems demo --no-serve --households 6
#: --days 10` (the pipeline takes minutes on a busy machine); unset, every session builds its own
REUSE_ENV = "HEMS_TEST_DASHBOARDS_DEMO_DIR"


def demo_dir(factory: pytest.TempPathFactory) -> Path:
    """The session's demo data directory (built on first use)."""
    if os.environ.get(REUSE_ENV):
        reused = Path(os.environ[REUSE_ENV])
        wanted = {"households": HOUSEHOLDS, "days": DAYS}
        marker = reused / "demo.json"
        found = json.loads(marker.read_text()) if marker.exists() else {}
        if {k: found.get(k) for k in wanted} != wanted:
            pytest.fail(
                f"{REUSE_ENV}={reused} holds no {HOUSEHOLDS}-household × {DAYS}-day demo", pytrace=False
            )
        return reused
    path = factory.getbasetemp() / "dashboards-demo" / "var"
    marker = path / "demo.json"
    if marker.exists() and json.loads(marker.read_text()).get("days") == DAYS:
        return path
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hems.cli",
            "demo",
            "--no-serve",
            "--households",
            str(HOUSEHOLDS),
            "--days",
            str(DAYS),
        ],
        cwd=PROJECT_ROOT,
        env={**os.environ, "HEMS_PROFILE": "local", "HEMS_DATA_DIR": str(path), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return path


def enriched_dir(factory: pytest.TempPathFactory) -> Path:
    """A copy of the demo data plus predictions and rewards (see the module docstring)."""
    path = factory.getbasetemp() / "dashboards-enriched" / "var"
    if not (path / "enriched.json").exists():
        shutil.rmtree(path.parent, ignore_errors=True)
        shutil.copytree(demo_dir(factory), path)
        enrich(Settings(profile=Profile.local, data_dir=path))
        (path / "enriched.json").write_text("{}")
    return path


def _days(settings: Settings) -> tuple[list[str], date, date]:
    from hems.stores.warehouse import get_warehouse

    frame = get_warehouse(settings).query(
        "SELECT household_id, min(date) AS first, max(date) AS last FROM marts.energy_usage_daily GROUP BY 1"
    )
    return sorted(frame["household_id"].to_list()), frame["first"].min(), frame["last"].max()  # type: ignore[return-value]


def prediction_frames(households: list[str], first: date, last: date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Hourly forecasts (2 model versions, some actuals outside the interval) and anomaly scores."""
    start = datetime.combine(first, time(), UTC) - timedelta(hours=9)  # local midnight, Asia/Seoul
    hours = int((last - first).days + 1) * 24
    rows, anomalies = [], []
    for h_index, household_id in enumerate(households):
        for i in range(hours):
            ts = start + timedelta(hours=i)
            actual = 0.4 + 0.25 * math.sin(2 * math.pi * (i % 24) / 24) + 0.05 * h_index
            if i % 97 == 13:
                actual += 1.5  # a spike the interval misses
            for version, bias in (("1", 0.08), ("2", 0.02)):
                predicted = actual * (1 + bias) if i % 97 != 13 else actual - 1.5
                rows.append(
                    {
                        "ts": ts,
                        "household_id": household_id,
                        "prediction_type": "hourly_load",
                        "model_version": version,
                        "predicted_value": predicted,
                        "confidence_score": 0.9,
                        "lower": predicted - 0.2,
                        "upper": predicted + 0.2,
                        "actual_value": actual,
                    }
                )
            if i % 97 == 13:
                anomalies.append(
                    {
                        "ts": ts,
                        "household_id": household_id,
                        "prediction_type": "anomaly_daily",
                        "model_version": "1",
                        "predicted_value": 0.8,
                        "confidence_score": 0.8,
                        "lower": None,
                        "upper": None,
                        "actual_value": actual,
                    }
                )
    return pl.DataFrame(rows), pl.DataFrame(
        anomalies, schema_overrides={"lower": pl.Float64, "upper": pl.Float64}
    )


def enrich(settings: Settings) -> None:
    from hems.stores.appdb import (
        LedgerEntryType,
        PointsLedger,
        ProgramKind,
        Reward,
        RewardProgram,
        session_scope,
    )
    from hems.stores.appdb.models import Settlement
    from hems.stores.raw_store import get_raw_store

    households, first, last = _days(settings)
    forecasts, anomalies = prediction_frames(households, first, last)
    store = get_raw_store(settings)
    store.write("ai_predictions", forecasts)
    store.write("ai_predictions", anomalies)

    period = last.strftime("%Y-%m")
    with session_scope(settings.app_database_url) as session:
        program = RewardProgram(
            code="cashback-test",
            name="Energy cashback",
            kind=ProgramKind.cashback,
            rules={},
            effective_from=date(2024, 1, 1),
        )
        session.add(program)
        session.flush()
        balance = 0
        for i, household_id in enumerate(households):
            saved = 10.0 * i
            reward = saved * 60 if saved else 0.0
            session.add(
                Reward(
                    household_id=household_id,
                    program_id=program.id,
                    period=period,
                    baseline_kwh=300.0,
                    actual_kwh=300.0 - saved,
                    savings_kwh=saved,
                    savings_pct=saved / 3,
                    reward_krw=reward,
                    status="paid" if reward else "not_eligible",
                    reason=None if reward else "savings below 3%",
                )
            )
            if reward:
                balance = int(reward)
                session.add(
                    PointsLedger(
                        household_id=household_id,
                        program_id=program.id,
                        period=period,
                        entry_type=LedgerEntryType.accrual,
                        points=int(reward),
                        balance_after=balance,
                        idempotency_key=f"test:{household_id}:{period}",
                    )
                )
        session.add(
            Settlement(
                program_id=program.id,
                period=period,
                households=len(households),
                households_paid=len(households) - 1,
                points=sum(600 * i for i in range(len(households))),
                reward_krw=float(sum(600 * i for i in range(len(households)))),
                savings_kwh=float(sum(10 * i for i in range(len(households)))),
                settled_at=datetime.now(UTC),
            )
        )
