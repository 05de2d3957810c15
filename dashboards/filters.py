"""The shared sidebar filters (date range, region, building type, household) and how they apply.

Why one module: every page slices the same way, so the widgets, their keys (which tests drive)
and the filtering rules live once. An empty multiselect means "all".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl
import streamlit as st

from dashboards.i18n import t

KEY_DATES = "filter_dates"
KEY_REGIONS = "filter_regions"
KEY_BUILDING_TYPES = "filter_building_types"
KEY_HOUSEHOLDS = "filter_households"
KEY_HOUSEHOLD = "filter_household"


@dataclass(frozen=True)
class Filters:
    start: date
    end: date
    regions: tuple[str, ...] = ()
    building_types: tuple[str, ...] = ()
    households: tuple[str, ...] = ()

    def household_ids(self, homes: pl.DataFrame) -> list[str]:
        """Households (of dim_households-like ``homes``) that pass region, building type and pick."""
        out = homes
        if self.regions:
            out = out.filter(pl.col("region").is_in(self.regions))
        if self.building_types:
            out = out.filter(pl.col("building_type").is_in(self.building_types))
        if self.households:
            out = out.filter(pl.col("household_id").is_in(self.households))
        return sorted(out["household_id"].unique().to_list())

    def apply(
        self, frame: pl.DataFrame, homes: pl.DataFrame, date_column: str | None = "date"
    ) -> pl.DataFrame:
        """Rows of the chosen households (and, with ``date_column``, inside the date range)."""
        out = frame.filter(pl.col("household_id").is_in(self.household_ids(homes)))
        if date_column is not None:
            out = out.filter(pl.col(date_column).is_between(self.start, self.end))
        return out


def _date_range(first: date, last: date) -> tuple[date, date]:
    picked = st.sidebar.date_input(
        t("filter.dates"), value=(first, last), min_value=first, max_value=last, key=KEY_DATES
    )
    if isinstance(picked, tuple | list) and len(picked) == 2:
        return picked[0], picked[1]
    return first, last  # a half-picked range (first click only): keep everything until the second


def _options(homes: pl.DataFrame, column: str) -> list[str]:
    return sorted(v for v in homes[column].unique().to_list() if v is not None)


def sidebar_filters(homes: pl.DataFrame, first: date, last: date, *, many_households: bool = True) -> Filters:
    """Render the filters in the sidebar and return what is chosen.

    ``many_households=False`` (drill-down) offers one household, picked among those passing the
    region and building-type filters.
    """
    st.sidebar.subheader(t("filter.title"))
    start, end = _date_range(first, last)
    regions = st.sidebar.multiselect(
        t("filter.regions"), _options(homes, "region"), key=KEY_REGIONS, placeholder=t("filter.all")
    )
    kinds = st.sidebar.multiselect(
        t("filter.building_types"),
        _options(homes, "building_type"),
        key=KEY_BUILDING_TYPES,
        placeholder=t("filter.all"),
        format_func=lambda v: t(f"building.{v}", default=v),
    )
    narrowed = Filters(start, end, tuple(regions), tuple(kinds))
    candidates = narrowed.household_ids(homes)
    if many_households:
        chosen = st.sidebar.multiselect(
            t("filter.households"), candidates, key=KEY_HOUSEHOLDS, placeholder=t("filter.all")
        )
        return Filters(start, end, tuple(regions), tuple(kinds), tuple(chosen))
    if not candidates:
        return Filters(start, end, tuple(regions), tuple(kinds), ("",))
    one = st.sidebar.selectbox(t("filter.household"), candidates, key=KEY_HOUSEHOLD)
    return Filters(start, end, tuple(regions), tuple(kinds), (one,))
