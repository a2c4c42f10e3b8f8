"""The metrics of the evaluation: every method's, by segment, and the model's verdict against the
baselines.

Every method orders each logged request's candidates; the metrics compare those orders with what
happened (clicks, conversions) and, on simulated data, with the truth:

* methods: the model; random; the logged order; popularity (the smoothed offer CTR feature);
  on simulated data the oracle (true attraction ``p_attract``)
* per request: NDCG@1/3/5 (gain 2^label - 1), MRR, P@1/P@k; with ground truth, NDCG@k with
  true-probability gains and the expected top-k clicks (sum of p_attract x examination(slot))
* efficiency = expected top-k clicks of the method's order / the oracle's (true probabilities)
* per impression: AUC, log loss, expected calibration error of p_click at the logged slot
* coverage (share of candidate offers that reach a top-k slot) and Gini of top-k exposure
* segments: new vs returning users; new vs established offers
* 95% bootstrap CIs, resampling requests
* the verdict: the model against each baseline on the headline metric, as a difference with a CI
  paired by request
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from offer_ranker.evaluation.testset import TestSet
from offer_ranker.model.baselines import PopularityRanker, RandomRanker
from offer_ranker.model.bundle import Bundle
from offer_ranker.stats import metrics as M

#: Impression-level statistics (AUC, ECE) are recomputed on this many of the bootstrap resamples.
IMPRESSION_RESAMPLES = 50
#: The baselines the verdict compares the model with, and how the reports name them.
BASELINES = {"random": "a random order", "logged": "the logged order", "popularity": "popularity"}


def method_scores(bundle: Bundle, t: TestSet, seed: int) -> dict[str, np.ndarray]:
    scores = {"model": bundle.score(t.X), "random": RandomRanker(seed).score(t.X),
              "logged": -t.position.astype(np.float64)}
    if "offer_ctr" in bundle.spec.names:
        scores["popularity"] = PopularityRanker(bundle.spec).score(t.X)
    if t.p_attract is not None:
        scores["oracle"] = t.p_attract
    return scores


def score_methods(bundle: Bundle, t: TestSet, p_click: np.ndarray, resamples: np.ndarray, k: int, *, seed: int,
                  track: Any = None) -> dict[str, Any]:
    """``methods`` (each method's metrics), ``segments``, ``verdict`` and the model's ``rank`` (rows'
    1-based ranks) of the test set; ``p_click`` is the model's at the logged slots."""
    scores = method_scores(bundle, t, seed)
    per_request: dict[str, dict[str, np.ndarray]] = {}
    results: dict[str, dict[str, Any]] = {}
    ranks: dict[str, np.ndarray] = {}
    for name in (track(list(scores), "evaluating", len(scores)) if track else scores):
        ranks[name] = M.ranks(scores[name], t.groups, t.tiebreak)
        per_request[name] = request_metrics(ranks[name], t, k)
        results[name] = {metric: M.summary(v, resamples) for metric, v in per_request[name].items()}
        results[name] |= _exposure(ranks[name], t, k)
    if t.p_attract is not None:
        oracle = per_request["oracle"][f"true_clicks@{k}"]
        for name in scores:
            results[name]["efficiency"] = M.summary(per_request[name][f"true_clicks@{k}"], resamples, weights=oracle)
    probabilities = {"model": p_click}
    if t.p_click_true is not None:
        probabilities["oracle"] = t.p_click_true
    for name, p in probabilities.items():
        results[name] |= _probability_metrics(p, t, resamples)
    for name in BASELINES:
        if name in scores:
            results[name]["auc"] = {"value": M.auc(scores[name], t.click)}
    return {"verdict": verdict(per_request, results, resamples, k), "methods": results,
            "segments": _segments(per_request, t, probabilities, ranks, resamples, k), "rank": ranks["model"]}


def headline_metric(report_or_methods: dict[str, Any], k: int) -> str:
    """What the verdict judges: efficiency on simulated data (true probabilities), else NDCG@k."""
    methods = report_or_methods.get("methods", report_or_methods)
    return "efficiency" if "oracle" in methods else f"ndcg@{k}"


def verdict(per_request: dict[str, dict[str, np.ndarray]], results: dict[str, dict[str, Any]],
            resamples: np.ndarray, k: int) -> dict[str, Any]:
    """The model against each baseline on the headline metric: the difference with a CI paired by
    request, and ``better`` / ``worse`` / ``tie`` by whether that CI excludes 0."""
    metric = headline_metric(results, k)
    values = {name: m[f"true_clicks@{k}"] if metric == "efficiency" else m[metric] for name, m in per_request.items()}
    weights = per_request["oracle"][f"true_clicks@{k}"] if metric == "efficiency" else None
    against: dict[str, Any] = {}
    for name in BASELINES:
        if name in values:
            diff = M.summary(values["model"] - values[name], resamples, weights=weights)
            lo, hi = diff["ci"]
            against[name] = {"difference": {"value": diff["value"], "ci": diff["ci"]},
                             "outcome": "better" if lo > 0 else "worse" if hi < 0 else "tie"}
    outcomes = {a["outcome"] for a in against.values()}
    overall = "better" if outcomes == {"better"} else "worse" if "worse" in outcomes else "tie"
    return {"metric": metric, "model": results["model"][metric], "baselines": against, "outcome": overall,
            "summary": _verdict_sentence(metric, against, overall)}


def _verdict_sentence(metric: str, against: dict[str, Any], overall: str) -> str:
    strongest = max(against, key=lambda n: -against[n]["difference"]["value"]) if against else None
    if strongest is None:
        return f"No baseline to compare with on {metric}."
    d = against[strongest]["difference"]
    gap = f"{d['value']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}] against {BASELINES[strongest]}"
    if overall == "better":
        return f"The model ranks better than every baseline on {metric} (95% CIs by request): {gap}, the strongest."
    losing = [BASELINES[n] for n, a in against.items() if a["outcome"] == "worse"]
    if losing:
        return f"The model ranks worse than {', '.join(losing)} on {metric}: {gap}."
    tied = [BASELINES[n] for n, a in against.items() if a["outcome"] == "tie"]
    return f"The model cannot be told apart from {', '.join(tied)} on {metric}: {gap}."


def request_metrics(rank: np.ndarray, t: TestSet, k: int) -> dict[str, np.ndarray]:
    """Per-request metrics of one order, (requests,) each."""
    gains = 2.0 ** t.label - 1
    values = {f"ndcg@{n}": M.ndcg_from_rank(rank, gains, t.groups, n) for n in (1, 3, 5)}
    values["mrr"] = M.mrr_per_request(rank, t.click, t.groups)
    values["p@1"] = M.precision_per_request(rank, t.click, t.groups, 1)
    values[f"p@{k}"] = M.precision_per_request(rank, t.click, t.groups, k)
    if t.p_attract is not None:
        values[f"true_ndcg@{k}"] = M.ndcg_from_rank(rank, t.p_attract, t.groups, k)
        values[f"true_clicks@{k}"] = M.dcg_per_request(rank, t.p_attract, t.groups, k, discount=t.examination)
    return values


def _exposure(rank: np.ndarray, t: TestSet, k: int) -> dict[str, Any]:
    offers = t.frame["offer_id"].to_numpy()
    candidates, codes = np.unique(offers, return_inverse=True)
    shown = np.bincount(codes[rank <= k], minlength=len(candidates))
    return {f"coverage@{k}": {"value": float((shown > 0).mean())}, f"gini@{k}": {"value": M.gini(shown)},
            f"new_offer_share@{k}": {"value": float(t.new_offer[rank <= k].mean())}}


def _probability_metrics(p: np.ndarray, t: TestSet, resamples: np.ndarray,
                         rows: np.ndarray | None = None) -> dict[str, Any]:
    """AUC, log loss, ECE of ``p`` against clicks, with request-bootstrap CIs (on fewer resamples)."""
    y = t.click
    if rows is not None:
        p, y = p[rows], y[rows]
    stats: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {"auc": M.auc, "logloss": M.log_loss, "ece": M.ece}
    out = {}
    draws: dict[str, list[float]] = {name: [] for name in stats}
    if rows is None:
        for sample in resamples[:IMPRESSION_RESAMPLES]:
            idx = M.request_rows(sample, t.groups)
            for name, fn in stats.items():
                draws[name].append(fn(p[idx], y[idx]))
    for name, fn in stats.items():
        entry: dict[str, Any] = {"value": fn(p, y)}
        if draws[name]:
            entry["ci"] = M.percentile_ci(draws[name])
        out[name] = entry
    out["mean_p_click"] = {"value": float(np.mean(p))}
    out["observed_ctr"] = {"value": float(np.mean(y))}
    return out


def _segments(per_request: dict[str, dict[str, np.ndarray]], t: TestSet, probabilities: dict[str, np.ndarray],
              ranks: dict[str, np.ndarray], resamples: np.ndarray, k: int) -> dict[str, Any]:
    """Request metrics by user segment; probability metrics and top-k share by offer segment."""
    out: dict[str, Any] = {}
    for segment, mask in (("new_users", t.new_user), ("returning_users", ~t.new_user)):
        requests = np.flatnonzero(mask)
        if len(requests) == 0:
            continue
        sub = resamples[:, : len(requests)] % len(requests)
        entry: dict[str, Any] = {"requests": int(len(requests))}
        oracle = per_request.get("oracle", {}).get(f"true_clicks@{k}")
        for name, values in per_request.items():
            m = {metric: M.summary(v[requests], sub) for metric, v in values.items()
                 if metric in (f"ndcg@{k}", "mrr", f"true_ndcg@{k}")}
            if oracle is not None:
                m["efficiency"] = M.summary(values[f"true_clicks@{k}"][requests], sub, weights=oracle[requests])
            entry[name] = m
        out[segment] = entry
    for segment, mask in (("new_offers", t.new_offer), ("established_offers", ~t.new_offer)):
        rows = np.flatnonzero(mask)
        if len(rows) == 0:
            continue
        entry = {"impressions": int(len(rows))}
        for name, p in probabilities.items():
            entry[name] = _probability_metrics(p, t, resamples, rows)
        for name, rank in ranks.items():
            entry.setdefault(name, {})[f"top{k}_slots"] = {"value": int(((rank <= k) & mask).sum())}
        out[segment] = entry
    return out
