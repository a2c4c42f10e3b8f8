"""The ranking engine behind ``POST /rank`` and ``POST /feedback``: one code path for the BentoML
service, ``offer-ranker rank`` and the latency baseline.

Per request: the candidates are scored (:mod:`.scoring`: online features from the snapshot plus
the events seen since, the calibrated click model at the top slot), the policy chooses the page
(:mod:`offer_ranker.policy.page`: cold-start prior blend, eligibility, exploration, MMR with the
partner cap), the shown offers are recorded as impressions so the next request sees them, and the
ranking is written to the prediction log with the user id hashed. ``/feedback`` adds clicks and
conversions.

Failures never escape: if the snapshot could not be loaded, or the features or the model fail,
the candidates are ranked by their priors and ``fallback`` says why; the reason is counted
(:attr:`Engine.fallbacks`) and logged.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections import Counter, OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from offer_ranker.config import ServeConfig
from offer_ranker.featurize.online import OnlineStore, Served, StoreUnavailable
from offer_ranker.featurize.online.store import Feedback as StoreFeedback
from offer_ranker.featurize.online.store import feedback_time, user_key, user_tag, utcnow
from offer_ranker.model import registry
from offer_ranker.model import store as model_store
from offer_ranker.model.bundle import Bundle
from offer_ranker.policy.page import choose_page
from offer_ranker.policy.priors import ColdStartPrior
from offer_ranker.serve import scoring
from offer_ranker.serve.api import (
    DEFAULT_ARM,
    Feedback,
    FeedbackResponse,
    RankedOffer,
    RankRequest,
    RankResponse,
    RequestError,
    check_limits,
)
from offer_ranker.serve.prediction_log import LOGGED_CONTEXT, FeedbackRecord, PredictionLog, RankRecord, hash_user
from offer_ranker.serve.stores import StorePool
from offer_ranker.stats.metrics import offer_hash

log = logging.getLogger("offer_ranker.serve")
#: requests dated further than this from the snapshot's reference time are refused: the decayed
#: counts (exp((t - t_ref) / tau)) would overflow
MAX_TAUS_FROM_REFERENCE = 600
#: seconds a client waits before sending feedback again when the online store is unavailable
RETRY_AFTER = 1


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


class Engine:
    """A loaded bundle and its online store, ready to rank. ``Engine.load(cfg)`` never raises for a
    broken snapshot or model: it keeps the error in :attr:`problems` and serves the fallback."""

    def __init__(self, cfg: ServeConfig, bundle: Bundle | None, store: OnlineStore | None,
                 problems: list[str] | None = None, *, arm: str = DEFAULT_ARM, arm_share: float = 1.0,
                 log: PredictionLog | None = None) -> None:
        self.cfg, self.bundle, self.store = cfg, bundle, store
        self.arm, self.arm_share = arm, arm_share
        self.problems = list(problems or [])
        self.notes: list[str] = []  # what /readyz should say although all is well (e.g. no production alias)
        self.version = bundle.version if bundle is not None else "none"
        segments = (bundle.info.get("segment_lifts") or {}) if bundle is not None else {}
        self.prior = ColdStartPrior.from_store(store, segments) if store is not None else None
        self.fallbacks: Counter[str] = Counter()
        self.unrecorded = 0  # answered pages whose impressions the store could not take
        self.log = log if log is not None else PredictionLog(cfg.prediction_log)
        self._rng = np.random.default_rng(cfg.seed)
        # the memory store is not thread-safe; a shared store is (and serialising it would serialise I/O)
        self._lock = threading.Lock() if store is None or not store.shared else contextlib.nullcontext()
        self._unstored: OrderedDict[str, Served] = OrderedDict()  # requests ranked without a store

    @classmethod
    def load(cls, cfg: ServeConfig, *, stores: StorePool | None = None, **arm: Any) -> Engine:
        """The bundle ``cfg.model`` (an alias, a tag or ``latest``: :func:`~offer_ranker.model.registry.resolve`)
        and the online store of its snapshot (or ``cfg.snapshot``), opened through ``stores`` (shared
        by the arms of an A/B test); ``arm``: ``arm``, ``arm_share`` and a shared ``log`` when it
        serves one arm."""
        problems: list[str] = []
        notes: list[str] = []
        bundle = None
        try:
            resolved = registry.resolve(cfg.model)
            if resolved.note:
                log.warning("%s", resolved.note)
                notes.append(resolved.note)
            bundle = model_store.load(resolved.tag)
            log.info("model %s: %s (%s)", cfg.model, bundle.version, resolved.how)
        except Exception as exc:  # noqa: BLE001 - reported by /readyz and every fallback
            problems.append(f"model {cfg.model}: {exc}")
        engine = cls.serving(cfg, bundle, stores=stores, problems=problems, **arm)
        engine.notes = notes
        return engine

    @classmethod
    def serving(cls, cfg: ServeConfig, bundle: Bundle | None, *, stores: StorePool | None = None,
                problems: list[str] | None = None, **arm: Any) -> Engine:
        """An engine for ``bundle`` (None: it did not load, ``problems`` say why) and the online store
        of its snapshot (or ``cfg.snapshot``)."""
        problems = list(problems or [])
        store = None
        snapshot = cfg.snapshot or (bundle.snapshot if bundle is not None else None)
        if snapshot is None:
            problems.append("no online snapshot: the bundle has none and serve.snapshot is not set")
        else:
            try:
                store = (stores or StorePool(cfg)).open(snapshot, bundle.manifest if bundle is not None else None)
            except Exception as exc:  # noqa: BLE001
                problems.append(f"snapshot {snapshot}: {type(exc).__name__}: {exc}")
        for problem in problems:
            log.error("not ready: %s", problem)
        return cls(cfg, bundle, store, problems, **arm)

    @property
    def ready(self) -> bool:
        """The bundle and its online store are loaded (the store may still be unreachable: degraded)."""
        return self.bundle is not None and self.store is not None and not self.problems and self.store.ready

    @property
    def degraded(self) -> str | None:
        """Why the online state cannot be read right now (rankings fall back), or None."""
        return self.store.status() if self.store is not None else None

    # ---- /rank --------------------------------------------------------------------------------

    def rank(self, request: RankRequest) -> RankResult:
        started = time.perf_counter()
        check_limits(request, self.cfg.max_candidates)
        ts = request.ts or utcnow()  # naive UTC (RankRequest converts aware times)
        if request.ts is not None:
            self._check_time(request.ts)
        self._check_passthrough(request)
        ids = [c.offer_id for c in request.candidates]
        with self._lock:
            scored = scoring.score(self.bundle, self.store, {
                "user_id": request.user_id, "ts": ts, "context": request.context,
                "candidates": [{"offer_id": c.offer_id, "features": c.features} for c in request.candidates]})
            page = choose_page(ids, scored.features, k=request.k, context=request.context, cfg=self.cfg,
                               prior=self.prior, rng=self._rng, raw=scored.raw, p_top=scored.p_top,
                               value=scored.value, p_at=self._p_at(scored))
            reasons = (scoring.reasons(self.bundle, scored, page.shown)
                       if request.explain and scored.p_top is not None else None)
            offers = [RankedOffer(offer_id=ids[i], position=j + 1, score=float(page.score[i]),
                                  p_click=float(page.p_click[j]), propensity=float(page.propensity[j]),
                                  reasons=reasons[j] if reasons is not None else None)
                      for j, i in enumerate(page.shown)]
            request_id = self._remember(request.user_id, ts, request.ts is not None, offers)
        if scored.fallback:
            self.fallbacks[scored.fallback.split(":")[0]] += 1
        response = RankResponse(request_id=request_id, model_version=self.version, arm=self.arm, offers=offers,
                                fallback=scored.fallback)
        timings = Timings(scored.features_seconds, scored.model_seconds, time.perf_counter() - started)
        self._log_rank(request, ts, response, page.explored, timings.total, scored, page.shown)
        return RankResult(response, timings, len(ids), page.explored)

    def _p_at(self, scored: scoring.Scored) -> Any:
        """The model's calibrated p_click of some candidates in given slots."""
        if scored.X is None or self.bundle is None:
            return None
        return lambda rows, positions: self.bundle.p_click(scored.X[rows], positions.astype(np.float64))

    def _log_rank(self, request: RankRequest, ts: datetime, response: RankResponse, explored: bool, seconds: float,
                  scored: scoring.Scored | None = None, shown: np.ndarray | None = None) -> None:
        offers = response.offers
        ids = [c.offer_id for c in request.candidates]
        features = scored.features if scored is not None else {}
        unknown = None if scored is None else self.store.unknown_offers(ids) if self.store is not None else len(ids)
        record = RankRecord.model_construct(
            ts=ts, request_id=response.request_id, user=hash_user(request.user_id, self.cfg.hash_salt),
            model_version=self.version, arm=self.arm, arm_share=self.arm_share,
            context={k: request.context[k] for k in LOGGED_CONTEXT if k in request.context},
            candidates=len(ids), offers=[o.offer_id for o in offers], positions=[o.position for o in offers],
            scores=[o.score for o in offers], p_click=[o.p_click for o in offers],
            propensities=[o.propensity for o in offers], explored=explored, fallback=response.fallback,
            latency_ms=round(seconds * 1e3, 3),
            # what monitoring reads besides the ranking: was the user new, how many candidates the
            # snapshot did not know, and (serve.log_features) the model inputs of the shown offers
            new_user=bool(features["user_is_new"][0] == 1.0) if "user_is_new" in features else None,
            unknown_offers=unknown,
            features=(scoring.shown_features(features, self.bundle.spec.names, [int(i) for i in shown])
                      if self.cfg.log_features and features and self.bundle is not None else None))
        self.log.write(record)

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

    def _remember(self, user_id: str, ts: datetime, dated: bool, offers: list[RankedOffer]) -> str:
        """Record the shown offers as impressions and keep the request for ``/feedback``; returns
        the request id."""
        key = user_key(user_id, self.cfg.hash_salt)
        served = Served(key, ts, dated, tuple(o.offer_id for o in offers), self.arm)
        if self.store is None:  # nothing to count in; kept so its feedback is still logged
            request_id = uuid.uuid4().hex
            self._unstored[request_id] = served
            while len(self._unstored) > self.cfg.remember_requests:
                self._unstored.popitem(last=False)
            return request_id
        request_id = self.store.new_request_id(key)
        try:
            self.store.record_page(request_id, user_id, served, [o.position for o in offers])
        except StoreUnavailable:
            self.unrecorded += 1  # the ranking stands; the store misses this page's impressions
        return request_id

    # ---- /feedback ----------------------------------------------------------------------------

    def served(self, request_id: str) -> Served | None:
        """The request ``request_id`` if this engine's store knows it (any replica's, with Redis)."""
        if self.store is None:
            return self._unstored.get(request_id)
        try:
            with self._lock:
                return self.store.served(request_id)
        except StoreUnavailable as exc:
            raise RequestError("request_id", f"the event was not recorded: {exc}; send it again", status=503,
                               retry_after=RETRY_AFTER) from None

    def feedback(self, fb: Feedback) -> FeedbackResponse:
        try:
            with self._lock:
                result = (self.store.record_feedback(fb.request_id, fb.offer_id, fb.event, fb.ts)
                          if self.store is not None else self._unstored_feedback(fb))
        except StoreUnavailable as exc:
            raise RequestError("request_id", f"the event was not recorded: {exc}; send it again", status=503,
                               retry_after=RETRY_AFTER) from None
        if not result.found:
            raise RequestError("request_id", f"{fb.request_id!r} is unknown or too old "
                               f"(requests are kept {self._kept()})", status=404)
        if not result.shown:
            raise RequestError("offer_id", f"{fb.offer_id!r} was not shown in request {fb.request_id}", status=404)
        self.log.write(FeedbackRecord.model_construct(
            ts=result.ts, request_id=fb.request_id, user=user_tag(result.user),
            arm=self.arm, offer=fb.offer_id, position=result.position, event=fb.event, value=fb.value,
            applied=result.applied))
        return FeedbackResponse(request_id=fb.request_id, offer_id=fb.offer_id, event=fb.event,
                                applied=result.applied)

    def _unstored_feedback(self, fb: Feedback) -> StoreFeedback:
        """Feedback on a request ranked without a store: found, logged, never applied."""
        served = self._unstored.get(fb.request_id)
        if served is None or fb.offer_id not in served.offers:
            return StoreFeedback(found=served is not None)
        return StoreFeedback(True, True, False, feedback_time(served, fb.ts, utcnow()),
                             served.offers.index(fb.offer_id) + 1, served.user)

    def _kept(self) -> str:
        if self.store is not None and self.store.shared:
            return f"{self.cfg.request_ttl_hours:g} hours"
        return f"the last {self.cfg.remember_requests} requests"

    def close(self) -> None:
        self.log.close()
