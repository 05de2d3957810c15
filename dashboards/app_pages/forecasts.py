"""Forecasts vs actuals: the forecaster's predictions with their intervals, per household and in total."""

from __future__ import annotations

from datetime import date

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from dashboards import data
from dashboards import formatting as fmt
from dashboards.charts import chart, empty
from dashboards.filters import sidebar_filters
from dashboards.i18n import t
from dashboards.metrics import forecast_scores

st.title(t("forecasts.title"))
st.caption(t("forecasts.caption"))
daily = data.load(data.daily_usage)
homes = data.load(data.households)
if daily is None or homes is None or daily.is_empty():
    empty("overview.empty")
    st.stop()
first, last = daily["date"].min(), daily["date"].max()
assert isinstance(first, date) and isinstance(last, date)
filters = sidebar_filters(homes, first, last)
lo, hi = data.local_bounds(filters.start, filters.end)
frame = data.load(data.forecasts, lo, hi)
if frame is None or frame.is_empty():
    empty("forecasts.empty")
    st.stop()
frame = frame.filter(pl.col("household_id").is_in(filters.household_ids(homes)))
if frame.is_empty():
    empty("common.no_rows")
    st.stop()

kinds = sorted(frame["prediction_type"].unique().to_list())
kind = st.selectbox(t("forecasts.type"), kinds, key="forecast_type") if len(kinds) > 1 else kinds[0]
frame = frame.filter(pl.col("prediction_type") == kind)
versions = sorted(frame["model_version"].unique().to_list())
version = st.selectbox(t("forecasts.version"), versions, index=len(versions) - 1, key="forecast_version")
frame = frame.filter(pl.col("model_version") == version).with_columns(
    pl.col("ts").dt.convert_time_zone(str(data.timezone()))
)

scores = forecast_scores(frame)
cols = st.columns(4)
cols[0].metric(t("metric.points"), fmt.number(frame.height))
cols[1].metric(t("metric.mae"), fmt.kwh(scores["mae"], 3))
cols[2].metric(t("metric.cv_rmse"), fmt.pct(scores["cv_rmse"]))
cols[3].metric(t("metric.coverage"), fmt.pct(scores["coverage"]))


def band_figure(series: pl.DataFrame, title: str) -> go.Figure:
    """Prediction line, its interval as a shaded band, and the actuals."""
    x = series["ts"].to_list()
    fig = go.Figure()
    fig.add_scatter(x=x, y=series["upper"].to_list(), line={"width": 0}, showlegend=False, hoverinfo="skip")
    fig.add_scatter(
        x=x,
        y=series["lower"].to_list(),
        line={"width": 0},
        fill="tonexty",
        fillcolor="rgba(99,110,250,0.2)",
        name=t("forecasts.interval"),
    )
    fig.add_scatter(
        x=x, y=series["predicted_value"].to_list(), name=t("forecasts.predicted"), line={"color": "#636efa"}
    )
    fig.add_scatter(
        x=x,
        y=series["actual_value"].to_list(),
        name=t("forecasts.actual"),
        mode="lines+markers",
        line={"color": "#ef553b"},
        marker={"size": 3},
    )
    fig.update_layout(title=title, xaxis_title=t("col.time"), yaxis_title="kWh")
    fig.update_xaxes(rangeslider_visible=True)
    return fig


# sums of interval bounds over-state the aggregate's spread (errors partly cancel): said on the chart
total = (
    frame.group_by("ts")
    .agg(
        pl.col("predicted_value", "lower", "upper").sum(),
        pl.when(pl.col("actual_value").count() > 0).then(pl.col("actual_value").sum()).alias("actual_value"),
        pl.len().alias("households"),
    )
    .sort("ts")
)
chart(band_figure(total, t("forecasts.aggregate")), total, "forecast_aggregate")
st.caption(t("forecasts.aggregate_note"))

households = sorted(frame["household_id"].unique().to_list())
household_id = st.selectbox(t("filter.household"), households, key="forecast_household")
one = frame.filter(pl.col("household_id") == household_id).sort("ts")
chart(band_figure(one, t("forecasts.household", household=household_id)), one, f"forecast_{household_id}")
