"""Off-policy estimates of a new ranking's expected clicks in the top k slots, from logged data.

The estimand is V(pi) = E[sum over slots j <= k of click(pi(j), j)] per request. Under the
item-position model (a click depends on the offer, its slot and the context, not on the other
offers shown), each logged impression of offer a at slot j with click c and logging propensity
p = P(logging policy puts a at j) gives an unbiased term for slot j whenever the new policy puts
a at j too:

* IPS:   sum_j 1[pi(j) = a_j] c_j / p_j
* SNIPS: per slot, the IPS sum divided by the sum of its weights (whose expectation is the
  number of requests), then summed over slots: a little bias, much less variance
* DR:    sum_j r(pi(j), j) + sum_j 1[pi(j) = a_j] (c_j - r(a_j, j)) / p_j, with r the click
  model's p_click at a slot (the direct method, corrected by the weighted residuals)

All functions take one row per logged impression and return per-request values (so the
evaluation can average and bootstrap them by request), except SNIPS, which is a ratio.
"""

from __future__ import annotations

import numpy as np

from offer_ranker.stats.metrics import request_index


def _matched_weight(new_rank: np.ndarray, position: np.ndarray, propensity: np.ndarray, k: int) -> np.ndarray:
    """1/p where the new policy puts the logged offer at its logged slot within the top k, else 0."""
    match = (new_rank == position) & (position <= k)
    return np.where(match, 1.0 / propensity, 0.0)


def logged_value(position: np.ndarray, click: np.ndarray, groups: np.ndarray, k: int) -> np.ndarray:
    """Clicks in the top k slots of each logged request (the logging policy's own value)."""
    top = position <= k
    return np.bincount(request_index(groups)[top], weights=click[top], minlength=len(groups))


def ips(new_rank: np.ndarray, position: np.ndarray, click: np.ndarray, propensity: np.ndarray,
        groups: np.ndarray, k: int) -> np.ndarray:
    w = _matched_weight(new_rank, position, propensity, k)
    return np.bincount(request_index(groups), weights=w * click, minlength=len(groups))


def snips(new_rank: np.ndarray, position: np.ndarray, click: np.ndarray, propensity: np.ndarray,
          groups: np.ndarray, k: int) -> float:
    """Self-normalised IPS over all requests."""
    return snips_ratio(*snips_terms(new_rank, position, click, propensity, groups, k))


def snips_terms(new_rank: np.ndarray, position: np.ndarray, click: np.ndarray, propensity: np.ndarray,
                groups: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per request and slot, the sums of w c and of w: (requests, k) each, so that bootstrap
    resamples of requests reuse them (:func:`snips_ratio` of the resampled rows)."""
    w = _matched_weight(new_rank, position, propensity, k)
    req = request_index(groups)
    slot = np.clip(position, 1, k).astype(np.int64) - 1
    wc = np.zeros((len(groups), k))
    ws = np.zeros((len(groups), k))
    np.add.at(wc, (req, slot), w * click)
    np.add.at(ws, (req, slot), w)
    return wc, ws


def snips_ratio(wc: np.ndarray, ws: np.ndarray) -> float:
    """Sum over slots of each slot's weighted click sum over its weight sum."""
    num, den = wc.sum(axis=0), ws.sum(axis=0)
    return float(np.sum(np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)))


def dr(new_rank: np.ndarray, position: np.ndarray, click: np.ndarray, propensity: np.ndarray,
       groups: np.ndarray, k: int, p_click_at: np.ndarray) -> np.ndarray:
    """Doubly robust; ``p_click_at[i, j]`` is the click model's p_click of row i's offer at slot j+1."""
    req = request_index(groups)
    rows = np.arange(len(new_rank))
    top = new_rank <= k
    direct = np.bincount(req[top], weights=p_click_at[rows[top], new_rank[top] - 1], minlength=len(groups))
    w = _matched_weight(new_rank, position, propensity, k)
    slot = np.clip(position, 1, k).astype(np.int64) - 1
    residual = np.where(w > 0, click - p_click_at[rows, slot], 0.0)
    return direct + np.bincount(req, weights=w * residual, minlength=len(groups))


def true_value(new_rank: np.ndarray, p_attract: np.ndarray, examination: np.ndarray, groups: np.ndarray,
               k: int) -> np.ndarray:
    """On simulated data: the expected top-k clicks of the new order, from true probabilities.

    ``examination[j]`` is P(the user looks at slot j+1).
    """
    top = new_rank <= k
    return np.bincount(request_index(groups)[top], weights=p_attract[top] * examination[new_rank[top] - 1],
                       minlength=len(groups))
