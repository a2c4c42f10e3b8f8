"""Offline evaluation of a bundle on the impressions after its training window:
``offer-ranker evaluate`` writes ``metrics.json`` and ``report.html``.

The model and the baselines (random, the logged order, popularity; on simulated data the oracle)
order every logged request's candidates, and the metrics (:mod:`.methods`) compare those orders
with what happened and, on simulated data, with the truth, with 95% CIs by request; the report
leads with the model's verdict against the baselines. With logged propensities it adds off-policy
estimates (:mod:`.off_policy`); it always replays the serving policy (:mod:`.policy_replay`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from offer_ranker.config import Config
from offer_ranker.console import Track, no_track
from offer_ranker.evaluation import off_policy
from offer_ranker.evaluation.evaluation_page import evaluation_page
from offer_ranker.evaluation.methods import score_methods
from offer_ranker.evaluation.policy_replay import evaluate_policy
from offer_ranker.evaluation.testset import find_truth, load_test
from offer_ranker.featurize.frame import read_frame
from offer_ranker.io import staged_outputs
from offer_ranker.model import tracking
from offer_ranker.model.bundle import Bundle


def evaluate(bundle: Bundle, features: Path | str, out: Path | str, cfg: Config | None = None, *,
             truth: Path | None = None, track: Track = no_track) -> dict[str, Any]:
    """Evaluate ``bundle`` on the impressions of ``features`` after its training window; write
    ``metrics.json`` and ``report.html`` to ``out`` and return the metrics. ``truth``: the simulator's
    ``ground_truth.parquet`` (default: found next to the raw logs, if any)."""
    cfg = cfg or Config()
    features, out = Path(features), Path(out)
    truth = truth if truth is not None else find_truth(features)
    t = load_test(bundle, features, truth, cfg)
    k, G = cfg.evaluate.k, len(t.groups)
    resamples = np.random.default_rng(cfg.evaluate.seed).integers(0, G, size=(cfg.evaluate.bootstrap, G))
    p_click = bundle.p_click(t.X, t.position.astype(np.float64))
    scored = score_methods(bundle, t, p_click, resamples, k, seed=cfg.evaluate.seed, track=track)
    clicks = off_policy.click_estimates(bundle, t, scored.pop("rank"), k)
    report: dict[str, Any] = {
        "model": bundle.version, "objective": bundle.objective, "engine": bundle.info["engine"],
        "k": k, "bootstrap": cfg.evaluate.bootstrap,
        "test": {"from": bundle.info["train_until"], "impressions": int(len(t.click)), "requests": int(G),
                 "clicks": int(t.click.sum()), "conversions": int((t.label == 2).sum()),
                 "ground_truth": str(truth) if t.p_attract is not None else None},
        **scored,
        "ope": off_policy.click_summary(clicks, resamples) if clicks is not None else None,
        "policy": evaluate_policy(bundle, t, read_frame(features, end=datetime.fromisoformat(bundle.info["train_until"])),
                                  cfg),
    }
    with staged_outputs(out) as stage:
        stage.write_json("metrics.json", report)
        stage.path("report.html").write_text(evaluation_page(report, t, p_click))
    if cfg.track.enabled:
        tracking.record_report(bundle, "evaluation", out, tracked_metrics(report))
    return report


def tracked_metrics(report: dict[str, Any]) -> dict[str, float]:
    """What the training run gets from an evaluation: the model's metrics (``test.*``, with the CI of
    the headline one) and its difference from each baseline (``test.vs_<baseline>``)."""
    metrics = {f"test.{name}": m["value"] for name, m in report["methods"]["model"].items()
               if isinstance(m, dict) and isinstance(m.get("value"), (int, float))}
    verdict = report["verdict"]
    if isinstance(verdict["model"].get("ci"), list):
        name = f"test.{verdict['metric']}"
        metrics[f"{name}.ci_low"], metrics[f"{name}.ci_high"] = verdict["model"]["ci"]
    metrics |= {f"test.vs_{name}": b["difference"]["value"] for name, b in verdict["baselines"].items()}
    return metrics
