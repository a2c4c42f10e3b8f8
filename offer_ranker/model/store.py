"""Bundles in the BentoML model store: save, load by tag, list (``offer-ranker models list``).

The store is BentoML's (``$BENTOML_HOME/models``; ``make`` keeps it in the checkout's ``.bentoml/``).
A bundle is saved as ``offer_ranker:<version>`` with its engine and objective as labels and its
training window, data fingerprint and validation metrics as metadata.
"""

from __future__ import annotations

import os
from importlib.metadata import version
from pathlib import Path
from typing import Any

from offer_ranker.model.bundle import Bundle, BundleError, read

MODEL_NAME = "offer_ranker"
PACKAGES = ("offer-ranker", "lightgbm", "xgboost-cpu", "duckdb", "polars", "numpy", "scikit-learn",
            "optuna", "bentoml")


def save(bundle: Bundle) -> str:
    """Save ``bundle`` to the BentoML model store; returns its tag ``offer_ranker:<version>``."""
    import bentoml

    labels = {"engine": bundle.info["engine"], "objective": bundle.objective}
    metadata = {k: bundle.info[k] for k in ("train_from", "train_until", "rows", "fingerprint") if k in bundle.info}
    metadata |= {f"metric_{k}": v for k, v in bundle.info.get("metrics", {}).items()
                 if isinstance(v, (int, float))}
    with bentoml.models.create(MODEL_NAME, labels=labels, metadata=metadata) as model:
        tag = str(model.tag)
        bundle.info["tag"] = tag
        bundle.write(Path(model.path))
    return tag


def load(tag: str = "latest") -> Bundle:
    """Load a bundle from the BentoML model store by tag (``offer_ranker:<version>``, or a version)."""
    import bentoml
    from bentoml.exceptions import NotFound

    if ":" not in tag:
        tag = f"{MODEL_NAME}:{tag}"
    try:
        model = bentoml.models.get(tag)
    except NotFound:
        raise BundleError(f"model {tag} is not in the BentoML model store ({_store()}); "
                          f"train one with `offer-ranker train` or list them with `offer-ranker models list`") from None
    bundle = read(Path(model.path))
    bundle.info["tag"] = str(model.tag)
    return bundle


def bentoml_path(tag: str) -> str:
    """The directory of a saved bundle in the BentoML model store."""
    import bentoml

    return bentoml.models.get(tag).path


def exists(tag: str) -> bool:
    """Whether ``tag`` names a bundle in the model store."""
    try:
        bentoml_path(tag)
    except Exception:  # noqa: BLE001 - NotFound, or not a valid tag
        return False
    return True


def listing() -> list[dict[str, Any]]:
    """The bundles in the model store, newest first, with their headline facts (none: empty)."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        models = bentoml.models.list(MODEL_NAME)
    except NotFound:  # nothing saved under the name yet
        return []
    rows = []
    for model in sorted(models, key=lambda m: m.info.creation_time, reverse=True):
        meta = dict(model.info.metadata)
        rows.append({"tag": str(model.tag), "created": model.info.creation_time.strftime("%Y-%m-%d %H:%M"),
                     **dict(model.info.labels), **meta})
    return rows


def versions() -> dict[str, str]:
    found = {}
    for package in PACKAGES:
        try:
            found[package] = version(package)
        except Exception:  # noqa: BLE001 - an optional package may be absent
            continue
    return found


def _store() -> str:
    return os.environ.get("BENTOML_HOME", "~/bentoml") + "/models"
