"""A simulated offer marketplace that writes raw logs (DESIGN.md §1) with known ground truth.

Three parts, kept apart so the same world can later serve as live traffic for a real ranking
model (closed-loop simulation):

* :class:`World` — every latent parameter, built deterministically from a
  :class:`~offer_ranker.config.SimulateConfig`: offers (lifetimes, countries, click quality and a
  separate conversion quality), users (first-party attributes, latent category preferences,
  clickiness, when they visit) and context effects. The truth functions
  (:func:`attraction_logit`, :func:`examination`, :func:`conversion_probability`) are vectorised
  over impressions.
* a logging policy — :func:`mixture_policy` orders a request's candidates by noisy popularity,
  or uniformly at random with probability ``uniform_share``, and returns the exact propensity of
  every shown slot. Anything with the :data:`Policy` signature can replace it.
* :func:`run_days` — the day loop: candidates per request, the policy, clicks and conversions
  drawn from the truth, yielded as chunks (:class:`LogChunk`, at most a day each).
  :func:`simulate` writes them as Parquet.

Sizing rule of thumb: impressions ≈ users × requests per user × 15 (10–20 offers a request).
Over two weeks a user makes ≈ 2.65 requests (85 % visit 1–3 times, 15 % return often), so
≈ 40 impressions per user: the defaults (20 000 users, 14 days) give ≈ 0.8 M impressions,
``--users 25000`` ≈ 1 M and ``--users 250000`` ≈ 10 M. Longer periods give a few more requests per
user (≈ 2.3 for 7 days, 3.1 for 30, 3.45 for 90+: returning users' visits fall inside the
period); :func:`requests_per_user` and :func:`users_for_impressions` apply the rule.

Memory: logs are generated and written in chunks of at most one day and WINDOW (1024) requests,
so the per-impression working set is bounded whatever the total size. What lives for the whole
run is per user / per offer (the world, the request schedule at 32 bytes a request, and the
user × offer history of users who still have requests to come), never per impression.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from offer_ranker.config import SimulateConfig
from offer_ranker.console import Track, no_track
from offer_ranker.io import Staging, staged_outputs

US = 1_000_000  # all times are int64 microseconds since the epoch, naive UTC
DAY = 86_400 * US
MIN_SLATE, MAX_SLATE = 10, 20

CATEGORIES = ("finance", "insurance", "telecom", "streaming", "gaming", "travel", "food", "fitness",
              "shopping", "education", "energy", "mobility", "beauty", "pets", "news")
CATEGORY_PRICE = np.array([10, 25, 30, 12, 15, 150, 25, 35, 50, 40, 60, 20, 30, 25, 10.0])  # typical price
CATEGORY_PAYOUT = np.array([40, 30, 25, 8, 5, 20, 6, 10, 7, 15, 30, 8, 6, 5, 3.0])  # median payout
COUNTRIES = ("SE", "NO", "DK", "FI", "DE", "NL")
COUNTRY_SHARE = np.array([0.28, 0.14, 0.13, 0.12, 0.20, 0.13])
COUNTRY_PRICE = np.array([1.0, 1.15, 1.1, 0.95, 0.9, 0.95])  # price level relative to SE
DEVICES = ("ios", "android", "web")
SURFACES = ("home", "search", "account")
SURFACE_SHARE = np.array([0.5, 0.2, 0.3])
SURFACE_EFFECT = np.array([0.0, 0.25, -0.2])  # logit: users on search are looking for something
PLANS = ("free", "plus", "premium")
PLAN_SHARE = np.array([0.65, 0.25, 0.10])
PLAN_CONVERSION = np.array([-0.15, 0.05, 0.3])
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55+")
AGE_SHARE = np.array([0.18, 0.30, 0.24, 0.16, 0.12])
AGE_CLICKINESS = np.array([0.15, 0.1, 0.0, -0.1, -0.2])
REWARD_TYPES = ("cashback", "discount", "trial")
REWARD_EFFECT = np.array([0.15, 0.0, -0.1])
# Relative traffic by hour of day (UTC ≈ local time here): quiet nights, lunch bump, evening peak.
HOUR_SHARE = np.array([1.0, 0.6, 0.4, 0.3, 0.3, 0.5, 1.2, 2.5, 3.5, 3.5, 3.6, 3.8,
                       4.5, 4.2, 3.8, 3.8, 4.0, 4.5, 5.5, 6.5, 7.0, 6.2, 4.5, 2.5])
HOUR_SHARE = HOUR_SHARE / HOUR_SHARE.sum()

EXAMINATION_POWER = 0.7  # P(examined | position) = position ** -0.7
ATTRACT_BASE = -3.25
PRICE_EFFECT = -0.8  # logit per unit of log(price / category's typical price)
FATIGUE, FATIGUE_CAP = -0.12, 5  # per earlier unclicked impression of the same offer, capped
INTEREST = 0.6  # clicked this offer before and not converted (yet)
CONVERTED = -2.0  # already converted on this offer
PAYOUT_EFFECT = -0.5  # conversion logit per unit of log(payout / category median): big payouts, hard asks
WINDOW = 1024  # requests per chunk (≈ 15 000 impressions): bounds memory whatever the traffic
ROW_GROUP = 65_536  # rows per Parquet row group: chunks are buffered (compactly, in Arrow) up to this
MIN_GAP = 180 * US  # between a user's requests; clicks come within 120 s, so before the next request

_OFFERS, _USERS, _SCHEDULE, _CANDIDATES, _POLICY, _OUTCOMES, _POPULARITY, _MARKET = range(8)


def stage_rng(seed: int, stage: int, *index: int) -> np.random.Generator:
    """An independent generator per (seed, stage, index…): draws never depend on chunking."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stage, *index)))


def _effects(rng: np.random.Generator, sd: float, shape) -> np.ndarray:
    """Random effects centred to mean 0, so the overall CTR level hardly depends on the seed."""
    x = rng.normal(0, sd, shape)
    return x - x.mean()


def _taste(rng: np.random.Generator, sd: float, share: np.ndarray, K: int) -> np.ndarray:
    """(groups, K) attribute × category preference, centred per category over the population:
    who likes what differs, but no category is liked more on average (that is offer quality),
    so personalisation, not popularity, is what exploits these effects."""
    x = rng.normal(0, sd, (share.size, K))
    return x - share @ x


def requests_per_user(days: int) -> float:
    """Expected requests per user over ``days`` (fitted: 2.3 for 7 days, 2.65 for 14, 3.1 for 30,
    3.45 for 90+ — longer periods hold more of the returning users' visits)."""
    return 3.45 - 1.71 * float(np.exp(-days / 18.5))


def users_for_impressions(impressions: int, days: int = 14) -> int:
    """Users needed for about ``impressions`` impressions over ``days`` (the rule of thumb)."""
    return max(10, round(impressions / (15 * requests_per_user(days))))


@dataclass(frozen=True, eq=False)
class World:
    """All latent parameters. O offers, U users, K categories, R requests (time order; index = id).

    Times are µs since the epoch; ``offer_end`` is exclusive. Logit terms are on the click
    (attraction) or conversion logit scale.
    """

    start: int
    days: int
    categories: tuple[str, ...]
    partners: tuple[str, ...]
    offer_partner: np.ndarray  # (O,) index into partners
    offer_category: np.ndarray  # (O,) index into categories
    payout: np.ndarray  # (O,) paid to the platform per conversion, > 0
    offer_start: np.ndarray  # (O,) µs
    offer_end: np.ndarray  # (O,) µs, exclusive
    offer_quality: np.ndarray  # (O,) attraction logit of the offer itself
    offer_conversion: np.ndarray  # (O,) conversion logit (clickbait: high quality, low conversion)
    base_price: np.ndarray  # (O,) displayed price before country level and noise
    reward_type: np.ndarray  # (O,) index into REWARD_TYPES
    min_spend: np.ndarray  # (O,) NaN = none
    available: np.ndarray  # (O, len(COUNTRIES)) bool
    user_country: np.ndarray  # (U,)
    user_device: np.ndarray  # (U,) preferred device
    user_plan: np.ndarray  # (U,)
    user_age: np.ndarray  # (U,)
    user_signup: np.ndarray  # (U,) µs
    user_preference: np.ndarray  # (U, K) float32 attraction logit per category
    user_clickiness: np.ndarray  # (U,) attraction logit
    hour_category: np.ndarray  # (24, K)
    device_category: np.ndarray  # (len(DEVICES), K)
    category_price: np.ndarray  # (K,) typical price
    category_payout: np.ndarray  # (K,) median payout
    category_conversion: np.ndarray  # (K,) conversion logit base
    request_user: np.ndarray  # (R,)
    request_ts: np.ndarray  # (R,) µs, non-decreasing
    request_surface: np.ndarray  # (R,)
    request_device: np.ndarray  # (R,)

    @property
    def n_offers(self) -> int:
        return len(self.payout)

    @property
    def n_users(self) -> int:
        return len(self.user_country)

    @classmethod
    def from_config(cls, cfg: SimulateConfig) -> World:
        start = int(np.datetime64(cfg.start, "us").astype(np.int64))
        # Category / partner / context effects come from their own stream, so worlds of any size
        # (users, offers) built with the same seed share the same market structure.
        market = stage_rng(cfg.seed, _MARKET)
        offers = _offers(cfg, start, stage_rng(cfg.seed, _OFFERS), market)
        users = _users(cfg, start, stage_rng(cfg.seed, _USERS), market)
        return cls(start=start, days=cfg.days, categories=CATEGORIES[: cfg.categories],
                   partners=tuple(f"partner_{i:02d}" for i in range(cfg.partners)), **offers, **users)


def _offers(cfg: SimulateConfig, start: int, rng: np.random.Generator, market: np.random.Generator) -> dict:
    K, O, P, days = cfg.categories, cfg.offers, cfg.partners, cfg.days
    # MAX_SLATE "lanes" of back-to-back offers available everywhere guarantee ≥ 20 eligible offers
    # per country at every moment; their lifetimes stretch only when offers are scarce.
    span = days + 10  # a lane starts up to 10 days before the period and ends after it
    per_lane = int(np.clip(round(span / 12), 1, max(1, O // (2 * MAX_SLATE))))
    w = rng.uniform(3, 21, (MAX_SLATE, per_lane))
    edges = np.cumsum(np.c_[-rng.uniform(0, 10, MAX_SLATE), span * w / w.sum(1, keepdims=True)], axis=1)
    edges = start + np.round(edges * DAY).astype(np.int64)  # integer edges: lanes have no gaps
    # The others: independent windows of 3–21 days, each overlapping the period.
    life = rng.uniform(3, 21, O - edges[:, 1:].size)
    first = -life + rng.random(life.size) * (days + life)
    begin = np.r_[edges[:, :-1].ravel(), start + np.round(first * DAY).astype(np.int64)]
    end = np.r_[edges[:, 1:].ravel(), start + np.round((first + life) * DAY).astype(np.int64)]
    available = np.r_[np.ones((edges[:, 1:].size, len(COUNTRIES)), bool),
                      rng.random((life.size, len(COUNTRIES))) < 0.6]
    nowhere = np.flatnonzero(~available.any(1))
    available[nowhere, rng.integers(len(COUNTRIES), size=nowhere.size)] = True
    by_start = np.argsort(begin, kind="stable")  # ids follow creation order
    begin, end, available = begin[by_start], end[by_start], available[by_start]

    partner_category = market.permutation(np.arange(P) % K)  # every category has partners
    category_quality, partner_quality = _effects(market, 0.2, K), _effects(market, 0.2, P)
    category_conversion = -1.75 + _effects(market, 0.3, K)
    partner = rng.integers(P, size=O)
    category = np.where(rng.random(O) < 0.8, partner_category[partner], rng.integers(K, size=O))
    reward = rng.choice(len(REWARD_TYPES), O, p=[0.45, 0.35, 0.2])
    min_spend = np.where(rng.random(O) < 0.35, np.nan, np.round(rng.lognormal(np.log(30), 0.6, O)))
    clickbait = rng.random(O) < 0.15
    quality = (category_quality[category] + partner_quality[partner] + REWARD_EFFECT[reward]
               - 0.15 * np.log1p(np.nan_to_num(min_spend) / 30) + rng.normal(0, 0.3, O) + 0.5 * clickbait)
    return dict(
        offer_partner=partner, offer_category=category, offer_start=begin, offer_end=end,
        payout=np.maximum(0.5, np.round(CATEGORY_PAYOUT[category] * rng.lognormal(0, 0.5, O), 2)),
        offer_quality=quality, offer_conversion=rng.normal(0, 0.35, O) - 1.3 * clickbait,
        base_price=CATEGORY_PRICE[category] * rng.lognormal(0, 0.3, O), reward_type=reward,
        min_spend=min_spend, available=available, category_price=CATEGORY_PRICE[:K].copy(),
        category_payout=CATEGORY_PAYOUT[:K].copy(), category_conversion=category_conversion,
    )


def _users(cfg: SimulateConfig, start: int, rng: np.random.Generator, market: np.random.Generator) -> dict:
    """Users, their request schedule, and the context × category effects."""
    U, K = cfg.users, cfg.categories
    country = rng.choice(len(COUNTRIES), U, p=COUNTRY_SHARE)
    plan = rng.choice(len(PLANS), U, p=PLAN_SHARE)
    age = rng.choice(len(AGE_BANDS), U, p=AGE_SHARE)
    device = rng.choice(len(DEVICES), U, p=[0.45, 0.35, 0.2])
    # Preferences are mostly explained by observable attributes; the individual part is moderate
    # so that a model with point-in-time features can get close to the oracle.
    preference = (_taste(market, 0.5, PLAN_SHARE, K)[plan] + _taste(market, 0.35, COUNTRY_SHARE, K)[country]
                  + _taste(market, 0.35, AGE_SHARE, K)[age] + rng.normal(0, 0.25, (U, K))).astype(np.float32)
    fresh = rng.random(U) < 0.6  # signed up right before their first visit: curious, clickier
    clickiness = AGE_CLICKINESS[age] + 0.2 * fresh + rng.normal(0, 0.25, U)
    long_lived = rng.random(U) < 0.15
    hours = np.arange(24)[:, None] - market.uniform(0, 24, K)  # each category peaks at its own hour
    hour_category = market.uniform(0.1, 0.35, K) * np.cos(2 * np.pi * hours / 24)
    device_category = _effects(market, 0.2, (len(DEVICES), K))

    schedule, first_visit = _schedule(stage_rng(cfg.seed, _SCHEDULE), long_lived, start, cfg.days)
    account_age = np.where(fresh, rng.uniform(0, 20 * 60 * US, U), DAY + rng.exponential(400 * DAY, U))
    surface = rng.choice(len(SURFACES), len(schedule[0]), p=SURFACE_SHARE)
    on_usual = rng.random(len(schedule[0])) < 0.85
    return dict(
        user_country=country, user_device=device, user_plan=plan, user_age=age,
        user_signup=first_visit - account_age.astype(np.int64), user_preference=preference,
        user_clickiness=clickiness, hour_category=hour_category, device_category=device_category,
        request_user=schedule[0], request_ts=schedule[1], request_surface=surface,
        request_device=np.where(on_usual, device[schedule[0]], rng.integers(len(DEVICES), size=on_usual.size)),
    )


def _schedule(rng: np.random.Generator, long_lived: np.ndarray, start: int, days: int):
    """Requests ((R,) user, (R,) µs) in time order, and each user's first visit ((U,) µs).

    Most users visit 1–3 times over a few days; long-lived ones 4+ times, every ~2 days. Arrival
    days are spread over the period (returning users may have started a week before it), so
    many users are first seen late. A session is 1–2 requests a few minutes apart.
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
    two = rng.random(ts.size) < 0.3
    ts = np.r_[ts, ts[two] + MIN_GAP + rng.exponential(4 * 60 * US, two.sum()).astype(np.int64)]
    user = np.r_[user, user[two]]
    # Keep a user's requests at least MIN_GAP apart, so every click is logged before the next one.
    order = np.lexsort((ts, user))
    user, ts = user[order], ts[order]
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    rank = np.arange(user.size) - np.repeat(starts, np.diff(np.r_[starts, user.size]))
    for i in range(1, int(rank.max(initial=0)) + 1):
        at = np.flatnonzero(rank == i)
        ts[at] = np.maximum(ts[at], ts[at - 1] + MIN_GAP)
    keep = (ts >= start) & (ts < start + days * DAY)
    order = np.lexsort((user[keep], ts[keep]))
    return (user[keep][order], ts[keep][order]), first_visit


# ---- truth -----------------------------------------------------------------------------------

def examination(position: np.ndarray) -> np.ndarray:
    """P(the user looks at a slot): (N,) positions ≥ 1 → (N,) probabilities (position bias)."""
    return np.power(np.asarray(position, dtype=np.float64), -EXAMINATION_POWER)


def attraction_logit(world: World, user, offer, ts, device, surface, price, history=0.0) -> np.ndarray:
    """logit P(click | examined), free of position. All arguments (N,) per impression; ``ts`` µs,
    ``history`` the user × offer history term (:meth:`History.effect`)."""
    cat = world.offer_category[offer]
    hour = (ts // (3600 * US)) % 24
    return (ATTRACT_BASE + world.offer_quality[offer] + world.user_preference[user, cat]
            + world.user_clickiness[user] + world.hour_category[hour, cat]
            + world.device_category[device, cat] + SURFACE_EFFECT[surface]
            + PRICE_EFFECT * np.log(price / world.category_price[cat]) + history)


def conversion_probability(world: World, user, offer) -> np.ndarray:
    """P(conversion | click): (N,) users and offers → (N,) probabilities."""
    cat = world.offer_category[offer]
    logit = (world.category_conversion[cat] + world.offer_conversion[offer]
             + PLAN_CONVERSION[world.user_plan[user]]
             + PAYOUT_EFFECT * np.log(world.payout[offer] / world.category_payout[cat]))
    return _sigmoid(logit)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class History:
    """What each user did with each offer so far, keyed by user × n_offers + offer (sorted)."""

    def __init__(self, n_offers: int) -> None:
        self.n_offers = n_offers
        self.key = np.empty(0, np.int64)
        self.unclicked = np.empty(0, np.int16)  # earlier impressions without a click
        self.click_ts = np.empty(0, np.int64)  # first click, µs (int64 max = never)
        self.conv_ts = np.empty(0, np.int64)  # first conversion, µs (int64 max = never)

    def _find(self, user, offer):
        key = user.astype(np.int64) * self.n_offers + offer
        order = np.argsort(key)  # sorted needles search several times faster in a big state
        i = np.empty_like(order)
        i[order] = np.minimum(np.searchsorted(self.key, key[order]), max(self.key.size - 1, 0))
        return key, i, (self.key[i] == key) if self.key.size else np.zeros(key.size, bool)

    def effect(self, user, offer, ts) -> np.ndarray:
        """(N,) attraction-logit term from events strictly before ``ts`` (conversions may land later)."""
        _, i, found = self._find(user, offer)
        if not self.key.size:
            return np.zeros(user.size)
        converted = found & (self.conv_ts[i] < ts)
        clicked = found & (self.click_ts[i] < ts) & ~converted
        unclicked = np.where(found, np.minimum(self.unclicked[i], FATIGUE_CAP), 0)
        return FATIGUE * unclicked + INTEREST * clicked + CONVERTED * converted

    def update(self, user, offer, click, click_ts, conv_ts) -> None:
        """Add one batch; (user, offer) pairs are unique within it (one request per user)."""
        never = np.iinfo(np.int64).max
        click_ts, conv_ts = np.where(click, click_ts, never), np.where(conv_ts > 0, conv_ts, never)
        key, i, found = self._find(user, offer)
        j = i[found]
        self.unclicked[j] = np.minimum(self.unclicked[j] + ~click[found], 100)
        self.click_ts[j] = np.minimum(self.click_ts[j], click_ts[found])
        self.conv_ts[j] = np.minimum(self.conv_ts[j], conv_ts[found])
        new = np.flatnonzero(~found)
        new = new[np.argsort(key[new])]
        at = np.searchsorted(self.key, key[new])
        self.key = np.insert(self.key, at, key[new])
        self.unclicked = np.insert(self.unclicked, at, (~click[new]).astype(np.int16))
        self.click_ts = np.insert(self.click_ts, at, click_ts[new])
        self.conv_ts = np.insert(self.conv_ts, at, conv_ts[new])

    def prune(self, keep_user: np.ndarray) -> None:
        """Forget users whose ``keep_user`` entry ((U,) bool) is False: no requests to come."""
        keep = keep_user[self.key // self.n_offers]
        self.key, self.unclicked = self.key[keep], self.unclicked[keep]
        self.click_ts, self.conv_ts = self.click_ts[keep], self.conv_ts[keep]


# ---- requests, policy, outcomes ----------------------------------------------------------------

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


@dataclass(frozen=True)
class Slate:
    """A policy's decision for a batch."""

    position: np.ndarray  # (R, S) int, 1..n on candidate slots (each once), 0 on empty slots
    propensity: np.ndarray  # (R, S) P(this offer at this position | candidates) under the policy
    policy: np.ndarray  # (R,) object (str), which policy (branch) ordered the request


Policy = Callable[[World, Batch, np.random.Generator], Slate]
PolicyForDay = Callable[[int, np.ndarray, np.ndarray], Policy]  # (day, clicks, impressions per offer so far)


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


def _positions(order: np.ndarray) -> np.ndarray:
    """Inverse of a per-row ordering: (R, S) slot indices in display order → (R, S) positions 1..S."""
    pos = np.empty_like(order)
    np.put_along_axis(pos, order, np.arange(1, order.shape[1] + 1)[None, :].repeat(len(order), 0), 1)
    return pos


def popularity_scores(clicks: np.ndarray, impressions: np.ndarray, *, seed: int, day: int) -> np.ndarray:
    """(O,) smoothed logged CTR of days < ``day`` times a per-day lognormal noise per offer; offers
    never shown get the prior 1/30, so new offers start mid-pack (exposure bias)."""
    noise = stage_rng(seed, _POPULARITY, day).lognormal(0, 0.5, clicks.size)
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
    r, s = np.nonzero(b.offer >= 0)
    user, offer, ts, position = b.user[r], b.offer[r, s], b.ts[r], slate.position[r, s]
    logit = attraction_logit(world, user, offer, ts, b.device[r], b.surface[r], b.price[r, s],
                             history.effect(user, offer, ts))
    p_attract = _sigmoid(logit)
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
            batch = candidates(world, request[ordinal == k], stage_rng(seed, _CANDIDATES, *index))
            slate = policy(world, batch, stage_rng(seed, _POLICY, *index))
            parts.append(_outcomes(world, batch, slate, history, stage_rng(seed, _OUTCOMES, *index)))
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


# ---- writing -----------------------------------------------------------------------------------

TS = pa.timestamp("us")
SCHEMAS = {
    "impressions": pa.schema([("request_id", pa.string()), ("ts", TS), ("user_id", pa.string()),
                              ("offer_id", pa.string()), ("position", pa.int32()), ("surface", pa.string()),
                              ("device", pa.string()), ("country", pa.string()), ("price", pa.float64()),
                              ("propensity", pa.float64()), ("policy", pa.string())]),
    "clicks": pa.schema([("request_id", pa.string()), ("offer_id", pa.string()), ("ts", TS)]),
    "conversions": pa.schema([("request_id", pa.string()), ("offer_id", pa.string()), ("ts", TS),
                              ("value", pa.float64())]),
    "ground_truth": pa.schema([("request_id", pa.string()), ("offer_id", pa.string()),
                               ("p_attract", pa.float64()), ("p_click", pa.float64()),
                               ("p_convert", pa.float64())]),
}


def format_ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """Vectorised ``f"{prefix}{n:0{width}d}"``: (N,) integers → (N,) pyarrow strings."""
    digits = pl.Series(numbers, dtype=pl.Int64).cast(pl.String).str.zfill(width)
    return pl.select(pl.concat_str(pl.lit(prefix), digits)).to_series().to_arrow().cast(pa.string())


def id_width(n: int, minimum: int) -> int:
    """Digits for the ids of ``n`` things numbered from 0: ``minimum``, or more if ``n`` needs them."""
    return max(minimum, len(str(max(n - 1, 0))))


def user_ids(world: World) -> pa.Array:
    """(U,) user ids by user index, as the logs write them (``u0000000``, …)."""
    return format_ids("u", np.arange(world.n_users), id_width(world.n_users, 7))


def offer_ids(world: World) -> pa.Array:
    """(O,) offer ids by offer index, as the logs write them (``o00000``, …)."""
    return format_ids("o", np.arange(world.n_offers), id_width(world.n_offers, 5))


def _per_request(labels: np.ndarray, position: np.ndarray) -> pa.Array:
    """(N,) labels constant within a request → strings, converting one per request (cheap)."""
    first = position == 1
    strings = pl.Series(labels[first], dtype=pl.String).to_arrow().cast(pa.string())
    return strings.take(pa.array(np.cumsum(first) - 1))


def _strings(labels, codes: np.ndarray) -> pa.Array:
    """(N,) codes → (N,) strings: ``labels[code]``."""
    return pa.array(labels, pa.string()).take(pa.array(codes.astype(np.int64)))


class LogWriter:
    """Appends log chunks to the four per-impression Parquet files (:data:`SCHEMAS`) in ``stage``
    (an :func:`~offer_ranker.io.staged_outputs` folder), ~ROW_GROUP rows a row group.

    Call :meth:`write` per chunk, then :meth:`flush` and :meth:`close`; :meth:`summary` gives
    the counts and headline rates of what was written.
    """

    def __init__(self, world: World, stage: Staging) -> None:
        self.world = world
        self.offer_ids = offer_ids(world)
        self.user_ids = user_ids(world)
        self.request_width = id_width(world.request_ts.size, 9)
        self.writers = {name: pq.ParquetWriter(stage.path(f"{name}.parquet"), schema, compression="zstd")
                        for name, schema in SCHEMAS.items()}
        self.pending: dict[str, list[pa.Table]] = {name: [] for name in SCHEMAS}
        self.n = dict.fromkeys(("impressions", "requests", "clicks", "conversions", "clicks_position_1"), 0)

    def write(self, log: LogChunk) -> None:
        if not log.offer.size:
            return
        lo, hi = int(log.request.min()), int(log.request.max())
        rid = format_ids("r", np.arange(lo, hi + 1), self.request_width).take(pa.array(log.request - lo))
        oid = self.offer_ids.take(pa.array(log.offer))
        c, v = pa.array(log.click), pa.array(log.conversion)
        tables = {
            "impressions": [rid, pa.array(log.ts, TS), self.user_ids.take(pa.array(log.user)), oid,
                            pa.array(log.position, pa.int32()), _strings(SURFACES, log.surface),
                            _strings(DEVICES, log.device), _strings(COUNTRIES, log.country),
                            pa.array(log.price), pa.array(log.propensity),
                            _per_request(log.policy, log.position)],
            "clicks": [rid.filter(c), oid.filter(c), pa.array(log.click_ts[log.click], TS)],
            "conversions": [rid.filter(v), oid.filter(v), pa.array(log.conversion_ts[log.conversion], TS),
                            pa.array(self.world.payout[log.offer[log.conversion]])],
            "ground_truth": [rid, oid, pa.array(log.p_attract), pa.array(log.p_click), pa.array(log.p_convert)],
        }
        for name, columns in tables.items():
            self.pending[name].append(pa.table(columns, schema=SCHEMAS[name]))
        if sum(t.num_rows for t in self.pending["impressions"]) >= ROW_GROUP:
            self.flush()
        first = log.position == 1
        self.n["impressions"] += log.offer.size
        self.n["requests"] += int(first.sum())
        self.n["clicks"] += int(log.click.sum())
        self.n["conversions"] += int(log.conversion.sum())
        self.n["clicks_position_1"] += int(log.click[first].sum())

    def flush(self) -> None:
        for name, tables in self.pending.items():
            if tables:
                self.writers[name].write_table(pa.concat_tables(tables), row_group_size=4 * ROW_GROUP)
            tables.clear()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()

    def summary(self) -> tuple[dict[str, int], dict[str, float]]:
        n = self.n
        counts = {k: n[k] for k in ("impressions", "requests", "clicks", "conversions")}
        counts |= {"users": self.world.n_users, "offers": self.world.n_offers}
        rates = {"ctr": n["clicks"] / max(n["impressions"], 1),
                 "ctr_position_1": n["clicks_position_1"] / max(n["requests"], 1),
                 "conversions_per_click": n["conversions"] / max(n["clicks"], 1)}
        return counts, rates


@dataclass(frozen=True)
class SimulationResult:
    """Where :func:`simulate` wrote its outputs, row counts, and the wall time in seconds."""

    out: Path
    paths: dict[str, Path]
    impressions: int
    requests: int
    clicks: int
    conversions: int
    users: int
    offers: int
    seconds: float


def simulate(cfg: SimulateConfig, out: Path, *, track: Track = no_track) -> SimulationResult:
    """Simulate ``cfg`` and write raw logs + ground truth to ``out``, all files or none.

    Writes impressions, clicks, conversions, ground_truth (per day), offers and users as Parquet,
    then ``simulation.json`` (config, counts, headline rates) last.
    """
    began = time.perf_counter()
    world = World.from_config(cfg)
    out = Path(out)
    with staged_outputs(out) as stage:
        writer = LogWriter(world, stage)
        try:
            for log in run_days(world, logging_policy(cfg.uniform_share, cfg.seed), seed=cfg.seed, track=track):
                writer.write(log)
            writer.flush()
        finally:
            writer.close()
        pq.write_table(offers_table(world, writer.offer_ids), stage.path("offers.parquet"), compression="zstd")
        pq.write_table(users_table(world, writer.user_ids), stage.path("users.parquet"), compression="zstd")
        counts, rates = writer.summary()
        report = {"config": cfg.model_dump(mode="json"), "counts": counts, "rates": rates}
        stage.write_json("simulation.json", report)  # last: it marks a complete run
    paths = {name: out / f"{name}.parquet" for name in (*SCHEMAS, "offers", "users")}
    paths["simulation"] = out / "simulation.json"
    return SimulationResult(out=out, paths=paths, seconds=time.perf_counter() - began, **counts)


def offers_table(world: World, offer_ids: pa.Array) -> pa.Table:
    """The offers table of the raw logs: one row per offer, ``offer_ids`` by index."""
    return pa.table({
        "offer_id": offer_ids, "partner": _strings(world.partners, world.offer_partner),
        "category": _strings(world.categories, world.offer_category), "payout": world.payout,
        "start_ts": pa.array(world.offer_start, TS), "end_ts": pa.array(world.offer_end, TS),
        "reward_type": _strings(REWARD_TYPES, world.reward_type),
        "min_spend": pa.array(world.min_spend, pa.float64(), from_pandas=True),  # NaN → NULL
    })


def users_table(world: World, user_ids: pa.Array) -> pa.Table:
    """The users table of the raw logs: one row per user, ``user_ids`` by index."""
    return pa.table({
        "user_id": user_ids, "signup_ts": pa.array(world.user_signup, TS),
        "country": _strings(COUNTRIES, world.user_country), "plan": _strings(PLANS, world.user_plan),
        "age_band": _strings(AGE_BANDS, world.user_age),
    })
