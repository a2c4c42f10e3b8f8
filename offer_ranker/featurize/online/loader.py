"""Loading a snapshot into a Redis namespace, and keeping the namespace whole while other bundles
serve: one replica loads, the others wait; events are never lost nor counted twice.

The protocol, for a namespace ``ns`` grown from a snapshot that counts the events before ``T``:

1. A replica that finds ``ns`` neither ready nor locked takes the lock (``SET NX PX``), writes
   every user's and offer's state, and replays the journal's events dated at or after ``T`` (each
   under a "seen" key, so a replay cannot count an event twice); then it marks ``ns`` ready and
   records the journal position it replayed to. The other replicas wait for ``ready``; a loader
   that dies leaves the lock to expire, and the next replica starts over.
2. While serving, every replica writes its events to its namespace directly and to the journal,
   tagged with the namespace; a background reader applies the journal's events of *other*
   namespaces (replicas of another bundle during a rolling switch) from the recorded position on,
   each under its "seen" key.

So a namespace counts the events before ``T`` through the snapshot and each later event exactly
once, whichever replica of whichever bundle recorded it.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from threading import Event as Signal
from typing import TYPE_CHECKING

from offer_ranker.featurize.online import codec
from offer_ranker.featurize.online.layout import OFFER, offer_delta
from offer_ranker.featurize.online.store import StoreUnavailable, user_key
from offer_ranker.featurize.snapshot import OFFER_STATE, Snapshot, plain

if TYPE_CHECKING:
    from offer_ranker.featurize.online.redis import RedisStore

#: users written per pipelined batch
BATCH = 5_000
#: how long a loader's lock lives without being renewed (a loader that dies frees it then)
LOCK_MS = 120_000
#: events arrive in the journal at most this long after they happened (clock skew, late feedback)
LATE_MS = 6 * 3_600_000


def ensure_loaded(store: RedisStore, wait_seconds: float, stop: Signal | None = None) -> tuple[str, list[list[str]]]:
    """Load the store's namespace, or wait for another replica to; returns the journal position to
    read other namespaces' events from, and the levels of the user attributes."""
    client, keys = store.client, store.keys
    deadline = time.monotonic() + wait_seconds
    while True:
        meta = client.hgetall(keys.meta)
        if meta.get(b"state") == b"ready":
            return meta[b"cursor"].decode(), json.loads(meta[b"levels"])
        token = uuid.uuid4().hex
        if client.set(keys.lock, token, nx=True, px=LOCK_MS):
            try:
                return load(store, token)
            finally:
                if client.get(keys.lock) == token.encode():
                    client.delete(keys.lock)
        if time.monotonic() > deadline or (stop is not None and stop.is_set()):
            raise StoreUnavailable(f"namespace {keys.ns} is still being loaded by another replica")
        time.sleep(0.2)


def load(store: RedisStore, token: str) -> tuple[str, list[list[str]]]:
    """Write the snapshot's users and offers into the namespace, replay the journal's later events,
    mark it ready. Returns (journal position, levels of the user attributes)."""
    started = time.perf_counter()
    client, keys = store.client, store.keys
    client.delete(keys.offers)
    client.hset(keys.meta, mapping={"state": "loading", "t_ref": repr(store.t_ref), "layout": store.layout,
                                    "snapshot": str(store.folder), "events_before": store.snapshot.events_before_us})
    snap = Snapshot(store.folder, store.manifest)  # with the users' arrays, which serving does not need
    levels = write_users(store, snap, token)
    write_offers(store, snap)
    store.levels = levels
    cursor = replay(store, since_us=snap.events_before_us)
    client.hset(keys.meta, mapping={"state": "ready", "cursor": cursor, "levels": json.dumps(levels),
                                    "users": len(snap.user_ids), "load_seconds": round(time.perf_counter() - started, 3),
                                    "loaded_at": datetime.now(UTC).isoformat(timespec="microseconds")})
    return cursor, levels


def write_users(store: RedisStore, snap: Snapshot, token: str) -> list[list[str]]:
    """Every user's state, in pipelined batches; returns the levels of the categorical attributes."""
    client, keys = store.client, store.keys
    names = store.manifest.extras("user")
    levels = [sorted({v for v in snap.user_extras[n][:-1] if v is not None}) if kind == "c" else []
              for n, kind in zip(names, store.layout)]
    codes = [{v: i + 1 for i, v in enumerate(lv)} for lv in levels]
    extras = [snap.user_extras[n] for n in names]
    counts, last, signup = snap.user_counts, snap.user_last, snap.user_signup
    uo = snap.user_offers
    pipe = client.pipeline(transaction=False)
    for u, user_id in enumerate(snap.user_ids):
        lo, hi = uo.offsets[u], uo.offsets[u + 1]
        entries = {}
        for j in range(lo, hi):
            row = int(uo.offer[j])
            if row >= 0:  # an offer missing from the catalogue has no attributes: no feature reads its row
                entries[row + 1] = [int(uo.counts[0, j]), int(uo.counts[1, j]), int(uo.counts[2, j]), int(uo.seen[j])]
        state = codec.UserState([int(c[u]) for c in counts], int(last[0][u]), int(last[1][u]), int(signup[u]),
                                [plain(e[u]) for e in extras], entries)
        pipe.set(keys.user(user_key(str(user_id), store.salt)), codec.encode(state, store.base, store.layout, codes),
                 px=store.user_ttl_ms)
        if (u + 1) % BATCH == 0:
            pipe.pexpire(keys.lock, LOCK_MS)
            pipe.get(keys.lock)
            if pipe.execute()[-1] != token.encode():
                raise StoreUnavailable(f"lost the lock of namespace {keys.ns} while loading it")
            pipe = client.pipeline(transaction=False)
    pipe.execute()
    return levels


def write_offers(store: RedisStore, snap: Snapshot) -> None:
    values = {oid: OFFER.pack(*row) for oid, row in zip(snap.offer_ids.tolist(), snap.offer_state[:-1].tolist())}
    items = list(values.items())
    for i in range(0, len(items), BATCH):
        store.client.hset(store.keys.offers, mapping=dict(items[i:i + BATCH]))
    assert len(OFFER_STATE) == 6


def replay(store: RedisStore, since_us: int) -> str:
    """Apply the journal's events the snapshot does not count — dated at or after ``since_us``
    whichever namespace recorded them, or recorded on this namespace — each at most once; returns
    the journal position reached."""
    start = max(0, since_us // 1000 - LATE_MS)
    cursor = f"{start}-0"
    while True:
        entries = store.client.xrange(store.keys.journal, min=f"({cursor}" if cursor != f"{start}-0" else cursor,
                                      count=BATCH)
        if not entries:
            return cursor
        ns = store.keys.ns.encode()  # recorded on this namespace (lost and loaded again), or after the cutoff
        apply_entries(store, [e for e in entries if e[1].get(b"n") == ns or int(e[1][b"t"]) >= since_us])
        cursor = entries[-1][0].decode()


def catch_up(store: RedisStore, cursor: str, block_ms: int = 1000) -> str:
    """Apply the journal's events recorded by other namespaces after ``cursor``; returns the new
    position (also kept in the namespace's metadata)."""
    reply = store.client.xread({store.keys.journal: cursor}, count=BATCH, block=block_ms)
    if not reply:
        return cursor
    entries = reply[0][1]
    ns = store.keys.ns.encode()
    apply_entries(store, [e for e in entries if e[1].get(b"n") != ns])
    cursor = entries[-1][0].decode()
    store.client.hset(store.keys.meta, "cursor", cursor)
    return cursor


def apply_entries(store: RedisStore, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
    """Journal entries applied to the store's namespace, each under its "seen" keys."""
    pipe = store.client.pipeline(transaction=False)
    for _, e in entries:
        kind, t, key, event_id = e[b"k"].decode(), int(e[b"t"]), int(e[b"u"]), e[b"i"].decode()
        offers = e[b"o"].decode().split("\x1f")
        if kind == "page":
            store._page(pipe, "replay", key, store.keys.seen_user(key, event_id), t, offers, False, "")
            deltas = store._impressions(offers, range(1, len(offers) + 1), t)
        elif kind == "impression":
            store._event(pipe, kind, key, offers[0], t, seen=store.keys.seen_user(key, event_id))
            deltas = store._impressions(offers, [int(e.get(b"p", b"1")) or 1], t)
        else:
            store._event(pipe, kind, key, offers[0], t, seen=store.keys.seen_user(key, event_id))
            deltas = [(offers[0], *offer_delta(kind, t, store.t_ref, store.tau))]
        store._offers(pipe, deltas, seen=store.keys.seen_offers(event_id))
    pipe.execute()


__all__ = ["catch_up", "ensure_loaded", "load", "replay"]
