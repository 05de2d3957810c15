"""Analyst dashboards: ``streamlit run dashboards/streamlit_app.py`` (or ``hems dashboards``)."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # project root, when run as a script

from dashboards.i18n import language_switch, t

#: (file under app_pages/, label key, icon); the file stem is also the page's URL path
PAGES = [
    ("overview", "page.overview", "🏠"),
    ("household", "page.household", "🔎"),
    ("forecasts", "page.forecasts", "📈"),
    ("anomalies", "page.anomalies", "⚠️"),
    ("rewards", "page.rewards", "🎁"),
    ("data_quality", "page.quality", "✅"),
    ("models", "page.models", "🧠"),
]

st.set_page_config(page_title="HEMS analytics", page_icon="⚡", layout="wide")
language_switch()  # before the navigation, so page titles follow the chosen language
pages = [
    st.Page(f"app_pages/{stem}.py", title=t(label), icon=icon, url_path=stem, default=i == 0)
    for i, (stem, label, icon) in enumerate(PAGES)
]
st.navigation(pages).run()
