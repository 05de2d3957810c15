"""Fleet overview: how many homes and devices, how much energy, cost and CO₂ — and where, and when."""

from __future__ import annotations

from datetime import date

import plotly.express as px
import polars as pl
import streamlit as st

from dashboards import data
from dashboards import formatting as fmt
from dashboards.charts import chart, empty
from dashboards.filters import sidebar_filters
from dashboards.i18n import col_labels, t

TOU = ("peak_usage_kwh", "mid_usage_kwh", "off_peak_usage_kwh")

st.title(t("overview.title"))
st.caption(t("overview.caption"))
daily = data.load(data.daily_usage)
homes = data.load(data.households)
if daily is None or homes is None or daily.is_empty():
    empty("overview.empty")
    st.stop()

first, last = daily["date"].min(), daily["date"].max()
assert isinstance(first, date) and isinstance(last, date)
filters = sidebar_filters(homes, first, last)
view = filters.apply(daily, homes)
if view.is_empty():
    empty("common.no_rows")
    st.stop()

chosen = filters.household_ids(homes)
devices = data.load(data.device_status)
devices = devices.filter(pl.col("household_id").is_in(chosen)) if devices is not None else None
online = 0 if devices is None else devices.filter(pl.col("status") == "online").height
n_devices = 0 if devices is None else devices.height

cols = st.columns(5)
cols[0].metric(t("metric.households"), fmt.number(view["household_id"].n_unique()))
cols[1].metric(t("metric.devices_online"), f"{online:,} / {n_devices:,}")
cols[2].metric(t("metric.energy"), fmt.kwh(view["total_consumption_kwh"].sum()))
cols[3].metric(t("metric.cost"), fmt.krw(view["cost_krw"].sum()))
cols[4].metric(t("metric.carbon"), fmt.co2(view["carbon_emission_kg"].sum()))

latest = view["date"].max()
assert isinstance(latest, date)
day = view.filter(pl.col("date") == latest)
month = daily.filter(
    pl.col("household_id").is_in(chosen),
    pl.col("date").is_between(latest.replace(day=1), latest),
)
cols = st.columns(6)
cols[0].metric(t("metric.day_kwh", day=latest.isoformat()), fmt.kwh(day["total_consumption_kwh"].sum()))
cols[1].metric(t("metric.day_cost"), fmt.krw(day["cost_krw"].sum()))
cols[2].metric(t("metric.day_carbon"), fmt.co2(day["carbon_emission_kg"].sum()))
cols[3].metric(
    t("metric.month_kwh", month=latest.strftime("%Y-%m")), fmt.kwh(month["total_consumption_kwh"].sum())
)
cols[4].metric(t("metric.month_cost"), fmt.krw(month["cost_krw"].sum()))
cols[5].metric(t("metric.month_carbon"), fmt.co2(month["carbon_emission_kg"].sum()))

# --- TOU split of grid import, per day ------------------------------------------------------
trend = view.group_by("date").agg(pl.col(*TOU).sum()).sort("date")
long = trend.unpivot(index="date", variable_name="band", value_name="kwh").with_columns(
    pl.col("band").replace_strict({c: t(f"tou.{c}") for c in TOU}).alias("band")
)
left, right = st.columns([2, 1])
with left:
    chart(
        px.bar(
            long.to_pandas(),
            x="date",
            y="kwh",
            color="band",
            title=t("overview.tou_daily"),
            labels={"date": t("col.date"), "kwh": "kWh", "band": t("col.tou_band")},
        ),
        trend,
        "fleet_daily_tou",
    )
with right:
    split = long.group_by("band").agg(pl.col("kwh").sum()).sort("band")
    chart(
        px.pie(split.to_pandas(), names="band", values="kwh", hole=0.5, title=t("overview.tou_share")),
        split,
        "fleet_tou_share",
    )

# --- distribution by region and building type -----------------------------------------------
per_home = (
    view.group_by("household_id", "region", "building_type")
    .agg(
        pl.col("total_consumption_kwh").mean().alias("kwh_per_day"),
        pl.col("cost_krw").sum().alias("cost_krw"),
    )
    .sort("household_id")
)
shown = per_home.with_columns(
    pl.col("building_type").replace_strict(
        {v: t(f"building.{v}", default=v) for v in per_home["building_type"].unique().to_list() if v},
        default=pl.col("building_type"),
    )
)
chart(
    px.box(
        shown.to_pandas(),
        x="region",
        y="kwh_per_day",
        color="building_type",
        points="all",
        hover_data=["household_id"],
        title=t("overview.distribution"),
        labels=col_labels("region", "kwh_per_day", "building_type"),
    ),
    per_home,
    "households_by_region_building_type",
)

# --- trend vs last year (mean kWh per household-day, by month) ------------------------------
year = latest.year
history = daily.filter(pl.col("household_id").is_in(chosen), pl.col("date").dt.year().is_in([year, year - 1]))
monthly = (
    history.group_by(pl.col("date").dt.year().alias("year"), pl.col("date").dt.month().alias("month"))
    .agg(
        (pl.col("total_consumption_kwh").sum() / pl.len()).alias("kwh_per_household_day"),
        pl.col("total_consumption_kwh").sum().alias("kwh"),
        pl.len().alias("household_days"),
    )
    .sort("year", "month")
)
fig = px.line(
    monthly.with_columns(pl.col("year").cast(pl.Utf8)).to_pandas(),
    x="month",
    y="kwh_per_household_day",
    color="year",
    markers=True,
    title=t("overview.vs_last_year"),
    labels=col_labels("month", "kwh_per_household_day", "year"),
)
fig.update_xaxes(dtick=1, range=[0.5, 12.5])
chart(fig, monthly, "trend_vs_last_year")
if monthly.filter(pl.col("year") == year - 1).is_empty():
    st.caption(t("overview.no_last_year", year=year - 1))
