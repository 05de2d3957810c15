"""Data quality: check results, freshness per source, quarantine reasons, meter repairs, completeness."""

from __future__ import annotations

from datetime import UTC, date, datetime

import plotly.express as px
import polars as pl
import streamlit as st

from dashboards import data
from dashboards import formatting as fmt
from dashboards.charts import chart, empty, table
from dashboards.filters import sidebar_filters
from dashboards.i18n import col_labels, t

st.title(t("quality.title"))
st.caption(t("quality.caption"))
daily = data.load(data.daily_usage)
homes = data.load(data.households)
if daily is None or homes is None or daily.is_empty():
    empty("overview.empty")
    st.stop()
first, last = daily["date"].min(), daily["date"].max()
assert isinstance(first, date) and isinstance(last, date)
filters = sidebar_filters(homes, first, last)
chosen = filters.household_ids(homes)
view = filters.apply(daily, homes)
now = datetime.now(UTC)


def age_hours(column: str) -> pl.Expr:
    return ((pl.lit(now) - pl.col(column)).dt.total_minutes() / 60).round(1).alias("age_hours")


# --- check results (the newest dbt build) ------------------------------------------------------
st.subheader(t("quality.checks"))
generated_at, results = data.dbt_results()
if results.is_empty():
    empty("quality.no_checks")
else:
    counts = results.group_by("kind", "status").agg(pl.len().alias("nodes")).sort("kind", "status")
    failing = results.filter(~pl.col("status").is_in(["success", "pass"]))
    cols = st.columns(3)
    cols[0].metric(t("metric.tests_passed"), fmt.number(results.filter(pl.col("status") == "pass").height))
    cols[1].metric(t("metric.tests_failing"), fmt.number(failing.height))
    cols[2].metric(t("metric.build_time"), str(generated_at or fmt.MISSING)[:19].replace("T", " "))
    chart(
        px.bar(
            counts.to_pandas(),
            x="kind",
            y="nodes",
            color="status",
            title=t("quality.checks_chart"),
            labels=col_labels("kind", "nodes", "status"),
        ),
        counts,
        "dbt_results_by_status",
    )
    if failing.height:
        table(failing, "dbt_failing")

# --- freshness per source ----------------------------------------------------------------------
st.subheader(t("quality.freshness"))
fresh_parts: list[pl.DataFrame] = []
raw = data.load(data.raw_freshness)
if raw is not None:
    fresh_parts.append(raw.select(pl.concat_str(pl.lit("raw store · "), "source").alias("source"), "newest"))
landed = data.load(data.landed_freshness)
if landed is not None:
    fresh_parts.append(
        landed.select(pl.concat_str(pl.lit("warehouse raw · "), "device_type").alias("source"), "newest")
    )
marts_newest = view["date"].max()
freshness = pl.concat(fresh_parts, how="vertical_relaxed") if fresh_parts else pl.DataFrame()
if freshness.height:
    freshness = freshness.with_columns(age_hours("newest"))
    table(freshness, "freshness")
st.caption(t("quality.marts_newest", day=str(marts_newest)))

# --- quarantine ---------------------------------------------------------------------------------
st.subheader(t("quality.quarantine"))
quarantine = data.load(data.quarantine_counts)
if quarantine is None or quarantine.is_empty():
    empty("quality.no_quarantine")
else:
    st.metric(t("metric.quarantined"), fmt.number(quarantine["messages"].sum()))
    chart(
        px.bar(
            quarantine.to_pandas(),
            x="messages",
            y="reason",
            color="source",
            orientation="h",
            title=t("quality.quarantine_chart"),
            labels=col_labels("messages", "reason", "source"),
        ),
        quarantine,
        "quarantine_by_reason",
    )

# --- meter repairs and gaps ---------------------------------------------------------------------
st.subheader(t("quality.repairs"))
repairs = data.load(data.meter_repairs)
repairs = filters.apply(repairs, homes) if repairs is not None else None
cols = st.columns(3)
cols[0].metric(t("metric.repaired_intervals"), fmt.number(view["repaired_intervals"].sum()))
cols[1].metric(t("metric.gap_intervals"), fmt.number(view["gap_intervals"].sum()))
cols[2].metric(t("metric.intervals"), fmt.number(view["interval_count"].sum()))
if repairs is None or repairs.is_empty():
    empty("quality.no_repairs")
else:
    by_kind = repairs.group_by("date", "repair_kind").agg(pl.col("intervals").sum()).sort("date")
    chart(
        px.bar(
            by_kind.to_pandas(),
            x="date",
            y="intervals",
            color="repair_kind",
            title=t("quality.repairs_chart"),
            labels=col_labels("date", "intervals", "repair_kind"),
        ),
        repairs,
        "meter_repairs",
    )

# --- device completeness ------------------------------------------------------------------------
st.subheader(t("quality.devices"))
devices = data.load(data.device_status)
if devices is None or devices.is_empty():
    empty("quality.no_devices")
else:
    devices = devices.filter(pl.col("household_id").is_in(chosen))
    status = (
        devices.group_by("device_type", "status").agg(pl.len().alias("devices")).sort("device_type", "status")
    )
    left, right = st.columns(2)
    with left:
        chart(
            px.bar(
                status.to_pandas(),
                x="device_type",
                y="devices",
                color="status",
                title=t("quality.status_chart"),
                labels=col_labels("device_type", "devices", "status"),
            ),
            status,
            "device_status",
        )
    with right:
        complete = devices.select(
            "device_id", "household_id", "device_type", "status", "completeness_last_day", "last_seen_utc"
        ).sort("completeness_last_day", nulls_last=True)
        chart(
            px.bar(
                complete.drop_nulls("completeness_last_day").to_pandas(),
                x="completeness_last_day",
                y="device_id",
                color="device_type",
                orientation="h",
                range_x=[0, 1],
                title=t("quality.completeness_chart"),
                labels=col_labels("device_type", completeness_last_day="completeness", device_id="device"),
            ),
            complete,
            "device_completeness",
        )
