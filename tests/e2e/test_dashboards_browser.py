"""The dashboards in a real browser: `streamlit run` on demo data, every page opened in headless
Chromium (Debian's package, driven by Playwright), no error shown, a screenshot of each page
saved to docs/img/dashboards/<page>.png (the pictures in docs/dashboards.md).

Chromium missing is a failure with the fix (`make browsers`), never a skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dashboards.apptest import PAGES
from hems.services import free_port
from hems.settings import PROJECT_ROOT
from tests.dashboards.demo_data import demo_dir

CHROMIUM = os.environ.get("HEMS_CHROMIUM", "/usr/bin/chromium")
#: docs/img/dashboards is refreshed from a running `make demo`, not by every test run:
#: HEMS_DASHBOARDS_URL=http://127.0.0.1:8501 HEMS_SCREENSHOTS_DIR=docs/img/dashboards \
#:     pytest tests/e2e/test_dashboards_browser.py
URL_ENV, SCREENSHOTS_ENV = "HEMS_DASHBOARDS_URL", "HEMS_SCREENSHOTS_DIR"
VIEWPORT = {"width": 1600, "height": 1000}
ERROR_SELECTORS = ('[data-testid="stException"]', '[data-testid="stAlertContentError"]')


def _chromium() -> str:
    path = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not path:
        pytest.fail(
            f"Chromium is not installed ({CHROMIUM} missing): run `make browsers` "
            "(apt-get install -y chromium) or set HEMS_CHROMIUM to a Chromium binary",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="module")
def dashboards_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get(URL_ENV):  # an app already running (e.g. `make demo`), for the docs images
        yield os.environ[URL_ENV].rstrip("/")
        return
    data = demo_dir(tmp_path_factory)
    port = free_port()
    log = tmp_path_factory.mktemp("streamlit") / "streamlit.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(PROJECT_ROOT / "dashboards" / "streamlit_app.py"),
                "--server.port",
                str(port),
                "--server.address",
                "127.0.0.1",
                "--server.headless",
                "true",
                "--browser.gatherUsageStats",
                "false",
            ],
            cwd=PROJECT_ROOT,
            env={**os.environ, "HEMS_PROFILE": "local", "HEMS_DATA_DIR": str(data)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"streamlit exited: {log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"streamlit did not answer on {url}: {log.read_text()[-3000:]}")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _settle(page, timeout_ms: int = 60_000) -> None:
    """Wait until the script run is over: a title is shown and the 'running' widget is gone."""
    page.wait_for_selector("h1", timeout=timeout_ms)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout_ms
    )
    page.wait_for_timeout(1500)  # let Plotly finish drawing before the screenshot


def _screenshot(page, path: Path) -> None:
    """The whole page: Streamlit scrolls inside its main block, so grow the viewport to fit it."""
    height = page.evaluate(
        "() => { const m = document.querySelector('[data-testid=\"stMain\"]');"
        " return m ? m.scrollHeight : document.body.scrollHeight; }"
    )
    page.set_viewport_size(
        {"width": VIEWPORT["width"], "height": min(max(int(height), VIEWPORT["height"]), 8000)}
    )
    page.wait_for_timeout(1000)  # Plotly re-lays out on resize
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(VIEWPORT)


@pytest.mark.slow
def test_every_page_in_chromium(dashboards_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    shots = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=["--no-sandbox"], headless=True)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            console_errors: list[str] = []
            page.on("pageerror", lambda exc: console_errors.append(str(exc)))
            for stem in PAGES:
                page.goto(f"{dashboards_url}/{'' if stem == PAGES[0] else stem}", wait_until="networkidle")
                _settle(page)
                for selector in ERROR_SELECTORS:
                    shown = page.locator(selector)
                    if shown.count():
                        problems.append(f"{stem}: {selector}: {shown.first.inner_text()[:500]}")
                body = page.inner_text("body")
                if "Traceback" in body:
                    problems.append(f"{stem}: a traceback is shown")
                shows = ", ".join(
                    [
                        '[data-testid="stMetric"]',
                        '[data-testid="stAlert"]',
                        ".js-plotly-plot",
                        '[data-testid="stDataFrame"]',
                    ]
                )
                assert page.locator(shows).count(), f"{stem}: nothing shown"
                if stem in ("overview", "household", "data_quality", "rewards"):
                    assert page.locator(".js-plotly-plot").count(), f"{stem}: no Plotly chart drawn"
                _screenshot(page, shots / f"{stem}.png")
            # the language switch: the overview again, in Korean
            page.goto(dashboards_url, wait_until="networkidle")
            _settle(page)
            page.get_by_text("한국어").click()
            page.wait_for_selector("h1:has-text('전체 현황')", timeout=60_000)
            _settle(page)
            assert page.get_by_text("사용 전력량").count(), "Korean metric label missing"
            _screenshot(page, shots / "overview_ko.png")
            assert not console_errors, console_errors
        finally:
            browser.close()
    assert not problems, "\n".join(problems)
    for stem in PAGES:
        assert (shots / f"{stem}.png").stat().st_size > 10_000, stem
