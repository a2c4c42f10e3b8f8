"""The online feature store: a loaded snapshot plus the events recorded since, and the feature
vector of one request from them.

:class:`OnlineStore` keeps the events since the snapshot in small dict overlays (deltas of counts,
maxima of times) and gives a request the values ``train.parquet`` holds for the same request at
the same time (:mod:`.vector`). Events are dated as ``sql/features/events.sql`` dates them: a
request at ``t`` sees only events strictly before ``t``, whatever order events and requests arrive
in. The priors are those of the snapshot's ``prior_day``: offline, each day has its own, so the
store is meant to be rebuilt from a fresh snapshot every night.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import polars as pl

from offer_ranker.features import IMPRESSION_PREFIX
from offer_ranker.featurize import snapshot as snapshots
from offer_ranker.featurize.snapshot import NULL_TS, Manifest, Snapshot, SnapshotError, epoch_us
from offer_ranker.featurize.vector import RequestState, feature_columns

EVENT_KINDS = ("impression", "click", "conversion")

__all__ = ["EVENT_KINDS", "Event", "OnlineStore", "SnapshotError"]


@dataclass(frozen=True)
class Event:
    """Something that happened to one offer shown to one user, at ``ts`` (the event's own time:
    for a click its click time). ``position`` (1-based) is needed for impressions only."""

    kind: str
    user_id: str
    offer_id: str
    ts: datetime
    position: int | None = None


class OnlineStore:
    """The online feature state: ``OnlineStore.load(path)``, then :meth:`feature_columns` per request
    and :meth:`apply` per event. Not thread-safe: serialise the calls (one lock around apply and the
    features)."""

    def __init__(self, snapshot: Snapshot, manifest: Manifest) -> None:
        self.snapshot, self.manifest = snapshot, manifest
        self.t_ref, self.tau = snapshot.t_ref, snapshot.tau
        self.prior_day, self.as_of = snapshot.prior_day, snapshot.as_of
        self.names, self.dtypes, self.settings = list(manifest.names), manifest.dtypes, manifest.settings
        # overlays: events recorded after the snapshot, as deltas (counts) and maxima (times)
        self._offer_delta: dict[str, list[float]] = {}  # offer_id -> OFFER_STATE deltas
        self._user_delta: dict[str, list[float]] = {}  # user_id -> USER_COUNTS deltas + [last_visit, last_click]
        self._uo_delta: dict[str, dict[str, list[float]]] = {}  # user_id -> offer_id -> [imp, clk, conv, last_seen]
        # recorded events not yet counted, a heap of (t µs, sequence, user, offer, kind, expected):
        # a request at t sees only events strictly before t, as the offline features do
        self._pending: list[tuple[int, int, str, str, tuple[int, int, int], float]] = []
        self._sequence = 0

    @classmethod
    def load(cls, path: Path | str, manifest: Mapping[str, Any] | Path | str | None = None) -> OnlineStore:
        """Load ``path``: a features folder (``manifest.json`` + ``snapshot/``) or a snapshot folder
        (then ``manifest`` is the manifest, its path, or found in the parent folder)."""
        folder, found = snapshots.find(path, manifest)
        m = Manifest.of(found)
        return cls(Snapshot(folder, m), m)

    # ---- lookups ------------------------------------------------------------------------------

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

    # ---- features -----------------------------------------------------------------------------

    def features(self, request: Mapping[str, Any]) -> pl.DataFrame:
        """One row per candidate, one column per manifest feature, in manifest order: numeric as
        Float64 (null where the SQL gives NULL), categorical as Utf8. See :meth:`feature_columns`."""
        cols = self.feature_columns(request)
        return pl.DataFrame([pl.Series(n, cols[n], dtype=pl.Float64, nan_to_null=True) if self.dtypes[n] == "numeric"
                             else pl.Series(n, cols[n].tolist(), dtype=pl.Utf8) for n in self.names])

    def feature_columns(self, request: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The features of one request, as ``train.parquet`` holds them for the same request.

        ``request``: ``user_id``, ``ts`` (naive UTC datetime), ``context`` (``device``,
        ``country``, ``surface``, optional), ``candidates`` (list of ``{"offer_id", "features":
        {pass-through columns such as price}}``). Returns ``{name: array (n_candidates,)}`` in
        manifest order: numeric float64 (NaN for NULL), categorical object arrays of str / None.
        """
        ts = request["ts"]
        t = epoch_us(ts)
        self._fold(t)
        if ts.tzinfo is not None:
            ts = ts.astimezone(timezone.utc).replace(tzinfo=None)
        candidates = list(request["candidates"])
        state = self._state(str(request["user_id"]), [str(c["offer_id"]) for c in candidates], t, ts)
        return feature_columns(state, self.snapshot, self.manifest, request.get("context") or {}, candidates)

    def _state(self, user_id: str, oids: list[str], t: int, ts: datetime) -> RequestState:
        """The snapshot's state of the user and the candidates plus the overlays."""
        snap = self.snapshot
        o, u = snap.offer_index(oids), snap.user_index(user_id)
        offer_state = snap.offer_state[o]
        for j, oid in enumerate(oids):
            if (d := self._offer_delta.get(oid)) is not None:
                offer_state[j] += d
        counts = [float(c[u]) for c in snap.user_counts]
        last_visit, last_click = (int(c[u]) for c in snap.user_last)
        if (d := self._user_delta.get(user_id)) is not None:
            counts = [counts[i] + d[i] for i in range(4)]
            last_visit, last_click = max(last_visit, d[4]), max(last_click, d[5])
        rows, pair_counts, seen = snap.user_offers.of(u)
        hit = rows[:, None] == o[None, :]  # (k, n); -2 (not in the catalogue) matches nothing
        rows = np.where(rows < 0, len(snap.offer_ids), rows)
        if mine := self._uo_delta.get(user_id):
            hit = np.vstack([hit, np.array(list(mine), dtype=object)[:, None] == np.array(oids, dtype=object)])
            rows = np.concatenate([rows, snap.offer_index(list(mine))])
            pair_counts = np.hstack([pair_counts, np.array([d[:3] for d in mine.values()]).T])
            seen = np.concatenate([seen, np.array([d[3] for d in mine.values()], dtype=np.int64)])
        return RequestState(t, ts, o, offer_state, u, tuple(counts), last_visit, last_click, hit,
                            snap.offer_category[rows], snap.offer_partner[rows], pair_counts, seen)

    # ---- events -------------------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        """Record an event (as events.sql dates it). Requests strictly after ``event.ts`` see it;
        a request at or before that time does not, whatever order events and requests arrive in
        (so logging a page's impressions before scoring it again changes nothing)."""
        if event.kind not in EVENT_KINDS:
            raise ValueError(f"event kind must be one of {EVENT_KINDS}, got {event.kind!r}")
        expected = 0.0
        if event.kind == "impression":
            if event.position is None:
                raise ValueError("an impression needs its position")
            expected = self.position_ctr(event.position)
        kind = tuple(int(event.kind == k) for k in EVENT_KINDS)
        self._sequence += 1
        heapq.heappush(self._pending, (epoch_us(event.ts), self._sequence, str(event.user_id),
                                       str(event.offer_id), kind, expected))

    def _fold(self, t: int) -> None:
        """Count the pending events dated strictly before ``t`` µs, in time order."""
        while self._pending and self._pending[0][0] < t:
            when, _, user_id, offer_id, kind, expected = heapq.heappop(self._pending)
            self._count(user_id, offer_id, when, kind, expected)

    def _count(self, user_id: str, offer_id: str, t: int, kind: tuple[int, int, int], expected: float = 0.0) -> None:
        """Add one event at ``t`` µs (``kind``: impression, click, conversion as 0/1) to the overlays."""
        imp, clk, conv = kind
        scaled = math.exp((t / 1e6 - self.t_ref) / self.tau)
        _add(self._offer_delta, offer_id, (imp, clk, conv, expected, imp * scaled, clk * scaled))
        d = _add(self._user_delta, user_id, (0, imp, clk, conv), times=2)
        if imp:  # one page view per (user, ts): all its impressions share the ts
            snap = self.snapshot
            d[0] += t != max(int(snap.user_last[0][snap.user_index(user_id)]), d[4])
            d[4] = max(d[4], t)
        if clk:
            d[5] = max(d[5], t)
        d = _add(self._uo_delta.setdefault(user_id, {}), offer_id, (imp, clk, conv), times=1)
        if imp:
            d[3] = max(d[3], t)

    def __repr__(self) -> str:
        return (f"OnlineStore(offers={len(self.snapshot.offer_ids)}, users={len(self.snapshot.user_ids)}, "
                f"prior_day={self.prior_day}, overlay_users={len(self._user_delta)})")


def _add(overlay: dict, key: Any, deltas: tuple[float, ...], times: int = 0) -> list:
    """Add ``deltas`` to the first entries of ``overlay[key]``, a list created as zeros followed by
    ``times`` NULL timestamps (maxima the caller updates); returns the list."""
    d = overlay.get(key)
    if d is None:
        d = overlay[key] = [0.0] * len(deltas) + [NULL_TS] * times
    for i, x in enumerate(deltas):
        d[i] += x
    return d
