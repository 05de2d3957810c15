"""`hems services up|status|down` against the machine's real services (no mocks).

Private instances go on free ports with a temporary data directory, so these tests never touch the
shared 5432/6379/1883 services nor the project's InfluxDB at 8086 (beyond using it).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import psycopg
import pytest
import redis

from hems import services
from hems.errors import HemsError
from hems.services import (
    DOWN,
    RUNNING_EXISTING,
    RUNNING_PRIVATE,
    STARTED_PRIVATE,
    STOPPED,
    ServicesError,
    free_port,
    listening,
)
from hems.settings import Settings

pytestmark = pytest.mark.stack


def _by_name(rows: list[services.ServiceStatus]) -> dict[str, services.ServiceStatus]:
    return {r.name: r for r in rows}


@pytest.fixture
def private_settings(tmp_path: Path) -> Iterator[Settings]:
    """Settings whose redis / mosquitto ports are free: `up` must start private ones there."""
    settings = Settings(data_dir=tmp_path / "var", redis={"port": free_port()}, mqtt={"port": free_port()})
    yield settings
    services.down(settings)  # whatever a failed test left behind


def test_status_reports_the_machines_services() -> None:
    rows = _by_name(services.status(Settings()))
    assert list(rows) == list(services.SERVICE_NAMES)
    for name in ("postgresql", "redis", "mosquitto", "influxdb"):
        assert rows[name].ok, rows[name].line()
    assert rows["redis"].state == RUNNING_EXISTING and rows["redis"].address == "127.0.0.1:6379"
    assert "version 1.6" in rows["influxdb"].detail


def test_private_redis_up_status_down(private_settings: Settings) -> None:
    port = private_settings.redis.port
    (row,) = services.up(private_settings, ["redis"])
    assert row.state == STARTED_PRIVATE, row.line()
    assert redis.Redis(port=port).ping()
    assert _by_name(services.status(private_settings))["redis"].state == RUNNING_PRIVATE
    # nothing is persisted and the data stays in the project's data dir
    assert (private_settings.data_dir / "services" / "redis" / "redis.pid").exists()
    assert redis.Redis(port=port).config_get("save") == {"save": ""}
    rows = _by_name(services.down(private_settings))
    assert rows["redis"].state == STOPPED
    assert not listening("127.0.0.1", port)
    # the machine's shared services were reported, never stopped
    assert rows["postgresql"].state == RUNNING_EXISTING
    assert redis.Redis(port=6379).ping()


def test_down_never_stops_the_shared_redis(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var")
    (row,) = services.down(settings, ["redis"])
    assert row.state == RUNNING_EXISTING and "left running" in row.detail
    assert redis.Redis(port=6379).ping()


def test_private_mosquitto_up_status_down(private_settings: Settings) -> None:
    port = private_settings.mqtt.port
    (row,) = services.up(private_settings, ["mosquitto"])
    assert row.state == STARTED_PRIVATE, row.line()
    got: list[bytes] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = lambda _c, _u, msg: got.append(msg.payload)
    client.connect("127.0.0.1", port)
    client.subscribe("hems/v1/test", qos=1)
    client.loop_start()
    try:
        time.sleep(0.2)
        client.publish("hems/v1/test", b"ok", qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        client.loop_stop()
        client.disconnect()
    assert got == [b"ok"]
    assert _by_name(services.status(private_settings))["mosquitto"].state == RUNNING_PRIVATE
    (row,) = services.down(private_settings, ["mosquitto"])
    assert row.state == STOPPED
    assert not listening("127.0.0.1", port)
    assert listening("127.0.0.1", 1883)  # the shared broker is untouched


def test_influxdb_up_uses_the_running_instance() -> None:
    settings = Settings()
    (row,) = services.up(settings, ["influxdb"])
    assert row.ok, row.line()
    body = httpx.get(f"{settings.influx.url}/query", params={"q": "SHOW DATABASES"}).json()
    assert [settings.influx.database] in body["results"][0]["series"][0]["values"]


def _free_port_pair() -> int:
    """A port p with p + 2 free too (InfluxDB's RPC port)."""
    for _ in range(50):
        p = free_port()
        if p < 65000 and not listening("127.0.0.1", p + 2):
            return p
    raise RuntimeError("no free port pair")


def test_private_influxdb_start_and_stop(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var", influx={"port": _free_port_pair()})
    try:
        started = time.perf_counter()
        (row,) = services.up(settings, ["influxdb"])
        print(f"\nprivate influxd ready in {time.perf_counter() - started:.2f} s")
        assert row.state == STARTED_PRIVATE, row.line()
        conf = (settings.data_dir / "services" / "influxdb" / "influxdb.conf").read_text()
        assert f'bind-address = "127.0.0.1:{settings.influx.port}"' in conf
        assert f'dir = "{settings.data_dir}/services/influxdb/meta"' in conf
        assert httpx.get(f"{settings.influx.url}/ping").status_code == 204
        assert _by_name(services.status(settings))["influxdb"].state == RUNNING_PRIVATE
    finally:
        rows = _by_name(services.down(settings))
    assert rows["influxdb"].state == STOPPED
    assert not listening("127.0.0.1", settings.influx.port)
    assert listening("127.0.0.1", 8086)


def test_influxdb_start_failure_names_the_cause(tmp_path: Path) -> None:
    port = _free_port_pair()
    settings = Settings(data_dir=tmp_path / "var", influx={"port": port})
    with socket.socket() as blocker:  # somebody holds the RPC port
        blocker.bind(("127.0.0.1", port + 2))
        blocker.listen()
        with pytest.raises(ServicesError) as exc:
            services.up(settings, ["influxdb"])
    message = str(exc.value)
    assert f"InfluxDB is not reachable at 127.0.0.1:{port}" in message
    assert f"port {port + 2}" in message and "\n" not in message
    assert exc.value.statuses[0].state == DOWN


def test_influxd_that_exits_is_reported_with_its_log_tail(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var", influx={"port": _free_port_pair()})
    blocked = settings.data_dir / "services" / "influxdb" / "meta"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where influxd wants its meta directory")
    with pytest.raises(ServicesError) as exc:
        services.up(settings, ["influxdb"])
    message = str(exc.value)
    assert "influxd exited" in message and "not a directory" in message and "influxdb.log" in message


def test_postgres_down_gives_the_start_command() -> None:
    settings = Settings(postgres={"port": free_port()})
    with pytest.raises(ServicesError) as exc:
        services.up(settings, ["postgresql"])
    message = str(exc.value)
    assert f"PostgreSQL is not reachable at 127.0.0.1:{settings.postgres.port}" in message
    assert "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start" in message
    assert "\n" not in message
    (row,) = services.up(settings, ["postgresql"], strict=False)
    assert row.state == DOWN and not row.ok


def test_remote_host_is_never_started_locally() -> None:
    settings = Settings(redis={"host": "192.0.2.1"})  # TEST-NET-1: nothing answers
    with pytest.raises(ServicesError, match=r"Redis is not reachable at 192\.0\.2\.1:6379.*loopback only"):
        services.up(settings, ["redis"])


def test_unknown_service_rejected() -> None:
    with pytest.raises(HemsError, match="unknown service"):
        services.status(Settings(), ["influx"])


def test_up_creates_the_project_databases(postgres_database: str) -> None:
    names = {f"{postgres_database}_{k}": k for k in ("app", "wh", "dagster", "mlflow")}
    settings = Settings(
        postgres={
            "app_database": f"{postgres_database}_app",
            "warehouse_database": f"{postgres_database}_wh",
            "dagster_database": f"{postgres_database}_dagster",
            "mlflow_database": f"{postgres_database}_mlflow",
        }
    )
    try:
        (row,) = services.up(settings, ["postgresql"])
        assert row.state == RUNNING_EXISTING
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as con:
            have = {r[0] for r in con.execute("SELECT datname FROM pg_database")}
        assert set(names) <= have
    finally:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as con:
            for db in names:
                con.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def test_second_up_is_fast() -> None:
    settings = Settings()
    services.up(settings)
    started = time.perf_counter()
    rows = services.up(settings)
    took = time.perf_counter() - started
    print(f"\nsecond `up`: {took:.2f} s")
    assert all(r.ok for r in rows)
    assert took < 2.0
