"""`offer-ranker features --engine spark` gives what DuckDB gives: the same training frame (every
numeric feature within 1e-9, text equal), the same manifest and an equal snapshot, from the same
ingested logs, through the CLI. The short-lived scenario has every column of the default one and
offer text too, so the content prior (computed in Python between SQL steps) is compared as well."""

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from offer_ranker.cli import main
from offer_ranker.config import Config
from offer_ranker.data.ingest import ingest
from offer_ranker.featurize.build import build_features
from offer_ranker.featurize.frame import frame_files
from offer_ranker.model.train import train
from offer_ranker.simulator import simulate

CFG = Config.model_validate({"simulate": {"scenario": "short-lived", "users": 300, "days": 6, "seed": 3}})
KEYS = {"train.parquet": ["request_id", "offer_id"], "snapshot/offers.parquet": ["offer_id"],
        "snapshot/users.parquet": ["user_id"], "snapshot/user_category.parquet": ["user_id", "category"],
        "snapshot/user_partner.parquet": ["user_id", "partner"], "snapshot/user_offer.parquet": ["user_id", "offer_id"],
        "snapshot/priors.parquet": ["kind", "key"]}


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("parity")
    simulate(CFG.simulate, root / "raw")
    ingest(root / "raw", root / "ingested", CFG.ingest)
    build_features(root / "ingested", root / "duckdb", CFG)
    result = CliRunner().invoke(main, ["features", "--raw", str(root / "ingested"), "--out", str(root / "spark"),
                                       "--engine", "spark"])
    assert result.exit_code == 0, result.output
    assert "engine" in result.output and "spark" in result.output
    return root / "duckdb", root / "spark"


@pytest.mark.parametrize("name", list(KEYS))
def test_the_same_rows_and_values(built: tuple[Path, Path], name: str) -> None:
    duck, spark = (pl.read_parquet(d / name).sort(KEYS[name]) for d in built)
    assert duck.height > 0 and duck.height == spark.height
    assert duck.schema == spark.schema  # names, order and types
    for column in duck.columns:
        a, b = duck[column], spark[column]
        if a.dtype.is_float():
            assert np.array_equal(np.isnan(a.to_numpy()), np.isnan(b.to_numpy())), column
            assert np.allclose(a.to_numpy(), b.to_numpy(), rtol=1e-9, atol=1e-9, equal_nan=True), column
        else:
            assert a.equals(b), column


def test_the_frame_keeps_each_request_contiguous_in_time_order(built: tuple[Path, Path]) -> None:
    frame = pl.read_parquet(built[1] / "train.parquet", columns=["request_id", "ts"])
    assert frame["ts"].is_sorted()
    assert frame["request_id"].rle().len() == frame["request_id"].n_unique()


def test_spark_writes_the_frame_as_ordered_parts_that_train_a_model(built: tuple[Path, Path]) -> None:
    """No serial write on the driver: the executors' parts are the frame (in partition order: time
    ascending across parts), and both trainers read them: on this machine, and on Spark."""
    duck, spark = built
    parts = frame_files(spark)
    assert (spark / "train.parquet").is_dir() and len(parts) > 1
    assert frame_files(duck) == [duck / "train.parquet"]
    ends = [pl.read_parquet(p, columns=["ts"])["ts"] for p in parts]
    assert all(a.max() <= b.min() for a, b in zip(ends, ends[1:]))
    one, parts, on_spark = (train(d, Config.model_validate({"train": {"rounds": 20, "engine": engine}}),
                                  save=False).bundle.info
                            for d, engine in ((duck, "lightgbm"), (spark, "lightgbm"), (spark, "xgboost-spark")))
    for info in (parts, on_spark):
        assert info["rows"] == one["rows"] and info["requests"] == one["requests"]
    assert parts["fingerprint"] == on_spark["fingerprint"] != one["fingerprint"]  # the files differ, not the rows


def test_the_content_prior_is_there(built: tuple[Path, Path]) -> None:
    frame = pl.read_parquet(built[1] / "train.parquet", columns=["offer_content_ctr"])
    assert frame["offer_content_ctr"].drop_nulls().len() > 0


def test_the_same_manifest_and_snapshot_header(built: tuple[Path, Path]) -> None:
    duck, spark = built
    assert json.loads((duck / "manifest.json").read_text()) == json.loads((spark / "manifest.json").read_text())
    assert (json.loads((duck / "snapshot/snapshot.json").read_text())
            == json.loads((spark / "snapshot/snapshot.json").read_text()))
