"""Offline evaluation of the serving policy (:mod:`offer_ranker.policy.rerank`) on logged requests.

The service does not return the model's order: it blends new offers with their cold-start prior,
diversifies with MMR and caps partners. This replays that policy on a sample of the evaluation
requests, with the same functions, and measures what it trades:

* a λ sweep: NDCG@k (true click probabilities as gains on simulated data, logged labels
  otherwise), efficiency against the oracle, intra-list diversity (1 − mean pairwise similarity
  of the top k) and coverage (share of candidate offers that reach a top-k slot);
* cold start with and without the prior, at the configured λ: requests with a new offer, and
  requests of new users.

The priors come from the training window only (:meth:`ColdStartPrior.from_frame`), never from
the evaluation period. Candidates are the logged ones, all eligible when they were shown.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from offer_ranker.config import Config
from offer_ranker.evaluation.testset import TestSet
from offer_ranker.model.bundle import Bundle
from offer_ranker.policy import rerank
from offer_ranker.policy.priors import ColdStartPrior
from offer_ranker.stats.metrics import request_starts

LAMBDAS = (1.0, 0.95, 0.9, 0.8, 0.7, 0.5, 0.3, 0.0)


def _column(frame: pl.DataFrame, name: str, default: float = np.nan) -> np.ndarray:
    return frame[name].to_numpy() if name in frame.columns else np.full(frame.height, default)


def evaluate_policy(bundle: Bundle, test: TestSet, train_frame: pl.DataFrame, cfg: Config,
                    max_requests: int = 20_000) -> dict[str, Any]:
    """The λ sweep and the cold-start comparison (see the module docstring)."""
    k, serve = cfg.evaluate.k, cfg.serve
    frame = test.frame
    rng = np.random.default_rng(cfg.evaluate.seed)
    G = len(test.groups)
    sample = np.sort(rng.choice(G, size=min(G, max_requests), replace=False))
    starts = request_starts(test.groups)

    p_model = bundle.p_click(test.X, 1.0)
    value = bundle.value_per_click(test.X)
    prior = ColdStartPrior.from_frame(train_frame, bundle.info.get("segment_lifts") or {})
    categories, partners = _column(frame, "offer_category"), _column(frame, "offer_partner")
    new_user_rows = _column(frame, "user_is_new", 0.0) == 1.0
    country, device = _column(frame, "ctx_country"), _column(frame, "ctx_device")
    prior_p = np.empty(frame.height)
    for new in (False, True):
        rows = np.flatnonzero(new_user_rows == new)
        if new:  # segment lifts differ by request: one call per (country, device)
            keys = [(country[i], device[i]) for i in rows]
            for key in set(keys):
                sub = rows[[j for j, kk in enumerate(keys) if kk == key]]
                prior_p[sub] = prior.top_slot(list(categories[sub]), list(partners[sub]), True, *key)
        elif len(rows):
            prior_p[rows] = prior.top_slot(list(categories[rows]), list(partners[rows]), False)
    impressions = _column(frame, "offer_impressions", 0.0)
    relevance = {"with_prior": rerank.blend(p_model, prior_p, impressions, serve.prior_impressions) * value,
                 "without_prior": p_model * value}
    truth = test.p_attract
    gains = truth if truth is not None else 2.0 ** test.label - 1
    exam = test.examination[:k] if test.examination is not None else None
    discount = 1 / np.log2(np.arange(2, k + 2))
    cat_codes, partner_codes = rerank.codes(categories), rerank.codes(partners)
    numeric = _column(frame, "offer_payout")[:, None]
    offer_codes = rerank.codes(frame["offer_id"].to_numpy())
    new_offer = test.new_offer

    lambdas = sorted(set(LAMBDAS) | {serve.mmr_lambda}, reverse=True)  # the configured λ is always swept
    runs = [("lambda", lam, "with_prior") for lam in lambdas] + [("cold_start", serve.mmr_lambda, "without_prior")]
    stats: dict[tuple, dict[str, list]] = {r: {"ndcg": [], "clicks": [], "oracle": [], "diversity": [],
                                               "new": [], "offers": [], "has_new": [], "new_user": []} for r in runs}
    for g in sample:
        rows = np.arange(starts[g], starts[g] + test.groups[g])
        sim = rerank.similarity(cat_codes[rows], partner_codes[rows], numeric[rows], serve.similarity_weights)
        g_rows = gains[rows]
        ideal = np.sort(g_rows)[::-1][:k]
        idcg = float((ideal * discount[:len(ideal)]).sum())
        oracle_clicks = float((np.sort(truth[rows])[::-1][:k] * exam[:min(k, len(rows))]).sum()) if truth is not None else 0.0
        for run in runs:
            _, lam, variant = run
            rel = relevance[variant][rows]
            order = np.lexsort((test.tiebreak[rows], -rel))
            picked = rerank.mmr(rel[order], sim[np.ix_(order, order)], k, lam, partner_codes[rows][order],
                                serve.partner_cap)[0]
            chosen = order[picked[picked >= 0]]
            n = len(chosen)
            s = stats[run]
            s["ndcg"].append(float((g_rows[chosen] * discount[:n]).sum()) / idcg if idcg > 0 else np.nan)
            s["clicks"].append(float((truth[rows][chosen] * exam[:n]).sum()) if truth is not None else np.nan)
            s["oracle"].append(oracle_clicks)
            pair = sim[np.ix_(chosen, chosen)]
            s["diversity"].append(1 - (pair.sum() - n) / (n * (n - 1)) if n > 1 else np.nan)
            s["new"].append(float(new_offer[rows][chosen].mean()) if n else np.nan)
            s["offers"].append(offer_codes[rows][chosen])
            s["has_new"].append(bool(new_offer[rows].any()))
            s["new_user"].append(bool(test.new_user[g]))
    candidates = len(np.unique(offer_codes[np.concatenate([np.arange(starts[g], starts[g] + test.groups[g])
                                                            for g in sample])]))

    def summary(run: tuple, mask: np.ndarray | None = None) -> dict[str, Any]:
        s = stats[run]
        m = np.ones(len(sample), bool) if mask is None else mask
        clicks, oracle = np.array(s["clicks"])[m], np.array(s["oracle"])[m]
        shown = np.concatenate([o for o, keep in zip(s["offers"], m) if keep]) if m.any() else np.array([])
        return {"requests": int(m.sum()), f"ndcg@{k}": float(np.nanmean(np.array(s["ndcg"])[m])),
                "efficiency": float(clicks.sum() / oracle.sum()) if truth is not None and oracle.sum() > 0 else None,
                "diversity": float(np.nanmean(np.array(s["diversity"])[m])),
                f"coverage@{k}": float(len(np.unique(shown)) / candidates) if candidates else None,
                "new_offer_share": float(np.nanmean(np.array(s["new"])[m]))}

    sweep = [{"lambda": lam} | summary(("lambda", lam, "with_prior")) for lam in lambdas]
    configured = ("lambda", serve.mmr_lambda, "with_prior")
    cold = {}
    for segment, key in (("requests_with_a_new_offer", "has_new"), ("new_users", "new_user")):
        mask = np.array(stats[configured][key])
        if mask.any():
            cold[segment] = {"with_prior": summary(configured, mask),
                             "without_prior": summary(("cold_start", serve.mmr_lambda, "without_prior"), mask)}
    return {"requests": int(len(sample)), "k": k, "lambda": serve.mmr_lambda, "partner_cap": serve.partner_cap,
            "gains": "true click probabilities" if truth is not None else "logged labels",
            "sweep": sweep, "cold_start": cold}
