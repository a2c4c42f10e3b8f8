"""One request's candidates scored: online features, then the bundle's click model at the top slot.

A failure of either step is a fallback reason, never an exception: the policy then ranks by the
cold-start priors alone (:func:`offer_ranker.policy.page.choose_page`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from offer_ranker.featurize.frame import with_position
from offer_ranker.featurize.online import OnlineStore, StoreUnavailable
from offer_ranker.model.bundle import Bundle
from offer_ranker.serve.api import Reason

log = logging.getLogger("offer_ranker.serve")
#: the fallback of a request ranked without the online state (the store could not be reached)
ONLINE_STORE_UNAVAILABLE = "online_store_unavailable"


@dataclass
class Scored:
    """The candidates' features and model outputs, each (n,) unless noted; None where unavailable.

    features : name -> column (numeric float64 with NaN, categorical object arrays of str / None)
    X : (n, features) the model's matrix
    raw, p_top : the click model's score and calibrated p_click, both at slot 1
    value : what a click is worth under the bundle's objective (1 for clicks)
    """

    features: dict[str, np.ndarray] = field(default_factory=dict)
    X: np.ndarray | None = None
    raw: np.ndarray | None = None
    p_top: np.ndarray | None = None
    value: np.ndarray | None = None
    fallback: str | None = None
    features_seconds: float = 0.0
    model_seconds: float = 0.0


def score(bundle: Bundle | None, store: OnlineStore | None, request: dict[str, Any]) -> Scored:
    """Features from ``store`` and the click model of ``bundle`` for ``request`` (``user_id``, ``ts``
    naive UTC, ``context``, ``candidates`` as :meth:`OnlineStore.feature_columns` takes them)."""
    if bundle is None:
        return Scored(fallback="no_model")
    if store is None:
        return Scored(fallback="no_snapshot")
    t0 = time.perf_counter()
    fallback = None
    try:
        features = store.feature_columns(request)
    except StoreUnavailable:  # what the snapshot alone knows: the offers' attributes, no one's history
        features, fallback = store.cold_columns(request), ONLINE_STORE_UNAVAILABLE
    except Exception as exc:  # noqa: BLE001 - a feature failure must not fail the request
        log.exception("features failed; ranking by priors")
        return Scored(fallback=f"features_failed: {type(exc).__name__}", features_seconds=time.perf_counter() - t0)
    t1 = time.perf_counter()
    scored = Scored(features=features, fallback=fallback, features_seconds=t1 - t0)
    try:
        scored.X = bundle.spec.row_matrix(features)
        raw = bundle.ctr.predict(with_position(scored.X, 1.0))
        if not np.isfinite(raw).all():
            raise ValueError("the click model returned non-finite scores")
        scored.raw, scored.p_top = raw, np.clip(bundle.calibration(raw), 0.0, 1.0)
        scored.value = bundle.value_per_click(scored.X)
    except Exception as exc:  # noqa: BLE001 - a model failure must not fail the request
        log.exception("model failed; ranking by priors")
        scored.raw = scored.p_top = scored.value = None
        scored.fallback = f"model_failed: {type(exc).__name__}"
    scored.model_seconds = time.perf_counter() - t1
    return scored


def reasons(bundle: Bundle, scored: Scored, shown: np.ndarray, top: int = 3) -> list[list[Reason]]:
    """The features that raised (or lowered) each shown offer's click score most: SHAP values of
    the click model in the offer's slot (the slot itself left out), largest magnitude first."""
    positions = np.arange(1, len(shown) + 1, dtype=np.float64)
    contrib = bundle.ctr.contributions(with_position(scored.X[shown], positions))
    names = bundle.spec.names
    out = []
    for row, i in zip(contrib, shown):
        values = row[:len(names)]
        best = np.argsort(-np.abs(values))[:top]
        out.append([Reason(feature=names[j], value=_plain(scored.features[names[j]][i]),
                           contribution=round(float(values[j]), 6)) for j in best])
    return out


def shown_features(features: dict[str, np.ndarray], names: tuple[str, ...], rows: list[int]) -> dict[str, list]:
    """The model inputs of the shown rows, JSON-ready: numeric rounded to 6 decimals (NaN -> None),
    categorical as str / None. One matrix for all numeric columns: a few numpy calls per request
    instead of a few per feature."""
    numeric = [n for n in names if features[n].dtype != object]
    out: dict[str, list] = {}
    if numeric:
        block = np.round(np.column_stack([features[n] for n in numeric])[rows].astype(np.float64), 6)
        for name, values in zip(numeric, block.T.tolist()):
            out[name] = [None if v != v else v for v in values]
    for name in names:
        if name not in out:
            column = features[name]
            out[name] = [None if column[i] is None else str(column[i]) for i in rows]
    return {name: out[name] for name in names}


def _plain(value: Any) -> float | str | None:
    if value is None:
        return None
    if isinstance(value, (float, np.floating)):
        return None if np.isnan(value) else round(float(value), 6)
    return str(value)
