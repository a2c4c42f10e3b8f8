"""Cold-start priors: what to believe about an offer, or a user, the model knows little of.

An offer's prior click rate at the top slot is a product of empirical-Bayes estimates, each
shrunk towards the level above it::

    prior = category mean × partner lift × segment lift × top-slot lift

* category mean: the category's prior from the feature build (``priors.sql``, fitted per day);
* partner lift: the partner's clicks over the clicks its offers' categories would predict (smoothed);
* segment lift: for a new user only, the smoothed click rate of new users of the same first-party
  segment (country × device), relative to all impressions (fitted at training, kept in the bundle);
* top-slot lift: the logged click rate of slot 1 relative to the global rate, so the prior is on the
  scale of the model's ``p_click`` at slot 1.

The prior's strength (pseudo-impressions, for the exploration's Beta posterior) is the global prior's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from offer_ranker.featurize.online import OnlineStore

#: pseudo-impressions that shrink a segment's rate towards the overall one
SEGMENT_STRENGTH = 500.0
#: pseudo-impressions that shrink a category's rate towards the global one (offline priors only;
#: serving uses the strengths priors.sql fitted)
CATEGORY_STRENGTH = 200.0


def segment_key(country: Any, device: Any) -> str:
    return f"{country}|{device}"


#: the columns a segment lift is counted by (the segment, and whether the user is new)
SEGMENT_COLUMNS = ("ctx_country", "ctx_device", "user_is_new")


def segment_lifts(frame: pl.DataFrame) -> dict[str, float]:
    """Click-rate lift of new users per first-party segment (``ctx_country`` × ``ctx_device``),
    from training impressions; ``""`` is new users overall. Empty without those columns."""
    if not {*SEGMENT_COLUMNS, "label"} <= set(frame.columns) or frame.is_empty():
        return {}
    return lifts_from_counts(frame.group_by(*SEGMENT_COLUMNS).agg(clicks=(pl.col("label") >= 1).sum(), n=pl.len()))


def lifts_from_counts(counts: pl.DataFrame) -> dict[str, float]:
    """:func:`segment_lifts` from the impressions (``n``) and ``clicks`` per ``SEGMENT_COLUMNS``
    (a frame too large for one process is counted where it is, e.g. by Spark)."""
    n = counts["n"].sum() if counts.height else 0
    overall = float(counts["clicks"].sum() / n) if n else 0.0
    if overall <= 0:
        return {}
    new = counts.filter(pl.col("user_is_new") == 1)
    if new["n"].sum() == 0:
        return {}
    new_rate = float(new["clicks"].sum() / new["n"].sum())
    lifts = {"": new_rate / overall}
    per = new.group_by("ctx_country", "ctx_device").agg(pl.col("clicks").sum(), pl.col("n").sum())
    for country, device, clicks, n in per.iter_rows():
        smoothed = (clicks + new_rate * SEGMENT_STRENGTH) / (n + SEGMENT_STRENGTH)
        lifts[segment_key(country, device)] = smoothed / overall
    return lifts


@dataclass
class ColdStartPrior:
    """Per-candidate priors: built from a loaded snapshot for serving (:meth:`from_store`), or
    from training impressions for the offline evaluation (:meth:`from_frame`, no later data)."""

    category_mean: Callable[[Any], float]
    global_mean: float
    strength: float
    partner_lift: dict[Any, float]
    slot_ctr: Callable[[int], float]
    segments: dict[str, float]

    @classmethod
    def from_store(cls, store: OnlineStore, segments: dict[str, float]) -> ColdStartPrior:
        mean, strength = store.global_prior
        def category_mean(c: Any) -> float:
            return store.offer_prior(c)[0]

        return cls(category_mean, mean, strength,
                   _partner_lifts(store.partner_category_totals(), category_mean, mean, strength),
                   store.position_ctr, segments)

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, segments: dict[str, float],
                   strength: float = CATEGORY_STRENGTH) -> ColdStartPrior:
        """From impressions (``offer_category``, ``offer_partner``, ``position``, ``label``): each
        category's click rate shrunk towards the global one with ``strength`` pseudo-impressions."""
        clicked = (pl.col("label") >= 1).cast(pl.Float64)
        mean = float(frame.select(clicked.mean()).item() or 0.0)

        def totals(*columns: str) -> dict[Any, tuple[float, float]]:
            rows = frame.group_by(*columns).agg(imp=pl.len(), clk=clicked.sum()).iter_rows()
            return {(row[0] if len(columns) == 1 else row[:-2]): (float(row[-2]), float(row[-1])) for row in rows}

        categories = {c: (clk + mean * strength) / (imp + strength) for c, (imp, clk) in totals("offer_category").items()}
        slots = {int(p): clk / imp for p, (imp, clk) in totals("position").items() if p is not None and imp > 0}

        def category_mean(c: Any) -> float:
            return categories.get(c, mean)

        return cls(category_mean, mean, strength,
                   _partner_lifts(totals("offer_partner", "offer_category"), category_mean, mean, strength),
                   lambda p: slots.get(int(p), mean), segments)

    @property
    def slot_lift(self) -> float:
        return self.slot_ctr(1) / self.global_mean if self.global_mean > 0 else 1.0

    def top_slot(self, categories: list[Any], partners: list[Any], new_user: bool,
                 country: Any = None, device: Any = None) -> np.ndarray:
        """Prior click rate at slot 1 of each candidate (categories and partners: names or None)."""
        cat = np.array([self.category_mean(c) for c in categories])
        partner = np.array([self.partner_lift.get(p, 1.0) for p in partners])
        segment = 1.0
        if new_user and self.segments:
            segment = self.segments.get(segment_key(country, device), self.segments.get("", 1.0))
        return np.clip(cat * partner * segment * self.slot_lift, 1e-6, 1 - 1e-6)

    def position_lift(self, positions: np.ndarray) -> np.ndarray:
        """Click rate of each slot relative to slot 1 (to move a top-slot prior down the page)."""
        top = self.slot_ctr(1)
        return np.array([self.slot_ctr(int(p)) / top for p in positions]) if top > 0 else np.ones(len(positions))


def _partner_lifts(totals: dict[tuple[Any, Any], tuple[float, float]], category_mean: Callable[[Any], float],
                   mean: float, strength: float) -> dict[Any, float]:
    """Each partner's clicks over the clicks its offers' categories would get (clicks over expected
    clicks, so the category effect is not counted twice), smoothed with ``strength`` pseudo-impressions."""
    sums: dict[Any, list[float]] = {}
    for (partner, category), (imp, clk) in totals.items():
        if partner is None:
            continue
        s = sums.setdefault(partner, [0.0, 0.0])
        s[0] += clk
        s[1] += imp * category_mean(category)
    pseudo = mean * strength
    return {p: (clk + pseudo) / (expected + pseudo) for p, (clk, expected) in sums.items()} if pseudo > 0 else {}
