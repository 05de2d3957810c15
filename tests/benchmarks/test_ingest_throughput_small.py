"""The ingest benchmark measures what it claims: at a small scale every phase counts every reading in
InfluxDB, the paced publishers hold the asked rate and start together, and a p99 below the target
rate is never reported as the target met."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import orjson
import pytest

from benchmarks.ingest_throughput import CHUNK, send_rate
from hems.settings import PROJECT_ROOT
from tests.support import require_service


def test_send_rate_is_the_paced_rate() -> None:
    """Two publishers, 500 msg/s each, chunks of CHUNK stamped at their send time: 1,000 msg/s."""
    per, rate = 5_000, 500.0
    own = np.repeat(np.arange(per // CHUNK) * CHUNK / rate, CHUNK)
    times = np.empty(2 * per)
    times[0::2] = 100.0 + own
    times[1::2] = 100.0 + own + 0.001
    assert send_rate(times, 2) == pytest.approx(2 * rate, rel=1e-3)
    # one publisher 1 s late: together they sent the same messages over a longer span
    times[1::2] += 1.0
    assert send_rate(times, 2) < 0.92 * 2 * rate


@pytest.mark.stack
def test_small_run_counts_every_reading(tmp_path) -> None:
    require_service("influxdb")
    require_service("mosquitto")
    out = subprocess.run(
        [
            sys.executable,
            "benchmarks/ingest_throughput.py",
            *("--messages", "4000", "--batched-messages", "60", "--paced-seconds", "3"),
            *("--rate-a", "2000", "--rate-b", "20", "--only", "a,a_paced,b,b_paced"),
            *("--dump", str(tmp_path)),
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        timeout=600,
        check=True,
    )
    result = orjson.loads(out.stdout)
    phases = {"a_saturated": 4000, "a_paced": 6000, "b_saturated": 6000, "b_paced": 6000}
    for phase, readings in phases.items():
        ph = result[phase]
        assert ph["readings"] == readings, phase
        assert ph["queryable"] == readings and ph["lost"] == 0, phase
        assert ph["p99_publish_to_queryable_s"] is not None, phase
    assert result["a_paced"]["publish_msg_per_s"] == pytest.approx(2000, rel=0.05)
    assert result["b_paced"]["publish_msg_per_s"] == pytest.approx(20, rel=0.05)
    # paced below the targets: the latency target is not judged
    assert "p99_a" not in result["met"] and "p99_b" not in result["met"]
    dump = np.load(tmp_path / "apaced.npz")
    send, due = dump["send"], dump["due"]
    assert send.size == due.size == dump["latency"].size == 6000
    # paced over 3 s from one start (publishers 0::2 and 1::2 together); nothing sent before due
    assert float(due.max() - due.min()) == pytest.approx(3.0, abs=0.05)
    assert abs(float(due[0] - due[1])) < 0.02
    assert (send >= due).all()
    # the latency counts from when a message was due
    assert float(dump["latency"].min()) > 0
