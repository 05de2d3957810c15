"""The thin vertical slice on each profile, real at every step:

simulator → raw store → Dagster landing asset → dbt energy_usage_daily → app database →
``GET /dashboard/energy`` → the Streamlit overview page — checked against the simulator's own
ground truth (sum of simulated minute energies): grid import by TOU band to 0.1 %, total use
(grid + self-consumed solar, the inverter's power integrated) to 1 %.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from hems.settings import PROJECT_ROOT, get_settings
from tests.support import require_service, unique_name

HOUSEHOLDS, DAYS = 4, 3


def _run_demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
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
        env={**os.environ, **env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(params=["local", "stack"])
def profile_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {"HEMS_PROFILE": request.param, "HEMS_DATA_DIR": str(tmp_path / "var")}
    if request.param == "local":
        yield env
        return
    import httpx
    import psycopg

    for service in ("postgresql", "redis", "influxdb"):
        require_service(service)
    names = {k: unique_name() for k in ("APP", "WAREHOUSE", "DAGSTER", "MLFLOW")}
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as con:
        for name in names.values():
            con.execute(f'CREATE DATABASE "{name}"')
    env.update({f"HEMS_POSTGRES__{k}_DATABASE": v for k, v in names.items()})
    env["HEMS_INFLUX__DATABASE"] = unique_name()
    env["HEMS_REDIS__KEY_PREFIX"] = unique_name() + ":"
    # the stack profile takes its API secrets from the environment only (docs/api.md, 'Secrets')
    env["HEMS_API__JWT_SECRET"] = base64.b64encode(os.urandom(48)).decode()
    env["HEMS_API__FIELD_KEYS"] = "e2e:" + base64.b64encode(os.urandom(32)).decode()
    try:
        yield env
    finally:
        with psycopg.connect(admin, autocommit=True) as con:
            for name in names.values():
                con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        httpx.post(
            "http://127.0.0.1:8086/query", params={"q": f'DROP DATABASE "{env["HEMS_INFLUX__DATABASE"]}"'}
        )
        import redis

        client = redis.Redis()
        keys = list(client.scan_iter(match=env["HEMS_REDIS__KEY_PREFIX"] + "*"))
        if keys:
            client.delete(*keys)


@pytest.mark.slow
def test_slice_matches_ground_truth(profile_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    proc = _run_demo(profile_env)
    assert "energy_usage_daily" in proc.stdout

    for key, value in profile_env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    from serving import deps

    deps.raw_store_dep.cache_clear()
    settings = get_settings()
    truth = pl.read_parquet(settings.data_dir / "simulator" / "truth.parquet")
    assert truth["household_id"].n_unique() == HOUSEHOLDS
    assert truth["date"].n_unique() == DAYS

    from fastapi.testclient import TestClient

    from hems.stores import appdb
    from hems.stores.appdb import Role
    from serving.main import create_app
    from serving.security import create_user

    client = TestClient(create_app())
    # an analyst (who sees every household) signs in through the OAuth2 password flow
    create_user(
        appdb.get_engine(settings.app_database_url),
        "analyst@example.kr",
        "correct horse 42",
        role=Role.analyst,
    )
    signed_in = client.post(
        "/auth/token", data={"username": "analyst@example.kr", "password": "correct horse 42"}
    )
    assert signed_in.status_code == 200, signed_in.text
    client.headers["Authorization"] = f"Bearer {signed_in.json()['access_token']}"
    first, last = truth["date"].min(), truth["date"].max()
    checked = 0
    for household_id in truth["household_id"].unique().to_list():
        response = client.get(
            "/dashboard/energy", params={"household_id": household_id, "start": str(first), "end": str(last)}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        served = {d["date"]: d for d in body["daily"]}
        expected = truth.filter(pl.col("household_id") == household_id)
        assert len(served) == DAYS
        for row in expected.iter_rows(named=True):
            day = served[str(row["date"])]
            # what the home used: grid import + self-consumed solar (the inverter's power integrated)
            assert day["total_kwh"] == pytest.approx(row["load_kwh"], rel=1e-2)
            assert day["peak_kwh"] == pytest.approx(row["import_peak_kwh"], rel=1e-3, abs=1e-6)
            assert day["off_peak_kwh"] == pytest.approx(row["import_off_peak_kwh"], rel=1e-3, abs=1e-6)
            checked += 1
        assert body["totals"]["total_kwh"] == pytest.approx(expected["load_kwh"].sum(), rel=1e-2)
    assert checked == HOUSEHOLDS * DAYS

    if settings.profile.value == "stack":
        # the runs live in the Dagster PostgreSQL database (dagster-postgres via dagster.yaml)
        import psycopg

        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:5432/{settings.postgres.dagster_database}"
        ) as con:
            (runs,) = con.execute("SELECT count(*) FROM runs WHERE status = 'SUCCESS'").fetchone()  # type: ignore[misc]
        assert runs >= 2

    # a second demo run finds the data built and does not simulate again
    again = _run_demo(profile_env)
    assert "already built" in again.stdout

    from streamlit.testing.v1 import AppTest

    page = AppTest.from_file(str(PROJECT_ROOT / "dashboards" / "streamlit_app.py"), default_timeout=60).run()
    assert not page.exception
    energy = next(m for m in page.metric if m.label == "Energy")
    assert float(energy.value.replace(",", "").split()[0]) == pytest.approx(truth["load_kwh"].sum(), rel=1e-2)
    get_settings.cache_clear()
