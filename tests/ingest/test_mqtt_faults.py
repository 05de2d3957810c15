"""At-least-once under faults: the worker (a subprocess) is killed, the broker restarts, InfluxDB goes away.

Real services: a private Mosquitto started with the shipped config, InfluxDB (a throwaway database
on the shared server, or a private influxd for the outage), PostgreSQL for the quarantine.
Afterwards every valid reading is in InfluxDB exactly once (by key) and every malformed one is
in quarantine with its reason.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from hems.settings import InfluxSettings, Settings
from hems.stores import appdb
from hems.stores.raw_influx import InfluxRawStore
from ingest.broker import PrivateBroker
from ingest.quarantine import Quarantine
from tests.support import require_service, unique_name
from tests.support.ingest import (
    PrivateInflux,
    Publisher,
    WorkerProcess,
    bad_messages,
    expected_rejects,
    valid_messages,
    wait_until,
)

pytestmark = pytest.mark.stack

N = 3_000
OUTAGE_S = float(os.environ.get("HEMS_TEST_INFLUX_OUTAGE_S", "8"))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    with PrivateBroker(tmp_path / "broker") as b:
        yield b


@pytest.fixture
def pg_url(postgres_database: str) -> Iterator[str]:
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{postgres_database}"
    appdb.migrate(url)
    yield url
    appdb.dispose_engine(url)


def worker_env(
    tmp_path: Path, broker: PrivateBroker, influx_port: int, db: str, pg_db: str
) -> dict[str, str]:
    return {
        "HEMS_PROFILE": "stack",
        "HEMS_DATA_DIR": str(tmp_path / "var"),
        "HEMS_MQTT__HOST": "127.0.0.1",
        "HEMS_MQTT__PORT": str(broker.port),
        "HEMS_MQTT__CLIENT_ID": unique_name("hems-ingest"),
        "HEMS_INFLUX__HOST": "127.0.0.1",
        "HEMS_INFLUX__PORT": str(influx_port),
        "HEMS_INFLUX__DATABASE": db,
        "HEMS_INFLUX__TIMEOUT_S": "5",
        "HEMS_POSTGRES__APP_DATABASE": pg_db,
        "HEMS_INGEST__BATCH_MAX_WAIT_S": "0.1",
        "HEMS_INGEST__BATCH_SIZE": "500",
        "HEMS_LOG_LEVEL": "INFO",
    }


class Check:
    """Counts what landed: readings in InfluxDB by key, rejects in quarantine by reason."""

    def __init__(self, influx: InfluxSettings, pg_url: str, valid: list[tuple[str, bytes]], bad) -> None:
        self.store = InfluxRawStore(influx)
        self.quarantine = Quarantine(pg_url)
        self.n_valid = len(valid)
        self.expected_rejects = expected_rejects(bad, Settings())
        self.start = datetime.now(UTC) - timedelta(days=1)
        self.end = datetime.now(UTC) + timedelta(hours=1)

    def keys(self) -> pl.DataFrame:
        return self.store.read_readings(self.start, self.end).select("household_id", "device_id", "ts")

    def complete(self) -> bool:
        return self.keys().height >= self.n_valid and sum(self.quarantine.counts_by_reason().values()) >= sum(
            self.expected_rejects.values()
        )

    def report(self) -> str:
        return (
            f"readings {self.keys().height}/{self.n_valid}, quarantine {self.quarantine.counts_by_reason()}"
        )

    def assert_exactly_once(self) -> None:
        keys = self.keys()
        assert keys.height == self.n_valid, f"{keys.height} readings in InfluxDB, published {self.n_valid}"
        assert keys.unique().height == self.n_valid
        assert Counter(self.quarantine.counts_by_reason()) == self.expected_rejects


def mixed(now: datetime) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    valid = valid_messages(N, now=now)
    bad = bad_messages(now)
    # malformed messages spread through the stream
    stream = list(valid)
    for k, m in enumerate(bad):
        stream.insert((k + 1) * len(valid) // (len(bad) + 1), m)
    return valid, bad, stream


def test_kill_9_worker_mid_stream(tmp_path, broker, influx_settings, postgres_database, pg_url):
    now = datetime.now(UTC)
    valid, bad, stream = mixed(now)
    check = Check(influx_settings.influx, pg_url, valid, bad)
    env = worker_env(
        tmp_path, broker, influx_settings.influx.port, influx_settings.influx.database, postgres_database
    )
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    worker.wait_connected()
    pub = Publisher(broker.port)
    killed = threading.Event()

    def progress(k: int) -> None:
        if k == N // 3 and not killed.is_set():
            time.sleep(0.3)  # let a batch or two get written and acknowledged
            worker.kill9()
            killed.set()

    try:
        pub.publish(stream, rate=2_000, on_progress=progress)
        assert killed.is_set()
        worker.start()  # same client id: the broker re-sends what was never acknowledged
        worker.wait_connected(count=2)
        assert "session present: True" in worker.log_text()
        assert wait_until(check.complete, 60), check.report() + "\n" + worker.log_text()[-3000:]
        time.sleep(1.0)  # anything still arriving would be a duplicate
        check.assert_exactly_once()
    finally:
        pub.close()
        worker.stop()


def test_broker_restart_mid_stream(tmp_path, broker, influx_settings, postgres_database, pg_url):
    now = datetime.now(UTC)
    valid, bad, stream = mixed(now)
    check = Check(influx_settings.influx, pg_url, valid, bad)
    env = worker_env(
        tmp_path, broker, influx_settings.influx.port, influx_settings.influx.database, postgres_database
    )
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    worker.wait_connected()
    half = len(stream) // 2
    pub = Publisher(broker.port)
    try:
        pub.publish(stream[:half], rate=3_000)
        pub.close()
        broker.restart()  # persistence: the worker's session and its queued messages survive
        pub = Publisher(broker.port, client_id="hems-test-pub-2")
        pub.publish(stream[half:], rate=3_000)
        assert wait_until(check.complete, 60), check.report() + "\n" + worker.log_text()[-3000:]
        time.sleep(1.0)
        check.assert_exactly_once()
        assert worker.proc is not None and worker.proc.poll() is None  # survived the restart
    finally:
        pub.close()
        worker.stop()


def test_influxdb_outage_spools_and_replays(tmp_path, broker, postgres_database, pg_url):
    require_service("postgresql")
    influx = PrivateInflux(tmp_path / "influx").start()
    db = unique_name()
    settings = InfluxSettings(port=influx.port, database=db, timeout_s=5)
    now = datetime.now(UTC)
    valid, bad, stream = mixed(now)
    check = Check(settings, pg_url, valid, bad)
    env = worker_env(tmp_path, broker, influx.port, db, postgres_database)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    worker.wait_connected()
    spool_dir = tmp_path / "var" / "ingest-spool"
    third = len(stream) // 3
    pub = Publisher(broker.port)
    try:
        pub.publish(stream[:third], rate=3_000)
        assert wait_until(lambda: check.keys().height > 0, 30), (
            check.report() + "\n" + worker.log_text()[-3000:]
        )
        influx.stop()
        pub.publish(stream[third : 2 * third], rate=3_000)  # acknowledged by the worker: spooled
        assert wait_until(lambda: any(spool_dir.glob("batch-*.parquet")), 30), (
            check.report() + "\n" + worker.log_text()[-3000:]
        )
        time.sleep(OUTAGE_S)
        influx.start()
        pub.publish(stream[2 * third :], rate=3_000)
        assert wait_until(check.complete, 90), check.report() + "\n" + worker.log_text()[-3000:]
        time.sleep(1.0)
        check.assert_exactly_once()
        assert not list(spool_dir.glob("batch-*.parquet")), "the spool drained"
        assert "spooling" in worker.log_text()
    finally:
        pub.close()
        worker.stop()
        check.store.close()
        influx.stop()
