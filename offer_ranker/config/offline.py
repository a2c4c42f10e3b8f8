"""The offline stages' sections: simulate, ingest, features, train, evaluate, explain, track."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from offer_ranker.config.strict import Strict


class SimulateConfig(Strict):
    """The built-in marketplace simulator (see ``offer_ranker.simulator``)."""

    scenario: Literal["default", "short-lived"] = Field(
        "default", description="default: offers live 3-21 days and carry no text; short-lived: offers live 2-48 "
        "hours and arrive continuously, each with a title and a description, and users come in sessions of "
        "several requests with one intent each")
    users: int = Field(20_000, ge=10, le=50_000_000, description="distinct users over the period")
    offers: int = Field(400, ge=40, le=1_000_000, description="distinct offers over the period (short-lived "
                        "scenario: default 60 a day)")
    days: int = Field(14, ge=2, le=366, description="length of the logged period in days")
    seed: int = Field(0, ge=0, description="random seed; the same seed gives identical files")
    partners: int = Field(30, ge=20, le=40, description="partners (advertisers) the offers belong to, 20-40")
    categories: int = Field(12, ge=10, le=15, description="offer categories, 10-15")
    uniform_share: float = Field(
        0.1, ge=0.0, le=1.0, description="share of requests whose order is uniformly shuffled"
    )
    start: datetime = Field(datetime(2026, 1, 5), description="first day of the period (UTC)")

    @model_validator(mode="before")
    @classmethod
    def _scenario_offers(cls, data: Any) -> Any:
        """Short-lived offers turn over daily: the catalogue grows with the period."""
        if isinstance(data, dict) and data.get("scenario") == "short-lived" and data.get("offers") is None:
            days = data.get("days", 14)
            data = {**data, "offers": 60 * days if isinstance(days, int) and days > 0 else None}
        return data

    @field_validator("start")
    @classmethod
    def _naive_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is not None:
            raise ValueError(f"must be a naive UTC timestamp, got {value.isoformat()}")
        if value.time() != datetime.min.time():
            # the simulator lays out daily traffic and hour-of-day effects from midnight UTC
            raise ValueError(f"must be midnight (a date), got {value.isoformat()}")
        return value


class IngestConfig(Strict):
    """Raw-log ingestion (see ``offer_ranker.data.ingest`` and ``sql/ingest/``)."""

    csv_nulls: tuple[str, ...] = Field(
        ("", "NULL", "NA"), description="CSV tokens read as NULL"
    )
    compression: str = Field(
        "snappy", pattern="^(zstd|snappy|uncompressed)$",
        description="Parquet compression of the ingest outputs: zstd, snappy or uncompressed",
    )


class FeaturesConfig(Strict):
    """Point-in-time features (see ``offer_ranker.featurize.build`` and ``sql/features/``)."""

    text_columns: tuple[str, ...] = Field(("title", "description"), description="offer columns that hold free "
                                          "text: the content prior's input, never passed through as categories")
    content_neighbours: int = Field(10, ge=0, le=1000, description="offers nearest by text whose click rates make "
                                    "the content prior (offer_content_ctr; needs text columns); 0: none")
    decay_hours: float = Field(
        24.0, gt=0, le=24 * 90, description="time constant of the exponentially decayed 'recent' counts, in hours "
        "(at most 90 days)")
    min_evidence: int = Field(
        20, ge=1, description="impressions (or clicks, for conversion rates) an offer or user needs "
        "before it takes part in fitting the empirical-Bayes priors",
    )
    min_group: int = Field(5, ge=2, description="offers a category needs for a prior of its own")
    fallback_ctr: float = Field(0.02, gt=0, lt=1, description="prior click rate before any event is seen")
    fallback_cvr: float = Field(0.1, gt=0, lt=1, description="prior conversion rate before any click is seen")
    fallback_strength: float = Field(50.0, gt=0, description="prior weight (pseudo-impressions) before any event")
    max_categories: int = Field(
        1000, ge=2, description="most frequent levels kept per categorical feature; the rest share one level")
    memory_limit: str = Field(
        "6GB", pattern=r"^\d+(\.\d+)?\s*(MB|GB|MiB|GiB)$",
        description="DuckDB memory limit for the feature build, e.g. '6GB' (MB, GB, MiB, GiB); beyond it, "
        "DuckDB spills to disk",
    )


class SparkConfig(Strict):
    """Apache Spark, for ``offer-ranker features --engine spark`` and ``train --engine xgboost-spark``
    (see ``offer_ranker.featurize.spark``). A session that already exists (spark-submit, a Databricks
    job) or ``SPARK_REMOTE`` (Spark Connect) takes precedence over ``master``."""

    master: str = Field("local[2]", min_length=1, description="Spark master URL: local[N] runs on N cores here")
    driver_memory: str = Field("4g", pattern=r"^\d+[kmgt]$", description="memory of the driver JVM (local mode: "
                               "all of Spark), e.g. 4g")
    shuffle_partitions: int = Field(8, ge=1, le=100_000, description="partitions of every shuffle "
                                    "(spark.sql.shuffle.partitions); a few per core")
    conf: dict[str, str] = Field(default_factory=dict, description="further Spark settings, e.g. "
                                 "{\"spark.executor.memory\" = \"8g\"}; they override the ones above")
    frame: Literal["parts", "file"] = Field(
        "parts", description="how Spark writes the training frame: parts, a folder train.parquet/ of Parquet "
        "parts in row order, written by the executors in parallel (every reader of the frame takes it); "
        "file, the parts joined into one file on the driver, as DuckDB writes it (a serial write: fine to "
        "~100M rows, about 48 minutes at 1B)")


class TrainConfig(Strict):
    """Model training (see ``offer_ranker.model.train``)."""

    engine: Literal["lightgbm", "xgboost", "xgboost-spark"] = Field(
        "lightgbm", description="gradient-boosting library; xgboost-spark: XGBoost trained on Spark (the [spark] "
        "session), saved as an ordinary XGBoost bundle")
    objective: Literal["clicks", "conversions", "revenue"] = Field(
        "clicks", description="what the ranking maximises; revenue orders by p_click x p_convert x payout")
    position_bias: Literal["feature", "lambdarank", "none"] = Field(
        "feature", description="feature: position is an input, fixed to the top slot when ranking; "
        "lambdarank: LightGBM's position-aware LambdaRank (XGBoost: lambdarank_unbiased); none: ignored")
    train_until: datetime | None = Field(
        None, description="train on impressions before this time (naive UTC); default: split_share")
    split_share: float = Field(0.8, gt=0, lt=1, description="share of the logged time range used for training")
    valid_share: float = Field(
        0.1, gt=0, lt=0.5, description="last share of the training time range held out for early stopping "
        "and probability calibration")
    rounds: int = Field(1000, ge=1, le=100_000, description="maximum boosting rounds")
    early_stopping: int = Field(
        100, ge=1, description="boosting rounds without improvement of the validation metric (NDCG@3 for the "
        "ranker, log loss for the classifiers) before training stops")
    score_model: Literal["auto", "ranker", "click_model"] = Field(
        "click_model", description="which model orders the page for the clicks and conversions objectives: "
        "click_model (the calibrated click model at the top slot), ranker (LambdaRank), or auto (whichever has "
        "the higher NDCG@3 of logged clicks on the validation slice)")
    # Why these defaults (and the measurements behind them): docs/modeling.md, "Decisions and the
    # evidence". XGBoost gets the same settings under its own names (offer_ranker/model/engines.py).
    learning_rate: float = Field(0.05, gt=0, le=1, description="shrinkage per boosting round, in (0, 1]")
    num_leaves: int = Field(7, ge=2, le=4096, description="most leaves per tree (XGBoost: max_leaves)")
    min_data_in_leaf: int = Field(
        200, ge=1, description="fewest training rows in a leaf (XGBoost: min_child_weight, scaled to hessian sums)")
    max_bin: int = Field(63, ge=15, le=1023, description="histogram bins per numeric feature, 15-1023")
    feature_fraction: float = Field(0.8, gt=0, le=1, description="share of the features sampled for each tree")
    bagging_fraction: float = Field(0.8, gt=0, le=1, description="share of the rows sampled for each tree")
    lambda_l2: float = Field(1.0, ge=0, description="L2 penalty on leaf values")
    threads: int = Field(2, ge=1, le=256, description="threads used for training")
    seed: int = Field(0, ge=0, description="random seed of training (row and feature sampling, tuning)")
    tune_trials: int = Field(0, ge=0, description="Optuna trials for the ranker (0 = no tuning)")
    tune_seconds: float = Field(600.0, gt=0, description="time budget for tuning, in seconds")

    @field_validator("train_until")
    @classmethod
    def _naive(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            from datetime import timezone

            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value


class EvaluateConfig(Strict):
    """Offline evaluation (see ``offer_ranker.evaluation.evaluate``)."""

    k: int = Field(3, ge=1, le=10, description="slots at the top that count (the offers page shows 1-3)")
    bootstrap: int = Field(200, ge=10, le=10_000, description="bootstrap resamples (by request) for the CIs")
    new_offer_impressions: int = Field(
        100, ge=1, description="offers with fewer earlier impressions than this count as new")
    seed: int = Field(0, ge=0, description="random seed of the bootstrap resamples")


class ExplainConfig(Strict):
    """The SHAP report (``offer-ranker explain``)."""

    rows: int = Field(2000, ge=50, le=1_000_000, description="impressions (whole requests) explained")
    seconds: float = Field(
        60.0, gt=0, description="time budget of the SHAP computation, in seconds; rows beyond it are dropped")
    dependence: int = Field(4, ge=1, le=12, description="top drivers that get a dependence plot")
    examples: int = Field(3, ge=1, le=20, description="worked examples")
    seed: int = Field(0, ge=0, description="random seed of the sample of requests explained")


class TrackConfig(Strict):
    """Experiment tracking in MLflow (see ``offer_ranker.model.tracking``). Where runs go is
    MLflow's own setting, ``MLFLOW_TRACKING_URI`` (default: ``sqlite:///mlflow.db`` in the working
    directory, artifacts in ``mlruns/`` next to it)."""

    enabled: bool = Field(
        True, description="record every `offer-ranker train` (and evaluate, explain) as an MLflow run")
    experiment: str = Field("offer-ranker", min_length=1, description="MLflow experiment of the training runs")


