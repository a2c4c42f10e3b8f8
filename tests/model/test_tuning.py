"""Optuna tuning runs within its budget and its best parameters land in the bundle."""

from __future__ import annotations

from pathlib import Path

from offer_ranker.model.train import train
from tests.conftest import CFG


def test_tuning_keeps_the_best_parameters_in_the_bundle(sim: Path) -> None:
    cfg = CFG.model_copy(update={"train": CFG.train.model_copy(update={"tune_trials": 4, "tune_seconds": 120})})
    bundle = train(sim / "features", cfg).bundle
    tuning = bundle.info["tuning"]
    assert 1 <= tuning["trials"] <= 4
    assert tuning["seconds"] <= 120 + 60  # the budget is checked between trials
    for name, value in tuning["best_params"].items():
        assert bundle.info["params"][name] == value
    assert 0 < tuning["best_valid_ndcg@3"] <= 1
