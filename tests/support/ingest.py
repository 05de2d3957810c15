"""Ingest test helpers: readings, a paced QoS-1 publisher, a worker subprocess, a private influxd."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from string import Template

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from hems.services.manager import free_port
from hems.settings import PROJECT_ROOT, Settings
from ingest.pipeline import IngestPipeline, Message
from ingest.simulator.faults import malformed_payloads
from ingest.simulator.live import payload_for

PREFIX = "hems/v1"


def valid_messages(n: int, *, devices: int = 10, now: datetime | None = None) -> list[tuple[str, bytes]]:
    """``n`` distinct valid meter readings (one per message), spread over ``devices`` meters."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    out = []
    for i in range(n):
        hh = f"hh-{i % devices:03d}"
        row = {
            "ts": now - timedelta(seconds=i // devices),
            "device_type": "smart_meter",
            "power_w": 100.0 + i % 900,
            "energy_import_kwh": 1000.0 + i / 100,
            "voltage_v": 220.0,
        }
        out.append((f"{PREFIX}/{hh}/{hh}-meter/telemetry", payload_for(row, "Asia/Seoul")))
    return out


def bad_messages(now: datetime | None = None) -> list[tuple[str, bytes]]:
    """Malformed messages the worker subscribes to (a topic outside the subscription never arrives)."""
    when = now or datetime.now(UTC)
    return [
        (m.topic, m.payload)
        for m in malformed_payloads("hh-bad", prefix=PREFIX, ts=when)
        if mqtt.topic_matches_sub(f"{PREFIX}/+/+/telemetry", m.topic)
    ]


def expected_rejects(messages: Sequence[tuple[str, bytes]], settings: Settings) -> Counter[str]:
    """Reject reasons the pipeline gives these messages (what quarantine must hold)."""
    at = datetime.now(UTC)
    prepared = IngestPipeline(None, None, settings=settings).prepare(  # type: ignore[arg-type]
        [Message(t, p, at) for t, p in messages]
    )
    return Counter(prepared.rejects["reason"].to_list())


class Publisher:
    """QoS 1 publisher that waits for every PUBACK, pacing itself (``rate`` messages/s)."""

    def __init__(self, port: int, client_id: str = "hems-test-pub") -> None:
        self.port = port
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(
        self,
        messages: Sequence[tuple[str, bytes]],
        *,
        rate: float | None = None,
        on_progress: Callable[[int], None] | None = None,
        timeout: float = 60.0,
    ) -> None:
        infos = []
        started = time.monotonic()
        for k, (topic, payload) in enumerate(messages):
            infos.append(self.client.publish(topic, payload, qos=1))
            if rate and k % 50 == 49:
                ahead = started + (k + 1) / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            if on_progress is not None:
                on_progress(k + 1)
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            assert info.is_published(), "the broker did not acknowledge a publish in time"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class WorkerProcess:
    """``python -m ingest.mqtt`` in a subprocess with the given environment."""

    def __init__(self, env: dict[str, str], log_path: Path, args: Sequence[str] = ()) -> None:
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ingest.mqtt", *self.args],
            env=self.env,
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def wait_connected(self, timeout: float = 30.0, count: int = 1) -> None:
        """Until the worker's log says it is connected (``count`` times: restarts log again)."""
        ok = wait_until(lambda: self.log_text().count("MQTT connected") >= count, timeout, 0.1)
        assert ok, f"worker did not connect: {self.log_text()[-2000:]}"

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class PrivateInflux:
    """An influxd of our own on free ports (stopped and started by tests; never the shared 8086)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        while True:
            rpc = free_port()
            if rpc != self.port:
                break
        template = Template((PROJECT_ROOT / "hems/services/influxdb.conf").read_text())
        directory.mkdir(parents=True, exist_ok=True)
        self.conf = directory / "influxdb.conf"
        self.conf.write_text(
            template.substitute(
                data_dir=str(directory), http_bind=f"127.0.0.1:{self.port}", rpc_bind=f"127.0.0.1:{rpc}"
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> PrivateInflux:
        log = open(self.dir / "influxd.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["influxd", "-config", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/ping", timeout=1).status_code == 204:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"private influxd did not start: {(self.dir / 'influxd.log').read_text()[-500:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except Exception:
            pass
        time.sleep(interval)
    return predicate()
