"""From scored candidates to the 1-3 offers on top: eligibility, cold-start blend, exploration,
MMR diversity and the partner cap. Pure numpy over one request's candidates, so the service and
the offline evaluation run exactly the same policy.

* :func:`eligible`: offers outside their active window, or already converted on by the user, go.
* :func:`blend`: ``w·p_model + (1-w)·prior`` with ``w = n / (n + m)``, ``n`` the offer's
  impressions and ``m`` the impressions at which both weigh the same. No evidence: the prior.
* :func:`similarity`: same category, same partner and closeness of numeric attributes, weighted.
* :func:`mmr`: greedy ``λ·relevance − (1−λ)·max similarity to the offers already chosen``, with
  at most ``cap`` offers per partner; vectorised over many draws of the relevances at once.
* :func:`choose`: the policy: MMR on the relevances, or with probability ``explore_rate`` an
  exploring list — MMR on Thompson samples of the new offers' click rates (``thompson``), or a
  uniformly random order of the eligible offers (``epsilon``); returns the propensity of each
  shown offer in its slot under that mixture (exact for ``epsilon``, estimated from Monte Carlo
  draws for ``thompson``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np


def codes(values: Iterable[Any]) -> np.ndarray:
    """Integer codes of names (categories, partners) for :func:`similarity` and the partner cap:
    equal names get equal codes, None (or NaN) gets -1 (unknown: matches nothing)."""
    index: dict[Any, int] = {}
    return np.array([-1 if v is None or v != v else index.setdefault(v, len(index)) for v in values],
                    dtype=np.int64)


def eligible(age_hours: np.ndarray, hours_to_expiry: np.ndarray, user_conversions: np.ndarray) -> np.ndarray:
    """Offers that may be shown: started, not expired, not converted on by the user (NaN = unknown = fine)."""
    with np.errstate(invalid="ignore"):
        return ~((age_hours < 0) | (hours_to_expiry <= 0) | (user_conversions > 0))


def evidence_weight(impressions: np.ndarray, half_weight: float) -> np.ndarray:
    """Weight of the model against the prior: 0 without impressions, 1/2 at ``half_weight``, → 1."""
    n = np.nan_to_num(np.asarray(impressions, dtype=np.float64), nan=0.0).clip(min=0)
    return n / (n + half_weight)


def blend(p_model: np.ndarray, prior: np.ndarray, impressions: np.ndarray, half_weight: float) -> np.ndarray:
    w = evidence_weight(impressions, half_weight)
    return w * p_model + (1 - w) * prior


def similarity(categories: np.ndarray, partners: np.ndarray, numeric: np.ndarray,
               weights: tuple[float, float, float] = (0.5, 0.3, 0.2)) -> np.ndarray:
    """(n, n) similarity in [0, 1] of the candidates; 1 on the diagonal.

    ``categories`` and ``partners``: integer codes, -1 for unknown (unknown matches nothing);
    ``numeric``: (n, m) attributes, each scaled by its range within the request (NaN ignored).
    """
    categories, partners = np.asarray(categories), np.asarray(partners)
    n = len(categories)
    same_cat = (categories[:, None] == categories[None, :]) & (categories >= 0)[:, None]
    same_partner = (partners[:, None] == partners[None, :]) & (partners >= 0)[:, None]
    close = np.zeros((n, n))
    numeric = np.asarray(numeric, dtype=np.float64).reshape(n, -1)
    if numeric.shape[1]:
        with np.errstate(invalid="ignore", all="ignore"):
            missing = np.isnan(numeric)
            span = np.where(missing, -np.inf, numeric).max(axis=0, initial=-np.inf) \
                - np.where(missing, np.inf, numeric).min(axis=0, initial=np.inf)  # -inf where all missing
            scaled = numeric / np.where(span > 0, span, 1.0)
            gaps = np.abs(scaled[:, None, :] - scaled[None, :, :])  # (n, n, m), NaN where unknown
            known = ~np.isnan(gaps)
            counted = known.sum(axis=2)
            close = np.where(counted > 0, 1 - np.nansum(gaps, axis=2) / np.maximum(counted, 1), 0.0)
    sim = weights[0] * same_cat + weights[1] * same_partner + weights[2] * close
    np.fill_diagonal(sim, 1.0)
    return sim


def mmr(relevance: np.ndarray, sim: np.ndarray, k: int, lam: float,
        partners: np.ndarray | None = None, cap: int = 0) -> np.ndarray:
    """Greedy maximal marginal relevance: (draws, k) candidate indexes, -1 where none is left.

    ``relevance`` (n,) or (draws, n), ``-inf`` for ineligible candidates; each draw's relevances
    are scaled by their maximum so ``λ`` trades like units. Ties go to the lower index: pass the
    candidates best first. ``cap`` > 0 allows at most that many offers per partner code (-1 =
    unknown partner, never capped).
    """
    rel = np.atleast_2d(np.asarray(relevance, dtype=np.float64))
    draws, n = rel.shape
    ok = np.isfinite(rel)
    top = np.where(ok, rel, -np.inf).max(axis=1, keepdims=True)
    scale = np.where(np.isfinite(top) & (top > 0), top, 1.0)
    rel = np.where(ok, rel / scale, -np.inf)
    k = min(k, n)
    chosen = np.full((draws, k), -1, dtype=np.int64)
    max_sim = np.zeros((draws, n))
    taken = ~ok
    rows = np.arange(draws)
    capped = partners is not None and cap > 0
    if capped:
        codes, partner_index = np.unique(np.asarray(partners), return_inverse=True)
        counts = np.zeros((draws, len(codes)), dtype=np.int64)
        uncapped = codes[partner_index] < 0
    for step in range(k):
        gain = lam * rel - (1 - lam) * max_sim
        blocked = taken
        if capped:
            blocked = blocked | ((counts[:, partner_index] >= cap) & ~uncapped[None, :])
        gain = np.where(blocked, -np.inf, gain)
        pick = gain.argmax(axis=1)
        found = np.isfinite(gain[rows, pick])
        chosen[:, step] = np.where(found, pick, -1)
        hit = rows[found]
        taken = taken.copy()
        taken[hit, pick[found]] = True
        max_sim[hit] = np.maximum(max_sim[hit], sim[pick[found]])
        if capped:
            np.add.at(counts, (hit, partner_index[pick[found]]), 1)
    return chosen


@dataclass(frozen=True)
class Policy:
    k: int = 3
    lam: float = 0.9
    cap: int = 1
    explore_rate: float = 0.0
    explore_below: int = 100
    draws: int = 200
    exploration: str = "thompson"  # or "epsilon"


def choose(policy: Policy, relevance: np.ndarray, sim: np.ndarray, partners: np.ndarray, *,
           multiplier: np.ndarray, impressions: np.ndarray, clicks: np.ndarray, prior: np.ndarray,
           prior_strength: float, rng: np.random.Generator,
           slot_lift: float = 1.0) -> tuple[np.ndarray, np.ndarray, bool]:
    """The shown offers (indexes, best first) and the propensity of each in its slot.

    ``relevance`` = ``p_click × multiplier`` (``-inf`` where ineligible), candidates best first.
    Exploring replaces the top-slot click rate of each new offer (fewer than ``explore_below``
    impressions) by ``slot_lift ×`` a draw from its Beta posterior over all slots: the prior
    (top-slot ``prior / slot_lift``, ``prior_strength`` pseudo-impressions) updated by its clicks
    and impressions, which were logged at all slots. Returns ``explored`` too.

    The propensity of (offer, slot) is ``(1 - rate)·[the greedy list puts it there] + rate·P(a
    Thompson list puts it there)``, the latter estimated from ``draws`` draws independent of the
    list shown; a placement no draw reproduced gets ``1 / (draws + 1)`` of the rate (a floor).
    """
    greedy = mmr(relevance, sim, policy.k, policy.lam, partners, policy.cap)[0]
    greedy = greedy[greedy >= 0]
    if policy.exploration == "epsilon":
        return _epsilon_greedy(policy, greedy, np.flatnonzero(np.isfinite(relevance)), rng)
    new = (np.nan_to_num(impressions, nan=0.0) < policy.explore_below) & np.isfinite(relevance)
    if policy.explore_rate <= 0 or not new.any():
        return greedy, np.ones(len(greedy)), False
    samples = np.tile(relevance, (policy.draws + 1, 1))
    imp = np.nan_to_num(impressions, nan=0.0)[new]
    clk = np.minimum(np.nan_to_num(clicks, nan=0.0)[new], imp)
    base = np.clip(prior[new] / slot_lift, 1e-6, 1 - 1e-6)
    a = base * prior_strength + clk
    b = (1 - base) * prior_strength + imp - clk
    rates = np.clip(rng.beta(a, b, size=(policy.draws + 1, int(new.sum()))) * slot_lift, 0.0, 1.0)
    samples[:, new] = rates * multiplier[new]
    lists = mmr(samples, sim, policy.k, policy.lam, partners, policy.cap)
    explored = bool(rng.random() < policy.explore_rate)
    shown = lists[0][lists[0] >= 0] if explored else greedy
    others = lists[1:]  # independent of the list shown (lists[0])
    floor = 1 / (policy.draws + 1)
    propensity = np.array([(1 - policy.explore_rate) * (j < len(greedy) and greedy[j] == i)
                           + policy.explore_rate * max(float(np.mean(others[:, j] == i)), floor)
                           for j, i in enumerate(shown)])
    return shown, propensity, explored


def _epsilon_greedy(policy: Policy, greedy: np.ndarray, eligible_rows: np.ndarray,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, bool]:
    """With probability ``explore_rate`` the first ``k`` of a uniformly random order of the
    eligible candidates (no MMR, no partner cap, so every placement's chance is known), else
    the greedy list. The propensity of (offer, slot) is exact: ``(1 - rate)·[greedy puts it
    there] + rate / m``, ``m`` eligible candidates, for the slots a random list fills."""
    rate, m = policy.explore_rate, len(eligible_rows)
    explored = bool(rate > 0 and m > 0 and rng.random() < rate)
    shown = rng.permutation(eligible_rows)[:policy.k] if explored else greedy
    propensity = np.array([(1 - rate) * (j < len(greedy) and greedy[j] == i) + (rate / m if j < min(policy.k, m) else 0.0)
                           for j, i in enumerate(shown)])
    return shown, propensity, explored
