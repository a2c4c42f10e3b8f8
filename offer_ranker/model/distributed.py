"""XGBoost on Spark (``train --engine xgboost-spark``): the bundle's three models fitted by
``xgboost.spark``'s estimators on the workers of the active Spark session, from rows that Spark
reads out of the training frame itself (one file, or Spark's folder of parts): the fitting slice
never comes to the driver.

The driver keeps what the steps after fitting need, as on one machine: the validation slice (the
click model's calibration, the score-model choice, the metrics, ``monitor``'s reference) and a
summary of the fitting slice that Spark counts (:class:`~.fit.SliceSummary`).

The boosters are ordinary XGBoost boosters, so the bundle is the one ``--engine xgboost`` saves
and serves unchanged. What differs from one machine (docs/spark.md):

* the rows are split between ``num_workers`` workers (whole requests stay on one worker: the
  ranker's groups are never cut), and each worker builds its histograms from its own rows, which
  XGBoost then merges (the same algorithm; the trees are not bit-for-bit those of one machine);
* early stopping watches the same validation rows (marked by a column, not a second matrix);
* the revenue objective's per-request weights and position-aware LambdaRank are not supported by
  ``SparkXGBRanker``, nor is tuning: clear errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from offer_ranker.config import Config
from offer_ranker.errors import OfferRankerError
from offer_ranker.featurize.frame import FRAME, FeatureSpec, frame_files
from offer_ranker.model.engines import XGB_OBJECTIVES, Booster, feature_types, xgb_booster, xgb_params
from offer_ranker.model.fit import GAINS, SliceSummary, conversion_params, enough_conversions
from offer_ranker.policy.priors import SEGMENT_COLUMNS, lifts_from_counts

#: a request key is a 63-bit hash of its id
_MAX_KEY = (1 << 63) - 1


class DistributedError(OfferRankerError):
    """Distributed training cannot run as configured; the message says why."""


@dataclass
class SparkRows:
    """The training window of the frame in Spark. ``rows``, what the estimators read (kept in the
    executors' memory and disk while training): ``features`` (array<float>: the spec's matrix, NaN
    where missing), ``position``, ``label`` (0 shown, 1 clicked, 2 converted), ``valid`` (the
    validation slice) and ``qid`` (a seeded hash of the request id: requests in a shuffled order, so
    that splitting them by range gives each worker fitting and validation requests alike).
    ``window``: the frame's own columns over the same rows, which the summary counts."""

    rows: Any
    window: Any
    width: int  # feature columns, without position
    categorical: list[int]

    def release(self) -> None:
        self.rows.unpersist()


def check(cfg: Config) -> None:
    """Refuse, before any work, what ``xgboost.spark`` cannot train."""
    t = cfg.train
    if t.objective == "revenue":
        raise DistributedError("train --engine xgboost-spark: the revenue objective's per-request weights are not "
                               "supported by xgboost.spark's ranker; use --engine lightgbm or xgboost")
    if t.position_bias == "lambdarank":
        raise DistributedError("train --engine xgboost-spark: position-aware LambdaRank needs each request's rows "
                               "in screen order, which Spark's sort by request does not keep; use "
                               "train.position_bias = \"feature\", or --engine lightgbm or xgboost")
    if t.tune_trials:
        raise DistributedError("tuning (train.tune_trials) runs on one machine: use --engine xgboost")


def spark_rows(spark: Any, features: Path, spec: FeatureSpec, valid_from: datetime, until: datetime,
               seed: int) -> SparkRows:
    """The rows before ``until`` of ``features``' training frame (a file or a folder of parts), read
    by Spark; ``rows`` is persisted: :meth:`SparkRows.release` it."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    frame_files(features)  # a clear error if there is no frame
    frame = spark.read.parquet(str(features / FRAME))
    ts = F.col("ts")
    window = frame.where(ts < _timestamp(until)).withColumn("valid", ts >= _timestamp(valid_from))
    rows = window.select(
        F.array(*(_feature(name, spec.levels.get(name)) for name in spec.names)).alias("features"),
        F.col("position").cast("float").alias("position"),
        F.col("label").cast("int").alias("label"),
        "valid",
        # non-negative: XGBoost checks the keys' order as unsigned integers
        F.xxhash64(F.col("request_id"), F.lit(seed)).bitwiseAND(F.lit(_MAX_KEY)).alias("qid"),
    ).persist(StorageLevel.MEMORY_AND_DISK)
    return SparkRows(rows, window, len(spec.names), spec.categorical)


def summary(s: SparkRows) -> SliceSummary:
    """The fitting slice's :class:`SliceSummary`, counted by Spark (from the columns it needs only)."""
    from pyspark.sql import functions as F

    fit = s.window.where(~F.col("valid"))
    clicked = F.col("label") >= 1
    row = fit.agg(F.count(F.lit(1)), F.count_distinct("request_id"), F.sum(clicked.cast("long")),
                  F.sum((F.col("label") == 2).cast("long")),
                  F.avg(F.when(clicked & (F.col("value") > 0), F.col("value")))).first()
    lifts: dict[str, float] = {}
    if set(SEGMENT_COLUMNS) <= set(s.window.columns):
        counts = fit.groupBy(*SEGMENT_COLUMNS).agg(F.sum(clicked.cast("long")).alias("clicks"),
                                                   F.count(F.lit(1)).alias("n"))
        lifts = lifts_from_counts(pl.from_arrow(counts.toArrow()))
    rows, requests, clicks, conversions, mean_value = row
    return SliceSummary(rows, requests, clicks or 0, conversions or 0, mean_value or 1.0, lifts)


def model_steps(s: SparkRows, fitting: SliceSummary, valid_conversions: int, cfg: Config,
                params: dict[str, Any]) -> dict[str, Callable[[], Booster | None]]:
    """The steps that fit the ranker, the click model and (with enough conversions in both slices)
    the conversion model on Spark, as :mod:`.fit` fits them on one machine."""
    from pyspark.sql import functions as F

    t = cfg.train
    label = F.col("label")
    with_position = F.concat("features", F.array("position")).alias("features")
    gains = F.array(*(F.lit(float(g)) for g in GAINS[t.objective]))
    position_feature = t.position_bias == "feature"
    return {
        "ranker": lambda: _fit(
            s.rows.select(with_position if position_feature else "features",
                          F.element_at(gains, label + 1).alias("label"), "valid", "qid"),
            "ranker", s.width + position_feature, s.categorical, params, cfg),
        "click model": lambda: _fit(
            s.rows.select(with_position, (label >= 1).cast("double").alias("label"), "valid"),
            "classifier", s.width + 1, s.categorical, params, cfg),
        "conversion model": lambda: _conversion_model(s, fitting, valid_conversions, params, cfg),
    }


def _conversion_model(s: SparkRows, fitting: SliceSummary, valid_conversions: int, params: dict[str, Any],
                      cfg: Config) -> Booster | None:
    from pyspark.sql import functions as F

    label = F.col("label")
    if not enough_conversions(fitting.conversions, valid_conversions):
        return None
    return _fit(s.rows.where(label >= 1).select("features", (label == 2).cast("double").alias("label"), "valid"),
                "classifier", s.width, s.categorical, conversion_params(params, fitting.clicks), cfg)


def _fit(rows: Any, kind: str, width: int, categorical: list[int], extra: dict[str, Any], cfg: Config) -> Booster:
    """One estimator fitted on ``rows`` (features, label, valid, and qid for the ranker)."""
    from xgboost.spark import SparkXGBClassifier, SparkXGBRanker

    ranking = kind == "ranker"
    # the estimators set the objective themselves (the same as one machine's) and the threads per
    # worker (spark.task.cpus)
    params = {k: v for k, v in xgb_params(XGB_OBJECTIVES[kind] | extra, kind, width).items()
              if k not in ("objective", "nthread")}
    estimator = SparkXGBRanker if ranking else SparkXGBClassifier
    model = estimator(
        features_col="features", label_col="label", validation_indicator_col="valid",
        **({"qid_col": "qid"} if ranking else {}),
        num_workers=max(1, rows.sparkSession.sparkContext.defaultParallelism),
        force_repartition=True, repartition_random_shuffle=not ranking,
        n_estimators=cfg.train.rounds, early_stopping_rounds=cfg.train.early_stopping,
        feature_types=feature_types(categorical, width),
        **params,
    ).fit(rows)
    curve = next(iter(model.training_summary.validation_objective_history.values()), [])
    return xgb_booster(model.get_booster(), curve, kind, categorical)


def _feature(name: str, levels: tuple[str, ...] | None) -> Any:
    """One column of the spec's matrix as a Spark float: a categorical's code in the manifest's
    levels (NaN for an unseen level or NULL, as :meth:`FeatureSpec.matrix` gives)."""
    from itertools import chain

    from pyspark.sql import functions as F

    column = F.col(f"`{name}`")
    if levels is None:
        value = column.cast("double")
    elif levels:
        codes = F.create_map(*chain.from_iterable((F.lit(level), F.lit(float(i))) for i, level in enumerate(levels)))
        value = F.try_element_at(codes, column.cast("string"))
    else:
        value = F.lit(None).cast("double")
    return F.coalesce(value, F.lit(float("nan"))).cast("float")


def _timestamp(t: datetime) -> Any:
    """``t`` (naive UTC, as the frame's ``ts``) as a Spark timestamp without time zone."""
    from pyspark.sql import functions as F

    return F.lit(t.isoformat(sep=" ")).cast("timestamp_ntz")
