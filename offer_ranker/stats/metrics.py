"""Ranking and probability metrics over requests, vectorised with numpy.

Rows are impressions; ``groups`` holds the number of rows of each request, in row order (the
requests' rows are contiguous). Per-request metrics return one value per request (NaN where the
metric is undefined, e.g. NDCG of a request without any click), so the evaluation can average,
segment and bootstrap them.
"""

from __future__ import annotations

import zlib

import numpy as np


def request_index(groups: np.ndarray) -> np.ndarray:
    """The request number of every row."""
    return np.repeat(np.arange(len(groups)), groups)


def request_starts(groups: np.ndarray) -> np.ndarray:
    """The first row of every request: shape (n_requests,)."""
    return np.concatenate([[0], np.cumsum(groups)[:-1]]).astype(np.int64)


def request_rows(requests: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Row indexes of the given requests (with repeats), in order."""
    sizes = np.asarray(groups)[requests]
    offsets = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return np.repeat(request_starts(groups)[requests], sizes) + offsets


def offer_hash(offer_ids: list[str] | np.ndarray) -> np.ndarray:
    """A stable hash of each id (CRC-32): the tie-break of equal scores, so that no method gains
    from the logged order."""
    return np.array([zlib.crc32(str(o).encode()) for o in offer_ids], dtype=np.int64)


def ranks(score: np.ndarray, groups: np.ndarray, tiebreak: np.ndarray | None = None) -> np.ndarray:
    """1-based rank of every row within its request, by descending score.

    Ties are broken by ``tiebreak`` (ascending), then by row order; pass a hash of the offer id so
    that no method gains from the logged order.
    """
    req = request_index(groups)
    keys = (np.arange(len(score)),) if tiebreak is None else (np.arange(len(score)), tiebreak)
    order = np.lexsort((*keys, -np.asarray(score, dtype=np.float64), req))
    out = np.empty(len(score), dtype=np.int64)
    out[order] = np.arange(len(score)) - request_starts(groups)[req[order]] + 1
    return out


def dcg_per_request(rank: np.ndarray, gains: np.ndarray, groups: np.ndarray, k: int,
                    discount: np.ndarray | None = None) -> np.ndarray:
    """Sum over the top ``k`` of gain x discount(rank); the discount defaults to 1 / log2(rank + 1)."""
    top = rank <= k
    d = 1.0 / np.log2(rank[top] + 1.0) if discount is None else discount[rank[top] - 1]
    return np.bincount(request_index(groups)[top], weights=gains[top] * d, minlength=len(groups))


def ndcg_per_request(score: np.ndarray, gains: np.ndarray, groups: np.ndarray, k: int,
                     tiebreak: np.ndarray | None = None) -> np.ndarray:
    """NDCG@k of each request (NaN when the request has no positive gain)."""
    return ndcg_from_rank(ranks(score, groups, tiebreak), gains, groups, k)


def ndcg_from_rank(rank: np.ndarray, gains: np.ndarray, groups: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k of each request given the rows' ranks (NaN when the request has no positive gain)."""
    dcg = dcg_per_request(rank, gains, groups, k)
    ideal = dcg_per_request(ranks(gains, groups), gains, groups, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ideal > 0, dcg / ideal, np.nan)


def mrr_per_request(rank: np.ndarray, relevant: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Reciprocal rank of the first relevant row (NaN when none is relevant)."""
    out = np.zeros(len(groups))
    req = request_index(groups)
    hit = relevant > 0
    np.maximum.at(out, req[hit], 1.0 / rank[hit])
    any_hit = np.bincount(req[hit], minlength=len(groups)) > 0
    return np.where(any_hit, out, np.nan)


def precision_per_request(rank: np.ndarray, relevant: np.ndarray, groups: np.ndarray, k: int) -> np.ndarray:
    """Share of the top ``k`` slots (or of the request, if shorter) holding a relevant row."""
    top = rank <= k
    hits = np.bincount(request_index(groups)[top], weights=(relevant[top] > 0).astype(float), minlength=len(groups))
    return hits / np.minimum(groups, k)


def auc(p: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve (NaN with a single class)."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y)
    if y.min() == y.max():
        return float("nan")
    return float(roc_auc_score(y, p))


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of clicks ``y`` under probabilities ``p`` (NaN when empty)."""
    from sklearn.metrics import log_loss as sklearn_log_loss

    if len(p) == 0:
        return float("nan")
    return float(sklearn_log_loss(np.asarray(y), np.asarray(p, dtype=np.float64), labels=[0, 1]))


def ece(p: np.ndarray, y: np.ndarray, bins: int = 20) -> float:
    """Expected calibration error: mean |predicted - observed| over equal-count bins of p."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(p) == 0:
        return float("nan")
    order = np.argsort(p, kind="stable")
    total = 0.0
    for part in np.array_split(order, min(bins, len(p))):
        total += len(part) * abs(p[part].mean() - y[part].mean())
    return float(total / len(p))


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """(mean predicted, observed rate) per quantile bin of ``p``: the points of a reliability diagram."""
    from sklearn.calibration import calibration_curve

    observed, predicted = calibration_curve(np.asarray(y), np.asarray(p, dtype=np.float64), n_bins=bins,
                                            strategy="quantile")
    return predicted, observed


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of exposure counts: 0 = every offer equally often, 1 = one offer always."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return float("nan")
    return float(np.sum((2 * np.arange(1, n + 1) - n - 1) * x) / (n * total))


def bootstrap_ci(values: np.ndarray, resamples: np.ndarray, weights: np.ndarray | None = None,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile CI of the (weighted) mean of per-request ``values`` over request ``resamples``.

    ``resamples`` is (B, n_requests) of request indexes; NaN values (undefined for a request) are
    left out of each mean, as they are from the point estimate. With ``weights``, the statistic
    is the ratio sum(values) / sum(weights) (e.g. clicks of the model's order over the oracle's).
    """
    v = values[resamples]
    if weights is None:
        stats = np.nanmean(v, axis=1)
    else:
        stats = np.nansum(v, axis=1) / np.nansum(weights[resamples], axis=1)
    lo, hi = np.nanpercentile(stats, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return float(lo), float(hi)


def percentile_ci(draws: np.ndarray | list[float], level: float = 0.95) -> list[float]:
    """``[lo, hi]``: the central ``level`` interval of bootstrap draws of a statistic."""
    lo, hi = np.nanpercentile(np.asarray(draws, dtype=np.float64), [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return [float(lo), float(hi)]


def summary(values: np.ndarray, resamples: np.ndarray, weights: np.ndarray | None = None) -> dict[str, object]:
    """``{"value", "ci", "n"}`` of per-request ``values``: their mean (or, with ``weights``, the ratio
    of sums) and its request-bootstrap 95% interval; ``n`` counts the requests where it is defined."""
    if weights is None:
        value = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    else:
        value = float(np.nansum(values) / np.nansum(weights))
    lo, hi = bootstrap_ci(values, resamples, weights)
    return {"value": value, "ci": [lo, hi], "n": int(np.isfinite(values).sum())}
