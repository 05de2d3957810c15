"""Rewards: baselines and savings, cashback and DR rewards, points, settlements and the leaderboard."""

from __future__ import annotations

from datetime import date

import plotly.express as px
import polars as pl
import streamlit as st

from dashboards import data
from dashboards import formatting as fmt
from dashboards.charts import chart, empty, table
from dashboards.filters import sidebar_filters
from dashboards.i18n import col_labels, t

st.title(t("rewards.title"))
st.caption(t("rewards.caption"))
daily = data.load(data.daily_usage)
homes = data.load(data.households)
if daily is None or homes is None or daily.is_empty():
    empty("overview.empty")
    st.stop()
first, last = daily["date"].min(), daily["date"].max()
assert isinstance(first, date) and isinstance(last, date)
filters = sidebar_filters(homes, first, last)
chosen = filters.household_ids(homes)


def in_range(frame: pl.DataFrame) -> pl.DataFrame:
    """Chosen households, and monthly periods (YYYY-MM) overlapping the date range; event ids stay."""
    month = pl.col("period").str.to_date("%Y-%m", strict=False)
    return frame.filter(
        pl.col("household_id").is_in(chosen),
        month.is_null() | month.is_between(filters.start.replace(day=1), filters.end),
    )


# --- baselines, savings and rewards ----------------------------------------------------------
st.subheader(t("rewards.results"))
results = data.load(data.rewards)
if results is None or results.is_empty():
    empty("rewards.empty")
else:
    results = in_range(results)
    paid = results.filter(pl.col("reward_krw") > 0)
    cols = st.columns(4)
    cols[0].metric(t("metric.reward_total"), fmt.krw(results["reward_krw"].sum()))
    cols[1].metric(t("metric.households_paid"), fmt.number(paid["household_id"].n_unique()))
    cols[2].metric(
        t("metric.savings"), fmt.kwh(results.filter(pl.col("savings_kwh") > 0)["savings_kwh"].sum())
    )
    cols[3].metric(
        t("metric.not_rewarded"), fmt.number(results.filter(pl.col("reason").is_not_null()).height)
    )
    by_period = (
        results.group_by("period", "kind")
        .agg(pl.col("reward_krw").sum(), pl.col("savings_kwh").sum(), pl.len().alias("households"))
        .sort("period", "kind")
    )
    chart(
        px.bar(
            by_period.with_columns(
                pl.col("kind").replace_strict(
                    {k: t(f"program.{k}", default=k) for k in by_period["kind"].unique().to_list()}
                )
            ).to_pandas(),
            x="period",
            y="reward_krw",
            color="kind",
            barmode="group",
            title=t("rewards.by_period"),
            labels={"period": t("col.period"), "reward_krw": "KRW", "kind": t("col.program")},
        ),
        by_period,
        "rewards_by_period",
    )
    chart(
        px.scatter(
            results.to_pandas(),
            x="baseline_kwh",
            y="actual_kwh",
            color="program",
            hover_data=["household_id", "period", "savings_pct", "reward_krw", "reason"],
            title=t("rewards.baseline_vs_actual"),
            labels=col_labels("baseline_kwh", "actual_kwh", "program"),
        ),
        results,
        "rewards_baseline_vs_actual",
    )

# --- points ------------------------------------------------------------------------------------
st.subheader(t("rewards.points"))
ledger = data.load(data.points_ledger)
if ledger is None or ledger.is_empty():
    empty("rewards.empty_points")
else:
    ledger = ledger.filter(pl.col("household_id").is_in(chosen))
    balances = (
        ledger.group_by("household_id")
        .agg(
            pl.col("balance_after").last().alias("balance"),
            pl.col("points").filter(pl.col("entry_type") == "accrual").sum().alias("accrued"),
            pl.col("points").filter(pl.col("entry_type") == "redemption").sum().alias("redeemed"),
        )
        .sort("household_id")
    )
    st.metric(t("metric.points_outstanding"), fmt.points(balances["balance"].sum()))
    chart(
        px.bar(
            balances.to_pandas(),
            x="household_id",
            y="balance",
            title=t("rewards.balances"),
            labels=col_labels(household_id="household", balance="points"),
        ),
        balances,
        "points_balances",
    )

# --- settlements -------------------------------------------------------------------------------
st.subheader(t("rewards.settlements"))
settled = data.load(data.settlements)
if settled is None or settled.is_empty():
    empty("rewards.empty_settlements")
else:
    table(settled, "settlements")

# --- community leaderboard (warehouse) ----------------------------------------------------------
st.subheader(t("rewards.leaderboard"))
board = data.load(data.leaderboard)
if board is None or board.is_empty():
    empty("rewards.empty_leaderboard")
    st.stop()
weeks = (
    board.filter(pl.col("week_start") <= filters.end)["week_start"].unique().sort(descending=True).to_list()
)
if not weeks:
    empty("common.no_rows")
    st.stop()
week = st.selectbox(t("rewards.week"), weeks, key="leaderboard_week")
ranked = (
    board.filter(pl.col("week_start") == week, pl.col("household_id").is_in(chosen))
    .select(
        "household_id",
        "region",
        "building_type",
        "metered_days",
        "kwh",
        "baseline_kwh",
        "saved_kwh",
        "saved_ratio",
        "kwh_per_resident_day",
        "rank_saved",
        "rank_saved_in_region",
        "rank_per_resident",
    )
    .sort("rank_saved", "rank_per_resident", nulls_last=True)
)
if ranked.filter(pl.col("saved_ratio").is_not_null()).height:
    chart(
        px.bar(
            ranked.drop_nulls("saved_ratio").to_pandas(),
            x="household_id",
            y="saved_ratio",
            color="region",
            title=t("rewards.saved_ratio", week=str(week)),
            labels=col_labels("saved_ratio", "region", household_id="household"),
        ),
        ranked,
        "leaderboard_saved",
    )
else:
    st.caption(t("rewards.no_baseline_yet"))
    chart(
        px.bar(
            ranked.to_pandas(),
            x="household_id",
            y="kwh_per_resident_day",
            color="region",
            title=t("rewards.per_resident", week=str(week)),
            labels=col_labels("kwh_per_resident_day", "region", household_id="household"),
        ),
        ranked,
        "leaderboard_per_resident",
    )
table(ranked, "leaderboard")
