"""Analyst dashboards: ``streamlit run dashboards/streamlit_app.py`` (or ``hems dashboards``)."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # project root, when run as a script

st.set_page_config(page_title="HEMS analytics", page_icon="⚡", layout="wide")
pages = [st.Page("app_pages/overview.py", title="Fleet overview", icon="🏠", default=True)]
st.navigation(pages).run()
