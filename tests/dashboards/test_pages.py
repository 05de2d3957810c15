"""Every dashboard page, rendered with AppTest on real demo data: no exception, no error shown,
the figures match the warehouse, filters change them, and the language switch relabels them.

Two data sets, both built once per session (tests/dashboards/demo_data.py): the plain demo (what
`make demo` shows today: ML and rewards not run, so those pages show their empty states) and a
copy enriched with predictions and rewards (so those pages' charts are exercised too).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from dashboards.apptest import PAGES, page_test
from dashboards.filters import KEY_HOUSEHOLD, KEY_HOUSEHOLDS, KEY_REGIONS
from hems.settings import get_settings
from tests.dashboards.demo_data import demo_dir, enriched_dir


def _use(path: Path) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HEMS_PROFILE", "local")
        mp.setenv("HEMS_DATA_DIR", str(path))
        get_settings.cache_clear()
        yield path
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield from _use(demo_dir(tmp_path_factory))


@pytest.fixture(scope="module")
def enriched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield from _use(enriched_dir(tmp_path_factory))


def _run(page: str) -> AppTest:
    at = page_test(page).run()
    _assert_clean(at, page)
    return at


def _assert_clean(at: AppTest, page: str) -> None:
    assert not at.exception, f"{page}: {[e.message for e in at.exception]}"
    assert not at.error, f"{page}: {[e.value for e in at.error]}"


def _metric(at: AppTest, label: str) -> float:
    value = next(m.value for m in at.metric if m.label == label)
    return float(value.replace(",", "").replace("₩", "").replace("%", "").split()[0])


def _infos(at: AppTest) -> str:
    return " | ".join(i.value for i in at.info)


def _warehouse_daily(path: Path) -> pl.DataFrame:
    from hems.stores.warehouse import get_warehouse

    return get_warehouse().query(
        "SELECT household_id, date, total_consumption_kwh FROM marts.energy_usage_daily"
    )


# --- the plain demo ----------------------------------------------------------------------------
@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_the_demo(demo: Path, page: str) -> None:
    at = _run(page)
    assert at.title, f"{page} has no title"
    if page in ("overview", "household", "data_quality", "rewards"):
        assert at.get("plotly_chart"), f"{page} shows no chart on demo data"
        assert at.get("download_button"), f"{page} offers no CSV"


def test_overview_energy_is_the_warehouse_total(demo: Path) -> None:
    at = _run("overview")
    daily = _warehouse_daily(demo)
    assert _metric(at, "Energy") == pytest.approx(daily["total_consumption_kwh"].sum(), abs=0.05)
    assert _metric(at, "Households") == daily["household_id"].n_unique()


def test_pages_for_parts_not_run_yet_say_what_to_run(demo: Path) -> None:
    # a demo shorter than 14 days skips ML (hems demo says so), but it runs the incentive assets
    assert "run the ML assets" in _infos(_run("forecasts"))
    assert "run the ML assets" in _infos(_run("anomalies"))
    models = _infos(_run("models"))
    assert "No predictions stored yet" in models and "No model registry yet" in models
    assert "No rewards computed yet — run the incentive assets" not in _infos(_run("rewards"))


def test_overview_household_filter_changes_the_numbers(demo: Path) -> None:
    at = _run("overview")
    total = _metric(at, "Energy")
    daily = _warehouse_daily(demo)
    one = sorted(daily["household_id"].unique().to_list())[0]
    at.multiselect(key=KEY_HOUSEHOLDS).set_value([one]).run()
    _assert_clean(at, "overview")
    expected = daily.filter(pl.col("household_id") == one)["total_consumption_kwh"].sum()
    assert _metric(at, "Energy") == pytest.approx(expected, abs=0.05)
    assert _metric(at, "Energy") < total
    assert _metric(at, "Households") == 1


def test_overview_date_and_region_filters_change_the_numbers(demo: Path) -> None:
    at = _run("overview")
    total = _metric(at, "Energy")
    daily = _warehouse_daily(demo)
    last = daily["date"].max()
    at.date_input(key="filter_dates").set_value((last, last)).run()
    _assert_clean(at, "overview")
    assert _metric(at, "Energy") == pytest.approx(
        daily.filter(pl.col("date") == last)["total_consumption_kwh"].sum(), abs=0.05
    )
    at = _run("overview")
    region = at.multiselect(key=KEY_REGIONS).options[0]
    at.multiselect(key=KEY_REGIONS).set_value([region]).run()
    _assert_clean(at, "overview")
    assert 0 < _metric(at, "Energy") < total


def test_household_pick_changes_the_numbers(demo: Path) -> None:
    at = _run("household")
    first = _metric(at, "Energy")
    options = at.selectbox(key=KEY_HOUSEHOLD).options
    assert len(options) > 1
    at.selectbox(key=KEY_HOUSEHOLD).set_value(options[1]).run()
    _assert_clean(at, "household")
    daily = _warehouse_daily(demo)
    expected = daily.filter(pl.col("household_id") == options[1])["total_consumption_kwh"].sum()
    assert _metric(at, "Energy") == pytest.approx(expected, abs=0.05)
    assert _metric(at, "Energy") != first


def test_data_quality_filter_changes_the_numbers(demo: Path) -> None:
    at = _run("data_quality")
    assert _metric(at, "Tests passed") > 0
    intervals = _metric(at, "Meter intervals")
    one = at.multiselect(key=KEY_HOUSEHOLDS).options[0]
    at.multiselect(key=KEY_HOUSEHOLDS).set_value([one]).run()
    _assert_clean(at, "data_quality")
    assert 0 < _metric(at, "Meter intervals") < intervals


def test_korean_labels(demo: Path) -> None:
    at = _run("overview")
    at.radio(key="lang").set_value("ko").run()
    _assert_clean(at, "overview")
    assert at.title[0].value == "전체 현황"
    labels = {m.label for m in at.metric}
    assert "사용 전력량" in labels and "Energy" not in labels
    assert at.multiselect(key=KEY_HOUSEHOLDS).label == "가구"


# --- enriched with predictions and rewards -------------------------------------------------------
@pytest.mark.parametrize("page", ["forecasts", "anomalies", "rewards", "models"])
def test_pages_show_predictions_and_rewards_when_present(enriched: Path, page: str) -> None:
    at = _run(page)
    assert at.get("plotly_chart"), f"{page} shows no chart"
    assert at.get("download_button")
    assert "run the ML assets" not in _infos(at)
    assert "No rewards computed yet" not in _infos(at)


def test_forecast_and_anomaly_figures_follow_the_household_filter(enriched: Path) -> None:
    for page, label in (("forecasts", "Predictions"), ("anomalies", "Anomalies")):
        at = _run(page)
        everyone = _metric(at, label)
        one = at.multiselect(key=KEY_HOUSEHOLDS).options[0]
        at.multiselect(key=KEY_HOUSEHOLDS).set_value([one]).run()
        _assert_clean(at, page)
        assert 0 < _metric(at, label) < everyone, page


def test_forecast_interval_coverage_is_computed(enriched: Path) -> None:
    at = _run("forecasts")
    coverage = _metric(at, "Actuals inside interval")  # a "%" value
    assert 90 < coverage < 100  # the test data puts every 97th hour outside its interval


def test_rewards_follow_the_household_filter(enriched: Path) -> None:
    at = _run("rewards")
    total = _metric(at, "Rewards")
    assert total == pytest.approx(sum(600 * i for i in range(6)))
    last = at.multiselect(key=KEY_HOUSEHOLDS).options[-1]
    at.multiselect(key=KEY_HOUSEHOLDS).set_value([last]).run()
    _assert_clean(at, "rewards")
    assert _metric(at, "Rewards") == pytest.approx(600 * 5)


def test_models_compare_versions_with_seasonal_naive(enriched: Path) -> None:
    at = _run("models")
    overall = at.dataframe[0].value
    models = set(overall["model"])
    assert {"1", "2"} <= models and any(m.startswith("seasonal naive") for m in models)
    cv = dict(zip(overall["model"], overall["cv_rmse"], strict=True))
    assert cv["2"] < cv["1"]  # version 2 has the smaller bias in the test data


def test_models_page_reads_the_published_champions_without_mlflow(enriched: Path) -> None:
    """The ml_champions asset publishes a summary file; the page shows it (no MLflow import)."""
    import json

    import streamlit as st

    path = get_settings().ml_champions_path
    path.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "name": "hems-consumption-forecaster",
        "champion_version": 3,
        "metrics": {"cv_rmse": 24.3},
        "promotion": {
            "decision": "promoted",
            "reason": "beat the reference and the champion",
            "at": "2026-11-26",
        },
    }
    path.write_text(json.dumps({"written_at": 0, "models": [summary]}))
    st.cache_data.clear()
    try:
        at = _run("models")
        frames = [d.value for d in at.dataframe]
        champions = next(f for f in frames if "champion_version" in f.columns)
        row = champions[champions["model"] == "hems-consumption-forecaster"].iloc[0]
        assert int(row["champion_version"]) == 3
        assert "No model registry yet" not in _infos(at)
    finally:
        path.unlink()
        st.cache_data.clear()
