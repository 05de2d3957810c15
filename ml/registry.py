"""MLflow: the only module that imports it.  Runs, lineage, registration, champion alias, loading.

* :func:`configure` points MLflow at the profile's backend (``Settings.mlflow_tracking_uri``:
  SQLite under the data dir embedded, the ``hems_mlflow`` PostgreSQL database in stack) with
  artifacts under ``<data dir>/mlflow/artifacts`` — the same places ``hems mlflow`` serves.
* :func:`log_training_run` logs params, metrics, input lineage (an MLflow dataset whose source
  names the raw-store window) and a signature, and registers a new model version.
* :func:`promote` moves the ``champion`` alias only when the challenger beats both the current
  champion and the reference on the same holdout; every decision is recorded as version tags.
* :class:`ChampionLoader` loads ``models:/<name>@champion`` once and reloads only when the
  alias has moved (one cheap alias lookup, at most every ``check_interval_s``).

Models are stored as MLflow pyfunc models wrapping :meth:`ml.models.base.Model.save` output, so
every model is frame-in/frame-out for MLflow tools while Python callers get the native object.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import polars as pl
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from ml.models.base import Model

CHAMPION = "champion"
EXPERIMENT_PREFIX = "hems/"
#: what a served model needs; fixed so logging never spends seconds inferring requirements
PIP_REQUIREMENTS = ["mlflow", "polars", "pyarrow", "numpy", "scikit-learn", "xgboost", "tensorflow-cpu"]
log = logging.getLogger(__name__)
_configured: dict[str, str] = {}
_lock = threading.Lock()


def configure(
    settings: Any = None, tracking_uri: str | None = None, artifact_root: Path | None = None
) -> str:
    """Point MLflow at the profile's tracking store; returns the tracking URI."""
    if tracking_uri is None or artifact_root is None:
        from hems.settings import get_settings

        settings = settings or get_settings()
        tracking_uri = tracking_uri or settings.mlflow_tracking_uri
        artifact_root = artifact_root or settings.mlflow_dir / "artifacts"
    assert tracking_uri is not None and artifact_root is not None
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    Path(artifact_root).mkdir(parents=True, exist_ok=True)
    with _lock:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        _configured["uri"] = tracking_uri
        _configured["artifacts"] = Path(artifact_root).resolve().as_uri()
    return tracking_uri


def _client() -> MlflowClient:
    if "uri" not in _configured:
        configure()
    return MlflowClient(tracking_uri=_configured["uri"], registry_uri=_configured["uri"])


def _experiment_id(model_name: str) -> str:
    client = _client()
    name = EXPERIMENT_PREFIX + model_name
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=f"{_configured['artifacts']}/{model_name}")
    except MlflowException:  # created concurrently
        exp = client.get_experiment_by_name(name)
        assert exp is not None
        return exp.experiment_id


class _PyfuncModel(mlflow.pyfunc.PythonModel):
    """Frame in, frame out: wraps a saved :class:`ml.models.base.Model`."""

    def load_context(self, context):  # untyped on purpose: MLflow reads predict's type hints as a schema
        self.model = Model.load(Path(context.artifacts["model"]))

    def predict(self, context, model_input, params=None):
        frame = model_input if isinstance(model_input, pl.DataFrame) else pl.from_pandas(model_input)
        return self.model.predict(frame).to_pandas()


@dataclass(frozen=True)
class LoggedVersion:
    name: str
    version: int
    run_id: str


def log_training_run(
    model: Model,
    *,
    metrics: dict[str, float],
    lineage: dict[str, str],
    input_example: pl.DataFrame,
    output_example: pl.DataFrame | None = None,
    training_data: pl.DataFrame | None = None,
    params: dict[str, Any] | None = None,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
) -> LoggedVersion:
    """Log one training run and register its model as a new version of ``model.name``.

    ``lineage`` (source, window, sizes) becomes run tags ``data.*`` and the source of the MLflow
    dataset logged as the run's training input; the signature is inferred from
    ``input_example`` → ``output_example`` (default: the model's prediction for the example).
    """
    _client()
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # no per-step INFO lines in job logs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # signature hints about ints and type hints: not actionable
        return _log_training_run(
            model, metrics, lineage, input_example, output_example, training_data, params, run_name, tags
        )


def _log_training_run(
    model: Model,
    metrics: dict[str, float],
    lineage: dict[str, str],
    input_example: pl.DataFrame,
    output_example: pl.DataFrame | None,
    training_data: pl.DataFrame | None,
    params: dict[str, Any] | None,
    run_name: str | None,
    tags: dict[str, str] | None,
) -> LoggedVersion:
    output = output_example if output_example is not None else model.predict(input_example)
    signature = infer_signature(input_example.to_pandas(), output.to_pandas())
    with mlflow.start_run(experiment_id=_experiment_id(model.name), run_name=run_name or model.name) as run:
        mlflow.log_params({**model.params(), **(params or {})})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        mlflow.set_tags({**{f"data.{k}": v for k, v in lineage.items()}, **(tags or {})})
        if training_data is not None:
            from mlflow.data.code_dataset_source import CodeDatasetSource

            # a plain string source must be a URI MLflow can resolve ("raw-store:parquet" is not);
            # a code source carries the lineage (store, window) as tags instead
            source = CodeDatasetSource(tags={"hems.source": str(lineage.get("source", "frames")),
                                             "hems.first_day": str(lineage.get("first_day", "")),
                                             "hems.last_day": str(lineage.get("last_day", ""))})  # fmt: skip
            dataset = mlflow.data.from_polars(training_data, source=source, name=f"{model.name}-training")
            mlflow.log_input(dataset, context="training")
        with tempfile.TemporaryDirectory() as tmp:
            model.save(Path(tmp) / "model")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=_PyfuncModel(),
                artifacts={"model": str(Path(tmp) / "model")},
                signature=signature,
                pip_requirements=PIP_REQUIREMENTS,
                registered_model_name=model.name,
            )
        version = int(info.registered_model_version)
    return LoggedVersion(model.name, version, run.info.run_id)


def log_metrics(run_id: str, metrics: dict[str, float]) -> None:
    """Add metrics to an earlier run (the evaluation step logs to the training run)."""
    client = _client()
    now = int(time.time() * 1000)
    from mlflow.entities import Metric

    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])


# --------------------------------------------------------------------------- champion
def champion_version(name: str, alias: str = CHAMPION) -> int | None:
    """The version the alias points at, or None when there is no such alias (or model)."""
    try:
        return int(_client().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def version_run_id(name: str, version: int) -> str:
    return _client().get_model_version(name, str(version)).run_id


@dataclass(frozen=True)
class Decision:
    promoted: bool
    reason: str
    champion_before: int | None
    champion_after: int | None


def decide(
    challenger: float, reference: float, champion: float | None, higher_is_better: bool
) -> tuple[bool, str]:
    """Promote only when the challenger strictly beats the reference and the champion (if any)."""

    def beats(a: float, b: float) -> bool:
        return a > b if higher_is_better else a < b

    if not beats(challenger, reference):
        return False, f"challenger {challenger:.4g} does not beat the reference {reference:.4g}"
    if champion is not None and not beats(challenger, champion):
        return False, f"challenger {challenger:.4g} does not beat the champion {champion:.4g}"
    against = "no champion yet" if champion is None else f"champion {champion:.4g}"
    return True, f"challenger {challenger:.4g} beats the reference {reference:.4g} and {against}"


def promote(
    name: str,
    version: int,
    *,
    metric: str,
    challenger: float,
    reference: float,
    champion: float | None,
    higher_is_better: bool,
    alias: str = CHAMPION,
) -> Decision:
    """Apply :func:`decide` for ``version`` and move the alias when it wins; tags record why.

    ``champion`` must be the current champion's score on the *same* holdout (None when there is
    no champion); a champion that is the challenger itself is not compared.
    """
    client = _client()
    before = champion_version(name, alias)
    if before == version:
        champion = None
    ok, reason = decide(challenger, reference, champion, higher_is_better)
    tags = {
        "promotion.metric": metric,
        "promotion.challenger": f"{challenger:.6g}",
        "promotion.reference": f"{reference:.6g}",
        "promotion.champion": "" if champion is None else f"{champion:.6g}",
        "promotion.decision": "promoted" if ok else "rejected",
        "promotion.reason": reason,
    }
    for k, v in tags.items():
        client.set_model_version_tag(name, str(version), k, v)
    if ok:
        client.set_registered_model_alias(name, alias, str(version))
        client.set_model_version_tag(
            name, str(version), "promotion.at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        )
    return Decision(ok, reason, before, version if ok else before)


# --------------------------------------------------------------------------- loading
def load_model(name: str, version: int | None = None, alias: str = CHAMPION) -> Model:
    """The native model of a version (default: the alias's version)."""
    _client()
    uri = f"models:/{name}/{version}" if version is not None else f"models:/{name}@{alias}"
    pyfunc = mlflow.pyfunc.load_model(uri)
    return pyfunc.unwrap_python_model().model


class ChampionLoader:
    """Loads ``models:/<name>@champion`` once and reloads only when the alias moves.

    ``get()`` checks the alias's version (one registry lookup) at most every ``check_interval_s``
    seconds; when it changed, the new version is loaded before it replaces the old one, so a
    failed load keeps serving the previous champion.  Thread-safe.
    """

    def __init__(self, name: str, alias: str = CHAMPION, check_interval_s: float = 30.0) -> None:
        self.name, self.alias, self.check_interval_s = name, alias, check_interval_s
        self._model: Model | None = None
        self._version: int | None = None
        self._checked = float("-inf")
        self._lock = threading.Lock()
        self.loads = 0

    @property
    def version(self) -> int | None:
        return self._version

    def get(self) -> Model:
        with self._lock:
            now = time.monotonic()
            if self._model is not None and now - self._checked < self.check_interval_s:
                return self._model
            self._checked = now
            current = champion_version(self.name, self.alias)
            if current is None:
                if self._model is not None:
                    return self._model
                raise LookupError(
                    f"model {self.name!r} has no {self.alias!r} alias yet: train and promote first"
                )
            if current != self._version:
                self._model = load_model(self.name, current)
                self._version = current
                self.loads += 1
                log.info("loaded %s version %s (%s)", self.name, current, self.alias)
            assert self._model is not None
            return self._model


def model_summary(name: str) -> dict[str, Any]:
    """Champion version and the metrics of its run (for /model/performance and dashboards)."""
    client = _client()
    version = champion_version(name)
    if version is None:
        return {"name": name, "champion_version": None, "metrics": {}}
    mv = client.get_model_version(name, str(version))
    run = client.get_run(mv.run_id)
    return {
        "name": name,
        "champion_version": version,
        "run_id": mv.run_id,
        "metrics": dict(run.data.metrics),
        "promotion": {
            k.removeprefix("promotion."): v for k, v in mv.tags.items() if k.startswith("promotion.")
        },
    }


def publish_summaries(path: Path, names: list[str]) -> list[dict[str, Any]]:
    """Write every model's :func:`model_summary` to ``path`` as JSON (atomic rename): the dashboards
    read this file instead of importing MLflow (seconds) on a page's first render."""
    import json
    import os

    summaries = [model_summary(name) for name in names]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"written_at": time.time(), "models": summaries}, default=str))
    os.replace(tmp, path)
    return summaries


__all__ = [
    "CHAMPION",
    "ChampionLoader",
    "Decision",
    "LoggedVersion",
    "champion_version",
    "configure",
    "decide",
    "load_model",
    "log_metrics",
    "log_training_run",
    "model_summary",
    "promote",
    "publish_summaries",
    "version_run_id",
]
