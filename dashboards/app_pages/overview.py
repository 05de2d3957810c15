"""Fleet overview: households, kWh, carbon, TOU split and the daily trend."""

from __future__ import annotations

import plotly.express as px
import polars as pl
import streamlit as st

from dashboards.data import load_or_explain

st.title("Fleet overview")
daily = load_or_explain()
if daily is None or daily.is_empty():
    st.info("No daily usage yet. Run `hems demo --no-serve` (or the `energy_marts` job in Dagster).")
    st.stop()

first, last = daily["date"].min(), daily["date"].max()
picked = st.date_input("Date range", value=(first, last), min_value=first, max_value=last)
start, end = picked if isinstance(picked, tuple) and len(picked) == 2 else (first, last)
households = sorted(daily["household_id"].unique().to_list())
chosen = st.multiselect("Households", households, placeholder="all households")
view = daily.filter(pl.col("date").is_between(start, end))
if chosen:
    view = view.filter(pl.col("household_id").is_in(chosen))

total = float(view["total_consumption_kwh"].sum())
n_households = view["household_id"].n_unique()
n_days = view["date"].n_unique()
cols = st.columns(4)
cols[0].metric("Households", f"{n_households:,}")
cols[1].metric("Energy", f"{total:,.1f} kWh")
cols[2].metric("Per household-day", f"{total / max(n_households * n_days, 1):,.2f} kWh")
cols[3].metric("Carbon", f"{float(view['carbon_emission_kg'].sum()):,.1f} kgCO₂e")

trend = (
    view.group_by("date")
    .agg(
        pl.col("peak_usage_kwh").sum().alias("peak"),
        pl.col("mid_usage_kwh").sum().alias("mid"),
        pl.col("off_peak_usage_kwh").sum().alias("off-peak"),
    )
    .sort("date")
)
long = trend.unpivot(index="date", variable_name="TOU band", value_name="kWh")
st.plotly_chart(
    px.bar(long.to_pandas(), x="date", y="kWh", color="TOU band", title="Daily fleet energy by TOU band"),
    use_container_width=True,
)
st.download_button(
    "Download daily totals (CSV)", trend.write_csv(), file_name="fleet_daily_tou.csv", mime="text/csv"
)

per_household = (
    view.group_by("household_id")
    .agg(pl.col("total_consumption_kwh").mean().alias("kWh per day"))
    .sort("kWh per day", descending=True)
)
st.plotly_chart(
    px.histogram(per_household.to_pandas(), x="kWh per day", nbins=20, title="Households by mean daily kWh"),
    use_container_width=True,
)
