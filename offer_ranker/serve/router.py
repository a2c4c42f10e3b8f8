"""A/B tests in the service: each user is assigned to an arm by a salted hash, each arm serves
its own bundle.

``serve.arms`` maps arm names to a bundle and a share of users; with none configured there is
one arm, ``default``, serving ``serve.model``. Assignment is deterministic (the same user always
gets the same arm for a salt) and independent of everything else about the request, so the arms'
users are comparable; a new ``serve.arm_salt`` reshuffles them for the next experiment.

:class:`Router` has the :class:`~offer_ranker.serve.engine.Engine` interface the service and
``offer-ranker rank`` use: it ranks each request with its user's arm and routes ``/feedback`` to
the arm that served the request. Every arm writes to one shared prediction log, each line
tagged with its arm and share (``offer-ranker ab-report`` reads them). The arms share the online
stores (:class:`~offer_ranker.serve.stores.StorePool`): one per snapshot, so offer counts see the
traffic of every arm.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from itertools import accumulate

from offer_ranker.config import ServeConfig
from offer_ranker.serve.api import DEFAULT_ARM, Feedback, FeedbackResponse, RankRequest, RankResponse
from offer_ranker.serve.engine import Engine, RankResult
from offer_ranker.serve.prediction_log import PredictionLog
from offer_ranker.serve.stores import StorePool


def assignment_point(user_id: str, salt: str) -> float:
    """The user's point in [0, 1): the first 8 bytes of SHA-256 of ``salt:user_id``."""
    digest = hashlib.sha256(f"{salt}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(user_id: str, shares: dict[str, float], salt: str) -> str:
    """The arm of ``user_id``: arms in name order split [0, 1) by their shares (summing to 1)."""
    names = sorted(shares)
    bounds = list(accumulate(shares[name] for name in names))
    bounds[-1] = 1.0  # shares sum to 1 up to rounding: every point falls in an arm
    return names[bisect_right(bounds, assignment_point(user_id, salt))]


class Router:
    """One :class:`Engine` per arm, chosen per request by :func:`assign`."""

    def __init__(self, engines: dict[str, Engine], shares: dict[str, float], salt: str) -> None:
        if not engines or engines.keys() != shares.keys():
            raise ValueError("Router needs one engine and one share per arm")
        self.engines, self.shares, self.salt = engines, shares, salt
        self.names = sorted(engines)
        self.stores: StorePool | None = None

    @classmethod
    def load(cls, cfg: ServeConfig) -> Router:
        stores = StorePool(cfg)
        if not cfg.arms:
            router = cls({DEFAULT_ARM: Engine.load(cfg, stores=stores)}, {DEFAULT_ARM: 1.0}, cfg.arm_salt)
        else:
            log = PredictionLog(cfg.prediction_log)
            engines = {name: Engine.load(cfg.model_copy(update={"model": arm.model}), stores=stores, arm=name,
                                         arm_share=arm.share, log=log) for name, arm in cfg.arms.items()}
            router = cls(engines, {name: arm.share for name, arm in cfg.arms.items()}, cfg.arm_salt)
        router.stores = stores
        return router

    def arm(self, user_id: str) -> str:
        """The arm of ``user_id``."""
        return assign(user_id, self.shares, self.salt) if len(self.names) > 1 else self.names[0]

    def rank(self, request: RankRequest) -> RankResult:
        return self.engines[self.arm(request.user_id)].rank(request)

    def emergency(self, request: RankRequest, reason: str) -> RankResponse:
        return self.engines[self.arm(request.user_id)].emergency(request, reason)

    def feedback(self, fb: Feedback) -> FeedbackResponse:
        """To the arm that served the request (its own engine's store, or a shared one, knows)."""
        for engine in self.engines.values():
            served = engine.served(fb.request_id)
            if served is not None:
                return self.engines.get(served.arm, engine).feedback(fb)
        return self.engines[self.names[0]].feedback(fb)  # unknown everywhere: its 404

    @property
    def ready(self) -> bool:
        return all(engine.ready for engine in self.engines.values())

    @property
    def problems(self) -> list[str]:
        return [f"{name}: {p}" if len(self.engines) > 1 else p
                for name, engine in self.engines.items() for p in engine.problems]

    @property
    def notes(self) -> list[str]:
        return [f"{name}: {n}" if len(self.engines) > 1 else n
                for name, engine in self.engines.items() for n in engine.notes]

    @property
    def version(self) -> str:
        return ", ".join(f"{name}={e.version}" for name, e in self.engines.items()) if len(self.engines) > 1 \
            else next(iter(self.engines.values())).version

    @property
    def degraded(self) -> str | None:
        """Why some arm's online state cannot be read right now, or None."""
        return next((d for e in self.engines.values() if (d := e.degraded)), None)

    @property
    def shared(self) -> bool:
        """Whether every arm's online store is shared by other processes (then workers may be many)."""
        return all(e.store is not None and e.store.shared for e in self.engines.values())

    def close(self) -> None:
        for engine in self.engines.values():
            engine.close()
        if self.stores is not None:
            self.stores.close()
