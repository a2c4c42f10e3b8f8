"""Optuna tuning runs within its budget and its best parameters land in the bundle."""

from __future__ import annotations

from pathlib import Path

import pytest

from offer_ranker.model import tracking
from offer_ranker.model.train import train
from tests.conftest import CFG


def test_tuning_keeps_the_best_parameters_in_the_bundle(sim: Path) -> None:
    # short trials (60 rounds at most): the search and its records are under test, not the model
    cfg = CFG.model_copy(update={"train": CFG.train.model_copy(update={"tune_trials": 4, "tune_seconds": 120,
                                                                        "rounds": 60})})
    result = train(sim / "features", cfg)
    bundle = result.bundle
    tuning = bundle.info["tuning"]
    assert 1 <= tuning["trials"] <= 4
    assert tuning["seconds"] <= 120 + 60  # the budget is checked between trials
    for name, value in tuning["best_params"].items():
        assert bundle.info["params"][name] == value
    assert 0 < tuning["best_valid_ndcg@3"] <= 1
    # each trial is a child run of the training run in MLflow, with its parameters and value
    c = tracking.client()
    parent = c.get_run(result.run_id)
    assert parent.data.params["tuned.num_leaves"] == str(tuning["best_params"]["num_leaves"])
    assert parent.data.metrics["tuned.best_valid_ndcg_at_3"] == pytest.approx(tuning["best_valid_ndcg@3"])
    children = c.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{result.run_id}'")
    assert len(children) == tuning["trials"]
    assert max(r.data.metrics["valid.ndcg_at_3"] for r in children) == pytest.approx(tuning["best_valid_ndcg@3"])
    assert all({"learning_rate", "num_leaves"} <= set(r.data.params) for r in children)
