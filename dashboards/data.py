"""Cached reads for the dashboards: warehouse marts, the app database, the raw store, the ML registry.

Why here and cached: every read goes through ``st.cache_data`` with a TTL, so a page re-run by a
widget change costs no query, and through the store interfaces' serving paths — the warehouse's
read-only snapshot on DuckDB (never the pipeline's file, so a page never holds a lock that blocks
a run), SQLite in WAL mode or PostgreSQL (MVCC) for the app database, immutable Parquet files or
InfluxDB for the raw store. Each cached function takes the data *source* (profile + locations) as
part of its key, so two data directories in one process (tests) never share cached frames.

A part of the platform that has not produced data yet (rewards, ML predictions, the model
registry) yields an empty frame or ``None``; pages turn that into a clear empty state.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import polars as pl
import streamlit as st

from hems.errors import HemsError
from hems.settings import PROJECT_ROOT, get_settings

TTL_S = 60
T = TypeVar("T")

#: ai_predictions rows whose prediction_type starts with this are anomaly-detector output
ANOMALY_PREFIX = "anomaly"
MEASUREMENTS_FOR_FRESHNESS = ("energy_consumption", "environmental_data", "weather", "ai_predictions")


class DataUnavailable(HemsError):
    """A source the page needs cannot be read (not built yet, or unreachable); the text says why."""


def source_key() -> str:
    """Where the data lives: part of every cache key, so a changed data directory is never stale."""
    s = get_settings()
    return "|".join(
        [
            s.profile.value,
            str(s.data_dir),
            s.postgres.host,
            str(s.postgres.port),
            s.postgres.warehouse_database,
            s.postgres.app_database,
            s.influx.database,
        ]
    )


def timezone() -> ZoneInfo:
    """The households' local time zone (a household's day is its local calendar day)."""
    return ZoneInfo(get_settings().domain.timezone)


def local_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """UTC bounds of the local days ``start`` … ``end`` inclusive."""
    tz = timezone()
    lo = datetime.combine(start, datetime.min.time(), tz).astimezone(UTC)
    hi = datetime.combine(end + timedelta(days=1), datetime.min.time(), tz).astimezone(UTC)
    return lo, hi


# --- warehouse ------------------------------------------------------------------------------
@st.cache_data(ttl=TTL_S, show_spinner=False)
def _warehouse(sql: str, source: str, params: tuple[tuple[str, Any], ...] = ()) -> pl.DataFrame:
    from hems.stores.warehouse import get_warehouse

    try:
        return get_warehouse().query(sql, dict(params) or None)
    except HemsError:
        raise
    except Exception as exc:  # a mart not built yet: duckdb CatalogException / psycopg UndefinedTable
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataUnavailable(
            f"warehouse query failed ({first}); run the pipeline (`hems demo --no-serve`)"
        ) from None


def warehouse(sql: str, **params: Any) -> pl.DataFrame:
    """A read of the warehouse's serving path, cached for TTL_S seconds."""
    return _warehouse(sql, source_key(), tuple(sorted(params.items())))


def daily_usage() -> pl.DataFrame:
    """Every household-day of energy_usage_daily, with the household's region and building type."""
    return warehouse(
        "SELECT d.household_id, d.date, d.total_consumption_kwh, d.peak_usage_kwh, d.mid_usage_kwh, "
        "d.off_peak_usage_kwh, d.solar_generation_kwh, d.self_consumed_solar_kwh, d.grid_export_kwh, "
        "d.grid_consumption_kwh, d.carbon_emission_kg, d.cost_krw, d.efficiency_score, "
        "d.interval_count, d.repaired_intervals, d.gap_intervals, h.region, h.building_type "
        "FROM marts.energy_usage_daily AS d LEFT JOIN marts.dim_households AS h "
        "ON d.household_id = h.household_id ORDER BY d.date, d.household_id"
    )


def households() -> pl.DataFrame:
    """dim_households: attributes, device counts, metered span."""
    return warehouse("SELECT * FROM marts.dim_households ORDER BY household_id")


def bills_monthly() -> pl.DataFrame:
    """fct_bills_monthly: the KEPCO bill per household and month, every component."""
    return warehouse("SELECT * FROM marts.fct_bills_monthly ORDER BY billing_month, household_id")


def device_status() -> pl.DataFrame:
    """fct_device_status: last seen, completeness and online/offline per device."""
    return warehouse("SELECT * FROM marts.fct_device_status ORDER BY household_id, device_id")


def meter_repairs() -> pl.DataFrame:
    """Repair counts per household, local day and kind (fct_meter_repairs aggregated)."""
    return warehouse(
        "SELECT household_id, local_date AS date, repair_kind, count(*) AS intervals, "
        "sum(used_kwh) AS used_kwh FROM marts.fct_meter_repairs "
        "GROUP BY household_id, local_date, repair_kind ORDER BY local_date, household_id"
    )


def leaderboard() -> pl.DataFrame:
    """fct_community_leaderboard: weekly savings vs own baseline and ranks."""
    return warehouse("SELECT * FROM marts.fct_community_leaderboard ORDER BY week_start, household_id")


def landed_freshness() -> pl.DataFrame:
    """Newest reading landed in the warehouse, per device type."""
    return warehouse(
        "SELECT device_type, max(ts) AS newest, count(*) AS readings "
        "FROM raw.energy_readings GROUP BY device_type ORDER BY device_type"
    )


# --- app database ---------------------------------------------------------------------------
@st.cache_data(ttl=TTL_S, show_spinner=False)
def _appdb(sql: str, source: str) -> pl.DataFrame:
    import sqlalchemy as sa

    from hems.stores.appdb import get_engine

    try:
        with get_engine().connect() as con:
            result = con.execute(sa.text(sql))
            columns = list(result.keys())
            rows = [tuple(r) for r in result.fetchall()]
    except HemsError:
        raise
    except sa.exc.SQLAlchemyError as exc:  # table missing: migrations not applied yet
        first = str(exc.orig if getattr(exc, "orig", None) else exc).strip().splitlines()[0]
        raise DataUnavailable(f"app database query failed ({first}); run `hems demo --no-serve`") from None
    return pl.DataFrame(rows, schema=columns, orient="row", infer_schema_length=None)


def appdb(sql: str) -> pl.DataFrame:
    """A read of the app database (SQLite WAL or PostgreSQL: readers never block writers)."""
    return _appdb(sql, source_key())


def quarantine_counts() -> pl.DataFrame:
    """Rejected readings by reason and source, with the newest rejection."""
    return appdb(
        "SELECT reason, source, count(*) AS messages, max(received_at) AS newest "
        "FROM ingest_quarantine GROUP BY reason, source ORDER BY messages DESC"
    )


def rewards() -> pl.DataFrame:
    """Reward results per household, program and period (baseline, savings, KRW, status)."""
    return appdb(
        "SELECT r.household_id, p.code AS program, p.kind, r.period, r.baseline_kwh, r.actual_kwh, "
        "r.savings_kwh, r.savings_pct, r.reward_krw, r.status, r.reason "
        "FROM rewards AS r JOIN reward_programs AS p ON p.id = r.program_id "
        "ORDER BY r.period, r.household_id"
    )


def points_ledger() -> pl.DataFrame:
    """Every ledger entry (append-only), newest last."""
    return appdb(
        "SELECT l.household_id, p.code AS program, l.period, l.entry_type, l.points, l.balance_after, "
        "l.created_at FROM points_ledger AS l LEFT JOIN reward_programs AS p ON p.id = l.program_id "
        "ORDER BY l.created_at, l.id"
    )


def settlements() -> pl.DataFrame:
    """Program settlements per period (households paid, points, KRW, export checksum)."""
    return appdb(
        "SELECT p.code AS program, p.kind, s.period, s.households, s.households_paid, s.points, "
        "s.reward_krw, s.savings_kwh, s.revision, s.export_file, s.export_sha256, s.settled_at "
        "FROM settlements AS s JOIN reward_programs AS p ON p.id = s.program_id ORDER BY s.period, p.code"
    )


# --- raw store ------------------------------------------------------------------------------
def _raw_store():
    from hems.stores.raw_store import get_raw_store

    return get_raw_store()


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _load_curve(household_id: str, start: datetime, end: datetime, every: str, source: str) -> pl.DataFrame:
    raw = _raw_store().query("energy_consumption", start, end, {"household_id": [household_id]})
    if raw.is_empty():
        return pl.DataFrame(schema={"ts": pl.Datetime("us", "UTC"), "series": pl.Utf8, "watts": pl.Float64})
    raw = raw.with_columns(
        pl.when(pl.col("device_type") == "solar_inverter")
        .then(pl.col("solar_generation"))
        .otherwise(pl.col("power_consumption"))
        .alias("watts"),
        pl.when(pl.col("device_type") == "smart_plug")
        .then(pl.col("device_id"))
        .otherwise(pl.col("device_type"))
        .alias("series"),
    )
    return (
        raw.sort("ts")
        .group_by_dynamic("ts", every=every, group_by="series")
        .agg(pl.col("watts").mean())
        .sort(["series", "ts"])
    )


def load_curve(household_id: str, start: datetime, end: datetime, every: str = "5m") -> pl.DataFrame:
    """Mean power (W) per ``every`` for the household's meter, inverter and each plug."""
    return _load_curve(household_id, start, end, every, source_key())


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _indoor(household_id: str, start: datetime, end: datetime, source: str) -> pl.DataFrame:
    raw = _raw_store().query("environmental_data", start, end, {"household_id": [household_id]})
    if raw.is_empty():
        return raw.select("ts", "temperature", "humidity", "co2_level")
    return (
        raw.sort("ts")
        .group_by_dynamic("ts", every="15m")
        .agg(pl.col("temperature", "humidity", "co2_level").mean())
        .sort("ts")
    )


def indoor(household_id: str, start: datetime, end: datetime) -> pl.DataFrame:
    """Indoor temperature, humidity and CO₂ in 15-minute means."""
    return _indoor(household_id, start, end, source_key())


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _predictions(start: datetime, end: datetime, source: str) -> pl.DataFrame:
    return _raw_store().query("ai_predictions", start, end)


def predictions(start: datetime, end: datetime) -> pl.DataFrame:
    """Every ai_predictions point in ``[start, end)`` (all types, households and model versions)."""
    return _predictions(start, end, source_key())


def forecasts(start: datetime, end: datetime) -> pl.DataFrame:
    """Forecast rows (every prediction type that is not anomaly-detector output)."""
    frame = predictions(start, end)
    return frame.filter(~pl.col("prediction_type").str.starts_with(ANOMALY_PREFIX))


def anomaly_scores(start: datetime, end: datetime) -> pl.DataFrame:
    """Anomaly-detector rows (prediction_type ``anomaly…``; predicted_value is the score)."""
    frame = predictions(start, end)
    return frame.filter(pl.col("prediction_type").str.starts_with(ANOMALY_PREFIX))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _raw_freshness(source: str, now: datetime) -> pl.DataFrame:
    store = _raw_store()
    rows: list[dict[str, Any]] = []
    for measurement in MEASUREMENTS_FOR_FRESHNESS:
        newest: datetime | None = None
        points = 0
        for days in (2, 14, 90):  # widen until something is found; bounded cost for empty sources
            frame = store.query(measurement, now - timedelta(days=days), now + timedelta(hours=1))
            if frame.height:
                newest, points = frame["ts"].max(), frame.height  # type: ignore[assignment]
                break
        rows.append({"source": measurement, "newest": newest, "points_in_window": points})
    return pl.DataFrame(
        rows,
        schema={"source": pl.Utf8, "newest": pl.Datetime("us", "UTC"), "points_in_window": pl.Int64},
    )


def raw_freshness() -> pl.DataFrame:
    """Newest point per raw-store measurement (searched back up to 90 days)."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return _raw_freshness(source_key(), now)


# --- dbt test results and the ML registry ---------------------------------------------------
def dbt_results(target_dir: Path | None = None) -> tuple[str | None, pl.DataFrame]:
    """(generated_at, one row per node) of the newest dbt ``run_results.json``; empty if none."""
    root = target_dir or PROJECT_ROOT / "transforms" / "dbt" / "target"
    files = sorted(root.glob("**/run_results.json"), key=lambda p: p.stat().st_mtime)
    schema = {
        "node": pl.Utf8,
        "kind": pl.Utf8,
        "status": pl.Utf8,
        "failures": pl.Int64,
        "seconds": pl.Float64,
    }
    if not files:
        return None, pl.DataFrame(schema=schema)
    doc = json.loads(files[-1].read_text())
    rows = [
        {
            "node": r["unique_id"].split(".", 2)[-1],
            "kind": r["unique_id"].split(".", 1)[0],
            "status": r["status"],
            "failures": r.get("failures"),
            "seconds": r.get("execution_time"),
        }
        for r in doc.get("results", [])
    ]
    return doc.get("metadata", {}).get("generated_at"), pl.DataFrame(rows, schema=schema)


#: the registered model names (ml/models/*: ``name``), listed here so a page never imports the
#: models (TensorFlow) just to learn them
MODEL_NAMES = (
    "hems-consumption-forecaster",
    "hems-usage-pattern-classifier",
    "hems-anomaly-detector",
    "hems-efficiency-regressor",
)


def _registry_exists() -> bool:
    """Whether a tracking store can hold anything: embedded, its SQLite file must exist (a read
    must never create one); on the stack profile the PostgreSQL database is asked."""
    s = get_settings()
    uri = s.mlflow_tracking_uri
    return not uri.startswith("sqlite:///") or Path(uri.removeprefix("sqlite:///")).exists()


def _registry_module() -> Any | None:
    """``ml.registry`` (the only module that imports mlflow), or None while it is absent."""
    if not _registry_exists():
        return None
    try:
        from ml import registry
    except ImportError:
        return None
    return registry


def _published_summaries() -> dict[str, dict[str, Any]] | None:
    """The champions summary the ml_champions asset writes after each promotion (no MLflow import:
    importing it costs seconds on a page's first render)."""
    import json

    path = get_settings().ml_champions_path
    if not path.exists():
        return None
    try:
        return {m["name"]: m for m in json.loads(path.read_text())["models"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise DataUnavailable(f"{path} is not a champions summary ({exc}); re-run ml_champions") from None


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _champions(source: str) -> pl.DataFrame | None:
    published = _published_summaries()
    registry = None if published is not None else _registry_module()
    if published is None and (registry is None or not hasattr(registry, "model_summary")):
        return None
    rows: list[dict[str, Any]] = []
    for name in MODEL_NAMES:
        try:
            summary = (
                published.get(name, {"name": name}) if published is not None else registry.model_summary(name)
            )
        except Exception as exc:  # an unreachable tracking server must not break the page
            raise DataUnavailable(f"ml.registry.model_summary({name!r}) failed: {exc}") from None
        promotion = summary.get("promotion") or {}
        metrics = summary.get("metrics") or {}
        base = {
            "model": name,
            "champion_version": summary.get("champion_version"),
            "promoted_at": promotion.get("at"),
            "decision": promotion.get("reason"),
        }
        if not metrics:
            rows.append({**base, "metric": None, "value": None})
        rows.extend({**base, "metric": k, "value": float(v)} for k, v in sorted(metrics.items()))
    schema = {
        "model": pl.Utf8, "champion_version": pl.Int64, "promoted_at": pl.Utf8, "decision": pl.Utf8,
        "metric": pl.Utf8, "value": pl.Float64,
    }  # fmt: skip
    return pl.DataFrame(rows, schema=schema)


def champions() -> pl.DataFrame | None:
    """Each registered model's champion version, its run's metrics and why it was promoted
    (``ml.registry.model_summary``); None until a model registry exists."""
    return _champions(source_key())


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _champion_history(source: str) -> pl.DataFrame | None:
    published = _published_summaries()
    if published is not None:  # the published summary is the page's source; never import MLflow
        rows = [h for m in published.values() for h in m.get("history", [])]
        return pl.DataFrame(rows) if rows else None
    registry = _registry_module()
    fn = getattr(registry, "champion_history", None) if registry is not None else None
    if fn is None:
        return None
    out = fn()
    return out if isinstance(out, pl.DataFrame) else pl.DataFrame(out)


def champion_history() -> pl.DataFrame | None:
    """Every alias move (model, version, promoted_at, reason) when ``ml.registry.champion_history``
    exists; None otherwise (the current champions come from :func:`champions`)."""
    return _champion_history(source_key())


# --- page helper ----------------------------------------------------------------------------
def load(reader: Callable[..., T], *args: Any) -> T | None:
    """``reader(*args)``, or None after telling the analyst (a warning, not an error) what to run."""
    try:
        return reader(*args)
    except HemsError as exc:
        st.warning(str(exc))
        return None


def load_or_explain() -> pl.DataFrame | None:
    """The daily frame, or None after telling the analyst what to run first."""
    return load(daily_usage)
