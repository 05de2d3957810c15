"""The ML Dagster definitions load and chain features → train → evaluate → promote → predict."""

from __future__ import annotations

import itertools

from dagster import AssetKey


def test_ml_definitions_load_with_lineage() -> None:
    from orchestration.defs.ml import ml_defs

    graph = ml_defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    chain = ["ml_features", "ml_trained_models", "ml_evaluation", "ml_champions", "ml_predictions"]
    assert set(chain) | {"ml_model_performance"} <= keys
    for parent, child in itertools.pairwise(chain):
        assert AssetKey(parent) in graph.get(AssetKey(child)).parent_keys
    assert AssetKey(["marts", "energy_usage_daily"]) in graph.get(AssetKey("ml_features")).parent_keys
    assert AssetKey("ml_predictions") in graph.get(AssetKey("ml_model_performance")).parent_keys
    assert graph.get(AssetKey("ml_features")).group_name == "ml"
    checks = {k.name for k in graph.asset_check_keys}
    assert {"ml_features_complete", "ml_models_beat_references"} <= checks
    assert ml_defs.resolve_job_def("ml_training") is not None
