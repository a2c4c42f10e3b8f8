"""The model lifecycle: every training is an MLflow run; promotion moves an alias through a gate
that compares with the model there now on the same held-out window; rollback moves it back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from offer_ranker.cli import main
from offer_ranker.config import ServeConfig
from offer_ranker.evaluation.evaluate import evaluate
from offer_ranker.featurize.frame import read_manifest
from offer_ranker.model import registry, tracking
from offer_ranker.model.train import TrainResult, train
from offer_ranker.serve.router import Router
from tests.conftest import CFG


@pytest.fixture()
def own_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A tracking store and registry of the test's own (the session's runs stay where they are)."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture()
def tiny(sim: Path, trained: TrainResult, own_registry: str) -> TrainResult:
    """Trained on the first 36 hours of logs only: newer than ``trained``, clearly worse, and
    tracked in the test's own store (where the gate records its decision on it)."""
    first = datetime.fromisoformat(read_manifest(sim / "features")["first_ts"])
    cfg = CFG.model_copy(update={"train": CFG.train.model_copy(update={"train_until": first + timedelta(hours=36)})})
    return train(sim / "features", cfg)


def test_a_training_is_an_mlflow_run(trained: TrainResult, sim: Path) -> None:
    c = tracking.client()
    run = c.get_run(trained.run_id)
    info = trained.bundle.info
    assert run.info.status == "FINISHED"
    assert run.data.tags["model_tag"] == trained.tag
    assert run.data.tags["fingerprint"] == info["fingerprint"]
    assert (run.data.tags["train_from"], run.data.tags["train_until"]) == (info["train_from"], info["train_until"])
    params = run.data.params
    assert (params["engine"], params["objective"]) == ("lightgbm", "clicks")
    assert params["train.rounds"] == "300" and params["train.early_stopping"] == "20"  # every training setting
    assert float(params["booster.learning_rate"]) == info["params"]["learning_rate"]
    assert run.data.metrics["valid.ndcg_at_3"] == pytest.approx(info["metrics"]["valid_ndcg@3"])
    assert run.data.metrics["rows.fit"] == info["rows"]["fit"]
    assert [a.path for a in c.list_artifacts(trained.run_id, "features")] == ["features/manifest.json"]
    # found by the bundle's tag, as evaluate, explain and promote find it
    assert tracking.run_of(c, trained.bundle) == trained.run_id


def test_evaluate_adds_its_metrics_and_report_to_the_run(trained: TrainResult, sim: Path, tmp_path: Path) -> None:
    cfg = CFG.model_copy(update={"evaluate": CFG.evaluate.model_copy(update={"bootstrap": 200})})
    report = evaluate(trained.bundle, sim / "features", tmp_path / "evaluation", cfg)
    c = tracking.client()
    metrics = c.get_run(trained.run_id).data.metrics
    assert metrics["test.efficiency"] == pytest.approx(report["methods"]["model"]["efficiency"]["value"])
    assert metrics["test.efficiency.ci_low"] < metrics["test.efficiency"] < metrics["test.efficiency.ci_high"]
    popularity = report["verdict"]["baselines"]["popularity"]["difference"]["value"]
    assert metrics["test.vs_popularity"] == pytest.approx(popularity)
    assert {a.path for a in c.list_artifacts(trained.run_id, "evaluation")} == {
        "evaluation/metrics.json", "evaluation/report.html"}


def test_promote_gate_force_and_rollback(trained: TrainResult, tiny: TrainResult, own_registry: str) -> None:
    cli = CliRunner()

    def models(*args: str) -> tuple[int, str]:
        run = cli.invoke(main, ["models", *args])
        return run.exit_code, run.output

    code, out = models("promote", trained.tag)
    assert code == 0 and "the first model under 'production'" in out
    assert registry.alias_tag("production") == trained.tag
    # the clearly worse, newer model is refused, and the refusal is on its run with the comparison
    code, out = models("promote", tiny.tag)
    assert code == 1 and "significantly worse than" in out and "refused" in out, out
    assert registry.alias_tag("production") == trained.tag
    assert registry.resolve("production").tag == trained.tag != registry.resolve("latest").tag
    c = tracking.client()
    run = c.get_run(tiny.run_id)
    assert run.data.tags["gate.production.decision"] == "refused"
    gate = run.data.metrics
    assert gate["gate.ci_high"] < 0 < gate["gate.incumbent"] - gate["gate.candidate"]
    artifact = Path(c.download_artifacts(run.info.run_id, "gate/production/comparison.json"))
    comparison = json.loads(artifact.read_text())
    assert comparison["metric"] == "efficiency" and comparison["outcome"] == "worse"
    assert comparison["window"]["from"] == trained.bundle.info["train_until"]  # after both training windows
    # --force overrides; rollback goes back, once per promotion
    code, out = models("promote", tiny.tag, "--force")
    assert code == 0 and "promoted anyway" in out
    assert registry.alias_tag("production") == tiny.tag
    # the SQLite read the service uses agrees with MLflow's client
    assert c.get_model_version_by_alias("offer_ranker", "production").tags["bentoml_tag"] == tiny.tag
    code, out = models("rollback")
    assert code == 0 and registry.alias_tag("production") == trained.tag
    code, out = models("list")
    row = next(line for line in out.splitlines() if trained.tag in line)
    assert "production" in row and "production" not in next(line for line in out.splitlines() if tiny.tag in line)
    code, out = models("rollback")
    assert code == 1 and "no earlier version" in out
    # A/B arms name aliases: the first model under 'candidate' has nothing to compare with
    code, out = models("promote", tiny.tag, "--alias", "candidate")
    assert code == 0 and registry.alias_tag("candidate") == tiny.tag
    arms = {"control": {"model": "production", "share": 0.5}, "treatment": {"model": "candidate", "share": 0.5}}
    router = Router.load(ServeConfig(arms=arms, prediction_log=None, journal=None))
    try:
        assert {n: e.version for n, e in router.engines.items()} == {"control": trained.tag, "treatment": tiny.tag}
        assert router.ready and router.notes == []
    finally:
        router.close()


def test_references_resolve_to_tags(trained: TrainResult, own_registry: str) -> None:
    assert registry.resolve(trained.tag).tag == trained.tag
    assert registry.resolve(trained.tag.partition(":")[2]).tag == trained.tag  # a version
    newest = registry.resolve("production")  # nothing promoted in this registry: the newest, with a note
    assert newest.tag == registry.resolve("latest").tag and "no 'production' alias" in newest.note
    with pytest.raises(registry.RegistryError, match="neither an alias"):
        registry.resolve("candidate")
    assert not Path(own_registry.removeprefix("sqlite:///")).exists()  # reading never creates a store


def test_a_fresh_model_store_lists_nothing_and_serves_nothing(tmp_path: Path) -> None:
    """``models list`` and the service's resolution on a store nothing was trained into yet."""
    env = os.environ | {"BENTOML_HOME": str(tmp_path / "bentoml"), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db"}
    listed = subprocess.run([sys.executable, "-m", "offer_ranker", "models", "list"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert listed.returncode == 0 and "no bundles yet" in listed.stdout, listed.stderr
    resolved = subprocess.run([sys.executable, "-c", "from offer_ranker.model import registry; "
                               "registry.resolve('production')"], env=env, capture_output=True, text=True, timeout=120)
    assert resolved.returncode == 1 and "RegistryError: no bundles in the BentoML model store" in resolved.stderr
