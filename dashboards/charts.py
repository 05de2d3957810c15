"""A Plotly chart with the CSV of exactly what it shows, and an empty state that says what to run.

Why together: an analyst who sees a chart should be able to take its numbers away, so every chart
is drawn through :func:`chart`, which puts a download button of the plotted frame under it.
"""

from __future__ import annotations

import re

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from dashboards.i18n import t


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "chart"


def csv_bytes(frame: pl.DataFrame) -> bytes:
    """UTF-8 CSV with a BOM, so Excel opens Korean text and ₩ correctly."""
    return "\ufeff".encode() + frame.write_csv().encode("utf-8")


def download(frame: pl.DataFrame, name: str) -> None:
    """A CSV download button for ``frame`` (file ``<name>.csv``)."""
    st.download_button(
        t("common.download_csv"),
        csv_bytes(frame),
        file_name=f"{_slug(name)}.csv",
        mime="text/csv",
        key=f"download_{_slug(name)}",
    )


def chart(fig: go.Figure, frame: pl.DataFrame, name: str) -> None:
    """Draw ``fig`` full width and offer ``frame`` (the data it plots) as CSV."""
    fig.update_layout(margin={"l": 10, "r": 10, "t": 50, "b": 10}, legend_title_text="")
    st.plotly_chart(fig, key=f"chart_{_slug(name)}")
    download(frame, name)


def table(frame: pl.DataFrame, name: str) -> None:
    """A data table and its CSV."""
    st.dataframe(frame.to_pandas(), hide_index=True)
    download(frame, name)


def empty(message_key: str, **kwargs: object) -> None:
    """A clear empty state (info, not an error): what is missing and which command makes it."""
    st.info(t(message_key, **kwargs))
