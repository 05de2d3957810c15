"""Sustained MQTT → InfluxDB ingest throughput, beside the references, as one JSON line.

    .venv/bin/python benchmarks/ingest_throughput.py [--messages 200000] [--batched-messages 5000]

Runs a private Mosquitto with the shipped config (ingest/broker/mosquitto.conf) and the worker as a
subprocess (``python -m ingest.mqtt``) against a throwaway database on the InfluxDB at
HEMS_INFLUX__HOST:PORT (default 127.0.0.1:8086).  Measures:

* (a) one reading per message and (b) 100 readings per message: from the first publish until every
  reading is queryable in InfluxDB (zero loss is checked by counting), and the publish-to-queryable
  p99 (a message counts as queryable at the first poll, every 0.2 s, whose count covers it — the
  worker writes in arrival order, so this is an upper bound up to the poll interval);
* the references: the broker's raw delivery of the same messages to ``mosquitto_sub`` (QoS 1,
  output to /dev/null) and InfluxDB's raw /write rate with 5,000-line batches (httpx).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest.broker import PrivateBroker  # noqa: E402

PREFIX = "hems/v1"


def influx_url() -> str:
    host = os.environ.get("HEMS_INFLUX__HOST", "127.0.0.1")
    return f"http://{host}:{os.environ.get('HEMS_INFLUX__PORT', '8086')}"


def influxql(q: str, db: str | None = None) -> dict:
    params = {"q": q, **({"db": db} if db else {})}
    return httpx.post(f"{influx_url()}/query", params=params, timeout=60).json()


def count_points(db: str) -> int:
    body = influxql("SELECT count(power_consumption) FROM energy_consumption", db)
    try:
        return int(body["results"][0]["series"][0]["values"][0][1])
    except (KeyError, IndexError):
        return 0


def make_messages(n_msgs: int, per_msg: int, devices: int, tag: str) -> list[tuple[str, bytes]]:
    """Distinct readings (device, ts) so that a loss or a duplicate shows in the count."""
    now = datetime.now(UTC).replace(microsecond=0)
    base_ms = int(now.timestamp() * 1000)
    out = []
    for i in range(n_msgs):
        dev = i % devices
        hh = f"{tag}{dev:05d}"
        slot = i // devices
        body = [
            {
                "ts": base_ms - (slot * per_msg + k) * 1000,
                "device_type": "smart_meter",
                "power_w": 100.0 + (i + k) % 900,
                "energy_import_kwh": 1000.0 + k / 100,
                "voltage_v": 220.5,
            }
            for k in range(per_msg)
        ]
        payload = orjson.dumps(body[0] if per_msg == 1 else body)
        out.append((f"{PREFIX}/{hh}/{hh}-m/telemetry", payload))
    return out


class Publisher:
    """One paho client, QoS 1, at most ``inflight`` unacknowledged (MQTT packet ids are 16-bit).

    A small window is fastest: paho scans its in-flight table on each PUBACK (measured here:
    12k msg/s with 100 in flight, 2.3k with 5,000)."""

    def __init__(self, port: int, inflight: int = 100) -> None:
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"bench-{uuid.uuid4().hex[:6]}"
        )
        self.client.max_inflight_messages_set(inflight)
        self.window = threading.BoundedSemaphore(inflight)
        self.client.on_publish = lambda *_: self.window.release()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, messages: list[tuple[str, bytes]]) -> np.ndarray:
        """Publish all; returns each message's publish time (monotonic)."""
        times = np.empty(len(messages))
        infos = []
        for i, (topic, payload) in enumerate(messages):
            self.window.acquire()  # pace: never more than `inflight` awaiting PUBACK, nothing queued
            times[i] = time.monotonic()
            infos.append(self.client.publish(topic, payload, qos=1))
        for info in infos:
            info.wait_for_publish(120)
        return times

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _publish_part(args: tuple[int, list[tuple[str, bytes]]]) -> np.ndarray:
    port, part = args
    pub = Publisher(port)
    try:
        return pub.publish(part)
    finally:
        pub.close()


def publish_parallel(port: int, messages: list[tuple[str, bytes]], procs: int = 2) -> np.ndarray:
    """Publish from ``procs`` processes (one paho client tops out near 12k msg/s); publish times back
    in message order (CLOCK_MONOTONIC is shared by processes)."""
    parts = [messages[i::procs] for i in range(procs)]
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        results = pool.map(_publish_part, [(port, p) for p in parts])
    times = np.empty(len(messages))
    for i, r in enumerate(results):
        times[i::procs] = r
    return times


def broker_reference(port: int, messages: list[tuple[str, bytes]]) -> float:
    """Messages/s the broker delivers to mosquitto_sub (QoS 1, to /dev/null)."""
    exe = shutil.which("mosquitto_sub")
    topic = messages[0][0].split("/")[2][:3]
    sub = subprocess.Popen(
        [
            exe or "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-q",
            "1",
            "-C",
            str(len(messages)),
            "-t",
            f"{PREFIX}/+/+/telemetry",
            "-i",
            f"ref-{topic}",
        ],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    started = time.monotonic()
    publish_parallel(port, messages)
    sub.wait(300)
    elapsed = time.monotonic() - started
    return len(messages) / elapsed


def influx_reference(lines: int = 500_000, batch: int = 5_000) -> float:
    """Points/s InfluxDB accepts on /write with 5,000-line batches (two connections, as the worker)."""
    db = f"bench_ref_{uuid.uuid4().hex[:8]}"
    influxql(f'CREATE DATABASE "{db}"')
    base = int(time.time() * 1000) - lines
    bodies = [
        "\n".join(
            f"energy_consumption,device_id=d{j % 1000},device_type=smart_meter,household_id=h{j % 1000} "
            f"power_consumption={100 + j % 900}.0,energy_import_kwh=1000.5,voltage=220.5 {base + j}"
            for j in range(s, min(s + batch, lines))
        ).encode()
        for s in range(0, lines, batch)
    ]
    client = httpx.Client(timeout=60)
    started = time.monotonic()

    def post(chunk: list[bytes]) -> None:
        for body in chunk:
            r = client.post(f"{influx_url()}/write", params={"db": db, "precision": "ms"}, content=body)
            r.raise_for_status()

    threads = [threading.Thread(target=post, args=(bodies[i::2],)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    influxql(f'DROP DATABASE "{db}"')
    return lines / elapsed


def run_ingest(port: int, db: str, work: Path, messages: list[tuple[str, bytes]], per_msg: int) -> dict:
    env = {
        **os.environ,
        "HEMS_PROFILE": "stack",
        "HEMS_DATA_DIR": str(work / f"var-{per_msg}"),
        "HEMS_MQTT__PORT": str(port),
        "HEMS_MQTT__CLIENT_ID": f"bench-ingest-{per_msg}",
        "HEMS_INFLUX__DATABASE": db,
        "HEMS_POSTGRES__APP_DATABASE": os.environ.get("HEMS_POSTGRES__APP_DATABASE", "hems"),
        "HEMS_LOG_LEVEL": "WARNING",
    }
    log = open(work / f"worker-{per_msg}.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen(
        [sys.executable, "-m", "ingest.mqtt"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while count_points(db) == 0 and time.monotonic() < deadline:  # the worker is up once a probe lands
            probe = make_messages(1, 1, 1, "probe")
            p = Publisher(port)
            p.publish(probe)
            p.close()
            time.sleep(0.5)
        baseline = count_points(db)
        total = len(messages) * per_msg
        polls: list[tuple[float, int]] = []
        done = threading.Event()

        def poll() -> None:
            while not done.is_set():
                n = count_points(db) - baseline
                polls.append((time.monotonic(), n))
                if n >= total:
                    done.set()
                    return
                time.sleep(0.2)

        started = time.monotonic()
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        times = publish_parallel(port, messages)
        published_s = time.monotonic() - started
        done.wait(300)
        finished = polls[-1][0] if polls else time.monotonic()
        queryable = count_points(db) - baseline
        # publish-to-queryable per message: first poll whose count covers the message
        poll_t = np.array([t for t, _ in polls])
        poll_n = np.array([n for _, n in polls])
        need = (np.arange(len(messages)) + 1) * per_msg
        idx = np.searchsorted(poll_n, need)
        ok = idx < len(poll_t)
        lat = poll_t[idx[ok]] - times[ok]
        elapsed = finished - started
        return {
            "messages": len(messages),
            "readings": total,
            "queryable": int(queryable),
            "lost": int(total - queryable),
            "publish_s": round(published_s, 2),
            "elapsed_s": round(elapsed, 2),
            "msg_per_s": round(len(messages) / elapsed),
            "readings_per_s": round(total / elapsed),
            "p99_publish_to_queryable_s": round(float(np.percentile(lat, 99)), 3) if lat.size else None,
        }
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=200_000, help="messages for (a), one reading each")
    ap.add_argument("--batched-messages", type=int, default=5_000, help="messages for (b), 100 readings each")
    ap.add_argument("--devices", type=int, default=1_000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hems-ingest-bench-"))
    db = f"bench_ingest_{uuid.uuid4().hex[:8]}"
    single = make_messages(args.messages, 1, args.devices, "hh-a")
    batched = make_messages(args.batched_messages, 100, args.devices, "hh-b")
    try:
        with PrivateBroker(work / "broker") as broker:
            ref_broker = broker_reference(broker.port, single)
            ref_influx = influx_reference()
            influxql(f'CREATE DATABASE "{db}"')
            a = run_ingest(broker.port, db, work, single, 1)
            db_b = db + "_b"
            influxql(f'CREATE DATABASE "{db_b}"')
            b = run_ingest(broker.port, db_b, work, batched, 100)
            influxql(f'DROP DATABASE "{db_b}"')
    finally:
        influxql(f'DROP DATABASE "{db}"')
    result = {
        "benchmark": "ingest_throughput",
        "cores": os.cpu_count(),
        "a_one_reading_per_message": a,
        "b_100_readings_per_message": b,
        "ref_broker_delivery_msg_per_s": round(ref_broker),
        "ref_influx_write_points_per_s": round(ref_influx),
        "ratio_a_to_broker": round(a["msg_per_s"] / ref_broker, 3),
        "ratio_a_to_influx": round(a["readings_per_s"] / ref_influx, 3),
        "ratio_b_to_influx": round(b["readings_per_s"] / ref_influx, 3),
        "targets": {"a_msg_per_s": 20_000, "b_readings_per_s": 100_000, "p99_s": 2.0},
        "met": {
            "a": a["msg_per_s"] >= 20_000 and a["lost"] == 0,
            "b": b["readings_per_s"] >= 100_000 and b["lost"] == 0,
            "p99": max(a["p99_publish_to_queryable_s"] or 99, b["p99_publish_to_queryable_s"] or 99) <= 2.0,
        },
    }
    shutil.rmtree(work, ignore_errors=True)
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
