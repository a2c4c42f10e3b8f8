"""The embedded online store: the snapshot's arrays plus the events recorded since, in the process.

Events are kept in small dict overlays (deltas of counts, maxima of times) keyed by user key, and
dated as ``sql/features/events.sql`` dates them: a request at ``t`` sees only events strictly
before ``t``, whatever order events and requests arrive in. With a journal every recorded event
is also appended to a file and replayed on the next start. One process only: two workers would
each hold their own state, which is why the service runs one worker on this store.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from offer_ranker.featurize.online.journal import Journal
from offer_ranker.featurize.online.store import EVENT_KINDS, Event, Feedback, OnlineStore, Served, feedback_time, utcnow
from offer_ranker.featurize.snapshot import NULL_TS, Manifest, Snapshot, epoch_us, plain
from offer_ranker.featurize.vector import RequestState

log = logging.getLogger("offer_ranker.online")
#: a user with no row in the snapshot (a new one, or an event replayed from the journal, which is
#: dated after every event the snapshot counts)
NO_ROW = -1


class MemoryStore(OnlineStore):
    """Not thread-safe: serialise the calls (one lock around the features and the records)."""

    def __init__(self, snapshot: Snapshot, manifest: Manifest, *, salt: str = "",
                 journal: Path | Journal | None = None, remember: int = 100_000, user_ttl_days: float = 30.0) -> None:
        super().__init__(snapshot, manifest, salt=salt)
        # overlays: events recorded after the snapshot, as deltas (counts) and maxima (times)
        self._offer_delta: dict[str, list[float]] = {}  # offer_id -> OFFER_STATE deltas
        self._user_delta: dict[int, list[float]] = {}  # user key -> USER_COUNTS deltas + [last_visit, last_click]
        self._uo_delta: dict[int, dict[str, list[float]]] = {}  # user key -> offer_id -> [imp, clk, conv, seen]
        # recorded events not yet counted, a heap of (t µs, sequence, user key, snapshot row, offer,
        # kind, expected): a request at t sees only events strictly before t
        self._pending: list[tuple[int, int, int, int, str, tuple[int, int, int], float]] = []
        self._sequence = 0
        self._served: OrderedDict[str, Served] = OrderedDict()
        self._applied: dict[str, set[str]] = {}  # request id -> "offer event" already applied
        self.remember = remember
        # users' recorded events are forgotten user_ttl after their last one (as Redis expires keys):
        # user key -> time of the last event, oldest first
        self._last_event: OrderedDict[int, int] = OrderedDict()
        self.user_ttl_us = int(user_ttl_days * 86_400e6)
        #: stores of other snapshots in this process (A/B arms of other bundles): they count this
        #: store's events too, as a restart would replay them from the shared journal
        self.siblings: list[MemoryStore] = []
        self.journal = None
        if journal is not None:
            self.journal = journal if isinstance(journal, Journal) else Journal(journal)
            self._replay()

    # ---- state --------------------------------------------------------------------------------

    def state(self, user_id: str, offer_ids: list[str], t: int, ts: datetime) -> RequestState:
        self._fold(t)
        snap, key = self.snapshot, self.user_key(user_id)
        o, u = snap.offer_index(offer_ids), snap.user_index(user_id)
        offer_state = snap.offer_state[o]
        for j, oid in enumerate(offer_ids):
            if (d := self._offer_delta.get(oid)) is not None:
                offer_state[j] += d
        counts = [float(c[u]) for c in snap.user_counts]
        last_visit, last_click = (int(c[u]) for c in snap.user_last)
        if (d := self._user_delta.get(key)) is not None:
            counts = [counts[i] + d[i] for i in range(4)]
            last_visit, last_click = max(last_visit, d[4]), max(last_click, d[5])
        rows, pair_counts, seen = snap.user_offers.of(u)
        hit = rows[:, None] == o[None, :]  # (k, n); -2 (not in the catalogue) matches nothing
        rows = np.where(rows < 0, len(snap.offer_ids), rows)
        if mine := self._uo_delta.get(key):
            hit = np.vstack([hit, np.array(list(mine), dtype=object)[:, None] == np.array(offer_ids, dtype=object)])
            rows = np.concatenate([rows, snap.offer_index(list(mine))])
            pair_counts = np.hstack([pair_counts, np.array([d[:3] for d in mine.values()]).T])
            seen = np.concatenate([seen, np.array([d[3] for d in mine.values()], dtype=np.int64)])
        return RequestState(t, ts, o, offer_state, tuple(counts), last_visit, last_click, int(snap.user_signup[u]),
                            {name: plain(values[u]) for name, values in snap.user_extras.items()}, hit,
                            snap.offer_category[rows], snap.offer_partner[rows], pair_counts, seen)

    # ---- events -------------------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        """Record an event (as events.sql dates it). Requests strictly after ``event.ts`` see it;
        a request at or before that time does not, whatever order events and requests arrive in
        (so logging a page's impressions before scoring it again changes nothing)."""
        if event.kind not in EVENT_KINDS:
            raise ValueError(f"event kind must be one of {EVENT_KINDS}, got {event.kind!r}")
        if event.kind == "impression" and event.position is None:
            raise ValueError("an impression needs its position")
        key = self.user_key(event.user_id)
        t = epoch_us(event.ts)
        self._push(key, self.snapshot.user_index(str(event.user_id)), str(event.offer_id), t, event.kind, event.position)
        self._journal({"k": event.kind, "t": t, "u": key, "o": str(event.offer_id), "p": event.position})

    def record_page(self, request_id: str, user_id: str, served: Served, positions: Iterable[int]) -> None:
        row = self.snapshot.user_index(str(user_id))
        t = epoch_us(served.ts)
        for offer, position in zip(served.offers, positions):
            self._push(served.user, row, offer, t, "impression", position)
        self._remember(request_id, served)
        self._journal({"k": "page", "t": t, "u": served.user, "r": request_id, "d": served.dated,
                       "o": list(served.offers), "a": served.arm})

    def record_feedback(self, request_id: str, offer_id: str, event: str, given: datetime | None) -> Feedback:
        served = self._served.get(request_id)
        if served is None:
            return Feedback(found=False)
        if offer_id not in served.offers:
            return Feedback(found=True)
        ts = feedback_time(served, given, utcnow())
        position = served.offers.index(offer_id) + 1
        done = self._applied.setdefault(request_id, set())
        if f"{offer_id} {event}" in done:
            return Feedback(True, True, False, ts, position, served.user)
        done.add(f"{offer_id} {event}")
        t = epoch_us(ts)
        self._push(served.user, NO_ROW, offer_id, t, event, None)  # a click or conversion: no page to count
        self._journal({"k": event, "t": t, "u": served.user, "o": offer_id, "r": request_id})
        return Feedback(True, True, True, ts, position, served.user)

    def served(self, request_id: str) -> Served | None:
        return self._served.get(request_id)

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()

    # ---- the overlays -------------------------------------------------------------------------

    def _remember(self, request_id: str, served: Served) -> None:
        self._served[request_id] = served
        while len(self._served) > self.remember:
            old, _ = self._served.popitem(last=False)
            self._applied.pop(old, None)

    def _push(self, key: int, row: int, offer_id: str, t: int, kind: str, position: int | None) -> None:
        expected = self.position_ctr(position) if kind == "impression" else 0.0
        self._sequence += 1
        heapq.heappush(self._pending, (t, self._sequence, key, row, offer_id,
                                       tuple(int(kind == k) for k in EVENT_KINDS), expected))

    def _fold(self, t: int) -> None:
        """Count the pending events dated strictly before ``t`` µs, in time order."""
        newest = None
        while self._pending and self._pending[0][0] < t:
            when, _, key, row, offer_id, kind, expected = heapq.heappop(self._pending)
            self._count(key, row, offer_id, when, kind, expected)
            newest = when
        if newest is not None:
            self._forget(newest - self.user_ttl_us)

    def _forget(self, before: int) -> None:
        """Drop the recorded events of users whose last event is older than ``before`` µs (their
        snapshot rows stay): the process does not grow with every user it ever saw."""
        while self._last_event:
            key, last = next(iter(self._last_event.items()))
            if last >= before:
                return
            del self._last_event[key]
            self._user_delta.pop(key, None)
            self._uo_delta.pop(key, None)

    def _count(self, key: int, row: int, offer_id: str, t: int, kind: tuple[int, int, int], expected: float) -> None:
        """Add one event at ``t`` µs (``kind``: impression, click, conversion as 0/1) to the overlays."""
        imp, clk, conv = kind
        self._last_event[key] = max(t, self._last_event.pop(key, t))
        scaled = math.exp((t / 1e6 - self.t_ref) / self.tau)
        _add(self._offer_delta, offer_id, (imp, clk, conv, expected, imp * scaled, clk * scaled))
        d = _add(self._user_delta, key, (0, imp, clk, conv), times=2)
        if imp:  # one page view per (user, ts): all its impressions share the ts
            last = int(self.snapshot.user_last[0][row]) if row != NO_ROW else NULL_TS
            d[0] += t != max(last, d[4])
            d[4] = max(d[4], t)
        if clk:
            d[5] = max(d[5], t)
        d = _add(self._uo_delta.setdefault(key, {}), offer_id, (imp, clk, conv), times=1)
        if imp:
            d[3] = max(d[3], t)

    def _journal(self, entry: dict[str, Any]) -> None:
        entry["s"] = self.snapshot.id
        if self.journal is not None:
            self.journal.write(entry)
        for sibling in self.siblings:
            sibling.count_entry(entry)

    def count_entry(self, e: dict[str, Any]) -> None:
        """Count a journal entry: a page's impressions (and the page, for /feedback), or an event."""
        if e.get("s") != self.snapshot.id and e["t"] < self.snapshot.events_before_us:
            return  # recorded on another snapshot, which this one counts already
        if e["k"] == "page":
            for position, offer in enumerate(e["o"], 1):
                self._push(e["u"], NO_ROW, offer, e["t"], "impression", position)
            self._remember(e["r"], Served(e["u"], _datetime(e["t"]), e["d"], tuple(e["o"]), e.get("a", "")))
        else:
            if "r" in e:
                self._applied.setdefault(e["r"], set()).add(f"{e['o']} {e['k']}")
            self._push(e["u"], NO_ROW, e["o"], e["t"], e["k"], e.get("p"))

    def _replay(self) -> None:
        """Apply the journal's events from the snapshot's cutoff on, and remember its pages."""
        cutoff, replayed = self.snapshot.events_before_us, 0
        for e in self.journal.entries(self.snapshot.id, cutoff):
            self.count_entry(e)
            replayed += 1
        if replayed or self.journal.malformed:
            log.info("online store: replayed %d journal entries after %s (%d unreadable lines skipped)",
                     replayed, _datetime(cutoff).isoformat(), self.journal.malformed)

    def __repr__(self) -> str:
        return (f"MemoryStore(offers={len(self.snapshot.offer_ids)}, users={len(self.snapshot.user_ids)}, "
                f"prior_day={self.prior_day}, overlay_users={len(self._user_delta)})")

    @property
    def overlay_users(self) -> int:
        """Users with events recorded since the snapshot (and not yet forgotten)."""
        return len(self._user_delta)


def _datetime(us: int) -> datetime:
    return datetime(1970, 1, 1) + (np.datetime64(us, "us") - np.datetime64(0, "us")).item()


def _add(overlay: dict, key: Any, deltas: tuple[float, ...], times: int = 0) -> list:
    """Add ``deltas`` to the first entries of ``overlay[key]``, a list created as zeros followed by
    ``times`` NULL timestamps (maxima the caller updates); returns the list."""
    d = overlay.get(key)
    if d is None:
        d = overlay[key] = [0.0] * len(deltas) + [NULL_TS] * times
    for i, x in enumerate(deltas):
        d[i] += x
    return d
