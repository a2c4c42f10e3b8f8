"""The model registry: which bundle is ``production`` (or ``candidate``, or any alias), in MLflow.

A bundle lives in the BentoML model store under its tag (``offer_ranker:<version>``). Promoting it
registers a version of the MLflow registered model ``offer_ranker`` that points at that tag (its
``bentoml_tag`` tag; the source is ``bentoml://<tag>``) and moves an alias to it. Every alias keeps
its history (a tag of the registered model), so ``rollback`` moves it back to where it was before.

Serving resolves a reference with :func:`resolve`: an alias, a tag or version, or ``latest``. With
no ``production`` alias yet it serves the newest bundle and says so. Reading an alias from the
default SQLite store is a plain read-only query (:func:`_sqlite_alias`): the service resolves its
model at start in every worker, and importing MLflow there would cost seconds and 200 MB each.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone

from offer_ranker.model import store, tracking
from offer_ranker.model.bundle import Bundle, BundleError

NAME = store.MODEL_NAME
PRODUCTION = "production"


class RegistryError(BundleError):
    """An alias cannot be resolved, promoted or rolled back; the message says why."""


@dataclass(frozen=True)
class Resolved:
    """What a reference names: ``tag`` to load, and ``note`` when it is not what was asked for."""

    ref: str
    tag: str
    how: str  # e.g. "alias production -> registry version 3"
    note: str | None = None


def resolve(ref: str) -> Resolved:
    """``ref`` as a BentoML tag: a registry alias, a tag, a version, or ``latest`` (the newest bundle).
    A missing ``production`` alias falls back to the newest bundle, with a ``note`` saying so."""
    if ":" in ref:
        return Resolved(ref, ref, "tag")
    if ref == "latest":
        return Resolved(ref, _newest(ref), "the newest bundle")
    tag = alias_tag(ref)
    if tag is not None:
        return Resolved(ref, tag, f"alias {ref} in the model registry")
    if ref == PRODUCTION:
        newest = _newest(ref)
        return Resolved(ref, newest, "the newest bundle",
                        note=f"no '{PRODUCTION}' alias in the model registry ({tracking.tracking_uri()}) yet: serving "
                             f"the newest bundle, {newest}; promote one with `offer-ranker models promote TAG`")
    if store.exists(f"{NAME}:{ref}"):
        return Resolved(ref, f"{NAME}:{ref}", "version")
    raise RegistryError(f"'{ref}' is neither an alias in the model registry ({tracking.tracking_uri()}) nor a "
                        f"bundle version in the BentoML model store; see `offer-ranker models list`")


def load(ref: str) -> Bundle:
    """The bundle ``ref`` names (see :func:`resolve`)."""
    return store.load(resolve(ref).tag)


def alias_tag(alias: str) -> str | None:
    """The BentoML tag the registry's ``alias`` points at, or None (no registry, no such alias)."""
    uri = tracking.tracking_uri()
    db = tracking.local_db(uri)
    if db is not None:
        return _sqlite_alias(db, alias)
    c = tracking.client()
    try:
        version = c.get_model_version_by_alias(NAME, alias)
    except Exception as exc:  # noqa: BLE001 - MLflow says "not found" with an exception
        if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "not found" in str(exc).lower():
            return None
        raise
    return version.tags.get("bentoml_tag")


def aliases() -> dict[str, list[str]]:
    """BentoML tag -> the aliases pointing at it (empty without a registry)."""
    db = tracking.local_db(tracking.tracking_uri())
    if db is not None and not db.exists():
        return {}
    c = tracking.client()
    try:
        model = c.get_registered_model(NAME)
    except Exception:  # noqa: BLE001 - nothing promoted yet
        return {}
    found: dict[str, list[str]] = {}
    for alias, version in sorted(model.aliases.items()):
        found.setdefault(c.get_model_version(NAME, version).tags.get("bentoml_tag", "?"), []).append(alias)
    return found


def promote(bundle: Bundle, alias: str = PRODUCTION, *, reason: str = "") -> str:
    """Point ``alias`` at the saved ``bundle`` (registering it as a version first, once); returns the version."""
    c = tracking.client()
    version = _version_of(c, bundle)
    history = _history(c, alias) + [version]
    c.set_registered_model_alias(NAME, alias, version)
    c.set_registered_model_tag(NAME, f"history.{alias}", json.dumps(history))
    c.set_model_version_tag(NAME, version, f"promoted.{alias}", f"{_now()} {reason}".strip())
    return version


def rollback(alias: str = PRODUCTION) -> tuple[str, str]:
    """Move ``alias`` back to the version it pointed at before the last promotion; returns the tags
    (from, to)."""
    c = tracking.client()
    history = _history(c, alias)
    if len(history) < 2:
        raise RegistryError(f"'{alias}' has no earlier version to roll back to (history: {history or 'empty'})")
    current, previous = history[-1], history[-2]
    c.set_registered_model_alias(NAME, alias, previous)
    c.set_registered_model_tag(NAME, f"history.{alias}", json.dumps(history[:-1]))
    c.set_model_version_tag(NAME, current, f"rolled_back.{alias}", _now())
    return _tag_of(c, current), _tag_of(c, previous)


def _version_of(c, bundle: Bundle) -> str:
    """The registry version of the saved ``bundle``, registered now if it is not yet."""
    try:
        c.get_registered_model(NAME)
    except Exception:  # noqa: BLE001 - the first promotion
        c.create_registered_model(NAME, description="offer-ranker bundles; each version points at a BentoML tag")
    for version in c.search_model_versions(f"name = '{NAME}'"):
        if version.tags.get("bentoml_tag") == bundle.version:
            return str(version.version)
    info = bundle.info
    run_id = tracking.run_of(c, bundle)
    created = c.create_model_version(
        NAME, source=f"bentoml://{bundle.version}", run_id=run_id,
        tags={"bentoml_tag": bundle.version, "engine": info["engine"], "objective": info["objective"],
              "train_until": info["train_until"], "fingerprint": info.get("fingerprint", "")},
        description=f"BentoML bundle {bundle.version}")
    return str(created.version)


def _history(c, alias: str) -> list[str]:
    try:
        return json.loads(c.get_registered_model(NAME).tags.get(f"history.{alias}", "[]"))
    except Exception:  # noqa: BLE001 - no registered model yet
        return []


def _tag_of(c, version: str) -> str:
    return c.get_model_version(NAME, version).tags.get("bentoml_tag", "?")


def _sqlite_alias(db, alias: str) -> str | None:
    """``alias`` read from MLflow's SQLite tables, read-only (a missing file is no registry: it is not created)."""
    if not db.exists():
        return None
    try:
        with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=10) as conn:
            row = conn.execute(
                "SELECT t.value FROM registered_model_aliases a JOIN model_version_tags t ON t.name = a.name AND "
                "t.version = a.version AND t.workspace = a.workspace WHERE a.name = ? AND a.alias = ? AND "
                "a.workspace = 'default' AND t.key = 'bentoml_tag'", (NAME, alias)).fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # a store nothing was registered in
            return None
        raise RegistryError(f"cannot read the model registry {db}: {exc}") from None
    return row[0] if row else None


def _newest(ref: str) -> str:
    rows = store.listing()
    if not rows:
        raise RegistryError(f"no bundles in the BentoML model store to serve as '{ref}': train one with "
                            f"`offer-ranker train --features DIR`")
    return rows[0]["tag"]


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
