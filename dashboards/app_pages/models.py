"""Models: accuracy over time against the seasonal-naive reference, registry metrics, champion history."""

from __future__ import annotations

from datetime import date

import plotly.express as px
import polars as pl
import streamlit as st

from dashboards import data
from dashboards.charts import chart, empty, table
from dashboards.filters import sidebar_filters
from dashboards.i18n import t
from dashboards.metrics import daily_accuracy

st.title(t("models.title"))
st.caption(t("models.caption"))
daily = data.load(data.daily_usage)
homes = data.load(data.households)
if daily is None or homes is None or daily.is_empty():
    empty("overview.empty")
    st.stop()
first, last = daily["date"].min(), daily["date"].max()
assert isinstance(first, date) and isinstance(last, date)
filters = sidebar_filters(homes, first, last)
lo, hi = data.local_bounds(filters.start, filters.end)

# --- accuracy over time, from the stored predictions and actuals ---------------------------------
st.subheader(t("models.accuracy"))
forecast = data.load(data.forecasts, lo, hi)
if forecast is None or forecast.is_empty():
    empty("models.no_predictions")
else:
    forecast = forecast.filter(pl.col("household_id").is_in(filters.household_ids(homes)))
    kinds = sorted(forecast["prediction_type"].unique().to_list())
    kind = st.selectbox(t("forecasts.type"), kinds, key="models_type") if len(kinds) > 1 else kinds[0]
    accuracy = daily_accuracy(forecast.filter(pl.col("prediction_type") == kind), str(data.timezone()))
    if accuracy.is_empty():
        empty("models.no_actuals")
    else:
        chart(
            px.line(
                accuracy.to_pandas(),
                x="date",
                y="cv_rmse",
                color="model",
                markers=True,
                title=t("models.cv_rmse_chart"),
                labels={"date": t("col.date"), "cv_rmse": "CV(RMSE)", "model": t("col.model")},
            ),
            accuracy,
            "model_accuracy_by_day",
        )
        overall = (
            accuracy.group_by("model")
            .agg(
                (pl.col("cv_rmse") * pl.col("points")).sum() / pl.col("points").sum(), pl.col("points").sum()
            )
            .sort("cv_rmse")
        )
        table(overall, "model_accuracy_overall")

# --- the registry: champions, their metrics, why they were promoted --------------------------------
st.subheader(t("models.registry"))
champs = data.load(data.champions)
if champs is None or champs.is_empty() or champs["champion_version"].is_null().all():
    empty("models.no_registry")
else:
    scored = champs.drop_nulls("value")
    if scored.height:
        names = sorted(scored["metric"].unique().to_list())
        metric = st.selectbox(t("models.metric"), names, key="models_metric")
        series = scored.filter(pl.col("metric") == metric)
        chart(
            px.bar(
                series.to_pandas(),
                x="model",
                y="value",
                hover_data=["champion_version", "promoted_at"],
                title=t("models.metric_chart", metric=metric),
                labels={"model": t("col.model"), "value": metric},
            ),
            series,
            f"registry_{metric}",
        )
    st.caption(t("models.champions"))
    table(champs.unique(subset=["model"], keep="first").drop("metric", "value"), "champions")
history = data.load(data.champion_history)
if history is not None and history.height:
    st.subheader(t("models.champion_history"))
    table(history, "champion_history")
