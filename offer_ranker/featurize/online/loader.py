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
import logging
import time
import uuid
from datetime import UTC, datetime
from threading import Event as Signal
from typing import TYPE_CHECKING

import numpy as np

from offer_ranker.featurize.online import bulk
from offer_ranker.featurize.online.layout import OFFER, offer_delta
from offer_ranker.featurize.online.store import StoreUnavailable, user_digest
from offer_ranker.featurize.snapshot import NULL_TS, OFFER_STATE, Snapshot, plain

if TYPE_CHECKING:
    from offer_ranker.featurize.online.redis import RedisStore

log = logging.getLogger(__name__)

#: a field of the offers hash that is no offer id: its value describes the others' layout
LAYOUT_FIELD = "\x00layout"
#: users written per pipelined batch
BATCH = 5_000
#: how long a loader's lock lives without being renewed (a loader that dies frees it then)
LOCK_MS = 120_000
#: events arrive in the journal at most this long after they happened (clock skew, late feedback)
LATE_MS = 6 * 3_600_000


def ensure_loaded(store: RedisStore, wait_seconds: float, stop: Signal | None = None) -> tuple[str, list[list[str]]]:
    """Load the store's namespace, or wait for another replica to; returns the journal position to
    read other namespaces' events from, and the levels of the user attributes."""
    client, keys = store.keeper_client, store.keys
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
    client, keys = store.keeper_client, store.keys
    client.delete(keys.offers)
    client.hset(keys.meta, mapping={"state": "loading", "t_ref": repr(store.t_ref), "layout": store.layout,
                                    "snapshot": str(store.folder), "events_before": store.snapshot.events_before_us})
    snap = Snapshot(store.folder, store.manifest)  # with the users' arrays, which serving does not need
    levels = write_users(store, snap, token)
    write_offers(store, snap)
    store.levels = levels
    cursor = replay(store, since_us=snap.events_before_us, token=token)
    _renew(store, token)
    client.hset(keys.meta, mapping={"state": "ready", "cursor": cursor, "levels": json.dumps(levels),
                                    "users": len(snap.user_ids), "load_seconds": round(time.perf_counter() - started, 3),
                                    "loaded_at": datetime.now(UTC).isoformat(timespec="microseconds")})
    for key in (keys.meta, keys.offers):  # they outlive the last replica serving the namespace by a TTL
        client.pexpire(key, store.user_ttl_ms)
    return cursor, levels


def _renew(store: RedisStore, token: str, pipe: object = None) -> None:
    """Keep the load lock (or fail: another replica took over, this load must stop)."""
    client = store.keeper_client
    renewed = client.eval(_RENEW, 1, store.keys.lock, token, LOCK_MS)
    if not renewed:
        raise StoreUnavailable(f"lost the lock of namespace {store.keys.ns} while loading it")


_RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"


def clear(store: RedisStore) -> None:
    """Delete every key of the store's namespace, so that it is loaded again from the snapshot:
    users the snapshot does not know and "seen" marks go too (else a replay would count the
    first twice and skip the events of the second)."""
    client = store.keeper_client
    client.delete(store.keys.meta)
    for pattern in store.keys.patterns():
        batch = []
        for key in client.scan_iter(match=pattern, count=BATCH):
            batch.append(key)
            if len(batch) >= BATCH:
                client.unlink(*batch)
                batch = []
        if batch:
            client.unlink(*batch)


def still_loaded(store: RedisStore) -> bool:
    """Whether the namespace is still there and ready; keeps its offers and metadata alive."""
    pipe = store.keeper_client.pipeline(transaction=False)
    pipe.hget(store.keys.meta, "state")
    pipe.pexpire(store.keys.meta, store.user_ttl_ms)
    pipe.pexpire(store.keys.offers, store.user_ttl_ms)
    return pipe.execute()[0] == b"ready"


def write_users(store: RedisStore, snap: Snapshot, token: str) -> list[list[str]]:
    """Every user's state, expiring ``user_ttl`` after their last visit (counted from the
    snapshot's cutoff: users idle longer are not written); returns the levels of the categorical
    attributes. Values are encoded all at once (:mod:`.bulk`) and sent as raw SET commands in
    batches, so that Redis, not Python, bounds the load."""
    client, keys = store.keeper_client, store.keys
    names = store.manifest.extras("user")
    n = len(snap.user_ids)
    levels = [sorted({v for v in snap.user_extras[name][:-1] if v is not None}) if kind == "c" else []
              for name, kind in zip(names, store.layout)]
    extras = []
    for name, kind, level in zip(names, store.layout, levels):
        values = snap.user_extras[name][:n]
        if kind == "n":
            numeric = np.array([np.nan if plain(v) is None else float(v) for v in values], dtype=np.float64)
            extras.append(("n", np.where(np.isnan(numeric), np.nan, numeric)))  # one NaN bit pattern
        else:
            code = {v: i + 1 for i, v in enumerate(level)}
            extras.append(("c", np.array([0 if v is None else code.get(v, 0) for v in values], dtype=np.int64)))
    uo = snap.user_offers
    entry_user = np.repeat(np.arange(n), np.diff(uo.offsets[:n + 1]))
    catalogued = uo.offer[:len(entry_user)] >= 0  # an offer missing from the catalogue: no feature reads its row
    values = bulk.encode_users(
        [np.asarray(c[:n]) for c in snap.user_counts], snap.user_last[0][:n], snap.user_last[1][:n],
        np.asarray(snap.user_signup[:n]), extras, entry_user[catalogued],
        uo.offer[:len(entry_user)][catalogued].astype(np.int64) + 1, uo.counts[:, :len(entry_user)][:, catalogued],
        uo.seen[:len(entry_user)][catalogued], store.base)
    visit = snap.user_last[0][:n]
    idle_ms = np.where(visit == NULL_TS, 0, (snap.events_before_us - visit) // 1000)
    ttl_ms = (store.user_ttl_ms - np.maximum(idle_ms, 0)).tolist()
    salt, ids = store.salt.encode(), snap.user_ids.tolist()
    batches = ([(keys.user_of_digest(user_digest(str(ids[u]), salt)), values[u], ttl_ms[u])
                for u in range(lo, min(lo + BATCH, n)) if ttl_ms[u] > 0] for lo in range(0, n, BATCH))
    if not hasattr(client, "connection_pool"):  # a Redis Cluster: its pipeline sends each key to its node
        for batch in batches:
            pipe = client.pipeline(transaction=False)
            for key, value, ttl in batch:
                pipe.set(key, value, px=ttl)
            pipe.execute()
            _renew(store, token)
        return levels
    connection = client.connection_pool.get_connection()
    try:
        for batch in batches:
            connection.send_packed_command([b"".join(_set(*command) for command in batch)])
            for _ in batch:
                connection.read_response()
            _renew(store, token)
    except BaseException:
        connection.disconnect()  # replies may be left unread
        raise
    finally:
        client.connection_pool.release(connection)
    return levels


def _set(key: bytes, value: bytes, ttl_ms: int) -> bytes:
    """``SET key value PX ttl`` in the Redis protocol."""
    ttl = str(ttl_ms).encode()
    return b"*5\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$2\r\nPX\r\n$%d\r\n%b\r\n" % (
        len(key), key, len(value), value, len(ttl), ttl)


def write_offers(store: RedisStore, snap: Snapshot) -> None:
    values = {oid: OFFER.pack(*row) for oid, row in zip(snap.offer_ids.tolist(), snap.offer_state[:-1].tolist())}
    # a value longer than hash-max-listpack-value (64 B) makes Redis keep the hash as a hash table
    # for good: as a listpack (up to 128-512 fields) every HMGET field is a linear scan, ~100 µs
    # for a ranking's 20 candidates among 400 offers instead of ~5 µs
    values[LAYOUT_FIELD] = ("six little-endian doubles per offer: " + ", ".join(OFFER_STATE)).encode()
    items = list(values.items())
    for i in range(0, len(items), BATCH):
        store.keeper_client.hset(store.keys.offers, mapping=dict(items[i:i + BATCH]))
    assert len(OFFER_STATE) == 6


def replay(store: RedisStore, since_us: int, token: str) -> str:
    """Apply the journal's events the snapshot does not count — dated at or after ``since_us``
    whichever namespace recorded them, or recorded on this namespace — each at most once; returns
    the journal position reached."""
    start = max(0, since_us // 1000 - LATE_MS)
    cursor = f"{start}-0"
    while True:
        entries = store.keeper_client.xrange(store.keys.journal, count=BATCH,
                                             min=f"({cursor}" if cursor != f"{start}-0" else cursor)
        if not entries:
            return cursor
        ns = store.keys.ns.encode()  # recorded on this namespace (lost and loaded again), or after the cutoff
        apply_entries(store, [e for e in entries if e[1].get(b"n") == ns or int(e[1].get(b"t", 0)) >= since_us])
        cursor = entries[-1][0].decode()
        _renew(store, token)


def catch_up(store: RedisStore, cursor: str, block_ms: int = 1000) -> str:
    """Apply the journal's events recorded by other namespaces after ``cursor``; returns the new
    position (also kept in the namespace's metadata)."""
    reply = store.keeper_client.xread({store.keys.journal: cursor}, count=BATCH, block=block_ms)
    if not reply:
        return cursor
    entries = reply[0][1]
    ns = store.keys.ns.encode()
    apply_entries(store, [e for e in entries if e[1].get(b"n") != ns])
    cursor = entries[-1][0].decode()
    store.keeper_client.hset(store.keys.meta, "cursor", cursor)
    return cursor


def apply_entries(store: RedisStore, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
    """Journal entries applied to the store's namespace, each under its "seen" keys. An entry that
    cannot be read or applied is logged, counted and skipped: it must not stop the ones after it."""
    import redis

    pipe = store.keeper_client.pipeline(transaction=False)
    for entry_id, e in entries:
        try:
            kind, t, key, event_id = e[b"k"].decode(), int(e[b"t"]), int(e[b"u"]), e[b"i"].decode()
            offers = e[b"o"].decode().split("\x1f")
            if kind not in ("page", "impression", "click", "conversion"):
                raise ValueError(f"unknown kind {kind!r}")
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            _skipped(store, entry_id, exc)
            continue
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
    for result in pipe.execute(raise_on_error=False):
        if isinstance(result, redis.ResponseError):
            _skipped(store, b"?", result)


def _skipped(store: RedisStore, entry_id: bytes, problem: Exception) -> None:
    store.skipped_entries += 1
    log.warning("online store: journal entry %s skipped: %s", entry_id.decode(errors="replace"), problem)


__all__ = ["catch_up", "ensure_loaded", "load", "replay"]
