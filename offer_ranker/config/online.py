"""The online sections: serve (and its A/B arms), the A/B report, the closed loop, monitoring."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from offer_ranker.config.strict import Strict


class ArmConfig(Strict):
    """One arm of an A/B test: the bundle its users get, and its share of users."""

    model: str = Field(description="bundle of the arm: a registry alias ('production', 'candidate'), a BentoML tag "
                       "or version, or 'latest'")
    share: float = Field(gt=0.0, le=1.0, description="share of users assigned to the arm")


class ServeConfig(Strict):
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


class ABConfig(Strict):
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


class SimulateOnlineConfig(Strict):
    """The closed loop (``offer-ranker simulate-online``): the simulator as live traffic."""

    rounds: int = Field(4, ge=1, le=100, description="retraining rounds after the warm-up")
    days_per_round: int = Field(2, ge=1, le=60, description="days of traffic per round")
    warmup_days: int = Field(4, ge=1, le=60, description="days logged by the heuristic before the first model")
    k: int = Field(3, ge=1, le=10, description="slots on top that the engine fills")
    explore_rate: float = Field(0.1, gt=0.0, le=1.0, description="exploring share of requests in the explore arm")
    exploration: Literal["thompson", "epsilon"] = Field("thompson", description="see serve.exploration")


class MonitorConfig(Strict):
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
