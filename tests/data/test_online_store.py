"""The online store's housekeeping and faults, on the real backends: users are forgotten after their
TTL, a torn journal line loses nothing after it, a feedback retried after a failure half-way is
completed and counted once, a namespace Redis lost is loaded again, any Redis error degrades the
request instead of failing it, and every key of a user lands in one Cluster slot."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from offer_ranker.featurize.online import Event, OnlineStore, Served, StoreUnavailable
from offer_ranker.featurize.online.journal import Journal
from offer_ranker.featurize.online.layout import Keys
from offer_ranker.featurize.snapshot import epoch_us
from offer_ranker.serve.examples import end_of_logs


def _offer(features: Path) -> str:
    import polars as pl

    return pl.read_parquet(features / "snapshot" / "offers.parquet", columns=["offer_id"])["offer_id"][0]


def test_memory_store_forgets_users_a_ttl_after_their_last_event(sim: Path) -> None:
    features = sim / "features"
    store = OnlineStore.load(features, user_ttl_days=1.0)
    start, offer = end_of_logs(features) + timedelta(minutes=1), _offer(features)
    for i in range(50):  # fifty one-visit users on the first day ...
        store.apply(Event("impression", f"brief-{i}", offer, start + timedelta(seconds=i), 1))
    store.apply(Event("impression", "regular", offer, start + timedelta(days=1, hours=12), 1))
    late = start + timedelta(days=1, hours=13)
    before = store.state("regular", [offer], epoch_us(late - timedelta(hours=14)), late)
    assert store.overlay_users == 50 and before.user_counts[1] == 0  # the regular's visit comes later
    state = store.state("regular", [offer], epoch_us(late), late)
    assert store.overlay_users == 1  # ... gone a day after their visit
    assert state.user_counts[1] == 1  # the one still within its TTL keeps its impression


def test_a_torn_journal_line_loses_nothing_after_it(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text(json.dumps({"k": "click", "t": 5, "u": 1, "o": "a", "s": "x"}) + "\n" + '{"k": "cli')
    journal = Journal(path)  # a crash tore the last line
    journal.write({"k": "click", "t": 6, "u": 2, "o": "b", "s": "x"})
    journal.close()
    entries = list(Journal(path).entries("x", 0))
    assert [e["t"] for e in entries] == [5, 6]


def test_journal_entries_older_than_its_reach_are_dropped_on_open(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    day = 86_400_000_000
    path.write_text("".join(json.dumps({"k": "click", "t": t * day, "u": 1, "o": "a", "s": "x"}) + "\n"
                            for t in (1, 5, 9, 10)))
    assert [e["t"] // day for e in Journal(path, keep_days=7).entries("x", 0)] == [5, 9, 10]


def test_cluster_slot_of_every_user_key_is_the_same() -> None:
    from redis.crc import key_slot

    keys = Keys("or", "0123456789abcdef")
    for user in (0x7D00000000000001, 0x7B7D7D7D00000000, 1, -1, 2**63 - 1):  # "}" and "{" first in the tag
        request = f"{user & (2**64 - 1):016x}-{'ab' * 8}"
        slots = {key_slot(keys.user(user)), key_slot(keys.served(request)), key_slot(keys.seen_user(user, "e1"))}
        assert len(slots) == 1, hex(user)


@pytest.fixture
def redis_store(sim: Path, redis_server):
    store = OnlineStore.load(sim / "features", url=redis_server.url, prefix=f"t{time.monotonic_ns()}")
    assert store.wait_ready(60), store.status()
    yield store
    store.close()


def _page(store: OnlineStore, features: Path, user: str) -> tuple[str, str]:
    ts, offer = end_of_logs(features) + timedelta(minutes=5), _offer(features)
    key = store.user_key(user)
    request_id = store.new_request_id(key)
    store.record_page(request_id, user, Served(key, ts, True, (offer,), ""), [1])
    return request_id, offer


def _clicks(store, offer: str) -> float:  # noqa: ANN001
    from offer_ranker.featurize.online.layout import OFFER

    return OFFER.unpack(store.client.hget(store.keys.offers, offer))[1]


def test_a_feedback_retried_after_failing_half_way_is_completed_once(redis_store, sim: Path) -> None:
    store, features = redis_store, sim / "features"
    request_id, offer = _page(store, features, "half-way")
    before = _clicks(store, offer)
    # the first attempt: the user's update went through, then the connection dropped (no offer
    # count, no journal entry); the client got a 503 and sends the feedback again
    served_key = store.keys.served(request_id)
    store.scripts["feedback"](keys=[served_key, store.keys.user(store.user_key("half-way"))],
                              args=[offer, "click", "", epoch_us(datetime.utcnow()), store.base, store.layout,
                                    store.user_ttl_ms, 1])
    retried = store.record_feedback(request_id, offer, "click", None)
    assert retried.found and retried.shown and not retried.applied  # the user has it already ...
    assert _clicks(store, offer) == before + 1  # ... and now the offer too
    store.record_feedback(request_id, offer, "click", None)
    assert _clicks(store, offer) == before + 1  # once, however often it is retried
    entries = store.client.xrange(store.keys.journal)
    assert {e[1][b"i"] for e in entries if e[1][b"k"] == b"click" and e[1][b"o"] == offer.encode()} \
        and len({e[1][b"i"] for e in entries if e[1][b"k"] == b"click"}) == 1


def test_a_namespace_redis_lost_is_loaded_again(redis_store) -> None:
    store = redis_store
    users = int(store.client.hget(store.keys.meta, "users"))
    for key in store.client.scan_iter(match=store.keys.meta):  # Redis restarted without its data
        store.client.delete(key)
    deadline = time.monotonic() + 30
    while store.ready and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not store.ready  # noticed: requests fall back to the snapshot instead of empty state
    with pytest.raises(StoreUnavailable):
        store.state("anyone", [], 0, datetime(2030, 1, 1))
    assert store.wait_ready(60), store.status()
    assert int(store.client.hget(store.keys.meta, "users")) == users


def test_any_redis_error_degrades_the_request(redis_store, sim: Path) -> None:
    store = redis_store
    store.client.config_set("maxmemory-policy", "noeviction")
    store.client.config_set("maxmemory", 1)  # every write now fails: "used memory > maxmemory"
    try:
        with pytest.raises(StoreUnavailable, match="maxmemory"):
            _page(store, sim / "features", "oom")
    finally:
        store.client.config_set("maxmemory", 0)
    store._down_until = 0.0  # (the circuit would let the next attempt through after retry_ms)
    _page(store, sim / "features", "oom")


def test_offers_hash_is_a_hash_table_whatever_its_size(redis_store) -> None:
    # as a listpack (Redis's compact form below 128-512 fields) each HMGET field is a linear scan
    assert redis_store.client.object("encoding", redis_store.keys.offers) == b"hashtable"


def test_bulk_encoding_is_the_codec_byte_for_byte(sim: Path) -> None:
    """Loading encodes every user at once with numpy; each value must be what codec.encode writes."""
    import numpy as np

    from offer_ranker.featurize.online import bulk, codec
    from offer_ranker.featurize.snapshot import Manifest, Snapshot, find, plain

    folder, found = find(sim / "features")
    manifest = Manifest.of(found)
    snap = Snapshot(folder, manifest)
    n, uo, base = len(snap.user_ids), snap.user_offers, 1_700_000_000_000_000
    names = manifest.extras("user")
    layout = "".join("n" if manifest.dtypes[name] == "numeric" else "c" for name in names)
    levels = [sorted({v for v in snap.user_extras[x][:-1] if v is not None}) if k == "c" else []
              for x, k in zip(names, layout)]
    codes = [{v: i + 1 for i, v in enumerate(lv)} for lv in levels]
    extras = [("n", np.array([np.nan if plain(v) is None else float(v) for v in snap.user_extras[x][:n]]))
              if k == "n" else ("c", np.array([0 if v is None else c.get(v, 0) for v in snap.user_extras[x][:n]]))
              for x, k, c in zip(names, layout, codes)]
    user = np.repeat(np.arange(n), np.diff(uo.offsets[:n + 1]))
    ok = uo.offer[:len(user)] >= 0
    assert layout and (~ok).sum() >= 0 and len(user) > n  # attributes and several entries per user
    values = bulk.encode_users([c[:n] for c in snap.user_counts], snap.user_last[0][:n], snap.user_last[1][:n],
                               snap.user_signup[:n], extras, user[ok], uo.offer[:len(user)][ok].astype(np.int64) + 1,
                               uo.counts[:, :len(user)][:, ok], uo.seen[:len(user)][ok], base)
    for u in range(n):
        entries = {int(uo.offer[j]) + 1: [int(uo.counts[0, j]), int(uo.counts[1, j]), int(uo.counts[2, j]),
                                          int(uo.seen[j])]
                   for j in range(uo.offsets[u], uo.offsets[u + 1]) if uo.offer[j] >= 0}
        state = codec.UserState([int(c[u]) for c in snap.user_counts], int(snap.user_last[0][u]),
                                int(snap.user_last[1][u]), int(snap.user_signup[u]),
                                [plain(snap.user_extras[x][u]) for x in names], entries)
        assert values[u] == codec.encode(state, base, layout, codes), u
