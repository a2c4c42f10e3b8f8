"""The online feature store: one interface (:class:`OnlineStore`), two backends.

* ``memory`` (:class:`~.memory.MemoryStore`), the embedded default: the snapshot in the process plus
  the events since, durable through a journal replayed on restart;
* ``redis`` (:class:`~.redis.RedisStore`): the state in Redis or Valkey, shared by every replica
  and worker, loaded from the snapshot once.

Both give a request the features ``train.parquet`` holds for it (the online-parity test replays a
day against both).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from offer_ranker.featurize import snapshot as snapshots
from offer_ranker.featurize.online.store import (
    EVENT_KINDS,
    Event,
    Feedback,
    OnlineStore,
    Served,
    StoreUnavailable,
    user_key,
)

__all__ = ["EVENT_KINDS", "Event", "Feedback", "OnlineStore", "Served", "StoreUnavailable", "open_store", "user_key"]


def open_store(path: Path | str, manifest: Mapping[str, Any] | Path | str | None = None, *, url: str | None = None,
               salt: str = "", journal: Path | None = None, remember: int = 100_000, user_ttl_days: float = 30.0,
               **redis_options: Any) -> OnlineStore:
    """The online store for the snapshot at ``path`` (a features folder, or a snapshot folder whose
    manifest is ``manifest`` or in its parent folder).

    url : None or ``memory`` for the embedded store; ``redis://host:port/db`` (or ``rediss://``,
        ``unix://``) for Redis/Valkey
    salt : the secret of the user-key hash (``serve.hash_salt``)
    journal : the memory store's journal file (None: not durable)
    remember : requests the memory store keeps for ``/feedback``
    user_ttl_days : a user's recorded events are forgotten this long after their last one
    redis_options : see :class:`~.redis.RedisStore`
    """
    folder, found = snapshots.find(path, manifest)
    m = snapshots.Manifest.of(found)
    snap = snapshots.Snapshot(folder, m)
    if url is None or url == "memory":
        from offer_ranker.featurize.online.memory import MemoryStore

        return MemoryStore(snap, m, salt=salt, journal=journal, remember=remember, user_ttl_days=user_ttl_days)
    from offer_ranker.featurize.online.redis import RedisStore

    return RedisStore(snap, m, folder, url=url, salt=salt, user_ttl_days=user_ttl_days, **redis_options)
