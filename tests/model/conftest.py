"""A small simulated marketplace, its features and a trained bundle, shared by the model tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from offer_ranker.build_features import build_features
from offer_ranker.config import Config
from offer_ranker.simulate import simulate
from offer_ranker.train import TrainResult, train

#: Small and quick: a few boosting rounds are enough for the behaviour the tests check.
CFG = Config.model_validate({"simulate": {"users": 3000, "seed": 3},
                             "train": {"rounds": 80, "early_stopping": 20}})


@pytest.fixture(scope="session")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    simulate(CFG.simulate, out / "raw")
    build_features(out / "raw", out / "features", CFG)
    return out


@pytest.fixture(scope="session")
def trained(sim: Path) -> TrainResult:
    return train(sim / "features", CFG)
