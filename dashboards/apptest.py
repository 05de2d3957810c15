"""Running dashboard pages headless with ``streamlit.testing.v1.AppTest`` (tests and the benchmark).

Why a helper: both need "render page X of the app and time it", and both should pay Streamlit's
one-off server start-up work (scanning installed packages for component manifests, ~3 s here)
once per process as a real server does, not once per AppTest instance.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parent / "streamlit_app.py"
PAGES = ("overview", "household", "forecasts", "anomalies", "rewards", "data_quality", "models")


def scan_components_once() -> None:
    """Memoize Streamlit's component-manifest scan (done once at server start in a real server)."""
    from streamlit.components.v2 import manifest_scanner

    scan = manifest_scanner.scan_component_manifests
    if not hasattr(scan, "cache_info"):
        manifest_scanner.scan_component_manifests = functools.cache(scan)  # type: ignore[assignment]


def page_test(page: str, timeout_s: float = 60) -> AppTest:
    """An AppTest of the app opened on ``page`` (not yet run)."""
    if page not in PAGES:
        raise ValueError(f"unknown page {page!r}; pages: {', '.join(PAGES)}")
    scan_components_once()
    at = AppTest.from_file(str(APP), default_timeout=timeout_s)
    if page != PAGES[0]:
        at.switch_page(f"app_pages/{page}.py")
    return at


def render(page: str, timeout_s: float = 60) -> tuple[AppTest, float]:
    """Run ``page`` once; returns the AppTest and the wall seconds the run took."""
    at = page_test(page, timeout_s)
    started = time.perf_counter()
    at.run()
    return at, time.perf_counter() - started
