"""Anomalies: what was flagged, which features made the day unusual, and the raw readings around it.

Two sources, both from the prediction store: the anomaly detector's scores (prediction_type
``anomaly…``) and forecast points whose actual fell outside the forecast interval.
"""

from __future__ import annotations

from datetime import date, timedelta

import plotly.express as px
import polars as pl
import streamlit as st

from dashboards import data
from dashboards import formatting as fmt
from dashboards.charts import chart, empty, table
from dashboards.filters import sidebar_filters
from dashboards.i18n import col_labels, t
from dashboards.metrics import robust_deviation

FEATURES = [
    "total_consumption_kwh",
    "peak_usage_kwh",
    "mid_usage_kwh",
    "off_peak_usage_kwh",
    "solar_generation_kwh",
    "grid_export_kwh",
    "gap_intervals",
    "repaired_intervals",
]
WINDOW = timedelta(hours=6)

st.title(t("anomalies.title"))
st.caption(t("anomalies.caption"))
daily = data.load(data.daily_usage)
homes = data.load(data.households)
if daily is None or homes is None or daily.is_empty():
    empty("overview.empty")
    st.stop()
first, last = daily["date"].min(), daily["date"].max()
assert isinstance(first, date) and isinstance(last, date)
filters = sidebar_filters(homes, first, last)
chosen = filters.household_ids(homes)
lo, hi = data.local_bounds(filters.start, filters.end)

detected = data.load(data.anomaly_scores, lo, hi)
forecast = data.load(data.forecasts, lo, hi)
parts: list[pl.DataFrame] = []
if detected is not None and detected.height:
    parts.append(
        detected.select(
            "ts",
            "household_id",
            pl.lit("detector").alias("source"),
            "model_version",
            pl.col("predicted_value").alias("score"),
            "actual_value",
            "lower",
            "upper",
        )
    )
if forecast is not None and forecast.height:
    outside = forecast.filter(
        pl.col("actual_value").is_not_null()
        & ((pl.col("actual_value") < pl.col("lower")) | (pl.col("actual_value") > pl.col("upper")))
    )
    parts.append(
        outside.select(
            "ts",
            "household_id",
            pl.lit("forecast_interval").alias("source"),
            "model_version",
            ((pl.col("actual_value") - pl.col("predicted_value")).abs()).alias("score"),
            "actual_value",
            "lower",
            "upper",
        )
    )
if not parts:
    empty("anomalies.empty")
    st.stop()
flagged = (
    pl.concat(parts, how="vertical_relaxed")
    .filter(pl.col("household_id").is_in(chosen))
    .with_columns(pl.col("ts").dt.convert_time_zone(str(data.timezone())))
    .sort("ts")
)
if flagged.is_empty():
    empty("common.no_rows")
    st.stop()

cols = st.columns(3)
cols[0].metric(t("metric.anomalies"), fmt.number(flagged.height))
cols[1].metric(t("metric.households_affected"), fmt.number(flagged["household_id"].n_unique()))
cols[2].metric(t("metric.from_detector"), fmt.number(flagged.filter(pl.col("source") == "detector").height))

per_day = (
    flagged.group_by(pl.col("ts").dt.date().alias("date"), "household_id")
    .agg(pl.len().alias("anomalies"))
    .sort("date")
)
chart(
    px.bar(
        per_day.to_pandas(),
        x="date",
        y="anomalies",
        color="household_id",
        title=t("anomalies.per_day"),
        labels={
            "date": t("col.date"),
            "anomalies": t("metric.anomalies"),
            "household_id": t("col.household"),
        },
    ),
    per_day,
    "anomalies_per_day",
)
table(flagged, "anomalies")

labels = [
    f"{row['ts']:%Y-%m-%d %H:%M} · {row['household_id']} · {t('anomalies.source.' + row['source'])}"
    for row in flagged.iter_rows(named=True)
]
pick = st.selectbox(
    t("anomalies.pick"), range(len(labels)), format_func=lambda i: labels[i], key="anomaly_pick"
)
event = flagged.row(pick, named=True)
household_id, day = event["household_id"], event["ts"].date()

left, right = st.columns(2)
with left:
    usual = daily.filter(pl.col("household_id") == household_id, pl.col("date") != day)
    this = daily.filter(pl.col("household_id") == household_id, pl.col("date") == day)
    if this.height and usual.height:
        deviation = robust_deviation(this.row(0, named=True), usual, FEATURES).with_columns(
            pl.col("feature").replace_strict({f: t(f"feature.{f}") for f in FEATURES}).alias("label")
        )
        chart(
            px.bar(
                deviation.to_pandas(),
                x="robust_z",
                y="label",
                orientation="h",
                hover_data=["value", "usual"],
                title=t("anomalies.features", day=day.isoformat()),
                labels={"robust_z": t("col.robust_z"), "label": ""},
            ),
            deviation.drop("label"),
            "anomaly_features",
        )
    else:
        empty("anomalies.no_features")
with right:
    start = event["ts"] - WINDOW
    curve = data.load(data.load_curve, household_id, start, event["ts"] + WINDOW, "1m")
    if curve is not None and curve.height:
        shown = curve.with_columns(pl.col("ts").dt.convert_time_zone(str(data.timezone())))
        fig = px.line(
            shown.to_pandas(),
            x="ts",
            y="watts",
            color="series",
            title=t("anomalies.readings"),
            labels=col_labels("watts", ts="time", series="device"),
        )
        fig.add_vline(x=event["ts"], line_dash="dash", line_color="red")
        chart(fig, shown, "anomaly_readings")
    else:
        empty("household.no_readings")
