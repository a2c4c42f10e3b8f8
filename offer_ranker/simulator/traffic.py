"""Traffic: the day loop that runs requests through a policy and draws what users do.

For each day, in time order: the candidates of each request (:mod:`.eligibility`), the day's
policy orders them (:mod:`.policy`), clicks and conversions are drawn from the truth
(:mod:`.truth`) and the user × offer history is updated; :func:`run_days` yields the result in
chunks (:class:`LogChunk`).

Memory: logs are generated in chunks of at most one day and WINDOW (1024) requests, so the
per-impression working set is bounded whatever the total size. What lives for the whole run is
per user / per offer (the world, the request schedule, and the user × offer history of users who
still have requests to come), never per impression.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields

import numpy as np
from scipy.special import expit

from offer_ranker.console import Track, no_track
from offer_ranker.simulator import streams
from offer_ranker.simulator.eligibility import Batch, candidates
from offer_ranker.simulator.market import DAY, US
from offer_ranker.simulator.policy import Policy, PolicyForDay, Slate
from offer_ranker.simulator.truth import History, attraction_logit, conversion_probability, examination
from offer_ranker.simulator.world import World

WINDOW = 1024  # requests per chunk (≈ 15 000 impressions): bounds memory whatever the traffic


@dataclass(frozen=True)
class LogChunk:
    """Impressions (N,) of consecutive requests, sorted by request then position, with outcomes."""

    request: np.ndarray
    user: np.ndarray
    ts: np.ndarray
    device: np.ndarray
    surface: np.ndarray
    country: np.ndarray
    offer: np.ndarray
    position: np.ndarray
    price: np.ndarray
    propensity: np.ndarray
    policy: np.ndarray
    p_attract: np.ndarray
    p_click: np.ndarray
    p_convert: np.ndarray
    click: np.ndarray  # bool
    click_ts: np.ndarray  # µs, meaningful where click
    conversion: np.ndarray  # bool, only where click
    conversion_ts: np.ndarray  # µs, meaningful where conversion


def _outcomes(world: World, b: Batch, slate: Slate, history: History, rng: np.random.Generator) -> LogChunk:
    """What the users of batch ``b`` do with its slate: true probabilities, drawn clicks and
    conversions with their times (clicks 2–120 s after the request); updates ``history``."""
    r, s = np.nonzero(b.offer >= 0)
    user, offer, ts, position = b.user[r], b.offer[r, s], b.ts[r], slate.position[r, s]
    intent = world.request_intent[b.request[r]] if world.request_intent is not None else None
    logit = attraction_logit(world, user, offer, ts, b.device[r], b.surface[r], b.price[r, s],
                             history.effect(user, offer, ts), intent)
    p_attract = expit(logit)
    p_click = examination(position) * p_attract
    p_convert = conversion_probability(world, user, offer)
    click = rng.random(r.size) < p_click
    conversion = click & (rng.random(r.size) < p_convert)
    click_ts = ts + np.clip(rng.lognormal(np.log(15), 0.8, r.size), 2, 120).astype(np.int64) * US
    minutes = np.clip(rng.lognormal(np.log(40), 1.0, r.size), 1, 720)  # median 40 min, at most 12 h
    conversion_ts = click_ts + (minutes * 60 * US).astype(np.int64)
    history.update(user, offer, click, click_ts, np.where(conversion, conversion_ts, 0))
    return LogChunk(b.request[r], user, ts, b.device[r], b.surface[r], b.country[r], offer, position,
                    b.price[r, s], slate.propensity[r, s], slate.policy[r], p_attract, p_click, p_convert,
                    click, click_ts, conversion, conversion_ts)


def simulate_day(world: World, day: int, policy: Policy, history: History, seed: int) -> Iterator[LogChunk]:
    """All requests of ``day``, in time-ordered windows of at most WINDOW requests (one chunk
    each, so memory does not grow with traffic). Within a window, requests are grouped by the
    user's request ordinal (every user's 1st request, then every 2nd, …): the history each
    request sees is exactly its past, and each group is one vectorised batch."""
    lo, hi = np.searchsorted(world.request_ts, world.start + np.array([day, day + 1]) * DAY)
    for window, begin in enumerate(range(lo, hi, WINDOW)):
        request = np.arange(begin, min(begin + WINDOW, hi))
        user = world.request_user[request]
        order = np.argsort(user, kind="stable")  # requests are in time order: kept per user
        first = np.r_[True, user[order][1:] != user[order][:-1]]
        ordinal = np.empty(request.size, np.int64)
        rank = np.arange(request.size)
        ordinal[order] = rank - np.maximum.accumulate(np.where(first, rank, 0))
        parts = []
        for k in range(int(ordinal.max()) + 1):
            index = (day, window, k)
            batch = candidates(world, request[ordinal == k], streams.stage_rng(seed, streams.CANDIDATES, *index))
            slate = policy(world, batch, streams.stage_rng(seed, streams.POLICY, *index))
            parts.append(_outcomes(world, batch, slate, history,
                                   streams.stage_rng(seed, streams.OUTCOMES, *index)))
        yield _concat_sorted(parts)


def _concat_sorted(parts: list[LogChunk]) -> LogChunk:
    """One chunk sorted by request and position, holding at most one extra column at a time."""
    columns = [{f.name: getattr(p, f.name) for f in fields(LogChunk)} for p in parts]
    parts.clear()
    def column(name: str) -> np.ndarray:
        return np.concatenate([c.pop(name) for c in columns])
    order = np.lexsort((np.concatenate([c["position"] for c in columns]),
                        np.concatenate([c["request"] for c in columns])))
    return LogChunk(**{f.name: column(f.name)[order] for f in fields(LogChunk)})


def run_days(world: World, policy_for_day: PolicyForDay, *, seed: int,
             track: Track = no_track) -> Iterator[LogChunk]:
    """The day loop, yielding log chunks in time order (one or more per day). The policy
    of day d sees the logged clicks and impressions per offer of days < d. History of users with
    no requests to come is dropped after each day, so it does not grow with the period."""
    history = History(world.n_offers)
    clicks = np.zeros(world.n_offers, np.int64)
    impressions = np.zeros(world.n_offers, np.int64)
    request_day = (world.request_ts - world.start) // DAY
    last_day = np.full(world.n_users, -1, np.int64)
    np.maximum.at(last_day, world.request_user, request_day)
    for day in track(range(world.days), "simulate", world.days):
        policy = policy_for_day(day, clicks.copy(), impressions.copy())
        for log in simulate_day(world, day, policy, history, seed):
            impressions += np.bincount(log.offer, minlength=world.n_offers)
            clicks += np.bincount(log.offer[log.click], minlength=world.n_offers)
            yield log
        history.prune(last_day > day)
