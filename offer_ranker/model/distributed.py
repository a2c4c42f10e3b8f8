"""XGBoost on Spark (``train --engine xgboost-spark``): the ranker and the classifiers fitted by
``xgboost.spark``'s estimators across the workers of the active Spark session.

The result is an ordinary XGBoost booster, so the bundle is the one ``--engine xgboost`` saves
and serves unchanged. What differs from one machine (docs/spark.md):

* the rows are split between ``num_workers`` workers (whole requests stay on one worker: the
  ranker's groups are never cut), and each worker builds its histograms from its own rows, which
  XGBoost then merges (the same algorithm; the trees are not bit-for-bit those of one machine);
* early stopping watches the same validation rows (marked by a column, not a second matrix);
* the revenue objective's per-request weights are not supported by ``SparkXGBRanker``.

The inputs go to Spark as one Parquet file (features as an array column): on a cluster the
driver should read the training frame from shared storage instead; here, in local mode, the
frame already is in the driver.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from offer_ranker.errors import OfferRankerError


class DistributedError(OfferRankerError):
    """Distributed training cannot run as configured; the message says why."""


def fit(train: Any, valid: Any, params: dict[str, Any], kind: str, categorical: list[int], rounds: int,
        early_stopping: int, label: tuple[np.ndarray, np.ndarray], seed: int) -> tuple[Any, list[float]]:
    """Fit on the active Spark session: (the XGBoost booster, its ``best_iteration`` set by early
    stopping, and the validation metric per round). ``train``/``valid`` are :class:`~.engines.RankData`; ``label``
    their labels as XGBoost takes them (gains for the ranker); ``params`` XGBoost's."""
    from pyspark.sql import SparkSession
    from xgboost.spark import SparkXGBClassifier, SparkXGBRanker

    spark = SparkSession.getActiveSession()
    if spark is None:
        raise DistributedError("train --engine xgboost-spark needs a Spark session (offer_ranker.model.train "
                               "starts one from the [spark] settings)")
    ranking = kind == "ranker"
    if ranking and train.weight is not None:
        raise DistributedError("train --engine xgboost-spark: the revenue objective's per-request weights are not "
                               "supported by xgboost.spark's ranker; use --engine lightgbm or xgboost")
    workers = max(1, spark.sparkContext.defaultParallelism)
    estimator = SparkXGBRanker if ranking else SparkXGBClassifier
    # the estimators set their objective themselves (the ranker's is rank:ndcg, the classifier's
    # binary:logistic, as on one machine) and the threads per worker (spark.task.cpus)
    booster_params = {k: v for k, v in params.items() if k not in ("objective", "nthread")}
    with tempfile.TemporaryDirectory(prefix="offer-ranker-xgb-spark-") as tmp:
        path = _write_inputs(Path(tmp) / "inputs.parquet", train, valid, label, ranking, seed)
        frame = spark.read.parquet(str(path))
        model = estimator(
            features_col="features", label_col="label", validation_indicator_col="valid",
            weight_col=None if ranking or train.weight is None else "weight",
            **({"qid_col": "qid"} if ranking else {}),
            num_workers=workers, force_repartition=True, repartition_random_shuffle=not ranking,
            n_estimators=rounds, early_stopping_rounds=early_stopping,
            feature_types=["c" if i in categorical else "q" for i in range(train.X.shape[1])],
            **booster_params,
        ).fit(frame)
    return model.get_booster(), next(iter(model.training_summary.validation_objective_history.values()), [])


def _write_inputs(path: Path, train: Any, valid: Any, label: tuple[np.ndarray, np.ndarray], ranking: bool,
                  seed: int) -> Path:
    """One Parquet file: features (array of float32), label, valid, qid (ranker), weight.

    Request ids are shuffled (seeded) so that splitting the requests by range between workers
    gives each worker fitting and validation requests alike; each request's rows stay contiguous.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    X = np.vstack([train.X, valid.X]).astype(np.float32)
    columns = {
        "features": pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), X.shape[1]).cast(pa.list_(pa.float32())),
        "label": pa.array(np.concatenate(label).astype(np.float64)),
        "valid": pa.array(np.repeat([False, True], [len(train.X), len(valid.X)])),
    }
    if ranking:
        groups = np.concatenate([train.groups, valid.groups]).astype(np.int64)
        order = np.random.default_rng(seed).permutation(len(groups))
        columns["qid"] = pa.array(np.repeat(order, groups))
    elif train.weight is not None:
        columns["weight"] = pa.array(np.concatenate([train.weight, valid.weight]).astype(np.float64))
    pq.write_table(pa.table(columns), path)
    return path
