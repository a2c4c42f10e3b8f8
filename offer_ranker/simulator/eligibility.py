"""Eligibility: which offers the platform puts forward for each request, and at what price.

An offer is eligible when it is live at the request's time and available in the user's country;
a request gets a uniformly random subset of n ~ U{MIN_SLATE..MAX_SLATE} eligible offers (all of
them if fewer), before any policy orders them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from offer_ranker.simulator.market import COUNTRIES, COUNTRY_PRICE, MAX_SLATE, MIN_SLATE
from offer_ranker.simulator.world import World


@dataclass(frozen=True)
class Batch:
    """R requests (at most one per user) with S = MAX_SLATE candidate slots each."""

    request: np.ndarray  # (R,) request index = id
    user: np.ndarray  # (R,)
    ts: np.ndarray  # (R,) µs
    country: np.ndarray  # (R,)
    device: np.ndarray  # (R,)
    surface: np.ndarray  # (R,)
    offer: np.ndarray  # (R, S) offer index; the first n slots are candidates, the rest -1
    n: np.ndarray  # (R,) number of candidates, 10..20
    price: np.ndarray  # (R, S) displayed price, NaN in empty slots


def candidates(world: World, request: np.ndarray, rng: np.random.Generator) -> Batch:
    """Each request's eligible offers (live at ts, available in the country): a uniformly random
    subset of n ~ U{10..20} of them if there are more (the platform's own rules)."""
    user, ts = world.request_user[request], world.request_ts[request]
    country = world.user_country[user]
    pool = np.flatnonzero((world.offer_start <= ts.max(initial=0)) & (world.offer_end > ts.min(initial=0)))
    n_want = rng.integers(MIN_SLATE, MAX_SLATE + 1, request.size)
    offer = np.full((request.size, MAX_SLATE), -1, np.int64)
    todo = np.arange(request.size)
    if pool.size > 16 * MAX_SLATE:  # big catalogue: sample, don't scan every live offer per request
        todo = _sample_candidates(world, pool, ts, country, n_want, offer, rng)
    _scan_candidates(world, pool, ts, country, todo, offer, rng)
    n = np.minimum(n_want, (offer >= 0).sum(1))
    offer[np.arange(MAX_SLATE) >= n[:, None]] = -1
    # Displayed price: the offer's price at the country's price level, with a little noise.
    price = world.base_price[offer] * COUNTRY_PRICE[country][:, None] * np.exp(rng.normal(0, 0.08, offer.shape))
    price = np.where(offer >= 0, np.maximum(np.round(price, 2), 0.01), np.nan)
    return Batch(request, user, ts, country, world.request_device[request], world.request_surface[request],
                 offer, n, price)


def _scan_candidates(world, pool, ts, country, rows, offer, rng) -> None:
    """Fill ``offer[rows]`` with up to MAX_SLATE eligible offers in random order, by giving every
    pool offer a random key (ineligible ones last) and keeping the smallest."""
    start, end, available = world.offer_start[pool], world.offer_end[pool], world.available[pool].T
    width = min(pool.size, MAX_SLATE)
    step = max(1, 2**18 // max(pool.size, 1))  # bounds the (rows × pool) matrices to ~10 MB
    for lo in range(0, rows.size, step):
        chunk = rows[lo:lo + step]
        t = ts[chunk, None]
        eligible = (start <= t) & (t < end) & available[country[chunk]]
        key = np.where(eligible, rng.random(eligible.shape), 2.0)
        if width < pool.size:
            top = np.argpartition(key, width - 1, axis=1)[:, :width]
        else:
            top = np.broadcast_to(np.arange(width), (chunk.size, width))
        top = np.take_along_axis(top, np.argsort(np.take_along_axis(key, top, 1), axis=1), 1)
        offer[chunk, :width] = np.where(np.take_along_axis(key, top, 1) < 2.0, pool[top], -1)


def _sample_candidates(world, pool, ts, country, n_want, offer, rng) -> np.ndarray:
    """Fill ``offer`` by drawing pool offers i.i.d. uniformly and keeping the first distinct eligible
    ones: a uniformly random subset, as in the scan. Returns the rows that got fewer than wanted,
    for the scan (whether a row fails depends on how many distinct eligible offers it drew, not
    on which, so the rows kept still hold uniform subsets)."""
    draws = 4 * MAX_SLATE
    for c in range(len(COUNTRIES)):
        rows = np.flatnonzero(country == c)
        local = pool[world.available[pool, c]]
        if not rows.size or not local.size:
            continue
        o = local[rng.integers(local.size, size=(rows.size, draws))]
        t = ts[rows, None]
        keep = (world.offer_start[o] <= t) & (t < world.offer_end[o])
        by_offer = np.argsort(o, axis=1, kind="stable")  # a repeat sorts right after its first draw
        repeat = np.zeros_like(keep)
        sorted_o = np.take_along_axis(o, by_offer, 1)
        np.put_along_axis(repeat, by_offer[:, 1:], sorted_o[:, 1:] == sorted_o[:, :-1], 1)
        keep &= ~repeat
        first = np.argsort(~keep, axis=1, kind="stable")[:, :MAX_SLATE]  # first kept draws, in order
        offer[rows] = np.where(np.take_along_axis(keep, first, 1), np.take_along_axis(o, first, 1), -1)
    return np.flatnonzero((offer >= 0).sum(1) < n_want)
