"""`offer-ranker train --engine xgboost-spark`: XGBoost trained on a local Spark session gives the
bundle one-machine XGBoost gives (same format, served unchanged), with early stopping, the
calibrated click model and the conversion model as on one machine. Spark reads the frame itself:
its matrix is the one the driver would build, and what it counts of the fitting slice is what
one machine counts."""

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


def test_spark_counts_the_fitting_slice_as_one_machine_does(both: dict[str, TrainResult]) -> None:
    one, spark = both["xgboost"].bundle.info, both["xgboost-spark"].bundle.info
    assert spark["rows"] == one["rows"] and spark["requests"] == one["requests"]
    assert spark["conversion_rate"] == pytest.approx(one["conversion_rate"], rel=1e-12)
    assert spark["mean_value"] == pytest.approx(one["mean_value"], rel=1e-9)
    assert spark["segment_lifts"].keys() == one["segment_lifts"].keys() and len(one["segment_lifts"]) > 1
    for key, lift in one["segment_lifts"].items():
        assert spark["segment_lifts"][key] == pytest.approx(lift, rel=1e-9), key


def test_spark_builds_the_matrix_the_driver_builds(spark, sim: Path) -> None:
    """Categorical codes from the manifest's levels, NaN for unseen levels and NULLs, as float32."""
    from offer_ranker.featurize.frame import FeatureSpec, read_frame, read_manifest
    from offer_ranker.model.distributed import spark_rows
    from offer_ranker.model.train import split_times

    features = sim / "features"
    manifest = read_manifest(features)
    spec = FeatureSpec.from_manifest(manifest)
    # the manifest without the most common device: a level the model has not seen
    unseen = spec.levels["ctx_device"][0]
    spec = FeatureSpec(spec.names, spec.levels | {"ctx_device": spec.levels["ctx_device"][1:]})
    _, valid_from, until = split_times(manifest, CFG)
    rows = spark_rows(spark, features, spec, valid_from, until, seed=0)
    valid = read_frame(features, start=valid_from, end=until)
    got = np.array([r.features for r in rows.rows.where("valid").select("features").collect()], dtype=np.float32)
    rows.release()
    want = spec.matrix(valid).astype(np.float32)  # (one small file: Spark keeps its row order)
    assert got.shape == want.shape and len(spec.levels) > 3
    device = np.isnan(want[:, spec.names.index("ctx_device")])
    assert device.any() and np.array_equal(device, (valid["ctx_device"] == unseen).to_numpy())
    assert np.array_equal(got, want, equal_nan=True)


@pytest.mark.parametrize("setting, match", [({"objective": "revenue"}, "per-request weights"),
                                            ({"position_bias": "lambdarank"}, "screen order"),
                                            ({"tune_trials": 2}, "runs on one machine")])
def test_a_clear_error_where_spark_training_differs(sim: Path, setting: dict, match: str) -> None:
    from offer_ranker.model.distributed import DistributedError

    cfg = _cfg("xgboost-spark")
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update=setting)})
    with pytest.raises(DistributedError, match=match):
        train(sim / "features", cfg, save=False)
