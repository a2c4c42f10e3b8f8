"""Offline evaluation of a bundle on the impressions after its training window.

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
* off-policy estimates (IPS, SNIPS, DR) of the model's top-k clicks per request, next to the
  logging policy's and, on simulated data, the true value
* the serving policy replayed (:mod:`offer_ranker.evaluation.policy_replay`): MMR λ sweep, cold start with and
  without the prior
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from offer_ranker.stats import metrics as M
from offer_ranker.stats import ope
from offer_ranker.model.bundle import Bundle
from offer_ranker.config import Config
from offer_ranker.console import Track, no_track
from offer_ranker.featurize.frame import FrameError, read_frame
from offer_ranker.io import staged_outputs
from offer_ranker.evaluation.policy_replay import evaluate_policy
from offer_ranker.model.baselines import PopularityRanker, RandomRanker, offer_hash
from offer_ranker.model.train import make_slice

#: Impression-level statistics (AUC, ECE) are recomputed on this many of the bootstrap resamples.
IMPRESSION_RESAMPLES = 50


@dataclass
class TestSet:
    """The evaluation impressions as arrays, requests contiguous."""

    frame: pl.DataFrame
    X: np.ndarray
    groups: np.ndarray
    label: np.ndarray
    click: np.ndarray
    position: np.ndarray
    propensity: np.ndarray | None
    p_attract: np.ndarray | None
    p_click_true: np.ndarray | None
    new_user: np.ndarray  # per request
    new_offer: np.ndarray  # per impression
    tiebreak: np.ndarray


def load_test(bundle: Bundle, features: Path, truth: Path | None, cfg: Config) -> TestSet:
    frame = read_frame(features, start=datetime.fromisoformat(bundle.info["train_until"]))
    if frame.height == 0:
        raise FrameError(f"no impressions in {features} after the training window (train_until = "
                         f"{bundle.info['train_until']}); evaluate needs later data")
    p_attract = p_click_true = None
    if truth is not None:
        gt = pl.read_parquet(truth, columns=["request_id", "offer_id", "p_attract", "p_click"])
        joined = frame.select("request_id", "offer_id").join(gt, on=["request_id", "offer_id"], how="left",
                                                             maintain_order="left")
        if joined["p_attract"].null_count() == 0:
            p_attract, p_click_true = joined["p_attract"].to_numpy(), joined["p_click"].to_numpy()
    s = make_slice(frame, bundle.spec)
    label = frame["label"].to_numpy().astype(np.int64)
    propensity = frame["propensity"].to_numpy() if frame["propensity"].null_count() == 0 else None
    firsts = np.concatenate([[0], np.cumsum(s.groups)[:-1]])
    is_new = frame["user_is_new"].to_numpy() if "user_is_new" in frame.columns else np.zeros(frame.height)
    seen = frame["offer_impressions"].to_numpy() if "offer_impressions" in frame.columns else np.zeros(frame.height)
    return TestSet(frame, s.X, s.groups, label, (label >= 1).astype(np.float64),
                   frame["position"].to_numpy().astype(np.int64), propensity, p_attract, p_click_true,
                   is_new[firsts] > 0.5, seen < cfg.evaluate.new_offer_impressions,
                   offer_hash(frame["offer_id"].to_list()))


def method_scores(bundle: Bundle, t: TestSet, seed: int) -> dict[str, np.ndarray]:
    scores = {"model": bundle.score(t.X), "random": RandomRanker(seed).score(t.X),
              "logged": -t.position.astype(np.float64)}
    if "offer_ctr" in bundle.spec.names:
        scores["popularity"] = PopularityRanker(bundle.spec).score(t.X)
    if t.p_attract is not None:
        scores["oracle"] = t.p_attract
    return scores


def evaluate(bundle: Bundle, features: Path | str, out: Path | str, cfg: Config | None = None, *,
             truth: Path | None = None, track: Track = no_track) -> dict[str, Any]:
    """Evaluate ``bundle`` on the impressions of ``features`` after its training window; write
    ``metrics.json`` and ``report.html`` to ``out`` and return the metrics."""
    from offer_ranker.simulator import examination

    cfg = cfg or Config()
    features, out = Path(features), Path(out)
    truth = truth if truth is not None else find_truth(features)
    t = load_test(bundle, features, truth, cfg)
    k, G = cfg.evaluate.k, len(t.groups)
    rng = np.random.default_rng(cfg.evaluate.seed)
    resamples = rng.integers(0, G, size=(cfg.evaluate.bootstrap, G))
    exam = examination(np.arange(1, 11))
    scores = method_scores(bundle, t, cfg.evaluate.seed)
    p_click = bundle.p_click(t.X, t.position.astype(np.float64))

    per_request: dict[str, dict[str, np.ndarray]] = {}
    results: dict[str, dict[str, Any]] = {}
    ranks: dict[str, np.ndarray] = {}
    gains = 2.0 ** t.label - 1
    for name in track(list(scores), "evaluating", len(scores)):
        rank = M.ranks(scores[name], t.groups, t.tiebreak)
        ranks[name] = rank
        values = {f"ndcg@{n}": M.ndcg_from_rank(rank, gains, t.groups, n) for n in (1, 3, 5)}
        values["mrr"] = M.mrr_per_request(rank, t.click, t.groups)
        values["p@1"] = M.precision_per_request(rank, t.click, t.groups, 1)
        values[f"p@{k}"] = M.precision_per_request(rank, t.click, t.groups, k)
        if t.p_attract is not None:
            values[f"true_ndcg@{k}"] = M.ndcg_from_rank(rank, t.p_attract, t.groups, k)
            values[f"true_clicks@{k}"] = M.dcg_per_request(rank, t.p_attract, t.groups, k, discount=exam)
        per_request[name] = values
        results[name] = {metric: _summary(v, resamples) for metric, v in values.items()}
        results[name] |= _exposure(rank, t, k)
    if t.p_attract is not None:
        oracle = per_request["oracle"][f"true_clicks@{k}"]
        for name in scores:
            mine = per_request[name][f"true_clicks@{k}"]
            results[name]["efficiency"] = _summary(mine, resamples, weights=oracle)
    probabilities = {"model": p_click}
    if t.p_click_true is not None:
        probabilities["oracle"] = t.p_click_true
    for name, p in probabilities.items():
        results[name] |= _probability_metrics(p, t, resamples)
    for name in ("random", "logged", "popularity"):
        if name in scores:
            results[name]["auc"] = {"value": M.auc(scores[name], t.click)}

    report: dict[str, Any] = {
        "model": bundle.version, "objective": bundle.objective, "engine": bundle.info["engine"],
        "k": k, "bootstrap": cfg.evaluate.bootstrap,
        "test": {"from": bundle.info["train_until"], "impressions": int(len(t.click)), "requests": int(G),
                 "clicks": int(t.click.sum()), "conversions": int((t.label == 2).sum()),
                 "ground_truth": str(truth) if t.p_attract is not None else None},
        "methods": results,
        "segments": _segments(per_request, t, scores, probabilities, ranks, resamples, k),
        "ope": _off_policy(bundle, t, ranks["model"], resamples, k, exam),
        "policy": evaluate_policy(bundle, t, read_frame(features, end=datetime.fromisoformat(bundle.info["train_until"])),
                                  cfg),
    }
    report["targets"] = targets(report)
    from offer_ranker.report import evaluation_report

    with staged_outputs(out) as stage:
        stage.write_json("metrics.json", report)
        stage.path("report.html").write_text(evaluation_report(report, t, p_click))
    return report


def find_truth(features: Path) -> Path | None:
    """``ground_truth.parquet`` of simulated logs, found through the ingest report, if any."""
    try:
        manifest = json.loads((features / "manifest.json").read_text())
        ingest_report = json.loads((Path(manifest["source"]) / "ingest_report.json").read_text())
    except (OSError, KeyError, ValueError):
        return None
    candidate = Path(ingest_report.get("raw_dir", "")) / "ground_truth.parquet"
    return candidate if candidate.exists() else None


def _summary(values: np.ndarray, resamples: np.ndarray, weights: np.ndarray | None = None) -> dict[str, Any]:
    if weights is None:
        value = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    else:
        value = float(np.nansum(values) / np.nansum(weights))
    lo, hi = M.bootstrap_ci(values, resamples, weights)
    return {"value": value, "ci": [lo, hi], "n": int(np.isfinite(values).sum())}


def _exposure(rank: np.ndarray, t: TestSet, k: int) -> dict[str, Any]:
    offers = t.frame["offer_id"].to_numpy()
    candidates, codes = np.unique(offers, return_inverse=True)
    shown = np.bincount(codes[rank <= k], minlength=len(candidates))
    return {f"coverage@{k}": {"value": float((shown > 0).mean())}, f"gini@{k}": {"value": M.gini(shown)},
            f"new_offer_share@{k}": {"value": float(t.new_offer[rank <= k].mean())}}


def _rows_of(requests: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Row indexes of the given requests (with repeats), in order."""
    starts = np.concatenate([[0], np.cumsum(groups)[:-1]])
    sizes = groups[requests]
    offsets = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return np.repeat(starts[requests], sizes) + offsets


def _probability_metrics(p: np.ndarray, t: TestSet, resamples: np.ndarray,
                         rows: np.ndarray | None = None) -> dict[str, Any]:
    """AUC, log loss, ECE of ``p`` against clicks, with request-bootstrap CIs (on fewer resamples)."""
    y = t.click
    if rows is not None:
        p, y = p[rows], y[rows]
    stats: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {"auc": M.auc, "logloss": M.log_loss, "ece": M.ece}
    out = {}
    draws = {name: [] for name in stats}
    if rows is None:
        for sample in resamples[:IMPRESSION_RESAMPLES]:
            idx = _rows_of(sample, t.groups)
            for name, fn in stats.items():
                draws[name].append(fn(p[idx], y[idx]))
    for name, fn in stats.items():
        entry: dict[str, Any] = {"value": fn(p, y)}
        if draws[name]:
            entry["ci"] = [float(v) for v in np.nanpercentile(draws[name], [2.5, 97.5])]
        out[name] = entry
    out["mean_p_click"] = {"value": float(np.mean(p))}
    out["observed_ctr"] = {"value": float(np.mean(y))}
    return out


def _segments(per_request: dict[str, dict[str, np.ndarray]], t: TestSet, scores: dict[str, np.ndarray],
              probabilities: dict[str, np.ndarray], ranks: dict[str, np.ndarray], resamples: np.ndarray,
              k: int) -> dict[str, Any]:
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
            m = {metric: _summary(v[requests], sub) for metric, v in values.items()
                 if metric in (f"ndcg@{k}", "mrr", f"true_ndcg@{k}")}
            if oracle is not None:
                m["efficiency"] = _summary(values[f"true_clicks@{k}"][requests], sub, weights=oracle[requests])
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


def _off_policy(bundle: Bundle, t: TestSet, rank: np.ndarray, resamples: np.ndarray, k: int,
                exam: np.ndarray) -> dict[str, Any] | None:
    """IPS / SNIPS / DR estimates of the model's top-k clicks per request (needs logged propensities)."""
    if t.propensity is None:
        return None
    p_at = np.column_stack([bundle.p_click(t.X, float(j)) for j in range(1, k + 1)])
    args = (rank, t.position, t.click, t.propensity, t.groups, k)
    out: dict[str, Any] = {
        "estimand": f"expected clicks in the top {k} slots per request",
        "logging_policy": _summary(ope.logged_value(t.position, t.click, t.groups, k), resamples),
        "ips": _summary(ope.ips(*args), resamples),
        "dr": _summary(ope.dr(*args, p_click_at=p_at), resamples),
    }
    wc, ws = ope.snips_terms(*args)
    snips = [ope.snips_ratio(wc[sample], ws[sample]) for sample in resamples]
    out["snips"] = {"value": ope.snips_ratio(wc, ws), "ci": [float(v) for v in np.percentile(snips, [2.5, 97.5])]}
    if t.p_attract is not None:
        out["true_value"] = _summary(ope.true_value(rank, t.p_attract, exam, t.groups, k), resamples)
        truth = out["true_value"]["value"]
        for name in ("ips", "snips", "dr"):
            out[name]["relative_error"] = (out[name]["value"] - truth) / truth
        logged_true = ope.true_value(t.position, t.p_attract, exam, t.groups, k)
        out["logging_policy_true"] = _summary(logged_true, resamples)
    return out


def targets(report: dict[str, Any]) -> dict[str, Any]:
    """The issue's quality targets, checked where the data allow (simulated data: all)."""
    m, k = report["methods"], report["k"]
    checks: dict[str, Any] = {}
    if "oracle" in m:
        checks["efficiency >= 0.95"] = m["model"]["efficiency"]["value"] >= 0.95
        new = report["segments"].get("new_users", {}).get("model", {}).get("efficiency")
        if new is not None:
            checks["efficiency on new users >= 0.90"] = new["value"] >= 0.90
        checks[f"true NDCG@{k} >= 0.95 of the oracle's"] = (
            m["model"][f"true_ndcg@{k}"]["value"] >= 0.95 * m["oracle"][f"true_ndcg@{k}"]["value"])
        checks["AUC within 0.01 of the oracle's"] = m["oracle"]["auc"]["value"] - m["model"]["auc"]["value"] <= 0.01
    checks["ECE <= 0.01"] = m["model"]["ece"]["value"] <= 0.01
    if "popularity" in m:
        key = "efficiency" if "oracle" in m else f"ndcg@{k}"
        checks[f"beats popularity on {key} (CIs apart)"] = m["model"][key]["ci"][0] > m["popularity"][key]["ci"][1]
    ope_ = report.get("ope")
    if ope_ and "true_value" in ope_:
        checks["DR within 10% of the true value"] = abs(ope_["dr"]["relative_error"]) <= 0.10
    return checks
