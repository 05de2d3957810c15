"""At-least-once under faults: the worker (a subprocess) is killed, the broker restarts, InfluxDB goes away.

Real services: a private Mosquitto started with the shipped config, InfluxDB (a throwaway database
on the shared server, or a private influxd for the outage), PostgreSQL for the quarantine.
Afterwards every valid reading is in InfluxDB exactly once (by key) and every malformed one is
in quarantine with its reason.

Scale-in: Mosquitto (2.0) keeps handing a stopped member of a shared group its share of the
messages, queued in the member's persistent session until it returns (or the session expires, a
week later, and the messages with it). ``python -m ingest.mqtt --retire`` (``hems ingest mqtt
--retire``) connects as that member, unsubscribes, drains what was queued for it and ends the session.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import polars as pl
import pytest
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

from hems.settings import InfluxSettings, Settings
from hems.stores import appdb
from hems.stores.raw_influx import InfluxRawStore
from ingest.broker import PrivateBroker
from ingest.mqtt import RETIRE_IDLE_S, end_session
from ingest.quarantine import Quarantine
from tests.support import require_service, unique_name
from tests.support.ingest import (
    PREFIX,
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
OUTAGE_S = float(os.environ.get("HEMS_TEST_INFLUX_OUTAGE_S", "60"))


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


# ----------------------------------------------------------------------------- scale-in

#: b's share (about half) is held for b: ending b's session without draining it (the obvious
#: scale-in) discards it, and the exactly-once check below fails with about N_SCALE / 2 missing
N_SCALE = 2_000
#: the broker's in-flight window in the scale-in test, below b's share: the broker can send the
#: retiring worker only part of its queue before that part is acknowledged
SMALL_WINDOW = 400
#: the retiring worker's batch window, longer than its idle limit (ingest.mqtt.RETIRE_IDLE_S):
#: after each window it sees no message for longer than the limit before it acknowledges the
#: window, so the retire must count idleness from its last acknowledgement, not its last message
RETIRE_BATCH_WAIT_S = 6


def session_present(port: int, client_id: str) -> bool:
    """Whether the broker holds a persistent session for ``client_id`` (connecting with
    clean_session=False reports it; the probe's own session is then ended)."""
    flags: list[bool] = []
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False
    )
    c.on_connect = lambda cl, u, f, rc, p: flags.append(bool(f.session_present))
    c.connect("127.0.0.1", port)
    deadline = time.monotonic() + 10
    while not flags and time.monotonic() < deadline:
        c.loop(0.1)
    c.disconnect()
    end_session(Settings(mqtt={"host": "127.0.0.1", "port": port}), client_id)
    return flags[0]


def test_retire_drains_the_stopped_members_share_and_ends_its_session(
    tmp_path, influx_settings, postgres_database, pg_url
):
    assert RETIRE_BATCH_WAIT_S > RETIRE_IDLE_S
    influx = influx_settings.influx
    group = unique_name("grp")
    broker = PrivateBroker(tmp_path / "broker", overrides={"max_inflight_messages": str(SMALL_WINDOW)})
    broker.start()
    envs = []
    for name in ("a", "b"):
        env = worker_env(tmp_path / name, broker, influx.port, influx.database, postgres_database)
        env["HEMS_INGEST__SHARED_GROUP"] = group
        envs.append(env)
    a = WorkerProcess(envs[0], tmp_path / "a.log").start()
    b = WorkerProcess(envs[1], tmp_path / "b.log").start()
    retire_env = {**envs[1], "HEMS_INGEST__BATCH_MAX_WAIT_S": str(RETIRE_BATCH_WAIT_S)}
    retire_env["HEMS_INGEST__BATCH_SIZE"] = "100000"
    retire = WorkerProcess(retire_env, tmp_path / "b-retire.log", args=["--retire"])
    pub = Publisher(broker.port)
    try:
        a.wait_connected()
        b.wait_connected()
        assert b.stop() == 0  # a graceful stop: b's session (and its group membership) stays
        now = datetime.now(UTC)
        valid = valid_messages(N_SCALE, now=now)
        pub.publish(valid)
        check = Check(influx, pg_url, valid, [])
        # a writes its share; b's share waits in b's session (the reason --retire exists)
        assert wait_until(lambda: check.keys().height >= N_SCALE // 3, 30), check.report()
        time.sleep(2.0)
        stranded = N_SCALE - check.keys().height
        assert stranded > 2 * SMALL_WINDOW, f"expected b's share to be held for it, {stranded} missing"

        # devices go on publishing during the retire: after b's UNSUBSCRIBE all of it goes to a
        during = [(t.replace("hh-", "hx-"), p) for t, p in valid_messages(600, now=now, devices=7)]
        retire.start()
        pub.publish(during, rate=100)
        assert retire.proc is not None
        retire.proc.wait(120)
        assert retire.proc.returncode == 0, retire.log_text()[-3000:]
        log = retire.log_text()
        assert "unsubscribed (retiring)" in log and "session ended" in log, log[-3000:]
        check = Check(influx, pg_url, valid + during, [])
        assert wait_until(check.complete, 30), check.report()
        time.sleep(1.0)
        check.assert_exactly_once()  # every reading, b's share included, exactly once

        # b is gone from the group: everything published now goes to a, nothing is held for b
        more = [(t.replace("hh-", "hy-"), p) for t, p in valid_messages(500, now=now, devices=7)]
        pub.publish(more, rate=2_000)
        check = Check(influx, pg_url, valid + during + more, [])
        assert wait_until(check.complete, 30), check.report()
        check.assert_exactly_once()
        assert not session_present(broker.port, envs[1]["HEMS_MQTT__CLIENT_ID"])
    finally:
        pub.close()
        for w in (a, b, retire):
            w.stop()
        broker.stop()


def test_retire_refuses_without_a_shared_group(tmp_path, broker, influx_settings, postgres_database, pg_url):
    """Without a group the worker is its messages' only subscriber: unsubscribing would drop data."""
    influx = influx_settings.influx
    env = worker_env(tmp_path, broker, influx.port, influx.database, postgres_database)
    w = WorkerProcess(env, tmp_path / "w.log", args=["--retire"]).start()
    assert w.proc is not None
    assert w.proc.wait(60) == 1
    assert "retire needs a shared group" in w.log_text()
    assert "MQTT connected" not in w.log_text()


# ----------------------------------------------------------------------------- fuzzing the worker

FUZZ_TOPIC = f"{PREFIX}/hh-fz/hh-fz-meter/telemetry"


def test_fuzzed_payloads_never_stop_the_worker_and_each_reject_is_quarantined(
    tmp_path, broker, influx_settings, postgres_database, pg_url
):
    """Thousands of hypothesis-generated payloads (random JSON structures, byte mutations of a good
    reading, random bytes) through the broker into a running worker: it keeps running, every
    rejected reading is in quarantine with its reason (exactly the set the pipeline's own verdict
    on the same messages gives), and every valid one is in InfluxDB."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from ingest.pipeline import IngestPipeline, Message
    from ingest.quarantine import TABLE, fingerprint
    from tests.ingest.test_pipeline_fuzz import payload_objs

    influx = influx_settings.influx
    env = worker_env(tmp_path, broker, influx.port, influx.database, postgres_database)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    pub = Publisher(broker.port)
    store = InfluxRawStore(influx)
    # a good reading, from two hours ago on the hour plus one second per message sent so far (its
    # own key): byte mutations of it give valid readings, and rejects whose verdict cannot flip in
    # the seconds between the worker's check and this test's
    base = (datetime.now(UTC) - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)

    def good(k: int) -> bytes:
        return orjson.dumps(
            {
                "ts": (base + timedelta(seconds=k)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "device_type": "smart_meter",
                "power_w": 412.5,
                "energy_import_kwh": 12345.678,
                "voltage_v": 220.4,
                "power_factor": 0.96,
            }
        )

    sent: list[bytes] = []

    @settings(
        max_examples=800,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(
        st.lists(payload_objs, min_size=1, max_size=5),
        st.lists(st.tuples(st.integers(0, len(good(0)) - 1), st.binary(min_size=1, max_size=3)), max_size=3),
        st.binary(max_size=24),
    )
    def publish_some(objs: list, mutations: list[tuple[int, bytes]], junk: bytes) -> None:
        mutated = bytearray(good(len(sent)))
        for pos, b in mutations:
            mutated[pos : pos + len(b)] = b
        batch = [json.dumps(o).encode() for o in objs] + [bytes(mutated), junk]
        pub.publish([(FUZZ_TOPIC, p) for p in batch])
        sent.extend(batch)

    try:
        worker.wait_connected()
        publish_some()
        assert len(sent) >= 3_000, len(sent)
        verdict = IngestPipeline(None, None, settings=Settings()).prepare(  # type: ignore[arg-type]
            [Message(FUZZ_TOPIC, p, datetime.now(UTC)) for p in sent]
        )
        want_rejects = {
            fingerprint(r["topic"] or "", r["payload"] or b"", r["reason"])
            for r in verdict.rejects.iter_rows(named=True)
        }
        want_keys = set(verdict.valid.select("household_id", "device_id", "ts").iter_rows())
        assert len(want_rejects) >= 500 and len(want_keys) >= 200  # the fuzz makes plenty of both

        def quarantined() -> set[str]:
            with appdb.get_engine(pg_url).connect() as conn:
                return set(conn.execute(sa.select(TABLE.c.fingerprint)).scalars())

        def landed() -> set[tuple]:
            frame = store.read_readings(base - timedelta(days=400), base + timedelta(days=400))
            return set(frame.select("household_id", "device_id", "ts").iter_rows())

        def done() -> bool:
            return len(quarantined()) >= len(want_rejects) and len(landed()) >= len(want_keys)

        assert wait_until(done, 60), (
            f"quarantine {len(quarantined())}/{len(want_rejects)}, readings {len(landed())}/"
            f"{len(want_keys)}\n{worker.log_text()[-3000:]}"
        )
        time.sleep(1.0)
        assert quarantined() == want_rejects
        assert landed() == want_keys
        assert worker.proc is not None and worker.proc.poll() is None, "the worker stopped"
        assert "batch failed" not in worker.log_text() and "Traceback" not in worker.log_text()
    finally:
        pub.close()
        worker.stop()
        store.close()
