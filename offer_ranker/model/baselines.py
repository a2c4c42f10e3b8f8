"""Everything that can order a request's candidates, behind one small interface.

A ranker has ``score(X) -> scores`` over the rows of the feature matrix (higher = higher on the
page), ``write(path)`` and a loader in :func:`read_ranker`. The trained :class:`Bundle` is one;
the evaluation's baselines are the others:

* :class:`PopularityRanker`: the offer's smoothed click rate (the ``offer_ctr`` feature)
* :class:`RandomRanker`: a seeded uniform order, the same for the same rows

:func:`order` turns scores into the returned list: descending score, ties broken by a stable
hash of the offer id (never by the logged order, which would favour the logging policy).
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from offer_ranker.featurize.frame import FeatureSpec


class Ranker(Protocol):
    def score(self, X: np.ndarray) -> np.ndarray: ...

    def write(self, path: Path) -> None: ...


@dataclass(frozen=True)
class PopularityRanker:
    spec: FeatureSpec
    column: str = "offer_ctr"

    def score(self, X: np.ndarray) -> np.ndarray:
        return np.nan_to_num(X[:, self.spec.names.index(self.column)], nan=0.0)

    def write(self, path: Path) -> None:
        _write(path, {"kind": "popularity", "column": self.column, "spec": self.spec.to_json()})


@dataclass(frozen=True)
class RandomRanker:
    seed: int = 0

    def score(self, X: np.ndarray) -> np.ndarray:
        # a hash of each row's features and the seed: the same rows get the same order
        rows = np.ascontiguousarray(np.nan_to_num(X, nan=-1.0))
        return np.array([zlib.crc32(r.tobytes(), self.seed) for r in rows], dtype=np.float64)

    def write(self, path: Path) -> None:
        _write(path, {"kind": "random", "seed": self.seed})


def _write(path: Path, payload: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "ranker.json").write_text(json.dumps(payload))


def read_ranker(path: Path) -> Ranker:
    """Load any ranker written with ``write``."""
    from offer_ranker.model import bundle

    path = Path(path)
    if (path / "bundle.json").exists():
        return bundle.read(path)
    payload = json.loads((path / "ranker.json").read_text())
    if payload["kind"] == "popularity":
        return PopularityRanker(FeatureSpec.from_json(payload["spec"]), payload["column"])
    return RandomRanker(payload["seed"])


def offer_hash(offer_ids: list[str] | np.ndarray) -> np.ndarray:
    return np.array([zlib.crc32(str(o).encode()) for o in offer_ids], dtype=np.int64)


def order(scores: np.ndarray, offer_ids: list[str] | np.ndarray) -> np.ndarray:
    """Indexes of one request's candidates, best first."""
    return np.lexsort((offer_hash(offer_ids), -np.asarray(scores, dtype=np.float64)))
