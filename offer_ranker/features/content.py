"""Content: what the offer's text says about it (offer_ranker/featurize/content.py)."""

from offer_ranker.features.base import Feature

GROUP = "content"

#: Only when the offers have text columns (``features.text_columns``).
FEATURES = (
    Feature("offer_content_ctr", "offer", "numeric", "before the request's day",
            "The click rate of the offers whose title and description read most like this one's: a prior "
            "for an offer with little history of its own.", GROUP),
)
