"""AI engine routes against real models: tiny ones trained here, registered and promoted in a real
MLflow (SQLite under tmp_path), readings from the simulator in the embedded raw store.

Built once per module (training takes seconds): 3 households × 12 days of 15-minute readings
from 2025-07-01; alice owns hh-00001, bob hh-00002, hh-00003 has no owner. Stored predictions
are written the way the Dagster assets ``ml_predictions`` / ``ml_model_performance`` write them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from fastapi.testclient import TestClient

from hems.settings import Settings, get_settings
from hems.stores import appdb
from hems.stores.appdb.models import Role
from tests.serving.conftest import JWT_SECRET, KEY_A, Account, make_account

TZ = ZoneInfo("Asia/Seoul")
FIRST = date(2025, 7, 1)
DAYS = 12
AS_OF = datetime(2025, 7, 13, tzinfo=TZ).astimezone(UTC)  # the data ends at this local midnight
OWNED, OTHERS, UNOWNED = "hh-00001", "hh-00002", "hh-00003"


def _local(*parts: int) -> datetime:
    """A Seoul wall-clock time as UTC (polars compares only same-zone datetimes)."""
    return datetime(*parts, tzinfo=TZ).astimezone(UTC)


@dataclass
class Env:
    settings: Settings
    client: TestClient
    accounts: dict[str, Account]
    versions: dict[str, int]
    readings: pl.DataFrame
    weather: pl.DataFrame
    households: pl.DataFrame
    stored: pl.DataFrame  # the forecast rows written for OWNED, actuals filled


def _train_and_register(settings: Settings, inputs) -> dict[str, int]:
    from ml import registry
    from ml.jobs.splits import make_splits
    from ml.models import AnomalyDetector, EfficiencyRegressor, LSTMForecaster
    from ml.models.lstm_forecaster import ForecasterConfig

    splits = make_splits(inputs, holdout_days=2)
    hourly = inputs.hourly
    cfg = ForecasterConfig(lookback=24, units=8, epochs=2, batch_size=32, threads=1)
    models = [
        (LSTMForecaster(cfg).fit(hourly, until=splits.cutoff), hourly.head(24 * 9)),
        (AnomalyDetector(n_estimators=50).fit(splits.anomaly_train()), splits.anomaly_train().head(20)),
        (EfficiencyRegressor(n_estimators=20).fit(splits.daily_train), splits.daily_train.head(20)),
    ]
    registry.configure(settings)
    versions = {}
    for model, example in models:
        logged = registry.log_training_run(
            model, metrics={"holdout_score": 1.0}, lineage=splits.lineage(), input_example=example
        )
        better = model.higher_is_better
        registry.promote(
            model.name,
            logged.version,
            metric=model.primary_metric,
            challenger=2.0 if better else 1.0,
            reference=1.0 if better else 2.0,
            champion=None,
            higher_is_better=better,
        )
        versions[model.name] = logged.version
    return versions


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    from ingest.simulator import Fleet, simulate
    from ml.data import inputs_from_frames
    from ml.jobs.predict import forecast_rows, model_performance, write_predictions
    from ml.models.lstm_forecaster import origins_between
    from serving import deps
    from serving.main import create_app

    data_dir: Path = tmp_path_factory.mktemp("ai") / "var"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HEMS_PROFILE", "local")
        mp.setenv("HEMS_DATA_DIR", str(data_dir))
        mp.setenv("HEMS_API__JWT_SECRET", JWT_SECRET)
        mp.setenv("HEMS_API__FIELD_KEYS", KEY_A)
        mp.setenv("HEMS_API__RATE_LIMIT_REQUESTS", "100000")  # many calls by one user in this module
        mp.setattr("hems.stores.cache._instances._local", None)
        mp.setattr("hems.stores.live_bus._instances._local", None)
        get_settings.cache_clear()
        deps.raw_store_dep.cache_clear()
        settings = get_settings()
        appdb.migrate(settings.app_database_url)
        accounts = {
            "alice": make_account(settings, "alice@example.kr"),
            "bob": make_account(settings, "bob@example.kr"),
            "analyst": make_account(settings, "ana@example.kr", Role.analyst),
            "admin": make_account(settings, "root@example.kr", Role.admin),
        }
        fleet = Fleet.generate(3, seed=11, timezone="Asia/Seoul")
        sim = simulate(fleet, start=FIRST, days=DAYS, freq_minutes=15, env_freq_minutes=30)
        owners = {OWNED: accounts["alice"].id, OTHERS: accounts["bob"].id, UNOWNED: None}
        keep = ["household_id", "region", "building_type", "area_m2", "residents", "household_type"]
        keep += ["timezone", "has_pv", "has_ev", "electric_heating"]
        rows = fleet.households.select(keep).rename({"household_id": "id"}).to_dicts()
        appdb.upsert_households(
            [{**r, "name": r["id"], "user_id": owners[r["id"]]} for r in rows], url=settings.app_database_url
        )
        raw = deps.raw_store_dep()
        raw.ensure()
        raw.write_readings(sim.readings)
        raw.write("weather", sim.weather)
        inputs = inputs_from_frames(sim.readings, sim.weather, fleet.households, source="simulator")
        versions = _train_and_register(settings, inputs)
        # what ml_predictions and ml_model_performance leave in ai_predictions
        from ml import registry

        forecaster = registry.load_model("hems-consumption-forecaster")
        hourly = inputs.hourly
        origins = origins_between(hourly, _local(2025, 7, 11))
        written = forecast_rows(forecaster, versions["hems-consumption-forecaster"], hourly, origins)
        write_predictions(raw, written)
        model_performance(raw, inputs.load, hourly["ts"].min(), hourly["ts"].max() + timedelta(days=2))
        stored = raw.query(
            "ai_predictions",
            datetime(2025, 7, 1, tzinfo=UTC),
            datetime(2025, 7, 20, tzinfo=UTC),
            {"household_id": [OWNED]},
        )
        with TestClient(create_app()) as client:
            yield Env(
                settings, client, accounts, versions, sim.readings, sim.weather, fleet.households, stored
            )
        appdb.dispose_engine(settings.app_database_url)
        deps.raw_store_dep.cache_clear()
        get_settings.cache_clear()


def _problem(r, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return r.json()


# --- POST /predict/energy --------------------------------------------------------------------


def test_forecast_from_the_champion(env: Env) -> None:
    from serving import ml_service

    body = {"household_id": OWNED, "horizon_hours": 30, "as_of": AS_OF.isoformat()}
    r = env.client.post("/predict/energy", json=body, headers=env.accounts["alice"].headers)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"] == {
        "name": "hems-consumption-forecaster",
        "version": env.versions[out["model"]["name"]],
    }
    # the data's last metered hour is 23:00 local on 07-12, so the forecast starts at local midnight
    assert datetime.fromisoformat(out["data_until"]) == AS_OF
    ts = [datetime.fromisoformat(p["ts"]) for p in out["points"]]
    assert ts == [AS_OF + timedelta(hours=h) for h in range(30)]  # 30 hours: two origins stitched
    for p in out["points"]:
        assert 0 <= p["lower_kwh"] <= p["predicted_kwh"] <= p["upper_kwh"]
    assert out["total_kwh"] == pytest.approx(sum(p["predicted_kwh"] for p in out["points"]), abs=1e-2)
    # the champion is loaded once per process, not per request
    again = env.client.post(
        "/predict/energy", json={**body, "horizon_hours": 1}, headers=env.accounts["admin"].headers
    )
    assert again.status_code == 200 and len(again.json()["points"]) == 1
    assert again.json()["points"][0]["predicted_kwh"] == pytest.approx(out["points"][0]["predicted_kwh"])
    loader = ml_service._loaders[(env.settings.mlflow_tracking_uri, "hems-consumption-forecaster")]
    assert loader.loads == 1


def test_forecast_matches_the_model_on_the_same_features(env: Env) -> None:
    """The route's features come from the raw store; the model on frames gives the same day."""
    from ml import registry
    from ml.data import inputs_from_frames

    body = {"household_id": OWNED, "horizon_hours": 24, "as_of": AS_OF.isoformat()}
    got = env.client.post("/predict/energy", json=body, headers=env.accounts["alice"].headers).json()
    window = env.readings.filter(
        (pl.col("household_id") == OWNED)
        & (pl.col("ts") >= AS_OF - timedelta(days=10))
        & (pl.col("ts") <= AS_OF)
    )
    inputs = inputs_from_frames(window, env.weather, env.households.filter(pl.col("household_id") == OWNED))
    expected = registry.load_model("hems-consumption-forecaster").forecast(
        inputs.hourly, [AS_OF.astimezone(UTC)]
    )
    assert [p["predicted_kwh"] for p in got["points"]] == pytest.approx(
        expected["predicted"].to_list(), rel=1e-4
    )


def test_forecast_without_data_is_a_409(env: Env) -> None:
    body = {"household_id": OWNED, "as_of": "2025-03-01T00:00:00+09:00"}
    p = _problem(env.client.post("/predict/energy", json=body, headers=env.accounts["alice"].headers), 409)
    assert "no readings" in p["detail"] and OWNED in p["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"household_id": OWNED, "horizon_hours": 0},
        {"household_id": OWNED, "horizon_hours": 100},
        {"household_id": OWNED, "as_of": "2025-07-13T00:00:00"},  # no offset
        {"household_id": OWNED, "as_of": "2999-01-01T00:00:00+09:00"},
        {"household_id": "bad id!"},
        {"household_id": OWNED, "surprise": 1},
        {},
    ],
)
def test_forecast_bad_input_is_a_422(env: Env, body: dict) -> None:
    p = _problem(env.client.post("/predict/energy", json=body, headers=env.accounts["alice"].headers), 422)
    assert p["errors"]


def test_forecast_of_another_household_is_a_404(env: Env) -> None:
    for hh in (OTHERS, UNOWNED, "nope"):
        r = env.client.post(
            "/predict/energy", json={"household_id": hh}, headers=env.accounts["alice"].headers
        )
        assert _problem(r, 404)["detail"] == f"household {hh!r} not found"


# --- GET /predictions/history ----------------------------------------------------------------


def test_prediction_history_pages_with_actuals(env: Env) -> None:
    q = f"/predictions/history?household_id={OWNED}&start=2025-07-10&end=2025-07-14"
    first = env.client.get(q + "&limit=100", headers=env.accounts["alice"].headers)
    assert first.status_code == 200, first.text
    page = first.json()
    assert page["total"] == env.stored.height > 0
    items = page["items"]
    assert [i["ts"] for i in items] == sorted(i["ts"] for i in items)  # oldest first
    assert {i["prediction_type"] for i in items} == {"consumption_kwh_hourly"}
    assert {i["model_version"] for i in items} == {str(env.versions["hems-consumption-forecaster"])}
    metered = [i for i in items if datetime.fromisoformat(i["ts"]) < AS_OF]
    assert metered and all(i["actual_value"] is not None for i in metered)  # filled by the performance job
    assert all(i["confidence_score"] == pytest.approx(0.8) for i in items)
    second = env.client.get(q + "&limit=5&offset=5", headers=env.accounts["analyst"].headers).json()
    assert second["items"] == items[5:10] and second["total"] == page["total"]
    other = env.client.get(q + "&prediction_type=expected_kwh_daily", headers=env.accounts["alice"].headers)
    assert other.json()["total"] == 0


@pytest.mark.parametrize(
    "query",
    [
        "start=2025-07-14&end=2025-07-10",
        "start=2024-01-01&end=2025-07-10",  # more than 366 days
        "prediction_type=tomorrow",
        "limit=0",
    ],
)
def test_prediction_history_bad_input(env: Env, query: str) -> None:
    r = env.client.get(
        f"/predictions/history?household_id={OWNED}&{query}", headers=env.accounts["alice"].headers
    )
    _problem(r, 422)


# --- GET /optimization/tips ------------------------------------------------------------------


def test_tips_are_ml_tips_of_the_households_window(env: Env) -> None:
    from ml.data import inputs_from_frames
    from ml.tips import all_tips, hourly_plug_load

    as_of = date(2025, 7, 12)
    r = env.client.get(
        f"/optimization/tips?household_id={OWNED}&as_of={as_of}", headers=env.accounts["alice"].headers
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["window"] == {"start": "2025-06-08", "end": "2025-07-12"} and out["note"] is None
    # the same tips from the simulator's frames (not through the raw store)
    mine = env.readings.filter(pl.col("household_id") == OWNED)
    inputs = inputs_from_frames(mine, env.weather, env.households.filter(pl.col("household_id") == OWNED))
    expected = all_tips(inputs.stats, inputs.hourly, inputs.daily, as_of, hourly_plug_load(mine))
    assert expected, "the fixture household should get at least one tip"
    assert [(t["kind"], t["title"]) for t in out["tips"]] == [(t.kind, t.title) for t in expected]
    for got, want in zip(out["tips"], expected, strict=True):
        assert got["effect_kwh_month"] == pytest.approx(want.effect_kwh_month)
        assert got["effect_krw_month"] == (
            None if want.effect_krw_month is None else pytest.approx(want.effect_krw_month)
        )
    assert out["total_kwh_month"] == pytest.approx(sum(t.effect_kwh_month for t in expected), abs=0.01)


def test_tips_without_data_say_why(env: Env) -> None:
    r = env.client.get(
        f"/optimization/tips?household_id={OWNED}&as_of=2024-01-31", headers=env.accounts["alice"].headers
    )
    assert r.status_code == 200
    assert r.json()["tips"] == [] and "no readings" in r.json()["note"]
    _problem(
        env.client.get(
            f"/optimization/tips?household_id={OWNED}&as_of=July", headers=env.accounts["alice"].headers
        ),
        422,
    )


# --- POST /anomaly/detect --------------------------------------------------------------------


def test_anomalies_in_a_stored_window(env: Env) -> None:
    body = {"household_id": OWNED, "start": "2025-07-11", "end": "2025-07-12"}
    r = env.client.post("/anomaly/detect", json=body, headers=env.accounts["alice"].headers)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"] == {"name": "hems-anomaly-detector", "version": env.versions["hems-anomaly-detector"]}
    assert datetime.fromisoformat(out["start"]) == _local(2025, 7, 11)
    # 48 hours, less the household's newest hour (still filling: it only has the closing reading)
    assert 46 <= out["hours_scored"] <= 48
    assert sum(d["anomalous_hours"] for d in out["days"]) == len(out["anomalies"])


def test_a_counter_reset_in_posted_readings_is_flagged_with_its_reason(env: Env) -> None:
    day = env.readings.filter(
        (pl.col("household_id") == OWNED)
        & (pl.col("device_type") == "smart_meter")
        & (pl.col("ts") >= _local(2025, 7, 12))
        & (pl.col("ts") <= _local(2025, 7, 13))
    ).sort("ts")
    reset_at = _local(2025, 7, 12, 14)
    at_reset = day.filter(pl.col("ts") == reset_at)["energy_import_kwh"][0]
    day = day.with_columns(
        pl.when(pl.col("ts") >= reset_at)
        .then(pl.col("energy_import_kwh") - at_reset)
        .otherwise(pl.col("energy_import_kwh"))
        .alias("energy_import_kwh")
    )
    readings = [
        {"ts": r["ts"].isoformat(), "energy_import_kwh": r["energy_import_kwh"], "power_w": r["power_w"]}
        for r in day.iter_rows(named=True)
    ]
    r = env.client.post(
        "/anomaly/detect",
        json={"household_id": OWNED, "readings": readings},
        headers=env.accounts["alice"].headers,
    )
    assert r.status_code == 200, r.text
    out = r.json()
    hour = reset_at.astimezone(UTC) - timedelta(hours=1)  # the hour whose register steps back into 14:00
    flagged = {datetime.fromisoformat(a["ts"]): a for a in out["anomalies"]}
    assert hour in flagged or reset_at.astimezone(UTC) in flagged, out["anomalies"]
    hit = flagged.get(hour) or flagged[reset_at.astimezone(UTC)]
    assert "step_min_kwh" in [x["feature"] for x in hit["reasons"]]
    assert next(x["z"] for x in hit["reasons"] if x["feature"] == "step_min_kwh") < -8
    assert out["days"][0]["date"] == "2025-07-12" and "step_min_kwh" in out["days"][0]["features"]


@pytest.mark.parametrize(
    "body",
    [
        {"household_id": OWNED, "start": "2025-07-12", "end": "2025-07-11"},
        {"household_id": OWNED, "start": "2025-06-01", "end": "2025-07-12"},  # over 31 days
        {"household_id": OWNED, "start": "2025-07-12"},
        {"household_id": OWNED},
        {"household_id": OWNED, "start": "2025-07-11", "end": "2025-07-12", "readings": []},
        {"household_id": OWNED, "readings": [{"ts": "2025-07-12T00:00:00", "energy_import_kwh": 1.0}] * 2},
        {"household_id": OWNED, "readings": [{"ts": "2025-07-12T00:00:00+09:00", "energy_import_kwh": 1.0}]},
    ],
)
def test_anomaly_bad_input_is_a_422(env: Env, body: dict) -> None:
    _problem(env.client.post("/anomaly/detect", json=body, headers=env.accounts["alice"].headers), 422)


# --- GET /model/performance ------------------------------------------------------------------


def test_model_performance_from_stored_predictions(env: Env) -> None:
    from ml.metrics import mae

    q = "/model/performance?model=hems-consumption-forecaster&start=2025-07-10&end=2025-07-14"
    r = env.client.get(q, headers=env.accounts["bob"].headers)
    assert r.status_code == 200, r.text
    out = r.json()
    version = env.versions["hems-consumption-forecaster"]
    assert out["champion"]["version"] == version and out["champion"]["promotion"]["decision"] == "promoted"
    assert out["prediction_type"] == "consumption_kwh_hourly" and out["note"] is None
    assert {d["model_version"] for d in out["daily"]} == {str(version)}
    assert [d["local_date"] for d in out["daily"]] == ["2025-07-11", "2025-07-12"]
    from serving import deps

    every = (
        deps.raw_store_dep()
        .query("ai_predictions", _local(2025, 7, 10), _local(2025, 7, 15))
        .filter(pl.col("actual_value").is_not_null())
    )
    assert out["overall"]["points"] == every.height == sum(d["points"] for d in out["daily"])
    assert out["overall"]["households"] == 3
    assert out["overall"]["mae"] == pytest.approx(
        mae(every["actual_value"].to_numpy(), every["predicted_value"].to_numpy())
    )
    assert 0 <= out["overall"]["interval_coverage"] <= 1


def test_model_performance_of_a_model_without_stored_predictions(env: Env) -> None:
    r = env.client.get(
        "/model/performance?model=hems-anomaly-detector", headers=env.accounts["alice"].headers
    )
    out = r.json()
    assert r.status_code == 200 and out["daily"] == [] and out["prediction_type"] is None
    assert out["champion"]["version"] == env.versions["hems-anomaly-detector"]
    assert "stores no predictions" in out["note"]
    none = env.client.get(
        "/model/performance?model=hems-usage-pattern-classifier", headers=env.accounts["alice"].headers
    )
    assert none.json()["champion"]["version"] is None and "ml_training" in none.json()["note"]


@pytest.mark.parametrize(
    "query",
    ["model=gpt-5", "start=2025-07-14&end=2025-07-10", "start=2020-01-01&end=2025-07-10", "start=soon"],
)
def test_model_performance_bad_input(env: Env, query: str) -> None:
    _problem(env.client.get(f"/model/performance?{query}", headers=env.accounts["alice"].headers), 422)


def test_ai_routes_need_a_token(env: Env) -> None:
    assert env.client.get("/model/performance").status_code == 401
    assert env.client.post("/predict/energy", json={"household_id": OWNED}).status_code == 401


# --- no champion yet -------------------------------------------------------------------------


def test_no_champion_is_a_503_naming_the_fix(embedded_api: Settings, accounts: dict[str, Account]) -> None:
    from serving.main import create_app

    with TestClient(create_app()) as client:
        alice = accounts["alice"].headers
        p = _problem(client.post("/predict/energy", json={"household_id": "hh-1"}, headers=alice), 503)
        assert p["title"] == "No Champion Model" and p["model"] == "hems-consumption-forecaster"
        assert "ml_training" in p["detail"] and "hems demo" in p["detail"]
        body = {"household_id": "hh-1", "start": "2025-07-01", "end": "2025-07-02"}
        assert (
            _problem(client.post("/anomaly/detect", json=body, headers=alice), 503)["model"]
            == "hems-anomaly-detector"
        )
        # without a champion the stored metrics are still served, with a note
        perf = client.get("/model/performance", headers=alice)
        assert perf.status_code == 200 and perf.json()["champion"]["version"] is None
