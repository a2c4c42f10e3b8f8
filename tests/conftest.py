"""Test-wide settings and fixtures.

BentoML sends no telemetry and keeps its model store in a temp folder, and MLflow tracks in a temp
store: set here, at import time, because BentoML reads both when it is first imported. ``sim`` and
``trained`` are a small simulated marketplace, its features and a bundle trained on them, shared by
the model and service tests.
"""

import os
import tempfile

os.environ["BENTOML_DO_NOT_TRACK"] = "True"
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="offer-ranker-bentoml-")
# MLflow runs and the model registry: a store of the session's own, never the project's mlflow.db
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tempfile.mkdtemp(prefix='offer-ranker-mlflow-')}/mlflow.db"
os.environ.pop("MLFLOW_REGISTRY_URI", None)

from pathlib import Path  # noqa: E402 - after the environment BentoML reads

import pytest  # noqa: E402

from offer_ranker.config import Config  # noqa: E402
from offer_ranker.featurize.build import build_features  # noqa: E402
from offer_ranker.model.train import TrainResult, train  # noqa: E402
from offer_ranker.simulator import simulate  # noqa: E402

#: Small and quick: a small simulation, and early stopping after 20 rounds without improvement.
CFG = Config.model_validate({"simulate": {"users": 6000, "seed": 3},
                             "train": {"rounds": 300, "early_stopping": 20}})


@pytest.fixture(scope="session")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    simulate(CFG.simulate, out / "raw")
    build_features(out / "raw", out / "features", CFG)
    return out


@pytest.fixture(scope="session")
def trained(sim: Path) -> TrainResult:
    return train(sim / "features", CFG)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    """A real redis-server for the session (AOF on)."""
    from tests.redis_server import RedisServer, require_redis

    require_redis()
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server
