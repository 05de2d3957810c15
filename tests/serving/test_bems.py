"""BEMS connector: sync status per source, and a real sync (``hems pipeline`` in a subprocess).

The trigger test simulates 2 households × 1 day into the embedded raw store, starts a sync
through the API and polls the job until the pipeline has landed the day and rebuilt the marts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import date

import pytest
from fastapi.testclient import TestClient

from hems.settings import Settings, get_settings
from serving import bems_sync
from tests.serving.conftest import Account

DAY = date(2025, 7, 1)


@pytest.fixture
def client(
    embedded_api: Settings, accounts: dict[str, Account], monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    from ingest.history import simulate_history
    from serving.main import create_app

    simulate_history(embedded_api, households=2, days=1, start=DAY, seed=3)
    # the test polls the job once a second; on a busy machine the sync outlasts 100 polls, and
    # the rate limit (tested in test_rate_limit.py) would answer 429 instead of the job
    monkeypatch.setenv("HEMS_API__RATE_LIMIT_REQUESTS", "100000")
    get_settings.cache_clear()
    with TestClient(create_app()) as c:
        yield c


def _source(status: dict, name: str) -> dict:
    return next(s for s in status["sources"] if s["source"] == name)


def _wait(client: TestClient, url: str, headers: dict, timeout_s: float = 240.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = client.get(url, headers=headers)
        assert r.status_code == 200, r.text
        job = r.json()
        if job["state"] != "running":
            return job
        time.sleep(1.0)
    raise AssertionError(f"sync still running after {timeout_s} s: {job}")


@pytest.mark.slow  # a real Dagster + dbt run: ~60 s on the shared 2-core machine
def test_sync_lands_the_day_and_rebuilds_the_marts(
    embedded_api: Settings, client: TestClient, accounts: dict[str, Account]
) -> None:
    admin, analyst = accounts["admin"].headers, accounts["analyst"].headers
    before = client.get("/bems/sync/status", headers=analyst)
    assert before.status_code == 200, before.text
    status = before.json()
    readings = _source(status, "energy_consumption")
    assert readings["state"] == "never_synced" and readings["pending_points"] > 0
    assert status["marts"]["state"] == "never_synced" and status["last_job"] is None

    r = client.post("/bems/sync", json={"start": DAY.isoformat()}, headers=admin)
    assert r.status_code == 202, r.text
    job = r.json()
    assert (
        job["state"] == "running" and r.headers["Location"] == job["status_url"] == f"/bems/sync/{job['id']}"
    )
    assert job["command"] == f"python -m hems.cli pipeline --start {DAY} --end {DAY}"
    # one at a time: a second trigger while the first runs is refused, naming the running job
    busy = client.post("/bems/sync", json={"start": DAY.isoformat()}, headers=admin)
    assert busy.status_code == 409 and busy.json()["running"] == job["id"]
    assert client.get("/bems/sync/status", headers=admin).json()["running"]["id"] == job["id"]

    done = _wait(client, job["status_url"], analyst)
    assert done["state"] == "succeeded", done["log_tail"]
    assert done["exit_code"] == 0 and done["attempts"] == 1 and done["finished_at"]
    assert "landed" in done["log_tail"]

    after = client.get("/bems/sync/status", headers=analyst).json()
    readings = _source(after, "energy_consumption")
    assert readings["state"] == "synced" and readings["last_landed_day"] == DAY.isoformat()
    assert readings["households"] == 2 and readings["rows"] > 0
    # what is left is the simulator's closing register reading at the next midnight
    assert readings["pending_points"] < before.json()["sources"][0]["pending_points"]
    households = _source(after, "households")
    assert households["state"] == "synced" and households["rows"] == households["source_rows"]
    assert after["marts"]["last_day"] == DAY.isoformat() and after["marts"]["households"] == 2
    assert after["marts"]["last_refresh"] is not None and after["running"] is None
    assert after["last_job"]["id"] == job["id"]
    # a finished job frees the lock for the next one
    assert not bems_sync.runner_for(embedded_api)._lock_held()


@pytest.mark.parametrize(
    ("who", "method", "path", "expected"),
    [
        ("alice", "GET", "/bems/sync/status", 403),
        ("alice", "POST", "/bems/sync", 403),
        ("analyst", "POST", "/bems/sync", 403),
        ("alice", "GET", "/bems/sync/20250101T000000-00000000", 403),
        ("analyst", "GET", "/bems/sync/20250101T000000-00000000", 404),
        ("anonymous", "GET", "/bems/sync/status", 401),
    ],
)
def test_roles(
    embedded_api: Settings, accounts: dict[str, Account], who: str, method: str, path: str, expected: int
) -> None:
    from serving.main import create_app

    headers = {} if who == "anonymous" else accounts[who].headers
    with TestClient(create_app()) as c:
        r = c.request(
            method, path, headers=headers, json={"start": DAY.isoformat()} if method == "POST" else None
        )
    assert r.status_code == expected, r.text
    assert r.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    "body",
    [
        {"start": "2025-07-02", "end": "2025-07-01"},
        {"start": "2025-01-01", "end": "2025-03-01"},  # more than 31 days
        {"start": "2999-01-01"},
        {"start": "yesterday"},
        {},
        {"start": "2025-07-01", "force": True},
    ],
)
def test_bad_sync_requests(embedded_api: Settings, accounts: dict[str, Account], body: dict) -> None:
    from serving.main import create_app

    with TestClient(create_app()) as c:
        r = c.post("/bems/sync", json=body, headers=accounts["admin"].headers)
        assert r.status_code == 422, r.text
        assert c.get("/bems/sync/not-a-job", headers=accounts["admin"].headers).status_code == 422
    assert not (embedded_api.data_dir / "bems" / "jobs").exists() or not any(
        (embedded_api.data_dir / "bems" / "jobs").iterdir()
    )


def test_a_job_whose_process_died_is_reported_lost(embedded_api: Settings) -> None:
    runner = bems_sync.SyncRunner(embedded_api.data_dir)
    (runner.root / "jobs").mkdir(parents=True)
    job = {
        "id": "20250101T000000-0000abcd",
        "start": "2025-07-01",
        "end": "2025-07-01",
        "state": "running",
        "requested_by": 1,
        "created_at": "2025-01-01T00:00:00+00:00",
        "command": ["python"],
        "log_path": str(runner.root / "logs" / "x.log"),
        "finished_at": None,
        "exit_code": None,
        "attempts": 1,
        "error": None,
        "pid": 999999,
        "extra": {},
    }
    (runner.root / "jobs" / f"{job['id']}.json").write_text(json.dumps(job))
    got = runner.get(job["id"])
    assert got is not None and got.state == "lost" and "stopped" in (got.error or "")


def test_a_run_over_its_timeout_is_stopped(embedded_api: Settings) -> None:
    runner = bems_sync.SyncRunner(embedded_api.data_dir, timeout_s=0.5)
    job = runner.submit(DAY, DAY, user_id=1)
    with pytest.raises(bems_sync.SyncBusy):
        runner.submit(DAY, DAY, user_id=1)
    deadline = time.monotonic() + 30
    while (current := runner.get(job.id)) is not None and current.state == "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert current is not None and current.state == "timed_out" and "0.5 s" in (current.error or "")
    assert not runner._lock_held()


def test_version_time_reads_the_marts_token() -> None:
    assert bems_sync.version_time("0") is None
    assert bems_sync.version_time("garbage") is None
    stamp = bems_sync.version_time(f"{1_752_000_000 * 10**9:x}-abcd1234")
    assert stamp is not None and int(stamp.timestamp()) == 1_752_000_000
