"""Two bundles on the same held-out window: the promotion gate's evidence.

The window is every impression of a features folder after *both* training windows, so neither
model has seen it. Both order the same logged requests; the headline metric is the evaluation's
(efficiency against the oracle on simulated data, else NDCG@k on the logged labels) and the
difference, candidate minus incumbent, gets a 95% CI from a bootstrap paired by request: the
candidate is ``worse`` when the whole interval is below 0, ``better`` when it is above, else ``tie``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from offer_ranker.config import Config
from offer_ranker.evaluation.methods import request_metrics
from offer_ranker.evaluation.testset import find_truth, load_test
from offer_ranker.featurize.frame import FrameError, ModelInputs
from offer_ranker.model.bundle import Bundle
from offer_ranker.stats import metrics as M


def compare(candidate: Bundle, incumbent: Bundle, features: Path | str, cfg: Config | None = None, *,
            truth: Path | None = None) -> dict[str, Any]:
    """The two bundles' headline metric on the impressions of ``features`` after both training
    windows, and their paired difference with its CI and ``outcome`` (better / worse / tie)."""
    cfg = cfg or Config()
    features = Path(features)
    truth = truth if truth is not None else find_truth(features)
    start = max(datetime.fromisoformat(b.info["train_until"]) for b in (candidate, incumbent))
    t = load_test(candidate, features, truth, cfg, start=start)
    try:
        x_incumbent = ModelInputs.of(t.frame, incumbent.spec).X
    except Exception as exc:  # noqa: BLE001 - a column the incumbent needs is not in this folder
        raise FrameError(f"{incumbent.version} cannot score {features}: {exc}") from None
    k, G = cfg.evaluate.k, len(t.groups)
    resamples = np.random.default_rng(cfg.evaluate.seed).integers(0, G, size=(cfg.evaluate.bootstrap, G))
    scores = {"candidate": candidate.score(t.X), "incumbent": incumbent.score(x_incumbent)}
    per_request = {name: request_metrics(M.ranks(score, t.groups, t.tiebreak), t, k) for name, score in scores.items()}
    weights = None
    if t.p_attract is not None:
        metric, key = "efficiency", f"true_clicks@{k}"
        weights = request_metrics(M.ranks(t.p_attract, t.groups, t.tiebreak), t, k)[key]  # the oracle's
    else:
        metric = key = f"ndcg@{k}"
    values = {name: m[key] for name, m in per_request.items()}
    diff = M.summary(values["candidate"] - values["incumbent"], resamples, weights=weights)
    lo, hi = diff["ci"]
    return {
        "metric": metric, "k": k, "bootstrap": cfg.evaluate.bootstrap,
        "window": {"features": str(features), "from": start.isoformat(), "requests": int(G),
                   "impressions": int(len(t.click)), "ground_truth": str(truth) if weights is not None else None},
        "candidate": {"model": candidate.version, **M.summary(values["candidate"], resamples, weights=weights)},
        "incumbent": {"model": incumbent.version, **M.summary(values["incumbent"], resamples, weights=weights)},
        "difference": {"value": diff["value"], "ci": diff["ci"]},
        "outcome": "worse" if hi < 0 else "better" if lo > 0 else "tie",
    }
