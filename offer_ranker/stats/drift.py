"""Distribution drift: a reference profile of a column, and the population stability index (PSI)
of new values against it.

A profile is a small JSON-ready dict (the model bundle stores one per model input, see ``offer_ranker.model.reference``)::

    numeric      {"kind": "numeric", "edges": [e1, ..., ek], "shares": [s0, ..., sk], "null": s, "rows": n}
                 bins (-inf, e1), [e1, e2), ..., [ek, inf); edges are the reference's interior
                 quantiles (deciles by default), deduplicated; NaN / None has its own bin
    categorical  {"kind": "categorical", "levels": [l1, ...], "shares": [s1, ...], "other": s,
                 "null": s, "rows": n}
                 the most frequent levels (20 by default); every other level, and any level
                 first seen later, is "other"; None has its own bin

``shares`` plus the ``null`` (and ``other``) shares sum to 1.

    PSI = sum over bins of (current - reference) x ln(current / reference)

Rules of thumb: < 0.1 stable, 0.1-0.25 a moderate shift, > 0.25 a major one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import polars as pl

Kind = Literal["numeric", "categorical"]
Values = Sequence[Any] | np.ndarray | pl.Series

#: Shares below this count as this in the PSI, so an empty bin costs a large but finite amount.
EPS = 1e-4


def profile(values: Values, *, kind: Kind, bins: int = 10, levels: int = 20) -> dict[str, Any]:
    """The reference profile of ``values`` (one column, any length ≥ 0).

    bins : quantile bins of a numeric column (fewer when quantiles coincide, e.g. a column of counts
        that is mostly 0)
    levels : most frequent levels a categorical column keeps; the rest share the "other" bucket
    """
    if kind == "numeric":
        if bins < 1:
            raise ValueError(f"bins must be at least 1, got {bins}")
        x = _floats(values)
        finite = x[np.isfinite(x)]
        # the interior deciles only: the outer bins are open, so later values beyond the reference's
        # range still land in a bin
        edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])) if finite.size else np.array([])
        profile_ = {"kind": "numeric", "edges": [float(e) for e in edges]}
        shares, null = _numeric_shares(profile_["edges"], x)
    elif kind == "categorical":
        if levels < 1:
            raise ValueError(f"levels must be at least 1, got {levels}")
        s = _strings(values)
        # ties broken by name so the same data always gives the same levels
        counts = s.drop_nulls().value_counts().sort(["count", "level"], descending=[True, False])
        profile_ = {"kind": "categorical", "levels": counts["level"].head(levels).to_list()}
        shares, other, null = _categorical_shares(profile_["levels"], s)
        profile_["other"] = other
    else:
        raise ValueError(f"kind must be 'numeric' or 'categorical', got {kind!r}")
    return profile_ | {"shares": shares, "null": null, "rows": len(values)}


def shares(reference: dict[str, Any], values: Values) -> np.ndarray:
    """Shares of ``values`` in the bins of ``reference``, null (and other) last: shape (bins,).

    All zeros when ``values`` is empty."""
    if reference["kind"] == "numeric":
        bins, null = _numeric_shares(reference["edges"], _floats(values))
        return np.array([*bins, null])
    bins, other, null = _categorical_shares(reference["levels"], _strings(values))
    return np.array([*bins, other, null])


def reference_shares(reference: dict[str, Any]) -> np.ndarray:
    """The reference's own shares in the order of :func:`shares`: shape (bins,)."""
    tail = [reference["null"]] if reference["kind"] == "numeric" else [reference["other"], reference["null"]]
    return np.array([*reference["shares"], *tail], dtype=np.float64)


def psi(reference: dict[str, Any], values: Values, *, eps: float = EPS) -> float:
    """Population stability index of ``values`` against the ``reference`` profile (≥ 0, unitless).

    Shares below ``eps`` (in either distribution) count as ``eps``. NaN when ``values`` is empty.
    """
    if len(values) == 0:
        return float("nan")
    return psi_from_shares(reference_shares(reference), shares(reference, values), eps=eps)


def psi_from_shares(expected: np.ndarray, actual: np.ndarray, *, eps: float = EPS) -> float:
    """PSI of two share vectors over the same bins (each summing to 1)."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), eps)
    a = np.maximum(np.asarray(actual, dtype=np.float64), eps)
    return float(np.sum((a - e) * np.log(a / e)))


def _floats(values: Values) -> np.ndarray:
    if isinstance(values, pl.Series):
        return values.cast(pl.Float64).fill_null(float("nan")).to_numpy()
    if isinstance(values, np.ndarray) and values.dtype != object:
        return values.astype(np.float64, copy=False)
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _strings(values: Values) -> pl.Series:
    # a fixed name: value_counts() names its columns after the series and "count"
    if isinstance(values, pl.Series):
        return values.cast(pl.String).rename("level")
    return pl.Series("level", [None if v is None else str(v) for v in values], dtype=pl.String)


def _numeric_shares(edges: list[float], x: np.ndarray) -> tuple[list[float], float]:
    n = len(x)
    if n == 0:
        return [0.0] * (len(edges) + 1), 0.0
    finite = x[~np.isnan(x)]
    # side="right": a value equal to an edge falls in the bin that starts there, [e_i, e_i+1)
    counts = np.bincount(np.searchsorted(np.asarray(edges), finite, side="right"), minlength=len(edges) + 1)
    return [float(c / n) for c in counts], float((n - finite.size) / n)


def _categorical_shares(levels: list[str], s: pl.Series) -> tuple[list[float], float, float]:
    n = s.len()
    if n == 0:
        return [0.0] * len(levels), 0.0, 0.0
    counts = dict(s.drop_nulls().value_counts().iter_rows())
    kept = [counts.get(level, 0) / n for level in levels]
    null = s.null_count() / n
    return [float(k) for k in kept], float(max(1.0 - sum(kept) - null, 0.0)), float(null)
