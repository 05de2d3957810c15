"""Household drill-down: one home's load curve, days, bills with tier bands, carbon, devices, indoor air."""

from __future__ import annotations

from datetime import date

import plotly.express as px
import plotly.graph_objects as go
import polars as pl
import streamlit as st
from plotly.subplots import make_subplots

from dashboards import data
from dashboards import formatting as fmt
from dashboards.charts import chart, empty, table
from dashboards.filters import sidebar_filters
from dashboards.i18n import col_labels, t

TOU = ("peak_usage_kwh", "mid_usage_kwh", "off_peak_usage_kwh")
#: KEPCO residential low-voltage block limits (kWh/month, DESIGN §5): Jul–Aug, other months
TIER_LIMITS = {"summer": (300, 450), "other": (200, 400)}

st.title(t("household.title"))
daily = data.load(data.daily_usage)
homes = data.load(data.households)
if daily is None or homes is None or daily.is_empty():
    empty("overview.empty")
    st.stop()
first, last = daily["date"].min(), daily["date"].max()
assert isinstance(first, date) and isinstance(last, date)
filters = sidebar_filters(homes, first, last, many_households=False)
household_id = filters.households[0]
if not household_id:
    empty("common.no_rows")
    st.stop()

home = homes.filter(pl.col("household_id") == household_id).row(0, named=True)
st.caption(
    t(
        "household.caption",
        household=household_id,
        region=home["region"] or fmt.MISSING,
        building=t(f"building.{home['building_type']}", default=str(home["building_type"])),
        residents=home["residents"] if home["residents"] is not None else fmt.MISSING,
        area=fmt.number(home["area_m2"], 0),
        pv=fmt.number(home["pv_kwp"], 1) if home["has_pv"] else "0",
    )
)
view = filters.apply(daily, homes)
cols = st.columns(4)
cols[0].metric(t("metric.energy"), fmt.kwh(view["total_consumption_kwh"].sum()))
cols[1].metric(t("metric.cost"), fmt.krw(view["cost_krw"].sum()))
cols[2].metric(t("metric.carbon"), fmt.co2(view["carbon_emission_kg"].sum()))
cols[3].metric(t("metric.solar"), fmt.kwh(view["solar_generation_kwh"].sum()))

# --- load curve (raw readings, zoomable) ----------------------------------------------------
lo, hi = data.local_bounds(filters.start, filters.end)
every = "5m" if (filters.end - filters.start).days < 3 else "15m"
curve = data.load(data.load_curve, household_id, lo, hi, every)
if curve is not None and curve.height:
    shown = curve.with_columns(pl.col("ts").dt.convert_time_zone(str(data.timezone())))
    fig = px.line(
        shown.to_pandas(),
        x="ts",
        y="watts",
        color="series",
        title=t("household.load_curve", every=every),
        labels=col_labels("watts", ts="time", series="device"),
    )
    fig.update_xaxes(rangeslider_visible=True)
    chart(fig, shown, f"load_curve_{household_id}")
else:
    empty("household.no_readings")

# --- daily usage by TOU band, plus self-consumed solar --------------------------------------
days = view.select(
    "date", *TOU, "self_consumed_solar_kwh", "total_consumption_kwh", "carbon_emission_kg", "cost_krw"
)
long = days.unpivot(
    index="date", on=[*TOU, "self_consumed_solar_kwh"], variable_name="part", value_name="kwh"
).with_columns(pl.col("part").replace_strict({c: t(f"tou.{c}") for c in (*TOU, "self_consumed_solar_kwh")}))
left, right = st.columns(2)
with left:
    chart(
        px.bar(
            long.to_pandas(),
            x="date",
            y="kwh",
            color="part",
            title=t("household.daily"),
            labels={"date": t("col.date"), "kwh": "kWh", "part": t("col.tou_band")},
        ),
        days,
        f"daily_usage_{household_id}",
    )
with right:
    carbon = days.select("date", "carbon_emission_kg").with_columns(
        pl.col("carbon_emission_kg").cum_sum().alias("cumulative_kg")
    )
    fig = go.Figure()
    fig.add_bar(
        x=carbon["date"].to_list(), y=carbon["carbon_emission_kg"].to_list(), name=t("col.carbon_day")
    )
    fig.add_scatter(
        x=carbon["date"].to_list(),
        y=carbon["cumulative_kg"].to_list(),
        name=t("col.carbon_cumulative"),
        yaxis="y2",
    )
    fig.update_layout(
        title=t("household.carbon"),
        yaxis={"title": "kgCO₂e"},
        yaxis2={"title": t("col.carbon_cumulative"), "overlaying": "y", "side": "right"},
    )
    chart(fig, carbon, f"carbon_{household_id}")

# --- monthly bill with tier bands ------------------------------------------------------------
bills = data.load(data.bills_monthly)
if bills is not None:
    bills = bills.filter(
        pl.col("household_id") == household_id,
        pl.col("billing_month").is_between(filters.start.replace(day=1), filters.end),
    ).with_columns(pl.col(pl.Decimal).cast(pl.Float64))
if bills is not None and bills.height:
    months = bills.with_columns(pl.col("billing_month").dt.strftime("%Y-%m").alias("month"))
    fig = px.bar(
        months.to_pandas(),
        x="month",
        y="kwh",
        color=months["tier"].cast(pl.Utf8).to_list(),
        text=[fmt.krw(v) for v in months["total_krw"].to_list()],
        title=t("household.bill"),
        labels={"month": t("col.month"), "kwh": "kWh", "color": t("col.tier")},
    )
    top = float(months["kwh"].max() or 0)  # type: ignore[arg-type]
    for i, row in enumerate(months.iter_rows(named=True)):
        limits = TIER_LIMITS["summer" if row["billing_month"].month in (7, 8) else "other"]
        for limit in limits:
            fig.add_shape(
                type="line",
                x0=i - 0.45,
                x1=i + 0.45,
                y0=limit,
                y1=limit,
                xref="x",
                yref="y",
                line={"dash": "dash", "color": "gray"},
            )
        top = max(top, limits[1])
    fig.update_yaxes(range=[0, top * 1.1])
    chart(fig, months.drop("month"), f"bills_{household_id}")
    components = months.select(
        "month",
        "tier",
        "kwh",
        "base_charge_krw",
        "energy_charge_krw",
        "climate_environment_krw",
        "fuel_cost_adjustment_krw",
        "vat_krw",
        "power_industry_fund_krw",
        "total_krw",
    )
    table(components, f"bill_components_{household_id}")
else:
    empty("household.no_bills")

# --- devices and their status ----------------------------------------------------------------
devices = data.load(data.device_status)
if devices is not None:
    mine = devices.filter(pl.col("household_id") == household_id).select(
        "device_id",
        "device_type",
        "status",
        "last_seen_utc",
        "readings",
        "completeness_last_day",
        "mean_interval_minutes",
    )
    st.subheader(t("household.devices"))
    table(mine, f"devices_{household_id}")

# --- indoor environment ----------------------------------------------------------------------
air = data.load(data.indoor, household_id, lo, hi)
st.subheader(t("household.indoor"))
if air is not None and air.height:
    shown = air.with_columns(pl.col("ts").dt.convert_time_zone(str(data.timezone())))
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.04)
    for row, (column, unit) in enumerate(
        (("temperature", "°C"), ("humidity", "%"), ("co2_level", "ppm")), start=1
    ):
        fig.add_scatter(
            x=shown["ts"].to_list(), y=shown[column].to_list(), name=t(f"col.{column}"), row=row, col=1
        )
        fig.update_yaxes(title_text=unit, row=row, col=1)
    fig.update_layout(height=520, title=t("household.indoor"))
    chart(fig, shown, f"indoor_{household_id}")
else:
    empty("household.no_indoor")
