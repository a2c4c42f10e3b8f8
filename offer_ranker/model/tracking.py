"""Experiment tracking in MLflow: every ``offer-ranker train`` is a run; ``evaluate`` and
``explain`` add their metrics and reports to the run of the bundle they judged.

The store is MLflow's ``MLFLOW_TRACKING_URI``; unset, it is ``sqlite:///mlflow.db`` in the working
directory with the artifacts in ``mlruns/`` next to it: inside the project, never the user's home
(``make mlflow-ui`` opens the UI on it). A run records:

* parameters: the engine, the objective, every ``[train]`` setting, the boosting parameters used,
  and the Optuna study's best; each Optuna trial is a child run;
* metrics: the validation metrics (``valid.*``), later the evaluation's (``test.*``);
* tags: ``model_tag`` (the BentoML tag), the training frame's fingerprint and window, the git commit;
* artifacts: the feature manifest, later the evaluation and SHAP reports.

Tracking never costs a model: if the store cannot be written, the bundle is saved all the same and
the failure is logged. MLflow is imported only here, when a run is written (it takes seconds).
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from offer_ranker.model.bundle import Bundle

log = logging.getLogger(__name__)
DEFAULT_DB = "mlflow.db"


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI``, else ``sqlite:///<working directory>/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / DEFAULT_DB}"


def local_db(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` store (None for any other store)."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def client() -> MlflowClient:
    """A client of the tracking store (and of the registry, unless ``MLFLOW_REGISTRY_URI`` says otherwise)."""
    for name in ("alembic", "mlflow.store.db.utils"):  # a new store logs every schema migration
        logging.getLogger(name).setLevel(logging.WARNING)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri())


def experiment_id(c: MlflowClient, name: str) -> str:
    """The experiment ``name``, created on first use with its artifacts next to a local store."""
    found = c.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    db = local_db(c.tracking_uri)
    location = (db.resolve().parent / "mlruns").as_uri() if db is not None else None
    try:
        return c.create_experiment(name, artifact_location=location)
    except Exception:  # another process created it first
        found = c.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def metric_name(name: str) -> str:
    """An MLflow metric or parameter name (letters, digits, ``_-./ :``): ``ndcg@3`` -> ``ndcg_at_3``."""
    return re.sub(r"[^\w./\- :]", "_", name.replace("@", "_at_"))


def record_training(bundle: Bundle, experiment: str, features: Path) -> str | None:
    """Log the training of a saved ``bundle`` (its tag in ``bundle.info['tag']``) as a run; returns the
    run id, or None when the store could not be written (logged, the bundle stands)."""
    info = bundle.info
    try:
        c = client()
        exp = experiment_id(c, experiment)
        run = c.create_run(exp, start_time=int(info.get("started_ms", time.time() * 1000)),
                           run_name=info["tag"].partition(":")[2], tags=_training_tags(info))
        run_id = run.info.run_id
        params = {"engine": info["engine"], "objective": info["objective"], "score_model": info["score_model"],
                  **{f"train.{k}": v for k, v in info.get("train_config", {}).items()},
                  **{f"booster.{k}": v for k, v in info["params"].items() if k != "monotone_constraints"},
                  "features_dir": info.get("features_dir"),
                  **{f"tuned.{k}": v for k, v in (info.get("tuning") or {}).get("best_params", {}).items()}}
        metrics = {f"valid.{k.removeprefix('valid_')}": v for k, v in info["metrics"].items()}
        metrics |= {f"rows.{k}": v for k, v in info["rows"].items()}
        if info.get("tuning"):
            metrics["tuned.best_valid_ndcg@3"] = info["tuning"]["best_valid_ndcg@3"]
        log_values(c, run_id, params=params, metrics=metrics)
        if (features / "manifest.json").exists():
            c.log_artifact(run_id, str(features / "manifest.json"), "features")
        for trial in (info.get("tuning") or {}).get("trial_runs", []):
            _record_trial(c, exp, run_id, trial)
        c.set_terminated(run_id, "FINISHED")
        return run_id
    except Exception as exc:  # noqa: BLE001 - tracking must not cost the model
        log.warning("could not record the training of %s in MLflow (%s): %s", info.get("tag"), tracking_uri(), exc)
        return None


def log_values(c: MlflowClient, run_id: str, *, params: dict[str, Any] | None = None,
               metrics: dict[str, Any] | None = None, tags: dict[str, Any] | None = None) -> None:
    """Parameters, numeric metrics and tags in one batch (names made valid; non-numbers skipped)."""
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    c.log_batch(
        run_id,
        metrics=[Metric(metric_name(k), float(v), now, 0) for k, v in (metrics or {}).items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v],
        params=[Param(metric_name(k), _text(v)) for k, v in (params or {}).items() if v is not None],
        tags=[RunTag(k, _text(v)) for k, v in (tags or {}).items() if v is not None])


def run_of(c: MlflowClient, bundle: Bundle) -> str | None:
    """The run that trained ``bundle``: its recorded run id if this store has it, else a run tagged
    with its ``model_tag``."""
    run_id = bundle.info.get("mlflow_run_id")
    if run_id:
        try:
            return c.get_run(run_id).info.run_id
        except Exception:  # noqa: BLE001 - another store: look it up by tag
            pass
    experiments = [e.experiment_id for e in c.search_experiments()]
    runs = c.search_runs(experiments, filter_string=f"tags.model_tag = '{bundle.version}'", max_results=1) \
        if experiments else []
    return runs[0].info.run_id if runs else None


def record_report(bundle: Bundle, kind: str, out: Path, metrics: dict[str, float] | None = None) -> str | None:
    """Add a report (the files of ``out``, under ``kind/``) and its ``metrics`` to the run that trained
    ``bundle``; returns the run id, or None (logged) when there is none or the store failed."""
    try:
        c = client()
        run_id = run_of(c, bundle)
        if run_id is None:
            log.warning("no MLflow run of %s in %s: the %s is not recorded there", bundle.version, tracking_uri(), kind)
            return None
        log_values(c, run_id, metrics=metrics)
        c.log_artifacts(run_id, str(out), kind)
        return run_id
    except Exception as exc:  # noqa: BLE001
        log.warning("could not record the %s of %s in MLflow (%s): %s", kind, bundle.version, tracking_uri(), exc)
        return None


def git_commit(where: Path | None = None) -> str | None:
    """The commit checked out in the working directory, when it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _training_tags(info: dict[str, Any]) -> dict[str, str]:
    tags = {"model_tag": info["tag"], "fingerprint": info.get("fingerprint"), "train_from": info["train_from"],
            "valid_from": info["valid_from"], "train_until": info["train_until"], "engine": info["engine"],
            "objective": info["objective"]}
    if commit := git_commit():
        tags["mlflow.source.git.commit"] = commit
    return {k: str(v) for k, v in tags.items() if v is not None}


def _record_trial(c: MlflowClient, experiment: str, parent: str, trial: dict[str, Any]) -> None:
    run = c.create_run(experiment, start_time=trial["start_ms"], run_name=f"trial {trial['number']}",
                       tags={"mlflow.parentRunId": parent, "optuna.state": trial["state"]})
    log_values(c, run.info.run_id, params=trial["params"], metrics={"valid.ndcg_at_3": trial["value"]}
               if trial["value"] is not None else None)
    c.set_terminated(run.info.run_id, "FINISHED", end_time=trial["end_ms"])


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 6000 else text[:5997] + "..."
