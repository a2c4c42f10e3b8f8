"""`offer-ranker train --engine xgboost-spark`: XGBoost trained on a local Spark session gives the
bundle one-machine XGBoost gives (same format, served unchanged), with early stopping, the
calibrated click model and the conversion model as on one machine."""

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from offer_ranker.config import Config
from offer_ranker.model import store
from offer_ranker.model.train import TrainResult, train
from tests.conftest import CFG


def _cfg(engine: str) -> Config:
    return CFG.model_copy(update={"train": CFG.train.model_copy(update={"engine": engine})})


@pytest.fixture(scope="module")
def both(spark, sim: Path) -> dict[str, TrainResult]:
    return {engine: train(sim / "features", _cfg(engine)) for engine in ("xgboost", "xgboost-spark")}


def test_the_bundle_is_an_xgboost_bundle_that_loads_and_scores(both: dict[str, TrainResult], sim: Path) -> None:
    result = both["xgboost-spark"]
    assert result.bundle.info["engine"] == "xgboost" and result.bundle.info["trained_with"] == "xgboost-spark"
    loaded = store.load(result.tag)
    X = result.bundle.spec.matrix(pl.read_parquet(sim / "features" / "train.parquet").head(500))
    assert np.allclose(loaded.score(X), result.bundle.score(X))


def test_early_stopping_calibration_and_conversions_as_on_one_machine(both: dict[str, TrainResult]) -> None:
    one, spark = both["xgboost"].bundle, both["xgboost-spark"].bundle
    rounds = CFG.train.rounds
    for booster in (spark.ranker, spark.ctr):
        assert 1 <= booster.best_iteration < rounds  # stopped early, cut at the best round
        assert len(booster.history) < rounds
    assert (spark.conversion is None) == (one.conversion is None)
    knots = np.asarray(spark.calibration.y)
    assert np.all(np.diff(knots) >= 0) and 0 <= knots[0] and knots[-1] <= 1
    # the same algorithm on the same rows: validation quality close to one machine's
    for metric, tolerance in (("valid_auc", 0.02), ("valid_ndcg@3", 0.03), ("valid_ece", 0.01)):
        assert abs(spark.info["metrics"][metric] - one.info["metrics"][metric]) < tolerance, metric


def test_a_clear_error_where_spark_training_differs(spark, sim: Path) -> None:
    from offer_ranker.model.distributed import DistributedError

    cfg = _cfg("xgboost-spark").model_copy(update={"train": _cfg("xgboost-spark").train.model_copy(
        update={"objective": "revenue"})})
    with pytest.raises(DistributedError, match="per-request weights"):
        train(sim / "features", cfg, save=False)
