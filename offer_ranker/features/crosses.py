"""Crossed categoricals: a segment of the page view or of the user, paired with the offer's category.

Users of one plan, age band or country, on one device or at one hour, prefer different
categories. A tree can learn that from the two columns apart only with a split on each, which
sparse clicks rarely pay for; the pair as one categorical (``'ios × finance'``) lets a single
split on it carry the preference, and LightGBM's native categorical splits keep it sparse.

Defined by rule: the context segments below, and every categorical pass-through column of the
users table, each crossed with ``offer_category``.
"""

from __future__ import annotations

from collections.abc import Iterable

from offer_ranker.features.base import Feature

GROUP = "crosses"
CATEGORY = "offer_category"
#: Context features crossed with the category, and how the descriptions name them. Not the hour
#: of day: its 24 × categories levels overfit (efficiency 0.903 with it, 0.909 without, on the
#: simulator's 795k impressions, whose hour × category effect is real but small).
CONTEXT_SEGMENTS = {"ctx_device": "the device", "ctx_country": "the country of the page view",
                    "ctx_surface": "the app surface"}


def cross(segment: Feature, label: str) -> Feature:
    """The definition of ``segment`` × the offer's category."""
    return Feature(
        name=f"category_by_{segment.name}",
        entity="segment×category",
        dtype="categorical",
        window=segment.window,
        description=f"The offer's category paired with {label}: which categories that group prefers.",
        group=GROUP,
        inputs=(segment.name, CATEGORY),
    )


def crosses(features: Iterable[Feature]) -> tuple[Feature, ...]:
    """The crosses of ``features`` (every feature of a frame, pass-through columns included)."""
    out = []
    for f in features:
        if f.name in CONTEXT_SEGMENTS:
            out.append(cross(f, CONTEXT_SEGMENTS[f.name]))
        elif f.group == "passthrough" and f.entity == "user" and f.dtype == "categorical":
            out.append(cross(f, f"the user's '{f.name.removeprefix('user_x_')}'"))
    return tuple(out)
