"""The offer catalogue: when and where each offer is live, and its latent and shown attributes.

Offers live 3–21 days (short-lived scenario: 2–48 hours, with a title and a description,
:mod:`.text`) and start and expire throughout the period (:func:`offer_windows`); each
belongs to a partner and (mostly) that partner's category, and carries a payout, a price, a
reward type, an optional minimum spend, a click quality and a separate conversion quality
(:func:`build_offers`).
"""

from __future__ import annotations

import numpy as np

from offer_ranker.config import SimulateConfig
from offer_ranker.simulator import streams
from offer_ranker.simulator.market import (
    CATEGORIES,
    CATEGORY_PAYOUT,
    CATEGORY_PRICE,
    COUNTRIES,
    DAY,
    MAX_SLATE,
    REWARD_EFFECT,
    REWARD_TYPES,
)
from offer_ranker.simulator.streams import centred_effects
from offer_ranker.simulator.text import offer_text

#: offer lifetimes in days, (shortest, longest), and how long before the period the first lived
LIFETIMES = {"default": (3.0, 21.0, 10.0), "short-lived": (2 / 24, 2.0, 2.0)}


def offer_windows(rng: np.random.Generator, n_offers: int, start: int, days: int,
                  scenario: str = "default") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """When and where ``n_offers`` offers are live, over ``days`` days from ``start`` (µs).

    Returns (O,) start and (O,) exclusive end in µs, and (O, len(COUNTRIES)) bool availability,
    sorted by start (offer ids follow creation order). MAX_SLATE "lanes" of back-to-back offers
    available everywhere guarantee ≥ MAX_SLATE eligible offers per country at every moment; the
    others live 3–21 days each (short-lived: 2–48 hours, so they arrive all the time), overlapping
    the period, and are available in each country with probability 0.6 (in at least one).
    """
    shortest, longest, lead = LIFETIMES[scenario]
    # A lane starts up to `lead` days before the period and ends after it; its offers' lifetimes
    # stretch only when offers are scarce.
    span = days + lead
    per_lane = int(np.clip(round(2 * span / (shortest + longest)), 1, max(1, n_offers // (2 * MAX_SLATE))))
    w = rng.uniform(shortest, longest, (MAX_SLATE, per_lane))
    w = span * w / w.sum(1, keepdims=True)
    if scenario != "default":  # the lifetimes are the scenario's promise: scaled into bounds, not stretched
        for _ in range(50):
            w = np.clip(span * w / w.sum(1, keepdims=True), shortest, longest)
    edges = np.cumsum(np.c_[-rng.uniform(0, lead, MAX_SLATE), w], axis=1)
    edges = start + np.round(edges * DAY).astype(np.int64)  # integer edges: lanes have no gaps
    # The others: independent windows, each overlapping the period.
    life = rng.uniform(shortest, longest, n_offers - edges[:, 1:].size)
    first = -life + rng.random(life.size) * (days + life)
    begin = np.r_[edges[:, :-1].ravel(), start + np.round(first * DAY).astype(np.int64)]
    end = np.r_[edges[:, 1:].ravel(), start + np.round((first + life) * DAY).astype(np.int64)]
    available = np.r_[np.ones((edges[:, 1:].size, len(COUNTRIES)), bool),
                      rng.random((life.size, len(COUNTRIES))) < 0.6]
    nowhere = np.flatnonzero(~available.any(1))
    available[nowhere, rng.integers(len(COUNTRIES), size=nowhere.size)] = True
    by_start = np.argsort(begin, kind="stable")
    return begin[by_start], end[by_start], available[by_start]


def build_offers(cfg: SimulateConfig, start: int, rng: np.random.Generator, market: np.random.Generator) -> dict:
    """The offer fields of :class:`~offer_ranker.simulator.world.World` (``offer_*``, ``payout``,
    ``base_price``, …) and the per-category price, payout and conversion levels.

    ``rng`` draws the offers themselves; ``market`` the category and partner effects, shared by
    every world built with the same seed.
    """
    K, O, P = cfg.categories, cfg.offers, cfg.partners
    begin, end, available = offer_windows(rng, O, start, cfg.days, cfg.scenario)
    partner_category = market.permutation(np.arange(P) % K)  # every category has partners
    category_quality, partner_quality = centred_effects(market, 0.2, K), centred_effects(market, 0.2, P)
    category_conversion = -1.75 + centred_effects(market, 0.3, K)
    partner = rng.integers(P, size=O)
    category = np.where(rng.random(O) < 0.8, partner_category[partner], rng.integers(K, size=O))
    reward = rng.choice(len(REWARD_TYPES), O, p=[0.45, 0.35, 0.2])
    min_spend = np.where(rng.random(O) < 0.35, np.nan, np.round(rng.lognormal(np.log(30), 0.6, O)))
    clickbait = rng.random(O) < 0.15
    quality = (category_quality[category] + partner_quality[partner] + REWARD_EFFECT[reward]
               - 0.15 * np.log1p(np.nan_to_num(min_spend) / 30) + rng.normal(0, 0.3, O) + 0.5 * clickbait)
    text = {}
    if cfg.scenario == "short-lived":  # its own stream: the default scenario's draws stay as they were
        titles, descriptions = offer_text(streams.stage_rng(cfg.seed, streams.TEXT), CATEGORIES[:K],
                                          tuple(f"partner_{i:02d}" for i in range(P)), category, partner,
                                          quality, clickbait, reward)
        text = {"offer_title": titles, "offer_description": descriptions}
    return dict(
        **text, offer_partner=partner, offer_category=category, offer_start=begin, offer_end=end,
        payout=np.maximum(0.5, np.round(CATEGORY_PAYOUT[category] * rng.lognormal(0, 0.5, O), 2)),
        offer_quality=quality, offer_conversion=rng.normal(0, 0.35, O) - 1.3 * clickbait,
        base_price=CATEGORY_PRICE[category] * rng.lognormal(0, 0.3, O), reward_type=reward,
        min_spend=min_spend, available=available, category_price=CATEGORY_PRICE[:K].copy(),
        category_payout=CATEGORY_PAYOUT[:K].copy(), category_conversion=category_conversion,
    )
