"""Both raw stores against the same expectations (InfluxDB is the real 1.6 server, no mocks)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from hems.contracts import ENERGY_CONSUMPTION, MEASUREMENTS, conform_readings
from hems.errors import HemsError, ServiceUnavailable
from hems.services import free_port
from hems.settings import InfluxSettings, Settings
from hems.stores.raw_influx import InfluxRawStore, line_protocol
from hems.stores.raw_parquet import ParquetRawStore
from hems.stores.raw_store import RawStore

T0 = datetime(2024, 7, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)


@pytest.fixture(params=["parquet", pytest.param("influx", marks=pytest.mark.stack)])
def store(request: pytest.FixtureRequest) -> Iterator[RawStore]:
    if request.param == "parquet":
        settings: Settings = request.getfixturevalue("local_settings")
        s: RawStore = ParquetRawStore(settings.raw_dir)
    else:
        settings = request.getfixturevalue("influx_settings")
        s = InfluxRawStore(settings.influx)
    s.ensure()
    yield s
    s.drop()


def _energy(n: int = 3, start: datetime = T0, household: str = "hh-1", **fields: list) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ts": [start + timedelta(minutes=i) for i in range(n)],
            "household_id": household,
            "device_id": "meter-1",
            "device_type": "smart_meter",
            **(fields or {"power_consumption": [100.0 + i for i in range(n)]}),
        }
    )


def test_readings_roundtrip(store: RawStore) -> None:
    readings = conform_readings(
        pl.DataFrame(
            {
                "ts": [
                    T0,
                    T0,
                    T0 + timedelta(minutes=1),
                    T0,
                    T0 + timedelta(minutes=1),
                    T0 + timedelta(minutes=2),
                ],
                "household_id": ["hh-1", "hh-1", "hh-1", "hh-2", "hh-2", "hh-2"],
                "device_id": ["meter-1", "env-1", "meter-1", "meter-2", "env-2", "meter-2"],
                "device_type": [
                    "smart_meter",
                    "env_sensor",
                    "smart_meter",
                    "solar_inverter",
                    "env_sensor",
                    "smart_meter",
                ],
                "power_w": [
                    412.5,
                    None,
                    0.1 + 0.2,
                    None,
                    None,
                    None,
                ],  # last row has no value at all: dropped
                "energy_import_kwh": [1234.567, None, 1234.6, None, None, None],
                "voltage_v": [229.9, None, None, None, None, None],
                "solar_power_w": [None, None, None, 1e-7, None, None],
                "temperature_c": [None, 24.5, None, None, -3.25, None],
                "humidity_pct": [None, 55.0, None, None, None, None],
                "co2_ppm": [None, 612.0, None, None, 1e6, None],
            }
        )
    )
    assert store.write_readings(readings) == 5
    got = store.read_readings(T0, T0 + timedelta(hours=1))
    expected = readings.head(5).sort(["household_id", "device_id", "ts"])
    assert_frame_equal(got, expected)
    assert_frame_equal(
        store.read_readings(T0, T0 + timedelta(hours=1), ["hh-2"]),
        expected.filter(pl.col("household_id") == "hh-2"),
    )


def test_same_key_overwrites(store: RawStore) -> None:
    first = _energy(3, power_consumption=[1.0, 2.0, 3.0], voltage=[220.0, 221.0, 222.0])
    second = _energy(3, power_consumption=[10.0, 20.0, 30.0], voltage=[230.0, 231.0, 232.0])
    assert store.write("energy_consumption", first) == 3
    assert store.write("energy_consumption", first) == 3  # re-delivery: still 3 points
    assert store.query("energy_consumption", T0, T0 + timedelta(hours=1)).height == 3
    store.write("energy_consumption", second)
    got = store.query("energy_consumption", T0, T0 + timedelta(hours=1))
    assert got.height == 3
    assert got["power_consumption"].to_list() == [10.0, 20.0, 30.0]
    assert got["voltage"].to_list() == [230.0, 231.0, 232.0]


def test_time_bounds_are_start_inclusive_end_exclusive(store: RawStore) -> None:
    t1 = T0 + timedelta(hours=1)
    stamps = [T0 - MS, T0, T0 + MS, t1 - MS, t1]
    store.write(
        "energy_consumption",
        pl.DataFrame(
            {
                "ts": stamps,
                "household_id": "hh-1",
                "device_id": "meter-1",
                "device_type": "smart_meter",
                "power_consumption": [float(i) for i in range(len(stamps))],
            }
        ),
    )
    got = store.query("energy_consumption", T0, t1)
    assert got["ts"].to_list() == [T0, T0 + MS, t1 - MS]
    # bounds in another time zone are the same instants
    kst = T0.astimezone(ZoneInfo("Asia/Seoul"))
    assert store.query("energy_consumption", kst, kst + timedelta(hours=1)).height == 3
    assert store.query("energy_consumption", T0, T0).height == 0


AWKWARD = ["plain", "with space", "o'quote", "comma,here", 'dq"x', "eq=x", "back\\slash", "전력"]


def test_where_filters_on_awkward_tag_values(store: RawStore) -> None:
    frame = pl.concat([_energy(2, household=h) for h in AWKWARD])
    assert store.write("energy_consumption", frame) == 2 * len(AWKWARD)
    wanted = ["o'quote", "comma,here", "with space", "back\\slash", "absent"]
    got = store.query("energy_consumption", T0, T0 + timedelta(hours=1), where={"household_id": wanted})
    assert sorted(set(got["household_id"])) == sorted(["o'quote", "comma,here", "with space", "back\\slash"])
    assert got.height == 8
    everything = store.query("energy_consumption", T0, T0 + timedelta(hours=1))
    assert sorted(set(everything["household_id"])) == sorted(AWKWARD)
    two_tags = store.query(
        "energy_consumption",
        T0,
        T0 + timedelta(hours=1),
        where={"household_id": ['dq"x', "eq=x"], "device_type": ["smart_meter"]},
    )
    assert sorted(set(two_tags["household_id"])) == ['dq"x', "eq=x"]
    nothing = store.query("energy_consumption", T0, T0 + timedelta(hours=1), where={"household_id": []})
    assert nothing.height == 0
    with pytest.raises(ValueError, match="no tag"):
        store.query("energy_consumption", T0, T0 + timedelta(hours=1), where={"region": ["x"]})


def test_naive_bounds_rejected(store: RawStore) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        store.query("energy_consumption", datetime(2024, 7, 1), datetime(2024, 7, 2))


def test_unknown_measurement_rejected(store: RawStore) -> None:
    with pytest.raises(ValueError, match="unknown measurement"):
        store.query("energy", T0, T0 + timedelta(hours=1))
    with pytest.raises(ValueError, match="unknown measurement"):
        store.write("energy", _energy())


def test_empty_query_returns_the_schema(store: RawStore) -> None:
    for name, measurement in MEASUREMENTS.items():
        got = store.query(name, T0, T0 + timedelta(days=1))
        assert got.height == 0
        assert got.schema == pl.Schema(measurement.schema)


def test_frame_missing_tag_columns_rejected(store: RawStore) -> None:
    with pytest.raises(ValueError, match="lacks columns"):
        store.write("energy_consumption", _energy().drop("device_id"))


def test_large_write(store: RawStore) -> None:
    households, minutes = 200, 1000  # 200k points
    rng = np.random.default_rng(7)
    n = households * minutes
    frame = pl.DataFrame(
        {
            "ts": pl.datetime_range(
                T0, T0 + timedelta(minutes=minutes - 1), "1m", time_unit="ms", time_zone="UTC", eager=True
            )
            .repeat_by(households)
            .explode(),
            "household_id": [f"hh-{i:04d}" for i in range(households)] * minutes,
            "device_id": "meter",
            "device_type": "smart_meter",
            "power_consumption": rng.gamma(2.0, 300.0, n),
            "voltage": rng.normal(220.0, 3.0, n),
        }
    )
    started = time.perf_counter()
    assert store.write("energy_consumption", frame) == n
    took = time.perf_counter() - started
    print(f"\n{store.name}: wrote {n} points in {took:.2f} s = {n / took:,.0f} points/s")
    started = time.perf_counter()
    got = store.query("energy_consumption", T0, T0 + timedelta(days=1))
    took = time.perf_counter() - started
    print(f"{store.name}: read {got.height} points in {took:.2f} s = {got.height / took:,.0f} points/s")
    assert got.height == n
    expected = frame.sort(["household_id", "ts"])
    assert got["power_consumption"].to_list() == expected["power_consumption"].to_list()  # exact floats


# --- InfluxDB only -----------------------------------------------------------------------------
def test_line_protocol_escapes_sorts_tags_and_skips_nulls() -> None:
    frame = pl.DataFrame(
        {
            "ts": [T0, T0 + MS, T0 + 2 * MS],
            "household_id": ["a b,c=d", "x", "y"],
            "device_id": [None, "d", "d"],
            "device_type": ["smart_meter", "", "smart_meter"],
            "power_consumption": [0.1, None, None],
            "voltage": [1e-7, 230.0, float("nan")],  # NaN cannot be stored: dropped like a null
        }
    )
    frame = frame.select(
        [
            pl.col(c).cast(t) if c in frame.columns else pl.lit(None, dtype=t).alias(c)
            for c, t in ENERGY_CONSUMPTION.schema.items()
        ]
    )
    ms = int(T0.timestamp() * 1000)
    assert line_protocol(ENERGY_CONSUMPTION, frame).to_list() == [
        rf"energy_consumption,device_type=smart_meter,household_id=a\ b\,c\=d "
        f"power_consumption=0.1,voltage=1e-7 {ms}",
        f"energy_consumption,device_id=d,household_id=x voltage=230.0 {ms + 1}",
    ]


@pytest.mark.stack
def test_influx_unreachable_port_is_one_clear_line() -> None:
    port = free_port()
    store = InfluxRawStore(InfluxSettings(port=port, database="nowhere"))
    started = time.perf_counter()
    with pytest.raises(
        ServiceUnavailable, match=f"InfluxDB is not reachable at http://127.0.0.1:{port}"
    ) as exc:
        store.ping()
    assert "hems services up" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(ServiceUnavailable, match=f"127.0.0.1:{port}"):
        store.write("energy_consumption", _energy())
    assert time.perf_counter() - started < 6.0  # retries are bounded


@pytest.mark.stack
def test_influx_database_created_if_missing(influx_settings: Settings) -> None:
    store = InfluxRawStore(influx_settings.influx)

    def databases() -> list[str]:
        body = httpx.get(f"{store.url}/query", params={"q": "SHOW DATABASES"}).json()
        return [v[0] for v in body["results"][0]["series"][0].get("values", [])]

    assert influx_settings.influx.database not in databases()
    store.ping()
    # reading a database that does not exist yet is simply empty, like an empty Parquet folder
    assert store.query("energy_consumption", T0, T0 + timedelta(hours=1)).height == 0
    assert store.write("energy_consumption", _energy()) == 3  # the first write creates it
    assert influx_settings.influx.database in databases()
    store.ensure()  # idempotent
    store.drop()
    assert influx_settings.influx.database not in databases()


@pytest.mark.stack
def test_influx_csv_and_json_answers_agree(influx_settings: Settings) -> None:
    store = InfluxRawStore(influx_settings.influx)
    frame = pl.concat(
        [
            _energy(
                300,
                household=h,
                power_consumption=[i * 0.1 for i in range(300)],
                voltage=[None if i % 3 else 230.5 for i in range(300)],
            )
            for h in AWKWARD
        ]
    )
    store.write("energy_consumption", frame)
    store.write(
        "environmental_data",
        frame.select("ts", "household_id", "device_id", pl.col("voltage").alias("temperature")),
    )
    for name in ("energy_consumption", "environmental_data"):
        store.query_format = "csv"
        as_csv = store.query(name, T0, T0 + timedelta(days=1))  # long range: split in parallel halves
        store.query_format = "json"
        as_json = store.query(name, T0, T0 + timedelta(days=1))
        assert as_csv.height > 0
        assert_frame_equal(as_csv, as_json)
    assert as_csv.height == frame.filter(pl.col("voltage").is_not_null()).height


@pytest.mark.stack
def test_influx_error_message_is_passed_on(influx_settings: Settings) -> None:
    store = InfluxRawStore(influx_settings.influx)
    store.ensure()
    # another writer stored the field as an integer: InfluxDB refuses our float
    httpx.post(
        f"{store.url}/write",
        params={"db": influx_settings.influx.database, "precision": "ms"},
        content=f"energy_consumption,household_id=x power_consumption=1i {int(T0.timestamp() * 1000)}",
    )
    with pytest.raises(HemsError, match=r"rejected /write \(HTTP 400\).*field type conflict"):
        store.write("energy_consumption", _energy())
    with pytest.raises(ValueError, match="cannot store"):
        store.write("energy_consumption", _energy(household="ends with backslash\\"))


@pytest.mark.stack
def test_influx_merges_fields_on_overwrite(influx_settings: Settings) -> None:
    """A documented difference: InfluxDB keeps a field that a rewrite of the key leaves out."""
    store = InfluxRawStore(influx_settings.influx)
    store.write(
        "environmental_data",
        pl.DataFrame(
            {"ts": [T0], "household_id": "h", "device_id": "e", "temperature": [20.0], "humidity": [50.0]}
        ),
    )
    store.write(
        "environmental_data",
        pl.DataFrame({"ts": [T0], "household_id": "h", "device_id": "e", "temperature": [21.0]}),
    )
    got = store.query("environmental_data", T0, T0 + MS)
    assert got.select("temperature", "humidity").row(0) == (21.0, 50.0)
