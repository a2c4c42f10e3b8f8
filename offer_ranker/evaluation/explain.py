"""SHAP explanations of a bundle for commercial stakeholders: ``offer-ranker explain`` writes
``explanation.json`` (:mod:`.explanation` computes it) and ``report.html`` (:mod:`.explain_page`).

The page leads with what the model is worth against the current logging policy (expected clicks
and conversions per session, off-policy, with 95% CIs), then what drives the ranking, dependence
plots with one sentence each, drivers for new vs returning users and per offer category, and
worked examples.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit

from offer_ranker.config import Config
from offer_ranker.evaluation.explain_page import explain_page
from offer_ranker.evaluation.explanation import (
    business_summary,
    dependence_sentence,
    drivers,
    sample_requests,
    segment_drivers,
    shap_values,
    worked_examples,
)
from offer_ranker.evaluation.testset import find_truth
from offer_ranker.featurize.frame import FrameError, read_frame
from offer_ranker.io import staged_outputs
from offer_ranker.model import tracking
from offer_ranker.model.bundle import Bundle

__all__ = ["explain", "sample_requests", "shap_values"]


def explain(bundle: Bundle, features: Path | str, out: Path | str, cfg: Config | None = None, *,
            truth: Path | None = None) -> dict[str, Any]:
    """Write ``report.html`` and ``explanation.json`` to ``out``; return the summary."""
    cfg = cfg or Config()
    features, out = Path(features), Path(out)
    frame = read_frame(features, start=datetime.fromisoformat(bundle.info["train_until"]))
    if frame.height == 0:
        raise FrameError(f"no impressions in {features} after the training window; explain needs later data")
    c = cfg.explain
    e = shap_values(bundle, sample_requests(frame, c.rows, c.seed), c.seconds)
    truth = truth if truth is not None else find_truth(features)
    top = drivers(e.values, e.names, 15)
    points = np.abs(e.probability_values)
    delta = expit(e.base + e.values.sum(axis=1) + e.slot) - expit(e.base)
    summary = {
        "model": bundle.version, "method": e.method, "rows": int(len(e.values)), "seconds": round(e.seconds, 2),
        "base_value": e.base, "base_p_click": float(expit(e.base)),
        # in probability points each contribution lies in [-100, 100] and a row's add up to p - p(base)
        "points": {"max_abs": float(points.max() * 100) if points.size else 0.0,
                   "max_additivity_error": float(np.abs(e.probability_values.sum(axis=1) - delta).max() * 100)
                   if len(delta) else 0.0},
        "drivers": [{"feature": n, "mean_abs_shap": v, "mean_abs_points": float(points[:, e.names.index(n)].mean() * 100),
                     "description": e.descriptions.get(n, n)} for n, v in top],
        "dependence": {n: dependence_sentence(e, n) for n, _ in top[: c.dependence]},
        "segments": segment_drivers(e),
        "examples": worked_examples(bundle, e, c.examples),
        "business": business_summary(bundle, features, cfg, truth),
    }
    with staged_outputs(out) as stage:
        stage.write_json("explanation.json", summary)
        stage.path("report.html").write_text(explain_page(summary, e))
    if cfg.track.enabled:
        tracking.record_report(bundle, "explanation", out)
    return summary
