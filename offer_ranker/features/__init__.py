"""Declarative feature definitions: every model input, with a plain-language description.

Installed as ``offer_ranker.features``. Each :class:`Feature` names the SQL file in
``sql/features/`` that produces it; ``tests/data/test_features.py`` checks that every produced
column has a definition and every definition is produced.

The content prior (``content.FEATURES``) exists only when the offers have text columns.
Pass-through columns (extra columns of the raw tables) and crosses (a segment × the offer's
category, :mod:`offer_ranker.features.crosses`) are defined by rule rather than by hand: see
:func:`passthrough` and :func:`crosses`.
"""

from __future__ import annotations

from offer_ranker.features import affinity, content, offer_history, offer_request, user_history
from offer_ranker.features.base import Feature
from offer_ranker.features.crosses import crosses

FEATURES: tuple[Feature, ...] = (
    offer_history.FEATURES + user_history.FEATURES + affinity.FEATURES + offer_request.FEATURES
)
#: Defined only when the offers have text columns (``features.text_columns``).
CONTENT: tuple[Feature, ...] = content.FEATURES
BY_NAME = {f.name: f for f in FEATURES + CONTENT}

#: Where extra raw columns come from, and the prefix their features get.
PASSTHROUGH_SOURCES = {"impressions": ("request×offer", "imp_x_"), "offers": ("offer", "offer_x_"),
                       "users": ("user", "user_x_")}


#: Prefix of pass-through features from impressions; the service's request carries the raw name.
IMPRESSION_PREFIX = PASSTHROUGH_SOURCES["impressions"][1]
#: Prefix of pass-through features from the users table (first-party user attributes).
USER_PREFIX = PASSTHROUGH_SOURCES["users"][1]


def passthrough(table: str, column: str, numeric: bool) -> Feature:
    """The definition of an extra raw column used as a feature as it is."""
    entity, prefix = PASSTHROUGH_SOURCES[table]
    return Feature(
        name=f"{prefix}{column}",
        entity=entity,
        dtype="numeric" if numeric else "categorical",
        window="at request",
        description=f"The '{column}' column of the {table} log, used as it is.",
        group="passthrough",
    )


__all__ = ["BY_NAME", "CONTENT", "FEATURES", "IMPRESSION_PREFIX", "USER_PREFIX", "Feature", "crosses", "passthrough"]
