"""The online store's interface: what the service asks of the online state, whatever holds it.

A store is opened over one snapshot (:mod:`offer_ranker.featurize.snapshot`). What does not
change while it serves — the offer catalogue, the priors of the day, the feature manifest — is
read from the snapshot into the process. What events change — the counts and times of every
offer, user and user×offer — and the requests served (so ``/feedback`` finds who was shown what)
live in the backend: :class:`~.memory.MemoryStore` (in the process, durable through a journal)
or :class:`~.redis.RedisStore` (shared by every replica and worker).

Users are keyed by a salted 64-bit hash of their id (:func:`user_key`): no backend holds a raw
user id, in memory, in Redis or on disk.
"""

from __future__ import annotations

import hmac
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import polars as pl

from offer_ranker.errors import OfferRankerError
from offer_ranker.features import IMPRESSION_PREFIX
from offer_ranker.featurize.snapshot import Manifest, Snapshot, epoch_us
from offer_ranker.featurize.vector import RequestState, feature_columns

EVENT_KINDS = ("impression", "click", "conversion")


class StoreUnavailable(OfferRankerError):
    """The backend cannot be reached (or is still loading its snapshot); the caller degrades."""


def user_key(user_id: str, salt: str = "") -> int:
    """The user's key in the online state: the first 64 bits of HMAC-SHA256 of the id, keyed by
    ``salt`` (``serve.hash_salt``); as 16 hex digits (:func:`user_tag`) it is the hashed id of the
    prediction log."""
    return int.from_bytes(user_digest(user_id, salt.encode()), "big", signed=True)


def user_digest(user_id: str, salt: bytes) -> bytes:
    """The 8 bytes of :func:`user_key`."""
    return hmac.digest(salt, user_id.encode(), "sha256")[:8]


def user_tag(key: int) -> str:
    """A user key as 16 hex digits (Redis keys, request ids and the prediction log carry it)."""
    return (key & (2**64 - 1)).to_bytes(8, "big").hex()


def hash_user(user_id: str, salt: str = "") -> str:
    """The user id as it appears in logs and keys: 16 hex digits of HMAC-SHA256 keyed by ``salt``
    (without a secret salt a guessable id can be recovered by hashing candidates: set
    ``serve.hash_salt``)."""
    return user_tag(user_key(user_id, salt))


@dataclass(frozen=True)
class Event:
    """Something that happened to one offer shown to one user, at ``ts`` (the event's own time:
    for a click its click time). ``position`` (1-based) is needed for impressions only."""

    kind: str
    user_id: str
    offer_id: str
    ts: datetime
    position: int | None = None


@dataclass(frozen=True)
class Served:
    """A request the service answered: whose it was, when, and the offers shown, in position order."""

    user: int  # user_key
    ts: datetime
    dated: bool  # the request gave its own ts (a replay): feedback defaults to just after it
    offers: tuple[str, ...]
    arm: str = ""


@dataclass(frozen=True)
class Feedback:
    """What :meth:`OnlineStore.record_feedback` did: whether the request and offer were found, the
    event's time and slot, and whether it was applied now (False for a repeat)."""

    found: bool
    shown: bool = False
    applied: bool = False
    ts: datetime | None = None
    position: int | None = None
    user: int = 0  # the user key of the request


def feedback_time(served: Served, given: datetime | None, now: datetime) -> datetime:
    """When a feedback event counts. Events count for requests strictly after them: never at or
    before their page, and (live traffic) never in the future, where the next request would not
    see it yet."""
    after_page = served.ts + timedelta(microseconds=1)
    if served.dated:
        return max(given or after_page, after_page)
    return max(min(given or now, now), after_page)


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class OnlineStore(ABC):
    """The online state over one snapshot. :meth:`feature_columns` per request, :meth:`record_page`
    per answered request, :meth:`record_feedback` per click or conversion, :meth:`apply` for
    events from elsewhere (replays, the closed-loop simulation)."""

    def __init__(self, snapshot: Snapshot, manifest: Manifest, *, salt: str = "") -> None:
        self.snapshot, self.manifest, self.salt = snapshot, manifest, salt
        self.t_ref, self.tau = snapshot.t_ref, snapshot.tau
        self.prior_day, self.as_of = snapshot.prior_day, snapshot.as_of
        self.names, self.dtypes, self.settings = list(manifest.names), manifest.dtypes, manifest.settings

    @classmethod
    def load(cls, path: Any, manifest: Any = None, *, url: str | None = None, **options: Any) -> OnlineStore:
        """Open the store for the snapshot at ``path`` (a features or snapshot folder): in memory, or
        in the Redis/Valkey at ``url`` (``redis://host:port/db``). See :func:`.open_store`."""
        from offer_ranker.featurize.online import open_store

        return open_store(path, manifest, url=url, **options)

    # ---- the backend --------------------------------------------------------------------------

    @abstractmethod
    def state(self, user_id: str, offer_ids: list[str], t: int, ts: datetime) -> RequestState:
        """The user's and the candidates' state at ``t`` µs: counts of the events before ``t``."""

    @abstractmethod
    def apply(self, event: Event) -> None:
        """Record an event from elsewhere (a replay, a simulation) as it happened at ``event.ts``."""

    def apply_many(self, events: Iterable[Event]) -> None:
        """:meth:`apply` for several events (a backend may send them together)."""
        for event in events:
            self.apply(event)

    @abstractmethod
    def record_page(self, request_id: str, user_id: str, served: Served, positions: Iterable[int]) -> None:
        """An answered request: its shown offers become impressions at ``served.ts`` and the
        request is kept for ``/feedback``."""

    @abstractmethod
    def record_feedback(self, request_id: str, offer_id: str, event: str, given: datetime | None) -> Feedback:
        """A click or conversion on an offer a request showed, applied once however often it is sent."""

    @abstractmethod
    def served(self, request_id: str) -> Served | None:
        """The request ``request_id``, if this store still knows it."""

    @property
    def shared(self) -> bool:
        """Whether other processes share this state (then the service may run several workers)."""
        return False

    @property
    def ready(self) -> bool:
        """Whether the state is loaded (a shared store loads it in the background)."""
        return True

    def status(self) -> str | None:
        """Why the store cannot serve state right now (None: it can)."""
        return None

    def close(self) -> None:
        """Release connections and files."""

    def new_request_id(self, user: int) -> str:
        """A request id that names the user's key, so any replica finds the request's state."""
        return f"{user_tag(user)}-{uuid.uuid4().hex[:16]}"

    # ---- features -----------------------------------------------------------------------------

    def user_key(self, user_id: str) -> int:
        return user_key(str(user_id), self.salt)

    def feature_columns(self, request: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The features of one request, as ``train.parquet`` holds them for the same request.

        ``request``: ``user_id``, ``ts`` (naive UTC datetime), ``context`` (``device``,
        ``country``, ``surface``, optional), ``candidates`` (list of ``{"offer_id", "features":
        {pass-through columns such as price}}``). Returns ``{name: array (n_candidates,)}`` in
        manifest order: numeric float64 (NaN for NULL), categorical object arrays of str / None.
        Raises :class:`StoreUnavailable` when the backend cannot be reached.
        """
        ts = request["ts"]
        if ts.tzinfo is not None:
            ts = ts.astimezone(timezone.utc).replace(tzinfo=None)
        candidates = list(request["candidates"])
        state = self.state(str(request["user_id"]), [str(c["offer_id"]) for c in candidates], epoch_us(ts), ts)
        return feature_columns(state, self.snapshot, self.manifest, request.get("context") or {}, candidates)

    def cold_columns(self, request: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The features of a request from the snapshot's catalogue alone, as for a new user and new
        offers: what can be known when the backend cannot be reached."""
        ts = request["ts"]
        candidates = list(request["candidates"])
        state = self.empty_state([str(c["offer_id"]) for c in candidates], epoch_us(ts), ts)
        return feature_columns(state, self.snapshot, self.manifest, request.get("context") or {}, candidates)

    def features(self, request: Mapping[str, Any]) -> pl.DataFrame:
        """One row per candidate, one column per manifest feature, in manifest order: numeric as
        Float64 (null where the SQL gives NULL), categorical as Utf8. See :meth:`feature_columns`."""
        cols = self.feature_columns(request)
        return pl.DataFrame([pl.Series(n, cols[n], dtype=pl.Float64, nan_to_null=True) if self.dtypes[n] == "numeric"
                             else pl.Series(n, cols[n].tolist(), dtype=pl.Utf8) for n in self.names])

    def empty_state(self, offer_ids: list[str], t: int, ts: datetime) -> RequestState:
        """A new user and offers without events: the candidates' catalogue rows, every count 0."""
        snap = self.snapshot
        n = len(offer_ids)
        return RequestState(t, ts, snap.offer_index(offer_ids), np.zeros((n, 6)), (0.0, 0.0, 0.0, 0.0),
                            *snap.no_times(), {}, np.zeros((0, n), dtype=bool), np.zeros(0, dtype=np.int64),
                            np.zeros(0, dtype=np.int64), np.zeros((3, 0)), np.zeros(0, dtype=np.int64))

    # ---- what the snapshot tells ----------------------------------------------------------------

    def unknown_offers(self, offer_ids: list[str]) -> int:
        """How many of ``offer_ids`` the snapshot does not know (scored from priors)."""
        return int((self.snapshot.offer_index(offer_ids) == len(self.snapshot.offer_ids)).sum())

    def offer_prior(self, category: str | None) -> tuple[float, float, float, float]:
        """(ctr_mean, ctr_strength, cvr_mean, cvr_strength) of a category; global if it has none."""
        priors = self.snapshot.offer_priors
        return priors.get(category or "", priors[""])

    @property
    def user_prior(self) -> tuple[float, float]:
        return self.snapshot.user_prior

    @property
    def numeric_request_columns(self) -> list[str]:
        """Raw names of the numeric pass-through columns a request carries (per candidate or in
        the context), e.g. ``price`` for the feature ``imp_x_price``."""
        return [name.removeprefix(IMPRESSION_PREFIX) for name, entity in self.manifest.passthrough
                if entity not in ("offer", "user") and self.dtypes[name] == "numeric"]

    @property
    def global_prior(self) -> tuple[float, float]:
        """(ctr_mean, ctr_strength) of all offers: the empirical-Bayes prior of an unknown category."""
        return self.snapshot.offer_priors[""][:2]

    def position_ctr(self, position: int) -> float:
        """Click rate of a slot (1-based) in the logs; a slot never logged gets the global prior."""
        return self.snapshot.position_ctr.get(int(position), self.snapshot.new_position_ctr)

    def partner_category_totals(self) -> dict[tuple[str, str | None], tuple[float, float]]:
        """(impressions, clicks) of each partner's offers per category, in the snapshot."""
        snap = self.snapshot
        imp, clk = snap.offer_state[:-1, 0], snap.offer_state[:-1, 1]
        totals: dict[tuple[str, str | None], list[float]] = {}
        for p, c, i, k in zip(snap.offer_partner[:-1].tolist(), snap.offer_category[:-1].tolist(), imp.tolist(),
                              clk.tolist()):
            if p >= 0:
                t = totals.setdefault((snap.partner_names[p], snap.category_names[c]), [0.0, 0.0])
                t[0] += i
                t[1] += k
        return {key: (t[0], t[1]) for key, t in totals.items()}
