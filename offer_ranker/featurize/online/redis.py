"""The online state in Redis or Valkey, shared by every replica and worker of the service.

Keys (``prefix`` ``or``; ``ns`` names the snapshot the state grew from, so a new bundle's snapshot
is a new namespace and the old one stays whole until it expires)::

    or:{ns}:meta                hash: t_ref, events_before, layout, levels, state (loading | ready)
    or:{ns}:lock                the loader's lock (one replica loads, the others wait)
    or:{ns}:offers              hash: offer id -> six doubles (OFFER_STATE order)
    or:{ns}:u:{<user tag>}      a user's state, one value (offer_ranker/featurize/online/codec.py)
    or:r:{<user tag>}:<id>      a served request, for /feedback from any replica (any namespace)
    or:journal                  a stream of every event, for the namespaces of other bundles

Hot path: one pipelined round trip reads a ranking's user and candidate offers; one round trip
writes a page (a Lua script on the user's keys, one on the offers, and the journal entry); a
feedback event is one script on the user's keys, which applies it once however often it is sent,
then the offers and the journal. Keys of one user share the hash tag ``{<user tag>}``, so a script
never spans two slots and the same commands run on Redis Cluster.

A namespace is loaded from its snapshot by one replica (:mod:`.loader`), which then replays the
journal's later events; afterwards a background reader applies the events other namespaces'
replicas record (during a rolling switch of bundles), each at most once.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cache
from importlib.resources import files
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from offer_ranker.featurize.online import codec
from offer_ranker.featurize.online.layout import OFFER, SEP, Keys, offer_delta, request_user
from offer_ranker.featurize.online.store import (
    EVENT_KINDS,
    Event,
    Feedback,
    OnlineStore,
    Served,
    StoreUnavailable,
    user_key,
)
from offer_ranker.featurize.snapshot import Manifest, Snapshot, epoch_us
from offer_ranker.featurize.vector import RequestState

log = logging.getLogger("offer_ranker.online")


@cache
def script(name: str) -> str:
    """``scripts/<name>.lua`` with the user-state codec (``scripts/user.lua``) in front."""
    folder = files("offer_ranker.featurize.online").joinpath("scripts")
    body = folder.joinpath(f"{name}.lua").read_text()
    return body if name == "user" else folder.joinpath("user.lua").read_text() + body


#: how long the keeper blocks reading the journal, and how often it checks the namespace is there
KEEPER_BLOCK_S, CHECK_S = 1.0, 5.0
#: the pause after reading some of the journal: other namespaces' events arrive within it, in
#: batches (the journal also carries this namespace's own events, which the keeper skips)
CATCH_UP_PAUSE_S = 0.25
#: events per round trip of ``apply_many``
BATCH = 500


class RedisStore(OnlineStore):
    """The state of one snapshot's namespace in Redis. Thread-safe (redis-py's connection pool).

    url : ``redis://host:port/db`` (``rediss://``, ``unix://``), or ``redis+cluster://host:port``
    user_ttl_days : a user's state expires this long after their last event
    request_ttl_hours : how long a served request takes feedback
    journal_days : how far back the journal reaches (a snapshot older than that misses events)
    timeout_ms : socket timeout of one command; an outage is detected within it
    retry_ms : after a failure, requests degrade at once for this long before the next attempt
    wait_seconds : how long opening the store waits for another replica loading the namespace
    catch_up : apply other namespaces' journal events in the background (a serving store does)
    reload : load the namespace from the snapshot again, even if it is there
    """

    def __init__(self, snapshot: Snapshot, manifest: Manifest, folder: Path, *, url: str, salt: str = "",
                 prefix: str = "or", user_ttl_days: float = 30.0, request_ttl_hours: float = 48.0,
                 journal_days: float = 7.0, timeout_ms: float = 250.0, retry_ms: float = 1000.0,
                 wait_seconds: float = 300.0, catch_up: bool = True, reload: bool = False) -> None:

        super().__init__(snapshot, manifest, salt=salt)
        self.url, self.folder = url, folder
        self.keys = Keys(prefix, snapshot.id)
        self.user_ttl_ms = int(user_ttl_days * 86_400_000)
        self.request_ttl_ms = int(request_ttl_hours * 3_600_000)
        self.journal_ms = int(journal_days * 86_400_000)
        self.retry_ms, self.wait_seconds = retry_ms, wait_seconds
        self.base = int(round(snapshot.t_ref * 1e6))
        self.layout = "".join("n" if manifest.dtypes[name] == "numeric" else "c" for name in manifest.extras("user"))
        self.levels: list[list[str]] = []
        self.client = _connect(url, socket_timeout=timeout_ms / 1000,
                                           socket_connect_timeout=timeout_ms / 1000, health_check_interval=30)
        # the background keeper blocks on the journal for a second at a time: its own connection
        self.keeper_client = _connect(url, socket_timeout=max(timeout_ms / 1000, 1.0) + KEEPER_BLOCK_S,
                                                  socket_connect_timeout=timeout_ms / 1000, health_check_interval=30)
        self.scripts = {name: self.client.register_script(script(name))
                        for name in ("page", "event", "feedback", "offers")}
        self._down_until = 0.0
        self._scripts_loaded = False
        self.skipped_entries = 0  # journal entries that could not be applied (logged)
        self._problem: str | None = "loading"
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._reload = reload  # load the namespace again from the snapshot (an operator's choice)
        self._keeper = threading.Thread(target=self._keep, args=(catch_up,), name="online-store", daemon=True)
        self._keeper.start()

    @property
    def shared(self) -> bool:
        return True

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def wait_ready(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the namespace to be loaded and reachable."""
        return self._ready.wait(seconds)

    def status(self) -> str | None:
        if self._problem:
            return self._problem
        if time.monotonic() < self._down_until:
            return "online store unavailable (retrying)"
        return None

    def close(self) -> None:
        self._stop.set()
        self._keeper.join(timeout=5)
        self.client.close()
        self.keeper_client.close()

    # ---- reads --------------------------------------------------------------------------------

    def state(self, user_id: str, offer_ids: list[str], t: int, ts: datetime) -> RequestState:
        key = self.user_key(user_id)
        pipe = self.client.pipeline(transaction=False)
        pipe.get(self.keys.user(key))
        pipe.hmget(self.keys.offers, offer_ids)
        blob, offer_values = self._run(pipe)
        snap = self.snapshot
        o = snap.offer_index(offer_ids)
        offer_state = np.zeros((len(offer_ids), 6))
        for j, v in enumerate(offer_values):
            if v is not None:
                offer_state[j] = OFFER.unpack(v)
        user = codec.decode(blob, self.base, self.layout, self.levels) if blob else codec.UserState(
            extras=[None] * len(self.layout))
        rows, unknown_ids, counts, seen = codec.entry_arrays(user, len(snap.offer_ids))
        hit = rows[:, None] == o[None, :]
        if any(unknown_ids):  # offers the catalogue does not know match by id
            ids = np.array(offer_ids, dtype=object)
            for j, oid in enumerate(unknown_ids):
                if oid is not None:
                    hit[j] = ids == oid
        return RequestState(t, ts, o, offer_state, tuple(float(c) for c in user.counts), user.last_visit,
                            user.last_click, user.signup, dict(zip(self.manifest.extras("user"), user.extras)), hit,
                            snap.offer_category[rows], snap.offer_partner[rows], counts, seen)

    def served(self, request_id: str) -> Served | None:
        key = self.keys.served(request_id)
        if key is None:
            return None
        values = self._run_one(lambda c: c.hmget(key, "u", "t", "d", "o", "a"))
        if values[0] is None:
            return None
        u, t, d, offers, arm = values
        return Served(int(u), _datetime(int(t)), d == b"1", tuple(offers.decode().split(SEP)), (arm or b"").decode())

    # ---- writes -------------------------------------------------------------------------------

    def record_page(self, request_id: str, user_id: str, served: Served, positions: Iterable[int]) -> None:
        t = epoch_us(served.ts)
        served_key = self.keys.served(request_id)
        pipe = self.client.pipeline(transaction=False)
        self._page(pipe, "live", served.user, served_key, t, served.offers, served.dated, served.arm)
        self._offers(pipe, self._impressions(served.offers, positions, t))
        self._journal(pipe, {"k": "page", "t": t, "u": served.user, "o": SEP.join(served.offers)})
        self._run(pipe)

    def record_feedback(self, request_id: str, offer_id: str, event: str, given: datetime | None) -> Feedback:
        served_key = self.keys.served(request_id)
        if served_key is None:
            return Feedback(found=False)
        key = request_user(request_id)  # the user whose request it was
        code = int(self.snapshot.offer_index([offer_id])[0]) + 1
        code = 0 if code > len(self.snapshot.offer_ids) else code
        now = epoch_us(_utcnow())
        result = self._run_one(lambda c: self.scripts["feedback"](
            keys=[served_key, self.keys.user(key)],
            args=[offer_id, event, "" if given is None else epoch_us(given), now, self.base, self.layout,
                  self.user_ttl_ms, code], client=c))
        status = int(result[0])
        if status < 0:
            return Feedback(found=status == -2)
        t, position = int(result[1]), int(result[2])
        # the offer's count and the journal entry, under an id of this feedback: a retry after a
        # failure half-way (user counted, offer not) completes it; the offer counts it once
        event_id = hashlib.blake2b(f"{request_id}:{offer_id}:{event}".encode(), digest_size=8).hexdigest()
        pipe = self.client.pipeline(transaction=False)
        self._offers(pipe, [(offer_id, *offer_delta(event, t, self.t_ref, self.tau))],
                     seen=self.keys.seen_offers(event_id))
        self._journal(pipe, {"k": event, "t": t, "u": key, "o": offer_id}, event_id)
        self._run(pipe)
        return Feedback(True, True, status == 1, _datetime(t), position, key)

    def apply(self, event: Event) -> None:
        self.apply_many([event])

    def apply_many(self, events: Iterable[Event]) -> None:
        """The events in round trips of ``BATCH``; each is one atomic update of its user and one of
        its offer. (One round trip for a day of events would be megabytes written and answered
        within one command's socket timeout: on a busy machine, it is not.)"""
        batch = iter(events)
        while chunk := list(islice(batch, BATCH)):
            pipe = self.client.pipeline(transaction=False)
            for event in chunk:
                if event.kind not in EVENT_KINDS:
                    raise ValueError(f"event kind must be one of {EVENT_KINDS}, got {event.kind!r}")
                if event.kind == "impression" and event.position is None:
                    raise ValueError("an impression needs its position")
                key, t, offer = self.user_key(event.user_id), epoch_us(event.ts), str(event.offer_id)
                self._event(pipe, event.kind, key, offer, t)
                self._offers(pipe, self._impressions([offer], [event.position], t) if event.kind == "impression"
                             else [(offer, *offer_delta(event.kind, t, self.t_ref, self.tau))])
                self._journal(pipe, {"k": event.kind, "t": t, "u": key, "o": offer, "p": event.position or 0})
            self._run(pipe)

    # ---- the scripts --------------------------------------------------------------------------

    def _code(self, offer_id: str) -> int:
        row = int(self.snapshot.offer_index([offer_id])[0])
        return row + 1 if row < len(self.snapshot.offer_ids) else 0

    def _page(self, pipe: Any, mode: str, key: int, second_key: str, t: int, offers: Sequence[str], dated: bool,
              arm: str) -> None:
        args: list[Any] = [mode, t, self.base, self.layout, self.user_ttl_ms, self.request_ttl_ms, key,
                           int(dated), arm, self.keys.ns]
        for offer in offers:
            args += [self._code(offer), offer]
        self._script(pipe, "page", [self.keys.user(key), second_key], args)

    def _event(self, pipe: Any, kind: str, key: int, offer: str, t: int, seen: str | None = None) -> None:
        keys = [self.keys.user(key)] + ([seen] if seen else [])
        self._script(pipe, "event", keys, [kind, t, self.base, self.layout, self.user_ttl_ms, self._code(offer), offer])

    def _offers(self, pipe: Any, deltas: list[tuple[Any, ...]], seen: str | None = None) -> None:
        args: list[Any] = [self.seen_ttl_ms]
        for d in deltas:
            args += [d[0], *(repr(float(x)) for x in d[1:])]
        self._script(pipe, "offers", [self.keys.offers] + ([seen] if seen else []), args)

    def _script(self, pipe: Any, name: str, keys: list[Any], args: list[Any]) -> None:
        """EVALSHA of one of the scripts. (redis-py's Script in a pipeline asks SCRIPT EXISTS
        first, one more round trip per pipeline. Here they are loaded once, and again after a
        connection failure or a NOSCRIPT answer: Redis forgets them when it restarts.)"""
        pipe.execute_command("EVALSHA", self.scripts[name].sha, len(keys), *keys, *args)

    def _impressions(self, offers: Sequence[str], positions: Iterable[int | None], t: int) -> list[tuple[Any, ...]]:
        scaled = math.exp((t / 1e6 - self.t_ref) / self.tau)
        return [(str(o), 1.0, 0.0, 0.0, self.position_ctr(p or 1), scaled, 0.0) for o, p in zip(offers, positions)]

    @property
    def seen_ttl_ms(self) -> int:
        """How long a "seen" key outlives its event: while the journal can still hold it."""
        return self.journal_ms + 86_400_000

    def _journal(self, pipe: Any, entry: dict[str, Any], event_id: str | None = None) -> None:
        entry |= {"n": self.keys.ns, "i": event_id or uuid.uuid4().hex[:16]}
        minid = int(time.time() * 1000) - self.journal_ms
        pipe.xadd(self.keys.journal, {k: str(v) for k, v in entry.items()}, minid=minid, approximate=True)

    # ---- connection ---------------------------------------------------------------------------

    def _run(self, pipe: Any) -> list[Any]:
        def run(client: Any) -> list[Any]:
            if not self._scripts_loaded:
                for s in self.scripts.values():
                    client.script_load(s.script)
                self._scripts_loaded = True
            return pipe.execute()

        return self._run_one(run)

    def _run_one(self, call: Any) -> Any:
        import redis

        if not self._ready.is_set():
            raise StoreUnavailable(f"the online store is not ready: {self._problem or 'loading'}")
        if time.monotonic() < self._down_until:
            raise StoreUnavailable("the online store is unavailable (retrying)")
        try:
            return call(self.client)
        # any Redis error: unreachable, a timeout, or an answer like READONLY (after a failover),
        # OOM, LOADING, MISCONF; the request falls back, and the store is tried again soon
        except (redis.RedisError, OSError) as exc:
            self._scripts_loaded = False  # Redis may have restarted, forgetting them
            if isinstance(exc, redis.exceptions.NoScriptError):
                raise StoreUnavailable("Redis had forgotten the store's scripts (restarted?); they are loaded on the next attempt") from None
            self._down_until = time.monotonic() + self.retry_ms / 1000
            log.warning("online store unavailable: %s (next attempt in %.0f ms)", exc, self.retry_ms)
            raise StoreUnavailable(f"the online store is unavailable: {exc}") from None

    def _keep(self, catch_up: bool) -> None:
        """Load (or wait for) the namespace, then apply other namespaces' events as they come, and
        every few seconds check that the namespace is still there (Redis restarted without its
        data, or an operator reloads it): if not, serve from the snapshot until it is loaded again."""
        from offer_ranker.featurize.online import loader

        cursor, checked = None, 0.0
        while not self._stop.is_set():
            try:
                if cursor is None:
                    if self._reload:
                        loader.clear(self)
                        self._reload = False
                    cursor, self.levels = loader.ensure_loaded(self, self.wait_seconds, self._stop)
                    self._problem = None
                    self._ready.set()
                    checked = time.monotonic()
                    log.info("online store ready: namespace %s in %s", self.keys.ns, _safe(self.url))
                if time.monotonic() - checked > CHECK_S:
                    checked = time.monotonic()
                    if not loader.still_loaded(self):
                        log.warning("online store: namespace %s is gone or being reloaded; ranking from the "
                                    "snapshot until it is loaded again", self.keys.ns)
                        self._ready.clear()
                        self._problem, cursor = "loading", None
                        continue
                if not catch_up:
                    self._stop.wait(1.0)
                    continue
                reached = loader.catch_up(self, cursor, block_ms=int(KEEPER_BLOCK_S * 1000))
                if reached != cursor:  # read in batches: every replica's events pass through here
                    self._stop.wait(CATCH_UP_PAUSE_S)
                cursor = reached
            except StoreUnavailable as exc:
                self._problem = str(exc) if cursor is None else None
                self._stop.wait(self.retry_ms / 1000)
            except Exception as exc:  # noqa: BLE001 - the keeper must outlive any error
                if type(exc).__module__.startswith("redis"):
                    self._problem = f"online store unavailable: {exc}" if cursor is None else None
                else:
                    log.exception("online store keeper failed; retrying")
                self._stop.wait(self.retry_ms / 1000)


def _connect(url: str, **options: Any) -> Any:
    """A client of the Redis at ``url``; ``redis+cluster://host:port`` (``rediss+cluster://``) is a
    Redis Cluster, any node of it (redis-py's cluster client routes each command to its slot)."""
    import redis
    from redis.cluster import RedisCluster

    scheme, _, rest = url.partition("://")
    if scheme.endswith("+cluster"):
        options.pop("health_check_interval", None)
        return RedisCluster.from_url(f"{scheme.removesuffix('+cluster')}://{rest}", **options)
    return redis.Redis.from_url(url, **options)


def _utcnow() -> datetime:
    from offer_ranker.featurize.online.store import utcnow

    return utcnow()


def _datetime(us: int) -> datetime:
    return datetime(1970, 1, 1) + (np.datetime64(us, "us") - np.datetime64(0, "us")).item()


def _safe(url: str) -> str:
    """The URL without a password."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}" if "@" in rest else url


__all__ = ["RedisStore", "script", "user_key"]
