"""The ground truth: how likely a user is to look at, click and convert on an offer.

A click needs examination (position bias only, :func:`examination`) and attraction (everything
else, :func:`attraction_logit`): P(click) = examination(position) · expit(attraction logit).
A conversion follows a click with :func:`conversion_probability`. :class:`History` carries what
each user did with each offer so far (fatigue from unclicked impressions, interest after a
click, aversion after a conversion), the one term that depends on the past. All functions are
vectorised over impressions.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from offer_ranker.simulator.market import PLAN_CONVERSION, SURFACE_EFFECT, US
from offer_ranker.simulator.world import World

EXAMINATION_POWER = 0.7  # P(examined | position) = position ** -0.7
ATTRACT_BASE = -3.25
PRICE_EFFECT = -0.8  # logit per unit of log(price / category's typical price)
FATIGUE, FATIGUE_CAP = -0.12, 5  # per earlier unclicked impression of the same offer, capped
INTEREST = 0.6  # clicked this offer before and not converted (yet)
CONVERTED = -2.0  # already converted on this offer
PAYOUT_EFFECT = -0.5  # conversion logit per unit of log(payout / category median): big payouts, hard asks
INTENT = 1.0  # the category the session is after (short-lived scenario)


def examination(position: np.ndarray) -> np.ndarray:
    """P(the user looks at a slot): (N,) positions ≥ 1 → (N,) probabilities (position bias)."""
    return np.power(np.asarray(position, dtype=np.float64), -EXAMINATION_POWER)


def attraction_logit(world: World, user, offer, ts, device, surface, price, history=0.0,
                     intent=None) -> np.ndarray:
    """logit P(click | examined), free of position. All arguments (N,) per impression; ``ts`` µs,
    ``history`` the user × offer history term (:meth:`History.effect`), ``intent`` the category
    the session is after (-1: none; short-lived scenario)."""
    cat = world.offer_category[offer]
    hour = (ts // (3600 * US)) % 24
    logit = (ATTRACT_BASE + world.offer_quality[offer] + world.user_preference[user, cat]
             + world.user_clickiness[user] + world.hour_category[hour, cat]
             + world.device_category[device, cat] + SURFACE_EFFECT[surface]
             + PRICE_EFFECT * np.log(price / world.category_price[cat]) + history)
    return logit if intent is None else logit + INTENT * (cat == intent)


def conversion_probability(world: World, user, offer) -> np.ndarray:
    """P(conversion | click): (N,) users and offers → (N,) probabilities."""
    cat = world.offer_category[offer]
    logit = (world.category_conversion[cat] + world.offer_conversion[offer]
             + PLAN_CONVERSION[world.user_plan[user]]
             + PAYOUT_EFFECT * np.log(world.payout[offer] / world.category_payout[cat]))
    return expit(logit)


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
