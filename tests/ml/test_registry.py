"""Registry against a real MLflow (SQLite in tmp_path): runs, promotion rules, loading by alias."""

from __future__ import annotations

import pytest

from ml import registry
from ml.models import EfficiencyRegressor


def test_decide_requires_beating_reference_and_champion() -> None:
    # lower is better (CV(RMSE))
    assert registry.decide(10.0, reference=12.0, champion=None, higher_is_better=False)[0]
    assert not registry.decide(13.0, reference=12.0, champion=None, higher_is_better=False)[0]
    ok, reason = registry.decide(11.0, reference=12.0, champion=10.0, higher_is_better=False)
    assert not ok and "champion" in reason
    assert not registry.decide(12.0, reference=12.0, champion=None, higher_is_better=False)[
        0
    ]  # a tie is not a win
    # higher is better (F1)
    assert registry.decide(0.8, reference=0.5, champion=0.7, higher_is_better=True)[0]
    assert not registry.decide(0.6, reference=0.5, champion=0.7, higher_is_better=True)[0]


@pytest.fixture(scope="module")
def small_model(splits) -> EfficiencyRegressor:
    return EfficiencyRegressor(n_estimators=20).fit(splits.daily_train)


def _log(model, splits):
    example = splits.daily_train.head(20)
    return registry.log_training_run(
        model,
        metrics={"train_seconds": 0.1},
        # the pipeline's lineage names the raw store as "raw-store:<backend>", not a URI MLflow resolves
        lineage={**splits.lineage(), "source": "raw-store:parquet"},
        input_example=example,
        training_data=example,
    )


def test_promotion_rules_and_loading_by_alias(mlflow_tracking, small_model, splits, tmp_path) -> None:
    from mlflow import MlflowClient

    name = small_model.name
    v1 = _log(small_model, splits)
    run = MlflowClient().get_run(v1.run_id)
    assert run.data.params["n_estimators"] == "20"
    assert run.data.tags["data.source"] == "raw-store:parquet" and "data.holdout_start" in run.data.tags
    assert run.inputs.dataset_inputs, "the training data is logged as the run's input (lineage)"
    assert "raw-store:parquet" in run.inputs.dataset_inputs[0].dataset.source
    assert registry.champion_version(name) is None

    d1 = registry.promote(
        name,
        v1.version,
        metric="cv_rmse",
        challenger=20.0,
        reference=25.0,
        champion=None,
        higher_is_better=False,
    )
    assert d1.promoted and registry.champion_version(name) == v1.version

    loader = registry.ChampionLoader(name, check_interval_s=0)
    first = loader.get()
    assert isinstance(first, EfficiencyRegressor) and loader.version == v1.version
    assert loader.get() is first and loader.loads == 1  # loaded once, not per call

    v2 = _log(small_model, splits)
    worse = registry.promote(
        name,
        v2.version,
        metric="cv_rmse",
        challenger=22.0,
        reference=25.0,
        champion=20.0,
        higher_is_better=False,
    )
    assert not worse.promoted and registry.champion_version(name) == v1.version
    v3 = _log(small_model, splits)
    below_ref = registry.promote(
        name,
        v3.version,
        metric="cv_rmse",
        challenger=19.0,
        reference=18.0,
        champion=20.0,
        higher_is_better=False,
    )
    assert not below_ref.promoted and "reference" in below_ref.reason
    assert loader.get() is first and loader.loads == 1

    better = registry.promote(
        name,
        v3.version,
        metric="cv_rmse",
        challenger=15.0,
        reference=18.0,
        champion=20.0,
        higher_is_better=False,
    )
    assert better.promoted and registry.champion_version(name) == v3.version
    second = loader.get()  # the alias moved: reload
    assert second is not first and loader.version == v3.version and loader.loads == 2
    mv = MlflowClient().get_model_version(name, str(v2.version))
    assert mv.tags["promotion.decision"] == "rejected"
    summary = registry.model_summary(name)
    assert summary["champion_version"] == v3.version and summary["promotion"]["decision"] == "promoted"

    # the summary readers without MLflow (dashboards) get: one JSON file, replaced atomically
    import json

    path = tmp_path / "ml" / "champions.json"
    registry.publish_summaries(path, [name, "hems-never-registered"])
    published = {m["name"]: m for m in json.loads(path.read_text())["models"]}
    assert published[name]["champion_version"] == v3.version
    assert published[name]["metrics"] == summary["metrics"]
    assert published["hems-never-registered"]["champion_version"] is None


def test_loader_reports_a_missing_champion(mlflow_tracking) -> None:
    with pytest.raises(LookupError, match="no 'champion' alias"):
        registry.ChampionLoader("hems-no-such-model").get()


def test_loader_checks_the_alias_at_most_every_interval(mlflow_tracking, small_model, splits) -> None:
    v = _log(small_model, splits)
    registry.promote(
        small_model.name,
        v.version,
        metric="cv_rmse",
        challenger=1.0,
        reference=2.0,
        champion=None,
        higher_is_better=False,
    )
    loader = registry.ChampionLoader(small_model.name, check_interval_s=3600)
    loader.get()
    v2 = _log(small_model, splits)
    registry.promote(
        small_model.name,
        v2.version,
        metric="cv_rmse",
        challenger=0.5,
        reference=2.0,
        champion=1.0,
        higher_is_better=False,
    )
    assert loader.get() is not None and loader.version == v.version  # not re-checked within the hour
