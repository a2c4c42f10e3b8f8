"""The online stores a service opens: one per snapshot, shared by every A/B arm that serves it.

Arms whose bundles grew from the same features share one store, so their offer counts see all the
traffic. Arms of different snapshots get a store each; in memory they count each other's events
(siblings, one journal), in Redis each namespace applies the others' events from the journal.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from offer_ranker.config import ServeConfig
from offer_ranker.featurize import snapshot as snapshots
from offer_ranker.featurize.online import OnlineStore, open_store
from offer_ranker.featurize.online.journal import Journal

log = logging.getLogger("offer_ranker.serve")


class StorePool:
    """Opens each snapshot's store once, with the service's settings."""

    def __init__(self, cfg: ServeConfig) -> None:
        self.cfg = cfg
        self.stores: dict[str, OnlineStore] = {}
        self._journal: Journal | None = None

    def open(self, folder: Path, manifest: Any) -> OnlineStore:
        snapshot_folder, _ = snapshots.find(folder, manifest)
        key = snapshots._snapshot_id(snapshot_folder)
        if key in self.stores:
            return self.stores[key]
        cfg = self.cfg
        if cfg.online_store == "memory":
            if self._journal is None and cfg.journal is not None:
                self._journal = Journal(cfg.journal)
            store = open_store(folder, manifest, salt=cfg.hash_salt, journal=self._journal,
                               remember=cfg.remember_requests, user_ttl_days=cfg.user_ttl_days)
            for other in self.stores.values():  # arms of other snapshots count each other's events
                other.siblings.append(store)
                store.siblings.append(other)
        else:
            store = open_store(folder, manifest, url=cfg.online_store, salt=cfg.hash_salt,
                               user_ttl_days=cfg.user_ttl_days, request_ttl_hours=cfg.request_ttl_hours,
                               timeout_ms=cfg.store_timeout_ms)
        self.stores[key] = store
        return store

    def close(self) -> None:
        for store in self.stores.values():
            store.close()
        if self._journal is not None:
            self._journal.close()
