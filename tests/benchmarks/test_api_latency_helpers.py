"""benchmarks/api_latency.py: the figures it derives (rounds combined, server-side percentiles) and
its wrk script, run by the real wrk against a small local server."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from benchmarks import api_latency as bench


def test_rounds_combine_into_one_figure() -> None:
    runs = [
        {"requests": 100, "seconds": 1.0, "rps": 100.0, "p50_ms": 5, "p90_ms": 8, "p99_ms": 20, "max_ms": 30,
         "statuses": {"200": 100}, "x_cache": {"hit": 100}, "server_cpu_s": 0.03, "server_p99_le_ms": 25.0},
        {"requests": 300, "seconds": 1.0, "rps": 300.0, "p50_ms": 4, "p90_ms": 9, "p99_ms": 12, "max_ms": 50,
         "statuses": {"200": 300}, "x_cache": {"hit": 300}, "server_cpu_s": 0.05},
    ]  # fmt: skip
    combined = bench.combine(runs)
    assert combined["requests"] == 400 and combined["rps"] == 200.0  # over all the rounds' time
    assert (combined["p50_ms"], combined["p99_ms"], combined["max_ms"]) == (5, 20, 50)  # worst round
    assert combined["statuses"] == {"200": 400} and combined["x_cache"] == {"hit": 400}
    assert combined["server_cpu_us_per_request"] == 200.0 and combined["server_p99_le_ms"] == 25.0


def test_histogram_p99_refuses_scrapes_from_different_workers() -> None:
    before = {0.01: 10.0, 0.025: 10.0, float("inf"): 10.0}
    after = {0.01: 105.0, 0.025: 110.0, float("inf"): 110.0}
    assert bench.bucket_p99_ms(before, after, requests=100) == 25.0
    assert bench.bucket_p99_ms(after, before, requests=100) is None  # counts went down
    assert bench.bucket_p99_ms(before, after, requests=50) is None  # more than the phase sent


def test_server_percentiles_come_from_the_access_log_lines_of_the_phase(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    lines = [
        {"ts": f"2026-01-01T00:00:{s:02d}.000+00:00", "route": route, "duration_ms": float(ms)}
        for s, route, ms in [(1, "/dashboard/energy", 999)]  # before the window
        + [(2, "/dashboard/energy", i % 10 + 1) for i in range(200)]
        + [(2, "/community/leaderboard", 500)]  # another route
    ]
    log.write_text("INFO: uvicorn says hello\n" + "".join(json.dumps(x) + "\n" for x in lines))
    window = ("/dashboard/energy", "2026-01-01T00:00:02.000+00:00", "2026-01-01T00:00:03.000+00:00")
    figures = bench.access_log_latency(log, {"dashboard_cached": [window]})
    assert figures == {"dashboard_cached": {"server_p50_ms": 5.5, "server_p99_ms": 10.0}}


class _Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    paths: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.paths.append(self.path)
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Cache", "miss")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_wrk_script_sends_a_new_range_each_time_and_reports_json(echo_server: str, tmp_path: Path) -> None:
    _Echo.paths = []
    span = (dt.date(2025, 7, 1), dt.date(2025, 7, 14))
    script = tmp_path / "uncached.lua"
    script.write_text(bench.lua_script("uncached", [], 2, span, offset=25_000))
    result = bench.run_wrk(echo_server, script, connections=4, threads=2, duration_s=1, headers={"X-A": "b"})
    assert result["requests"] > 10 and result["statuses"] == {"200": result["requests"]}
    assert result["x_cache"] == {"miss": result["requests"]} and result["p99_ms"] >= result["p50_ms"] > 0
    paths = _Echo.paths[: result["requests"]]
    assert len(set(paths)) == len(paths)  # every request a different household or range
    assert all(p.startswith("/dashboard/energy?household_id=hh-0000") for p in paths)
    first = paths[0]
    assert "&end=2025-07-" in first or "&end=2025-08-" in first  # offset 25,000: 10 days later
