"""One strict configuration model, filled from an optional TOML file and CLI flags.

Every section forbids unknown keys, and every error quotes the offending value::

    simulate.users: Input should be greater than or equal to 10, got 3

Precedence: defaults < config file < command-line flags.
"""

from __future__ import annotations

import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from offer_ranker.errors import OfferRankerError


class ConfigError(OfferRankerError, ValueError):
    """A configuration value is invalid; the message names the field and quotes the value."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class SimulateConfig(_Strict):
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


class IngestConfig(_Strict):
    """Raw-log ingestion (see ``offer_ranker.data.ingest`` and ``sql/ingest/``)."""

    csv_nulls: tuple[str, ...] = Field(
        ("", "NULL", "NA"), description="CSV tokens read as NULL"
    )
    compression: str = Field(
        "snappy", pattern="^(zstd|snappy|uncompressed)$",
        description="Parquet compression of the ingest outputs: zstd, snappy or uncompressed",
    )


class FeaturesConfig(_Strict):
    """Point-in-time features (see ``offer_ranker.featurize.build`` and ``sql/features/``)."""

    text_columns: tuple[str, ...] = Field(
        ("title", "description"), description="offer columns that hold free text: never passed through as "
        "categories (each value is nearly unique)")
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


class TrainConfig(_Strict):
    """Model training (see ``offer_ranker.model.train``)."""

    engine: Literal["lightgbm", "xgboost"] = Field("lightgbm", description="gradient-boosting library")
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


class EvaluateConfig(_Strict):
    """Offline evaluation (see ``offer_ranker.evaluation.evaluate``)."""

    k: int = Field(3, ge=1, le=10, description="slots at the top that count (the offers page shows 1-3)")
    bootstrap: int = Field(200, ge=10, le=10_000, description="bootstrap resamples (by request) for the CIs")
    new_offer_impressions: int = Field(
        100, ge=1, description="offers with fewer earlier impressions than this count as new")
    seed: int = Field(0, ge=0, description="random seed of the bootstrap resamples")


class ExplainConfig(_Strict):
    """The SHAP report (``offer-ranker explain``)."""

    rows: int = Field(2000, ge=50, le=1_000_000, description="impressions (whole requests) explained")
    seconds: float = Field(
        60.0, gt=0, description="time budget of the SHAP computation, in seconds; rows beyond it are dropped")
    dependence: int = Field(4, ge=1, le=12, description="top drivers that get a dependence plot")
    examples: int = Field(3, ge=1, le=20, description="worked examples")
    seed: int = Field(0, ge=0, description="random seed of the sample of requests explained")


class ArmConfig(_Strict):
    """One arm of an A/B test: the bundle its users get, and its share of users."""

    model: str = Field(description="bundle of the arm: a registry alias ('production', 'candidate'), a BentoML tag "
                       "or version, or 'latest'")
    share: float = Field(gt=0.0, le=1.0, description="share of users assigned to the arm")


class ServeConfig(_Strict):
    """The ranking service (``bentoml serve``, ``offer-ranker rank``) and its re-ranking policy."""

    model: str = Field(
        "production", description="bundle to serve: an alias of the model registry ('production', 'candidate'; "
        "with no 'production' alias yet, the newest bundle), a BentoML tag or version, or 'latest' (the newest)")
    snapshot: Path | None = Field(
        None, description="online snapshot folder to serve instead of the one inside the bundle (a fresher one)")
    max_candidates: int = Field(100, ge=1, le=10_000, description="candidates a request may carry")
    max_body_bytes: int = Field(
        1_000_000, ge=1_024, description="largest request body accepted, in bytes (larger bodies get a 413)")
    mmr_lambda: float = Field(
        0.9, ge=0.0, le=1.0, description="MMR trade-off: 1 = relevance order, 0 = most diverse")
    similarity_weights: tuple[float, float, float] = Field(
        (0.5, 0.3, 0.2), description="weights of same category, same partner and numeric closeness in similarity")
    partner_cap: int = Field(1, ge=0, le=10, description="offers per partner in the top k (0 = no cap)")
    prior_impressions: float = Field(
        10.0, gt=0, description="offer impressions at which the model and the cold-start prior weigh equally")
    explore_rate: float = Field(
        0.0, ge=0.0, le=1.0, description="share of requests that explore (see exploration)")
    exploration: Literal["thompson", "epsilon"] = Field(
        "thompson", description="how an exploring request orders: thompson samples the click rates of new offers "
        "from their Beta posteriors (propensities estimated by Monte Carlo); epsilon shows a uniformly random order "
        "of the eligible offers (exact propensities, what off-policy evaluation wants)")
    explore_below: int = Field(100, ge=1, description="offers with fewer impressions than this are explored (thompson)")
    explore_draws: int = Field(
        500, ge=10, le=100_000, description="Monte Carlo draws that estimate the propensities of an explored list")
    seed: int | None = Field(None, ge=0, description="seed of the exploration draws (None: fresh entropy)")
    prediction_log: Path | None = Field(
        Path("runs/serve/predictions.jsonl"), description="JSON-lines log of every ranking (None: off)")
    hash_salt: str = Field(
        "", description="secret salt of the user-id hash (HMAC-SHA256) written to logs; set it in production")
    remember_requests: int = Field(
        100_000, ge=1, description="recent requests the memory store keeps so /feedback can find the user and position")
    online_store: str = Field(
        "memory", description="where the online state lives: 'memory' (in the process: one worker, durable through "
        "serve.journal) or a Redis/Valkey URL, redis://host:port/db (shared by every replica and worker)")
    journal: Path | None = Field(
        Path("runs/serve/online-journal.jsonl"), description="the memory store's journal of events, replayed on "
        "restart (None: events since the snapshot are lost with the process)")
    user_ttl_days: float = Field(30.0, gt=0, le=3650, description="Redis: a user's state expires this long after "
                                 "their last event")
    request_ttl_hours: float = Field(48.0, gt=0, le=24 * 365, description="Redis: how long a served request takes "
                                     "/feedback")
    store_timeout_ms: float = Field(250.0, gt=0, le=60_000, description="Redis: socket timeout of one command; an "
                                    "outage degrades requests to what the snapshot knows")
    workers: int | None = Field(None, ge=1, le=256, description="worker processes of the service; default: one "
                                "per core with a shared (Redis) store, one with the memory store")
    log_features: bool = Field(
        True, description="write the model inputs of the shown offers to the prediction log (for offer-ranker monitor)")
    arms: dict[str, ArmConfig] = Field(
        default_factory=dict, description="A/B test: arm name -> model and share of users; empty: serve.model to everyone")
    arm_salt: str = Field(
        "experiment-1", min_length=1, description="salt of the user -> arm hash; a new salt reshuffles the users")
    latency_fixes: bool = Field(
        True, description="cancel BentoML's per-request timers and freeze the loaded objects out of the garbage "
                          "collector (see offer_ranker/serve/asgi.py); off only to measure what they change")

    @field_validator("online_store")
    @classmethod
    def _store(cls, value: str) -> str:
        schemes = ("redis://", "rediss://", "unix://", "valkey://", "redis+cluster://", "rediss+cluster://")
        if value != "memory" and not value.startswith(schemes):
            raise ValueError("'memory' or a redis://host:port/db URL (rediss://, unix://; redis+cluster://host:port "
                             "for Redis Cluster)")
        return value.replace("valkey://", "redis://", 1)

    def worker_count(self, cores: int) -> int:
        """Worker processes: ``workers`` if set with a shared store, else one per core; always one
        with the memory store, whose state lives in one process."""
        return 1 if self.online_store == "memory" else self.workers or max(cores, 1)

    @field_validator("arms")
    @classmethod
    def _arms(cls, value: dict[str, ArmConfig]) -> dict[str, ArmConfig]:
        total = sum(arm.share for arm in value.values())
        if value and abs(total - 1.0) > 1e-9:
            raise ValueError(f"arm shares must sum to 1, got {total:g}")
        return value

    @field_validator("similarity_weights")
    @classmethod
    def _weights(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(value) < 0 or not 0.999 <= sum(value) <= 1.001:
            raise ValueError("three non-negative weights summing to 1")
        return value


class ABConfig(_Strict):
    """The A/B test report (``offer-ranker ab-report``, see ``offer_ranker.production.abtest``)."""

    control: str | None = Field(
        None, description="the arm the others are compared with; default: 'control' if present, else the first "
        "arm in name order")
    session_gap_minutes: float = Field(
        30.0, gt=0, le=24 * 60, description="a user's rank requests at most this many minutes apart are one session")
    unit: Literal["session", "user"] = Field(
        "user", description="unit of the variance estimates: user (the randomisation unit: each user's sessions "
        "summed first), or session (sessions treated as independent, which understates the variance when users "
        "have several sessions)")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="two-sided significance level; CIs are 1 - alpha")
    power: float = Field(0.8, gt=0, lt=1, description="power of the minimum detectable effect and the sample size")
    target_lift: float = Field(
        0.05, gt=0, le=10, description="relative lift the required sample size is computed for (0.05 = +5%)")
    srm_alpha: float = Field(
        0.001, gt=0, lt=1, description="sample-ratio mismatch is flagged when the chi-square p-value is below this")


class SimulateOnlineConfig(_Strict):
    """The closed loop (``offer-ranker simulate-online``): the simulator as live traffic."""

    rounds: int = Field(4, ge=1, le=100, description="retraining rounds after the warm-up")
    days_per_round: int = Field(2, ge=1, le=60, description="days of traffic per round")
    warmup_days: int = Field(4, ge=1, le=60, description="days logged by the heuristic before the first model")
    k: int = Field(3, ge=1, le=10, description="slots on top that the engine fills")
    explore_rate: float = Field(0.1, gt=0.0, le=1.0, description="exploring share of requests in the explore arm")
    exploration: Literal["thompson", "epsilon"] = Field("thompson", description="see serve.exploration")


class MonitorConfig(_Strict):
    """Checks of the prediction log against the bundle's training reference (``offer-ranker monitor``)."""

    psi_warn: float = Field(0.1, gt=0, description="PSI (of a model input or p_click) from which a drift check warns")
    psi_alert: float = Field(0.25, gt=0, description="PSI from which a drift check fails (the command exits with 1)")
    max_fallback_share: float = Field(0.01, ge=0, le=1, description="largest share of requests served by a fallback")
    max_p99_latency_ms: float = Field(
        50.0, gt=0, description="largest 99th percentile of the logged latency_ms, in milliseconds")
    max_unknown_offer_share: float = Field(
        0.05, ge=0, le=1, description="largest share of candidates the online snapshot does not know (it is stale)")
    min_requests: int = Field(
        500, ge=1, description="fewer monitored requests than this: drift checks warn at most (PSI of few is noise)")
    skip_features: tuple[str, ...] = Field(
        ("ctx_hour", "ctx_weekday"), description="features whose PSI is shown but not "
        "judged: calendar features follow the monitored time window (an hour of logs has one ctx_hour), not the users")
    all_versions: bool = Field(False, description="monitor the records of every model version, not only the bundle's")

    @field_validator("psi_alert")
    @classmethod
    def _above_warn(cls, value: float, info: Any) -> float:
        warn = info.data.get("psi_warn")
        if warn is not None and value < warn:
            raise ValueError(f"must be at least psi_warn ({warn})")
        return value


class TrackConfig(_Strict):
    """Experiment tracking in MLflow (see ``offer_ranker.model.tracking``). Where runs go is
    MLflow's own setting, ``MLFLOW_TRACKING_URI`` (default: ``sqlite:///mlflow.db`` in the working
    directory, artifacts in ``mlruns/`` next to it)."""

    enabled: bool = Field(
        True, description="record every `offer-ranker train` (and evaluate, explain) as an MLflow run")
    experiment: str = Field("offer-ranker", min_length=1, description="MLflow experiment of the training runs")


class Config(_Strict):
    simulate: SimulateConfig = SimulateConfig()
    ingest: IngestConfig = IngestConfig()
    features: FeaturesConfig = FeaturesConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    explain: ExplainConfig = ExplainConfig()
    serve: ServeConfig = ServeConfig()
    simulate_online: SimulateOnlineConfig = SimulateOnlineConfig()
    ab: ABConfig = ABConfig()
    monitor: MonitorConfig = MonitorConfig()
    track: TrackConfig = TrackConfig()


def load_config(path: Path | None = None, overrides: dict[str, dict[str, Any]] | None = None) -> Config:
    """Build the config from defaults, an optional TOML file and per-section overrides.

    ``overrides`` maps a section to the values given on the command line; ``None`` values
    (flags not given) are ignored so they never mask the file.
    """
    data: dict[str, dict[str, Any]] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    for section, values in (overrides or {}).items():
        given = {k: v for k, v in values.items() if v is not None}
        if given:
            data.setdefault(section, {}).update(given)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        where = f" in {path}" if path is not None else ""
        raise ConfigError(f"invalid configuration{where}:\n" + format_errors(exc)) from None


def format_errors(exc: ValidationError) -> str:
    """One line per error: ``section.field: message, got <value>``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"]) or "config"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown setting (check the spelling)"
        lines.append(f"  {loc}: {msg}, got {err['input']!r}")
    return "\n".join(lines)


def serve_config_from_env() -> ServeConfig:
    """The ``[serve]`` settings of the service: the TOML file named by ``OFFER_RANKER_CONFIG``, with
    ``OFFER_RANKER_MODEL`` (a tag), ``OFFER_RANKER_SNAPSHOT`` (a folder) and
    ``OFFER_RANKER_ONLINE_STORE`` (``memory`` or a redis:// URL) overriding it."""
    import os

    path = os.environ.get("OFFER_RANKER_CONFIG")
    overrides = {"model": os.environ.get("OFFER_RANKER_MODEL"), "snapshot": os.environ.get("OFFER_RANKER_SNAPSHOT"),
                 "online_store": os.environ.get("OFFER_RANKER_ONLINE_STORE")}
    return load_config(Path(path) if path else None, {"serve": overrides}).serve
