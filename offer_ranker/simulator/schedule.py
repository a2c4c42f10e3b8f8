"""When users visit: the request schedule, and the sizing rule it implies.

Sizing rule of thumb: impressions ≈ users × requests per user × 15 (10–20 offers a request).
Over two weeks a user makes ≈ 2.65 requests (85 % visit 1–3 times, 15 % return often), so
≈ 40 impressions per user: the defaults (20 000 users, 14 days) give ≈ 0.8 M impressions,
``--users 25000`` ≈ 1 M and ``--users 250000`` ≈ 10 M. Longer periods give a few more requests per
user (≈ 2.3 for 7 days, 3.1 for 30, 3.45 for 90+: returning users' visits fall inside the
period); :func:`requests_per_user` and :func:`users_for_impressions` apply the rule.
"""

from __future__ import annotations

import numpy as np

from offer_ranker.simulator.market import DAY, HOUR_SHARE, US

MIN_GAP = 180 * US  # between a user's requests; clicks come within 120 s, so before the next request


def request_schedule(rng: np.random.Generator, long_lived: np.ndarray, start: int, days: int,
                     session_rng: np.random.Generator | None = None):
    """Requests ((R,) user, (R,) µs, (R,) session) in time order, and each user's first visit ((U,) µs).

    ``long_lived`` is (U,) bool; the period is ``days`` days from ``start`` (µs). Most users
    visit 1–3 times over a few days; long-lived ones 4+ times, every ~2 days. Arrival days are
    spread over the period (returning users may have started a week before it), so many users
    are first seen late. A visit is a session (its number is the session id) of 1–2 requests a
    few minutes apart; with ``session_rng`` (the short-lived scenario's stream) of 1–6 requests,
    about 3 on average, a few minutes apart.
    """
    U = long_lived.size
    sessions = np.where(long_lived, 4 + rng.poisson(6, U), rng.choice([1, 2, 3], U, p=[0.55, 0.3, 0.15]))
    arrival = np.where(long_lived, rng.integers(-7, days, U), rng.integers(0, days, U))
    user = np.repeat(np.arange(U), sessions)
    first = np.cumsum(sessions) - sessions
    gap = np.where(long_lived[user], rng.geometric(1 / 3, user.size), rng.geometric(0.55, user.size)) - 1
    gap[first] = 0
    day = np.cumsum(gap)
    day += (arrival - day[first])[user]
    day += np.maximum(0, -day[first + sessions - 1])[user]  # every user visits inside the period
    hour = rng.choice(24, user.size, p=HOUR_SHARE)
    ts = start + day * DAY + hour * 3600 * US + rng.integers(0, 3600 * US, user.size)
    first_visit = np.minimum.reduceat(ts, first)
    visit = np.arange(ts.size)
    if session_rng is None:
        two = rng.random(ts.size) < 0.3
        ts = np.r_[ts, ts[two] + MIN_GAP + rng.exponential(4 * 60 * US, two.sum()).astype(np.int64)]
        user, session = np.r_[user, user[two]], np.r_[visit, visit[two]]
    else:  # each later request of a session a few minutes after the one before
        extra = np.minimum(session_rng.poisson(2.0, ts.size), 5)
        of = np.repeat(visit, extra)
        step = MIN_GAP + session_rng.exponential(3 * 60 * US, of.size).astype(np.int64)
        after = _within(step, extra)
        ts, user, session = np.r_[ts, ts[of] + after], np.r_[user, user[of]], np.r_[visit, of]
    # Keep a user's requests at least MIN_GAP apart, so every click is logged before the next one.
    order = np.lexsort((ts, user))
    user, ts, session = user[order], ts[order], session[order]
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    rank = np.arange(user.size) - np.repeat(starts, np.diff(np.r_[starts, user.size]))
    for i in range(1, int(rank.max(initial=0)) + 1):
        at = np.flatnonzero(rank == i)
        ts[at] = np.maximum(ts[at], ts[at - 1] + MIN_GAP)
    keep = (ts >= start) & (ts < start + days * DAY)
    order = np.lexsort((user[keep], ts[keep]))
    return (user[keep][order], ts[keep][order], session[keep][order]), first_visit


def _within(step: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The running sum of ``step`` within consecutive groups of ``counts`` elements."""
    total = np.cumsum(step)
    before = np.r_[0, total][np.cumsum(counts) - counts]  # the sum before each group's first element
    return total - np.repeat(before, counts)


def requests_per_user(days: int) -> float:
    """Expected requests per user over ``days`` (fitted: 2.3 for 7 days, 2.65 for 14, 3.1 for 30,
    3.45 for 90+ — longer periods hold more of the returning users' visits)."""
    return 3.45 - 1.71 * float(np.exp(-days / 18.5))


def users_for_impressions(impressions: int, days: int = 14) -> int:
    """Users needed for about ``impressions`` impressions over ``days`` (the rule of thumb)."""
    return max(10, round(impressions / (15 * requests_per_user(days))))
