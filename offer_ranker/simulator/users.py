"""The users: first-party attributes, latent category preferences and clickiness, their requests
(when, from which surface and device), and the context × category effects.

Preferences are mostly explained by observable attributes (plan, country, age band), so a model
with point-in-time features can get close to the oracle; what is left is individual.
"""

from __future__ import annotations

import numpy as np

from offer_ranker.config import SimulateConfig
from offer_ranker.simulator import streams
from offer_ranker.simulator.market import (
    AGE_BANDS,
    AGE_CLICKINESS,
    AGE_SHARE,
    COUNTRIES,
    COUNTRY_SHARE,
    DAY,
    DEVICES,
    PLAN_SHARE,
    PLANS,
    SURFACE_SHARE,
    SURFACES,
    US,
)
from offer_ranker.simulator.schedule import request_schedule
from offer_ranker.simulator.streams import centred_effects


def _taste(rng: np.random.Generator, sd: float, share: np.ndarray, K: int) -> np.ndarray:
    """(groups, K) attribute × category preference, centred per category over the population:
    who likes what differs, but no category is liked more on average (that is offer quality),
    so personalisation, not popularity, is what exploits these effects."""
    x = rng.normal(0, sd, (share.size, K))
    return x - share @ x


def session_intents(rng: np.random.Generator, preference: np.ndarray, user: np.ndarray,
                    session: np.ndarray) -> np.ndarray:
    """(R,) the category each request's session is after, or -1: 70% of sessions have one, drawn
    from the user's preferences (softmax), the same for every request of the session."""
    ids, first = np.unique(session, return_index=True)
    owner = user[first]
    p = np.exp(preference[owner] - preference[owner].max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    chosen = (p.cumsum(1) < rng.random((ids.size, 1))).sum(1)
    chosen = np.where(rng.random(ids.size) < 0.7, np.minimum(chosen, preference.shape[1] - 1), -1)
    return chosen[np.searchsorted(ids, session)]


def build_users(cfg: SimulateConfig, start: int, rng: np.random.Generator, market: np.random.Generator) -> dict:
    """The user and request fields of :class:`~offer_ranker.simulator.world.World` (``user_*``,
    ``request_*``) and the hour and device × category effects.

    ``rng`` draws the users themselves; ``market`` the attribute × category tastes and context
    effects, shared by every world built with the same seed. The schedule has its own stream.
    """
    U, K = cfg.users, cfg.categories
    country = rng.choice(len(COUNTRIES), U, p=COUNTRY_SHARE)
    plan = rng.choice(len(PLANS), U, p=PLAN_SHARE)
    age = rng.choice(len(AGE_BANDS), U, p=AGE_SHARE)
    device = rng.choice(len(DEVICES), U, p=[0.45, 0.35, 0.2])
    # The individual part is moderate: preferences are mostly the attributes' tastes.
    preference = (_taste(market, 0.5, PLAN_SHARE, K)[plan] + _taste(market, 0.35, COUNTRY_SHARE, K)[country]
                  + _taste(market, 0.35, AGE_SHARE, K)[age] + rng.normal(0, 0.25, (U, K))).astype(np.float32)
    fresh = rng.random(U) < 0.6  # signed up right before their first visit: curious, clickier
    clickiness = AGE_CLICKINESS[age] + 0.2 * fresh + rng.normal(0, 0.25, U)
    long_lived = rng.random(U) < 0.15
    hours = np.arange(24)[:, None] - market.uniform(0, 24, K)  # each category peaks at its own hour
    hour_category = market.uniform(0.1, 0.35, K) * np.cos(2 * np.pi * hours / 24)
    device_category = centred_effects(market, 0.2, (len(DEVICES), K))

    short_lived = cfg.scenario == "short-lived"
    session_rng = streams.stage_rng(cfg.seed, streams.SESSIONS) if short_lived else None
    schedule, first_visit = request_schedule(streams.stage_rng(cfg.seed, streams.SCHEDULE), long_lived,
                                             start, cfg.days, session_rng)
    account_age = np.where(fresh, rng.uniform(0, 20 * 60 * US, U), DAY + rng.exponential(400 * DAY, U))
    surface = rng.choice(len(SURFACES), len(schedule[0]), p=SURFACE_SHARE)
    on_usual = rng.random(len(schedule[0])) < 0.85
    intent = {}
    if short_lived:
        intent = {"request_intent": session_intents(session_rng, preference, schedule[0], schedule[2])}
    return dict(
        **intent, user_country=country, user_device=device, user_plan=plan, user_age=age,
        user_signup=first_visit - account_age.astype(np.int64), user_preference=preference,
        user_clickiness=clickiness, hour_category=hour_category, device_category=device_category,
        request_user=schedule[0], request_ts=schedule[1], request_surface=surface,
        request_device=np.where(on_usual, device[schedule[0]], rng.integers(len(DEVICES), size=on_usual.size)),
    )
