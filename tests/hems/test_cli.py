"""The `hems` command: an unreachable service or a bad argument is one clear line, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hems.services import free_port
from hems.settings import PROJECT_ROOT


def hems(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hems.cli", *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, "COLUMNS": "300", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_unreachable_influxdb_names_service_address_and_fix(tmp_path: Path) -> None:
    port = free_port()
    line = one_error_line(
        hems(
            "simulate",
            "--households",
            "1",
            "--days",
            "1",
            env={"HEMS_PROFILE": "stack", "HEMS_INFLUX__PORT": str(port), "HEMS_DATA_DIR": str(tmp_path)},
        )
    )
    assert "InfluxDB" in line
    assert f"127.0.0.1:{port}" in line
    assert "hems services up" in line


def test_unreachable_postgres_for_the_pipeline(tmp_path: Path) -> None:
    port = free_port()
    line = one_error_line(
        hems(
            "demo",
            "--no-serve",
            env={
                "HEMS_PROFILE": "stack",
                "HEMS_POSTGRES__PORT": str(port),
                "HEMS_DATA_DIR": str(tmp_path),
                "HEMS_INFLUX__DATABASE": "hems_test_unused",
            },
        )
    )
    assert "PostgreSQL" in line
    assert str(port) in line


def test_busy_ui_port_is_reported(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = one_error_line(
            hems("serve", env={"HEMS_API__PORT": str(port), "HEMS_DATA_DIR": str(tmp_path)})
        )
    assert f"api port {port}" in line


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("pipeline", "--start", "2025-02-30", "--end", "2025-03-01"), "2025-02-30"),
        (("pipeline", "--start", "2025-03-02", "--end", "2025-03-01"), "before start"),
        (("simulate", "--households", "0"), "households"),
    ],
)
def test_bad_arguments(args: tuple[str, ...], needle: str, tmp_path: Path) -> None:
    proc = hems(*args, env={"HEMS_DATA_DIR": str(tmp_path)})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_simulate_with_faults_writes_a_fault_log(tmp_path: Path) -> None:
    import polars as pl

    proc = hems(
        "simulate", "--households", "2", "--days", "1", "--faults", "gaps=1,spikes=1",
        env={"HEMS_PROFILE": "local", "HEMS_DATA_DIR": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log = pl.read_parquet(tmp_path / "simulator" / "faults.parquet")
    assert sorted(log["kind"].to_list()) == ["gap", "spike"]


@pytest.mark.parametrize("spec", ["bogus=1", "gaps", "gaps=-1"])
def test_simulate_rejects_a_bad_fault_spec(spec: str, tmp_path: Path) -> None:
    proc = hems("simulate", "--faults", spec, env={"HEMS_DATA_DIR": str(tmp_path)})
    assert proc.returncode == 2
    assert "--faults" in proc.stderr
