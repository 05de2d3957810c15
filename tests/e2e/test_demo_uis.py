"""`hems demo` reaches four running UIs on the embedded profile and stops them cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from hems.services import free_port
from hems.settings import PROJECT_ROOT


@pytest.mark.slow
def test_demo_starts_every_ui_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("api", "dagster", "dashboards", "mlflow")}
    env = {
        **os.environ,
        "HEMS_PROFILE": "local",
        "HEMS_DATA_DIR": str(tmp_path / "var"),
        "HEMS_API__PORT": str(ports["api"]),
        "HEMS_UI__DAGSTER": str(ports["dagster"]),
        "HEMS_UI__DASHBOARDS": str(ports["dashboards"]),
        "HEMS_UI__MLFLOW": str(ports["mlflow"]),
        "COLUMNS": "200",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "hems.cli", "demo", "--households", "2", "--days", "1"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    try:
        deadline = time.monotonic() + 420
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            output.append(line)
            if "press Ctrl-C to stop" in line:
                break
        text = "".join(output)
        assert "press Ctrl-C to stop" in text, text[-4000:]
        for name, port in ports.items():
            assert f"http://127.0.0.1:{port}" in text, f"{name} URL missing"

        checks = {
            "api": f"http://127.0.0.1:{ports['api']}/health",
            "dagster": f"http://127.0.0.1:{ports['dagster']}/server_info",
            "dashboards": f"http://127.0.0.1:{ports['dashboards']}/_stcore/health",
            "mlflow": f"http://127.0.0.1:{ports['mlflow']}/health",
        }
        for name, url in checks.items():
            response = _get_until_ok(url, timeout_s=90)
            assert response.status_code == 200, f"{name}: {response.status_code} {response.text[:200]}"
        # the demo's resident signs in (OAuth2 password flow) and reads the household it owns
        assert "resident@demo.hems" in text
        token = httpx.post(
            f"http://127.0.0.1:{ports['api']}/auth/token",
            data={"username": "resident@demo.hems", "password": "hems-demo-2026"},
            timeout=30,
        )
        assert token.status_code == 200, token.text
        daily = httpx.get(
            f"http://127.0.0.1:{ports['api']}/dashboard/energy",
            params={"household_id": "hh-00001"},
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
            timeout=30,
        )
        assert daily.status_code == 200, daily.text
        assert len(daily.json()["daily"]) == 1
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    for port in ports.values():
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)


def _get_until_ok(url: str, timeout_s: float) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    last: httpx.Response | None = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(url, timeout=10)
            if last.status_code == 200:
                return last
        except httpx.HTTPError:
            pass
        time.sleep(1)
    assert last is not None, f"{url} never answered"
    return last
