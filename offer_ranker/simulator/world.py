"""The simulated world: every latent parameter, built deterministically from a
:class:`~offer_ranker.config.SimulateConfig`.

:class:`World` holds the offers (:mod:`.offers`), the users and their request schedule
(:mod:`.users`, :mod:`.schedule`) and the context effects as arrays indexed by offer, user,
request or category code; the truth functions (:mod:`.truth`) read them. What lives here is per
user, per offer and per request (32 bytes a request), never per impression.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from offer_ranker.config import SimulateConfig
from offer_ranker.simulator import streams
from offer_ranker.simulator.market import CATEGORIES
from offer_ranker.simulator.offers import build_offers
from offer_ranker.simulator.users import build_users


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
    # the short-lived scenario only (None otherwise)
    offer_title: np.ndarray | None = None  # (O,) str
    offer_description: np.ndarray | None = None  # (O,) str
    request_intent: np.ndarray | None = None  # (R,) category the request's session is after, -1 none

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
        market = streams.stage_rng(cfg.seed, streams.MARKET)
        offers = build_offers(cfg, start, streams.stage_rng(cfg.seed, streams.OFFERS), market)
        users = build_users(cfg, start, streams.stage_rng(cfg.seed, streams.USERS), market)
        return cls(start=start, days=cfg.days, categories=CATEGORIES[: cfg.categories],
                   partners=tuple(f"partner_{i:02d}" for i in range(cfg.partners)), **offers, **users)
