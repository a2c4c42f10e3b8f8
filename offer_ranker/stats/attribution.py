"""Feature attributions in probability points, from attributions on the log-odds scale.

TreeSHAP explains a click model exactly on the log-odds scale: per row, ``base + Σ φ_j = logit(p)``.
Readers want probability points, and rescaling each φ_j by the row's ``(p − p_base) / Σ φ`` is
unbounded: it blows up when the contributions nearly cancel while ``p − p_base`` does not.

:func:`probability_points` splits ``p − p_base`` instead as a two-player game between the
features that raise the log-odds (sum ``P ≥ 0``) and those that lower it (sum ``N ≤ 0``), whose
Shapley values are::

    up   = ½ [(σ(b + P) − σ(b)) + (σ(b + P + N) − σ(b + N))]   ≥ 0
    down = ½ [(σ(b + N) − σ(b)) + (σ(b + P + N) − σ(b + P))]   ≤ 0

and shares ``up`` among the raising features and ``down`` among the lowering ones in proportion to
their log-odds contributions. So every row's attributions add up exactly to ``σ(b + Σ φ) − σ(b)``,
each keeps the sign of its φ, and each lies within ``[−1, 1]`` (``[−100, 100]`` points), since
``up`` and ``down`` are differences of probabilities.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit


def probability_points(phi: np.ndarray, base: float | np.ndarray, *, residual: np.ndarray | None = None) -> np.ndarray:
    """(rows, features) attributions in probability (0–1) units.

    phi : (rows, features) log-odds attributions; base : the base log-odds (scalar or (rows,))
    residual : (rows,) log-odds that belong to no reported feature but are part of the prediction
        (e.g. an input held fixed for every row): it joins the side of its sign and its share goes to
        that side's features. A row whose side has no feature shares it over all features by |φ|.
    Returns ψ with ``ψ.sum(1) == σ(base + phi.sum(1) + residual) − σ(base)``.
    """
    phi = np.asarray(phi, dtype=np.float64)
    rows = phi.shape[0]
    b = np.broadcast_to(np.asarray(base, dtype=np.float64), (rows,))
    r = np.zeros(rows) if residual is None else np.asarray(residual, dtype=np.float64)
    up_phi, down_phi = np.where(phi > 0, phi, 0.0), np.where(phi < 0, phi, 0.0)
    P = up_phi.sum(axis=1) + np.maximum(r, 0.0)
    N = down_phi.sum(axis=1) + np.minimum(r, 0.0)
    p0, pP, pN, pPN = expit(b), expit(b + P), expit(b + N), expit(b + P + N)
    up = 0.5 * ((pP - p0) + (pPN - pN))
    down = 0.5 * ((pN - p0) + (pPN - pP))
    return _share(up, up_phi, phi) + _share(down, down_phi, phi)


def _share(total: np.ndarray, weights: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """``total`` (rows,) split over each row's columns in proportion to ``weights`` (all of one sign).
    Where a row has no such column (its share came from the residual alone), it is spread over all
    columns by |φ|, or evenly when every φ is 0."""
    s = weights.sum(axis=1)
    # the fraction first: weights * total could underflow to 0 for tiny (subnormal) weights
    out = np.divide(weights, s[:, None], out=np.zeros_like(weights), where=s[:, None] != 0) * total[:, None]
    orphan = (s == 0) & (total != 0)
    if orphan.any() and phi.shape[1]:
        magnitude = np.abs(phi[orphan])
        m = magnitude.sum(axis=1, keepdims=True)
        even = np.full_like(magnitude, 1.0 / phi.shape[1])
        out[orphan] = np.where(m > 0, magnitude / np.where(m > 0, m, 1.0), even) * total[orphan, None]
    return out
