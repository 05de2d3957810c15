"""Cached warehouse queries for the dashboards.

Every read goes through ``st.cache_data`` with a TTL and the warehouse's serving path (a
read-only snapshot on DuckDB), so a page never holds a lock that would block a pipeline run.
"""

from __future__ import annotations

import polars as pl
import streamlit as st

from hems.errors import HemsError
from hems.stores.warehouse import get_warehouse

TTL_S = 60


@st.cache_data(ttl=TTL_S, show_spinner=False)
def daily_usage() -> pl.DataFrame:
    """Every household-day of energy_usage_daily."""
    return get_warehouse().query(
        "SELECT household_id, date, total_consumption_kwh, peak_usage_kwh, mid_usage_kwh, "
        "off_peak_usage_kwh, carbon_emission_kg FROM marts.energy_usage_daily ORDER BY date, household_id"
    )


def load_or_explain() -> pl.DataFrame | None:
    """The daily frame, or None after telling the analyst what to run first."""
    try:
        return daily_usage()
    except HemsError as exc:
        st.warning(str(exc))
        return None
