"""From one request's scored candidates to the offers on top: the service's path through the policy.

The model's calibrated ``p_click`` at the top slot (if there is one) is blended with each offer's
cold-start prior by evidence, multiplied by what a click is worth, made ``-inf`` for ineligible
offers, and handed to :func:`~offer_ranker.policy.rerank.choose` (MMR with the partner cap, or an
exploring list). The candidates go in best first, so every tie resolves the same way: the
(calibrated, hence stepwise) relevance, then the model's raw score, then a stable hash of the id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from offer_ranker.config import ServeConfig
from offer_ranker.policy import rerank
from offer_ranker.policy.priors import ColdStartPrior
from offer_ranker.stats.metrics import offer_hash

#: numeric offer attributes that enter the MMR similarity, when the features have them
SIMILARITY_NUMERIC = ("offer_payout",)
#: the prior when there is no snapshot to fit one from: a typical click rate, weakly held
NO_PRIOR = (0.02, 50.0)


@dataclass(frozen=True)
class Page:
    """The chosen offers of one request.

    shown : (m,) candidate indexes in position order (m ≤ k)
    score : (n,) every candidate's relevance (blended p_click at slot 1 × value per click)
    p_click : (m,) the blended p_click of each shown offer in its slot
    propensity : (m,) probability that the policy puts each shown offer in its slot
    explored : whether this request explored
    """

    shown: np.ndarray
    score: np.ndarray
    p_click: np.ndarray
    propensity: np.ndarray
    explored: bool


def choose_page(ids: list[str], features: Mapping[str, np.ndarray], *, k: int, context: Mapping[str, Any],
                cfg: ServeConfig, prior: ColdStartPrior | None, rng: np.random.Generator,
                raw: np.ndarray | None = None, p_top: np.ndarray | None = None,
                value: np.ndarray | None = None, p_at: Any = None) -> Page:
    """Choose the top ``k`` of the candidates ``ids``.

    features : the candidates' feature columns (n,) each; empty when they could not be computed
    raw, p_top, value : the click model's raw score and calibrated p_click at slot 1, and the value
        of a click (n,) each; None when there is no model output (then the prior alone ranks)
    p_at : ``p_at(rows, positions)`` → the model's calibrated p_click of those rows in those slots
    """
    n = len(ids)
    column = _columns(features, n)
    categories, partners = column("offer_category", text=True), column("offer_partner", text=True)
    impressions = column("offer_impressions")
    if prior is not None:
        new_user = "user_is_new" not in features or bool(features["user_is_new"][0] == 1.0)
        base = prior.top_slot(categories, partners, new_user, context.get("country"), context.get("device"))
        strength, slot_lift = prior.strength, prior.slot_lift
    else:
        base, strength, slot_lift = np.full(n, NO_PRIOR[0]), NO_PRIOR[1], 1.0
    p = base if p_top is None else rerank.blend(p_top, base, impressions, cfg.prior_impressions)
    value = value if value is not None else np.ones(n)
    ok = rerank.eligible(column("offer_age_hours"), column("offer_hours_to_expiry"), column("uo_conversions"))
    relevance = np.where(ok, p * value, -np.inf)
    tiebreak = -raw if raw is not None else np.zeros(n)
    order = np.lexsort((offer_hash(ids), tiebreak, -np.nan_to_num(relevance, neginf=-1e300)))
    partner_codes = rerank.codes([partners[i] for i in order])
    numeric = [column(name)[order] for name in SIMILARITY_NUMERIC if name in features]
    sim = rerank.similarity(rerank.codes([categories[i] for i in order]), partner_codes,
                            np.column_stack(numeric) if numeric else np.zeros((n, 0)), cfg.similarity_weights)
    policy = rerank.Policy(k=k, lam=cfg.mmr_lambda, cap=cfg.partner_cap, explore_rate=cfg.explore_rate,
                           explore_below=cfg.explore_below, draws=cfg.explore_draws, exploration=cfg.exploration)
    picked, propensity, explored = rerank.choose(
        policy, relevance[order], sim, partner_codes, multiplier=value[order], impressions=impressions[order],
        clicks=column("offer_clicks")[order], prior=base[order], prior_strength=strength, rng=rng,
        slot_lift=slot_lift)
    shown = order[picked]
    positions = np.arange(1, len(shown) + 1)
    lift = prior.position_lift(positions) if prior is not None else np.ones(len(shown))
    p_shown = base[shown] * lift
    if p_top is not None and p_at is not None and len(shown):
        p_shown = rerank.blend(p_at(shown, positions), p_shown, impressions[shown], cfg.prior_impressions)
    return Page(shown, p * value, p_shown, propensity, explored)


def _columns(features: Mapping[str, np.ndarray], n: int) -> Any:
    """``column(name, text=False)``: a feature column, or NaN (None for text) when it is missing."""
    def column(name: str, text: bool = False) -> Any:
        if name in features:
            return list(features[name]) if text else features[name]
        return [None] * n if text else np.full(n, np.nan)
    return column
