"""Cold-start priors: what to believe about an offer, or a user, the model knows little of.

An offer's prior click rate at the top slot is a product of empirical-Bayes estimates, each
shrunk towards the level above it::

    prior = category mean × partner lift × segment lift × top-slot lift

* category mean: the category's prior from the feature build (``priors.sql``, fitted per day);
* partner lift: the partner's smoothed click rate over all its offers, relative to the global rate;
* segment lift: for a new user only, the smoothed click rate of new users of the same first-party
  segment (country × device), relative to all impressions (fitted at training, kept in the bundle);
* top-slot lift: the logged click rate of slot 1 relative to the global rate, so the prior is on the
  scale of the model's ``p_click`` at slot 1.

The prior's strength (pseudo-impressions) is the category's, from the same fit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from offer_ranker.online import OnlineStore

#: pseudo-impressions that shrink a segment's rate towards the overall one
SEGMENT_STRENGTH = 500.0


def segment_key(country: Any, device: Any) -> str:
    return f"{country}|{device}"


def segment_lifts(frame: pl.DataFrame) -> dict[str, float]:
    """Click-rate lift of new users per first-party segment (``ctx_country`` × ``ctx_device``),
    from training impressions; ``""`` is new users overall. Empty without those columns."""
    needed = {"ctx_country", "ctx_device", "user_is_new", "label"}
    if not needed <= set(frame.columns) or frame.is_empty():
        return {}
    clicked = (pl.col("label") >= 1).cast(pl.Float64)
    overall = float(frame.select(clicked.mean()).item() or 0.0)
    if overall <= 0:
        return {}
    new = frame.filter(pl.col("user_is_new") == 1)
    if new.is_empty():
        return {}
    new_rate = float(new.select(clicked.mean()).item())
    lifts = {"": new_rate / overall}
    per = new.group_by("ctx_country", "ctx_device").agg(clicks=clicked.sum(), n=pl.len())
    for country, device, clicks, n in per.iter_rows():
        smoothed = (clicks + new_rate * SEGMENT_STRENGTH) / (n + SEGMENT_STRENGTH)
        lifts[segment_key(country, device)] = smoothed / overall
    return lifts


class ColdStartPrior:
    """Per-candidate priors for one loaded snapshot and bundle."""

    def __init__(self, store: OnlineStore, segments: dict[str, float]) -> None:
        self.store, self.segments = store, segments
        mean, strength = store.global_prior
        self.global_mean, self.strength = mean, strength
        self.partner_lift = {name: ((clicks + mean * strength) / (imp + strength)) / mean
                             for name, (imp, clicks) in store.partner_totals().items()} if mean > 0 else {}
        self.slot_lift = store.position_ctr(1) / mean if mean > 0 else 1.0

    def top_slot(self, categories: list[Any], partners: list[Any], new_user: bool,
                 country: Any = None, device: Any = None) -> np.ndarray:
        """Prior click rate at slot 1 of each candidate (categories and partners: names or None)."""
        cat = np.array([self.store.offer_prior(c)[0] for c in categories])
        partner = np.array([self.partner_lift.get(p, 1.0) for p in partners])
        segment = 1.0
        if new_user and self.segments:
            segment = self.segments.get(segment_key(country, device), self.segments.get("", 1.0))
        return np.clip(cat * partner * segment * self.slot_lift, 1e-6, 1 - 1e-6)

    def position_lift(self, positions: np.ndarray) -> np.ndarray:
        """Click rate of each slot relative to slot 1 (to move a top-slot prior down the page)."""
        top = self.store.position_ctr(1)
        return np.array([self.store.position_ctr(int(p)) / top for p in positions]) if top > 0 else np.ones(len(positions))
