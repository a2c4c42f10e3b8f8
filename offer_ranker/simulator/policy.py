"""Policies: who orders a request's candidates, and the simulator's own logging policy.

A :data:`Policy` turns a :class:`~offer_ranker.simulator.eligibility.Batch` into a :class:`Slate`
(a position and the exact propensity of every shown offer); anything with that signature can
replace the logging policy (the closed loop puts the real ranking engine there). A
:data:`PolicyForDay` builds the day's policy from the logs of the days before.

The logging policy (:func:`logging_policy`, :func:`mixture_policy`) orders a request's
candidates by noisy popularity, or uniformly at random with probability ``uniform_share``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from offer_ranker.simulator import streams
from offer_ranker.simulator.eligibility import Batch
from offer_ranker.simulator.world import World


@dataclass(frozen=True)
class Slate:
    """A policy's decision for a batch."""

    position: np.ndarray  # (R, S) int, 1..n on candidate slots (each once), 0 on empty slots
    propensity: np.ndarray  # (R, S) P(this offer at this position | candidates) under the policy
    policy: np.ndarray  # (R,) object (str), which policy (branch) ordered the request


Policy = Callable[[World, Batch, np.random.Generator], Slate]
PolicyForDay = Callable[[int, np.ndarray, np.ndarray], Policy]  # (day, clicks, impressions per offer so far)


def _positions(order: np.ndarray) -> np.ndarray:
    """Inverse of a per-row ordering: (R, S) slot indices in display order → (R, S) positions 1..S."""
    pos = np.empty_like(order)
    np.put_along_axis(pos, order, np.arange(1, order.shape[1] + 1)[None, :].repeat(len(order), 0), 1)
    return pos


def popularity_scores(clicks: np.ndarray, impressions: np.ndarray, *, seed: int, day: int) -> np.ndarray:
    """(O,) smoothed logged CTR of days < ``day`` times a per-day lognormal noise per offer; offers
    never shown get the prior 1/30, so new offers start mid-pack (exposure bias)."""
    noise = streams.stage_rng(seed, streams.POPULARITY, day).lognormal(0, 0.5, clicks.size)
    return (clicks + 1) / (impressions + 30) * noise


def mixture_policy(world: World, batch: Batch, rng: np.random.Generator, *, scores: np.ndarray,
                   uniform_share: float) -> Slate:
    """Noisy-popularity order (deterministic given ``scores``), or with probability ε a uniform
    shuffle. Propensity = (1 − ε)·1[popularity puts the offer here] + ε/n: exact, in (0, 1]."""
    valid = batch.offer >= 0
    score = np.where(valid, scores[np.maximum(batch.offer, 0)], -np.inf)
    popular = _positions(np.argsort(-score, axis=1, kind="stable"))
    shuffled = _positions(np.argsort(np.where(valid, rng.random(valid.shape), np.inf), axis=1))
    uniform = rng.random(len(valid)) < uniform_share
    position = np.where(valid, np.where(uniform[:, None], shuffled, popular), 0)
    eps = uniform_share
    propensity = np.where(valid, (1 - eps) * (popular == position) + eps / batch.n[:, None], np.nan)
    return Slate(position, propensity, np.where(uniform, "uniform", "popularity").astype(object))


def logging_policy(uniform_share: float, seed: int) -> PolicyForDay:
    """The simulator's logging policy: popularity from the logs of previous days, new noise daily."""
    def for_day(day: int, clicks: np.ndarray, impressions: np.ndarray) -> Policy:
        scores = popularity_scores(clicks, impressions, seed=seed, day=day)
        return partial(mixture_policy, scores=scores, uniform_share=uniform_share)
    return for_day
