"""The ranking engine behind ``POST /rank`` and ``POST /feedback``: one code path for the BentoML
service, ``offer-ranker rank`` and the latency baseline.

Per request: online features from the snapshot (+ the events seen since) → the model's
calibrated ``p_click`` at the top slot → eligibility → blend with the cold-start prior, weighted
by the offer's evidence → (optional exploration) → MMR with the partner cap → the top ``k``.
The shown offers are recorded as impressions, so the next request sees them; ``/feedback`` adds
clicks and conversions. Every ranking is written to the prediction log with the user id hashed.

Failures never escape: if the snapshot could not be loaded, the features fail or the model
fails, the candidates are ranked by their priors and ``fallback`` says why; the reason is
counted (:attr:`Engine.fallbacks`) and logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections import Counter, OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from offer_ranker.model import bundle as bundles
from offer_ranker.policy import rerank
from offer_ranker.serve.api import (Feedback, FeedbackResponse, RankedOffer, RankRequest, RankResponse, Reason,
                              RequestError, check_limits)
from offer_ranker.config import ServeConfig
from offer_ranker.featurize.frame import with_position
from offer_ranker.featurize.online import Event, OnlineStore
from offer_ranker.policy.priors import ColdStartPrior
from offer_ranker.model.baselines import offer_hash

log = logging.getLogger("offer_ranker.serve.engine")
#: numeric offer attributes that enter the MMR similarity, when the manifest has them
SIMILARITY_NUMERIC = ("offer_payout",)
#: request context written to the prediction log (first-party segment keys only; anything else a
#: client sends in ``context`` could identify the user)
LOGGED_CONTEXT = ("device", "country", "surface")
#: requests dated further than this from the snapshot's reference time are refused: the decayed
#: counts (exp((t - t_ref) / tau)) would overflow
MAX_TAUS_FROM_REFERENCE = 600


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def hash_user(user_id: str, salt: str = "") -> str:
    """The user id as it appears in logs: 16 hex digits of HMAC-SHA256 keyed by ``salt`` (without a
    secret salt a guessable id can be recovered by hashing candidates: set ``serve.hash_salt``)."""
    return hmac.new(salt.encode(), user_id.encode(), hashlib.sha256).hexdigest()[:16]


@dataclass
class Timings:
    features: float = 0.0
    model: float = 0.0
    total: float = 0.0


@dataclass
class RankResult:
    response: RankResponse
    timings: Timings
    candidates: int
    explored: bool = False


class _Shown(NamedTuple):
    """A served request, kept for ``/feedback``: atomic values only, so the garbage collector stops
    tracking it (100k remembered requests must not slow full collections down)."""

    user_id: str
    ts: datetime
    dated: bool  # the request gave its own ts (a replay): feedback defaults to just after it
    offers: tuple[str, ...]  # in position order
    applied: tuple[str, ...] = ()  # "offer_id event" pairs already recorded: a retried feedback counts once


class PredictionLog:
    """Append-only JSON lines, one per ranking or feedback; flushed per line (a crash loses nothing)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.failures = 0
        self._file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives with the engine

    def write(self, record: dict[str, Any]) -> None:
        """Append one record; a failed write (disk full, …) is counted and logged, never raised:
        the ranking has been served and the store updated already."""
        if self._file is None:
            return
        try:
            self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        except (OSError, ValueError, TypeError):
            self.failures += 1
            log.exception("prediction log write failed (%d so far)", self.failures)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class Engine:
    """A loaded bundle and snapshot, ready to rank. ``Engine.load(cfg)`` never raises for a
    broken snapshot or model: it keeps the error in :attr:`problems` and serves the fallback."""

    def __init__(self, cfg: ServeConfig, bundle: bundles.Bundle | None, store: OnlineStore | None,
                 problems: list[str] | None = None, *, arm: str = "default", arm_share: float = 1.0,
                 log: PredictionLog | None = None) -> None:
        self.cfg, self.bundle, self.store = cfg, bundle, store
        self.arm, self.arm_share = arm, arm_share
        self.problems = list(problems or [])
        self.version = bundle.version if bundle is not None else "none"
        segments = (bundle.info.get("segment_lifts") or {}) if bundle is not None else {}
        self.prior = ColdStartPrior.from_store(store, segments) if store is not None else None
        self.fallbacks: Counter[str] = Counter()
        self.log = log if log is not None else PredictionLog(cfg.prediction_log)
        self._rng = np.random.default_rng(cfg.seed)
        self._lock = threading.Lock()  # the online store is not thread-safe
        self._shown: OrderedDict[str, _Shown] = OrderedDict()
        self._numeric = [n for n in SIMILARITY_NUMERIC if bundle is not None and n in bundle.spec.names]

    @classmethod
    def load(cls, cfg: ServeConfig, **arm: Any) -> Engine:
        """The bundle ``cfg.model`` and its snapshot (or ``cfg.snapshot``); ``arm``: ``arm``,
        ``arm_share`` and a shared ``log`` when it serves one arm of an A/B test."""
        problems: list[str] = []
        bundle = store = None
        try:
            bundle = bundles.load(cfg.model)
        except Exception as exc:  # noqa: BLE001 - reported by /readyz and every fallback
            problems.append(f"model {cfg.model}: {exc}")
        snapshot = cfg.snapshot or (bundle.snapshot if bundle is not None else None)
        if snapshot is None:
            problems.append("no online snapshot: the bundle has none and serve.snapshot is not set")
        else:
            try:
                manifest = bundle.manifest if bundle is not None else None
                store = OnlineStore.load(snapshot, manifest)
            except Exception as exc:  # noqa: BLE001
                problems.append(f"snapshot {snapshot}: {type(exc).__name__}: {exc}")
        for problem in problems:
            log.error("not ready: %s", problem)
        return cls(cfg, bundle, store, problems, **arm)

    @property
    def ready(self) -> bool:
        return self.bundle is not None and self.store is not None and not self.problems

    # ---- /rank --------------------------------------------------------------------------------

    def rank(self, request: RankRequest) -> RankResult:
        started = time.perf_counter()
        check_limits(request, self.cfg.max_candidates)
        ts = request.ts or utcnow()  # naive UTC (RankRequest converts aware times)
        if request.ts is not None:
            self._check_time(request.ts)
        self._check_passthrough(request)
        ids = [c.offer_id for c in request.candidates]
        timings = Timings()
        with self._lock:
            cols, reason = self._features(request, ids, ts, timings)
            raw = p_top = multiplier = X = None
            if cols is not None:
                t0 = time.perf_counter()
                try:
                    X = self.bundle.spec.row_matrix(cols)
                    raw, p_top, multiplier = self._predict(X)
                except Exception as exc:  # noqa: BLE001 - a model failure must not fail the request
                    reason = f"model_failed: {type(exc).__name__}"
                    log.exception("model failed; ranking by priors")
                timings.model = time.perf_counter() - t0
            offers, explored = self._choose(request, ids, cols, raw, p_top, multiplier, X)
            request_id = uuid.uuid4().hex
            self._remember(request_id, request.user_id, ts, request.ts is not None, offers)
        if reason:
            self.fallbacks[reason.split(":")[0]] += 1
        response = RankResponse(request_id=request_id, model_version=self.version, arm=self.arm, offers=offers,
                                fallback=reason)
        timings.total = time.perf_counter() - started
        self._log_rank(request, ts, response, explored, timings.total, **self._state(ids, cols, offers))
        return RankResult(response, timings, len(ids), explored)

    def _state(self, ids: list[str], cols: dict[str, np.ndarray] | None, offers: list[RankedOffer]) -> dict[str, Any]:
        """What monitoring reads besides the ranking: was the user new, how many candidates the
        snapshot did not know, and (``serve.log_features``) the model inputs of the shown offers."""
        state: dict[str, Any] = {
            "new_user": bool(cols["user_is_new"][0] == 1.0) if cols is not None and "user_is_new" in cols else None,
            "unknown_offers": self.store.unknown_offers(ids) if self.store is not None else len(ids)}
        if self.cfg.log_features and cols is not None and self.bundle is not None:
            state["features"] = _shown_features(cols, self.bundle.spec.names, [ids.index(o.offer_id) for o in offers])
        return state

    def _log_rank(self, request: RankRequest, ts: datetime, response: RankResponse, explored: bool,
                  seconds: float, **state: Any) -> None:
        offers = response.offers
        self.log.write({"kind": "rank", "ts": ts.isoformat(), "request_id": response.request_id,
                        "user": hash_user(request.user_id, self.cfg.hash_salt), "model_version": self.version,
                        "arm": self.arm, "arm_share": self.arm_share,
                        "context": {k: request.context[k] for k in LOGGED_CONTEXT if k in request.context},
                        "candidates": len(request.candidates),
                        "offers": [o.offer_id for o in offers], "positions": [o.position for o in offers],
                        "scores": [o.score for o in offers], "p_click": [o.p_click for o in offers],
                        "propensities": [o.propensity for o in offers], "explored": explored,
                        "fallback": response.fallback, "latency_ms": round(seconds * 1e3, 3)} | state)

    def _check_time(self, ts: datetime) -> None:
        if self.store is None:
            return
        reference = datetime.fromtimestamp(self.store.t_ref, timezone.utc).replace(tzinfo=None)
        reach = timedelta(seconds=MAX_TAUS_FROM_REFERENCE * self.store.tau)
        if not reference - reach <= ts <= reference + reach:
            raise RequestError("ts", f"{ts.isoformat()} is too far from the snapshot's reference time "
                               f"{reference.isoformat()}: at most {reach.days} days either side")

    def _check_passthrough(self, request: RankRequest) -> None:
        """A numeric pass-through column must get a number (a client error, not a model failure)."""
        if self.store is None:
            return
        for name in self.store.numeric_request_columns:
            for i, c in enumerate(request.candidates):
                value = c.features.get(name, request.context.get(name))
                if isinstance(value, str):
                    where = f"candidates.{i}.features.{name}" if name in c.features else f"context.{name}"
                    raise RequestError(where, f"must be a number (the model reads {name} as numeric), got {value!r}")

    def emergency(self, request: RankRequest, reason: str) -> RankResponse:
        """The last resort when ranking itself failed unexpectedly: the first ``k`` candidates in
        a stable hashed order, touching no state."""
        self.fallbacks[reason] += 1
        ids = [c.offer_id for c in request.candidates]
        order = np.argsort(offer_hash(ids), kind="stable")[:request.k]
        response = RankResponse(request_id=uuid.uuid4().hex, model_version=self.version, arm=self.arm,
                                fallback=reason, offers=[
            RankedOffer(offer_id=ids[i], position=j + 1, score=0.0, p_click=0.0, propensity=1.0)
            for j, i in enumerate(order)])
        self._log_rank(request, request.ts or utcnow(), response, False, 0.0)
        return response

    def _features(self, request: RankRequest, ids: list[str], ts: datetime,
                  timings: Timings) -> tuple[dict[str, np.ndarray] | None, str | None]:
        if self.bundle is None:
            return None, "no_model"
        if self.store is None:
            return None, "no_snapshot"
        t0 = time.perf_counter()
        try:
            cols = self.store.feature_columns({
                "user_id": request.user_id, "ts": ts, "context": request.context,
                "candidates": [{"offer_id": c.offer_id, "features": c.features} for c in request.candidates]})
            return cols, None
        except Exception as exc:  # noqa: BLE001
            log.exception("features failed; ranking by priors")
            return None, f"features_failed: {type(exc).__name__}"
        finally:
            timings.features = time.perf_counter() - t0

    def _predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The click model's raw score at slot 1, its calibrated p_click, and what a click is
        worth under the bundle's objective."""
        raw = self.bundle.ctr.predict(with_position(X, 1.0))
        if not np.isfinite(raw).all():
            raise ValueError("the click model returned non-finite scores")
        return raw, np.clip(self.bundle.calibration(raw), 0.0, 1.0), self.bundle.value_per_click(X)

    def _choose(self, request: RankRequest, ids: list[str], cols: dict[str, np.ndarray] | None,
                raw: np.ndarray | None, p_top: np.ndarray | None, multiplier: np.ndarray | None,
                X: np.ndarray | None) -> tuple[list[RankedOffer], bool]:
        n = len(ids)
        nan = np.full(n, np.nan)
        col = (lambda name: cols.get(name, nan)) if cols is not None else (lambda name: nan)
        categories = list(col("offer_category")) if cols is not None and "offer_category" in cols else [None] * n
        partners = list(col("offer_partner")) if cols is not None and "offer_partner" in cols else [None] * n
        impressions, clicks = col("offer_impressions"), col("offer_clicks")
        if self.prior is not None:
            new_user = cols is None or "user_is_new" not in cols or bool(cols["user_is_new"][0] == 1.0)
            prior = self.prior.top_slot(categories, partners, new_user,
                                        request.context.get("country"), request.context.get("device"))
            strength = self.prior.strength
        else:
            prior, strength = np.full(n, 0.02), 50.0
        p = prior if p_top is None else rerank.blend(p_top, prior, impressions, self.cfg.prior_impressions)
        mult = multiplier if multiplier is not None else np.ones(n)
        relevance = np.where(rerank.eligible(col("offer_age_hours"), col("offer_hours_to_expiry"),
                                             col("uo_conversions")), p * mult, -np.inf)
        # candidates best first, so MMR's ties go the same way: ties of the (calibrated, hence
        # stepwise) relevance by the model's raw score, then by a stable hash of the id
        tiebreak = -raw if raw is not None else np.zeros(n)
        order = np.lexsort((offer_hash(ids), tiebreak, -np.nan_to_num(relevance, neginf=-1e300)))
        cat_codes = _codes([categories[i] for i in order])
        partner_codes = _codes([partners[i] for i in order])
        numeric = np.column_stack([col(name)[order] for name in self._numeric]) if self._numeric else np.zeros((n, 0))
        sim = rerank.similarity(cat_codes, partner_codes, numeric, self.cfg.similarity_weights)
        policy = rerank.Policy(k=request.k, lam=self.cfg.mmr_lambda, cap=self.cfg.partner_cap,
                               explore_rate=self.cfg.explore_rate, explore_below=self.cfg.explore_below,
                               draws=self.cfg.explore_draws, exploration=self.cfg.exploration)
        picked, propensity, explored = rerank.choose(
            policy, relevance[order], sim, partner_codes, multiplier=mult[order],
            impressions=impressions[order], clicks=clicks[order], prior=prior[order],
            prior_strength=strength, rng=self._rng, slot_lift=self.prior.slot_lift if self.prior else 1.0)
        shown = order[picked]
        positions = np.arange(1, len(shown) + 1)
        p_at = self._p_click_at(X, shown, positions, p_top is not None, prior, impressions)
        reasons = self._reasons(X, cols, shown, positions) if request.explain and X is not None and p_top is not None else None
        offers = [RankedOffer(offer_id=ids[i], position=int(pos), score=float(p[i] * mult[i]),
                              p_click=float(p_at[j]), propensity=float(propensity[j]),
                              reasons=reasons[j] if reasons is not None else None)
                  for j, (i, pos) in enumerate(zip(shown, positions))]
        return offers, explored

    def _p_click_at(self, X: np.ndarray | None, shown: np.ndarray, positions: np.ndarray, model_ok: bool,
                    prior: np.ndarray, impressions: np.ndarray) -> np.ndarray:
        """Blended p_click of the shown offers in their slots."""
        lift = self.prior.position_lift(positions) if self.prior is not None else np.ones(len(shown))
        prior_at = prior[shown] * lift
        if not model_ok or X is None or not len(shown):
            return prior_at
        model_at = self.bundle.p_click(X[shown], positions.astype(np.float64))
        return rerank.blend(model_at, prior_at, impressions[shown], self.cfg.prior_impressions)

    def _reasons(self, X: np.ndarray, cols: dict[str, np.ndarray], shown: np.ndarray,
                 positions: np.ndarray, top: int = 3) -> list[list[Reason]]:
        """The features that raised (or lowered) each shown offer's click score most (SHAP values
        of the click model; the slot itself is left out)."""
        contrib = self.bundle.ctr.contributions(with_position(X[shown], positions.astype(np.float64)))
        names = self.bundle.spec.names
        out = []
        for row, i in zip(contrib, shown):
            values = row[:len(names)]
            best = np.argsort(-np.abs(values))[:top]
            out.append([Reason(feature=names[j], value=_plain(cols[names[j]][i]), contribution=round(float(values[j]), 6))
                        for j in best])
        return out

    def _remember(self, request_id: str, user_id: str, ts: datetime, dated: bool, offers: list[RankedOffer]) -> None:
        """Record the shown offers as impressions and keep the request for ``/feedback``."""
        if self.store is not None:
            for o in offers:
                self.store.apply(Event("impression", user_id, o.offer_id, ts, o.position))
        self._shown[request_id] = _Shown(user_id, ts, dated, tuple(o.offer_id for o in offers))
        while len(self._shown) > self.cfg.remember_requests:
            self._shown.popitem(last=False)

    # ---- /feedback ----------------------------------------------------------------------------

    def served(self, request_id: str) -> bool:
        """Whether this engine ranked ``request_id`` (among the requests it remembers)."""
        with self._lock:
            return request_id in self._shown

    def feedback(self, fb: Feedback) -> FeedbackResponse:
        with self._lock:
            shown = self._shown.get(fb.request_id)
        if shown is None:
            raise RequestError("request_id", f"{fb.request_id!r} is unknown or too old "
                               f"(the last {self.cfg.remember_requests} requests are kept)", status=404)
        if fb.offer_id not in shown.offers:
            raise RequestError("offer_id", f"{fb.offer_id!r} was not shown in request {fb.request_id}", status=404)
        key = f"{fb.offer_id} {fb.event}"
        # events count for requests strictly after them: never date one at or before its page, and
        # (live traffic) never in the future, where the next request would not see it yet
        after_page = shown.ts + timedelta(microseconds=1)
        if shown.dated:
            ts = max(fb.ts or after_page, after_page)
        else:
            now = utcnow()
            ts = max(min(fb.ts or now, now), after_page)
        applied = False
        with self._lock:
            if self.store is not None and key not in shown.applied:
                self.store.apply(Event(fb.event, shown.user_id, fb.offer_id, ts))
                self._shown[fb.request_id] = shown._replace(applied=(*shown.applied, key))
                applied = True
        self.log.write({"kind": "feedback", "ts": ts.isoformat(), "request_id": fb.request_id,
                        "user": hash_user(shown.user_id, self.cfg.hash_salt), "arm": self.arm, "offer": fb.offer_id,
                        "position": shown.offers.index(fb.offer_id) + 1, "event": fb.event, "value": fb.value,
                        "applied": applied})
        return FeedbackResponse(request_id=fb.request_id, offer_id=fb.offer_id, event=fb.event, applied=applied)

    def close(self) -> None:
        self.log.close()


def _codes(values: list[Any]) -> np.ndarray:
    """Integer codes of a list of names, -1 for None (unknown)."""
    index: dict[Any, int] = {}
    return np.array([-1 if v is None else index.setdefault(v, len(index)) for v in values], dtype=np.int64)


def _shown_features(cols: dict[str, np.ndarray], names: tuple[str, ...], rows: list[int]) -> dict[str, list]:
    """The model inputs of the shown rows, JSON-ready: numeric rounded to 6 decimals (NaN -> None),
    categorical as str / None. One matrix for all numeric columns: a few numpy calls per request
    instead of a few per feature."""
    numeric = [n for n in names if cols[n].dtype != object]
    out: dict[str, list] = {}
    if numeric:
        block = np.round(np.column_stack([cols[n] for n in numeric])[rows].astype(np.float64), 6)
        for name, values in zip(numeric, block.T.tolist()):
            out[name] = [None if v != v else v for v in values]
    for name in names:
        if name not in out:
            column = cols[name]
            out[name] = [None if column[i] is None else str(column[i]) for i in rows]
    return {name: out[name] for name in names}


def _plain(value: Any) -> float | str | None:
    if value is None:
        return None
    if isinstance(value, (float, np.floating)):
        return None if np.isnan(value) else round(float(value), 6)
    return str(value)
