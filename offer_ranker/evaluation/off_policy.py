"""Off-policy estimates of a new ranking's expected top-k outcomes, from logs with propensities.

One place for what both reports show: the evaluation's "off-policy" section (IPS, SNIPS and DR of
the expected top-k clicks per request, next to the logging policy's value and, on simulated data,
the true value) and the explain report's "what the model is worth" (clicks, conversions and
revenue per session against the logging policy). The estimators are in :mod:`offer_ranker.stats.ope`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from offer_ranker.evaluation.testset import TestSet
from offer_ranker.model.bundle import Bundle
from offer_ranker.stats import ope
from offer_ranker.stats.metrics import percentile_ci, summary

#: Gains are reported per this many sessions (requests).
SESSIONS = 10_000


@dataclass
class ClickEstimates:
    """Per-request (requests,) expected top-k clicks: the logging policy's, and the new ranking's by
    IPS and DR; SNIPS's per-request terms (requests, k); on simulated data, the true values."""

    k: int
    logged: np.ndarray
    ips: np.ndarray
    dr: np.ndarray
    snips_terms: tuple[np.ndarray, np.ndarray]
    true: np.ndarray | None = None
    logged_true: np.ndarray | None = None


def click_estimates(bundle: Bundle, t: TestSet, rank: np.ndarray, k: int) -> ClickEstimates | None:
    """The estimates for the order ``rank`` (rows' 1-based ranks); None without logged propensities."""
    if t.propensity is None:
        return None
    p_at = np.column_stack([bundle.p_click(t.X, float(j)) for j in range(1, k + 1)])
    args = (rank, t.position, t.click, t.propensity, t.groups, k)
    e = ClickEstimates(k, ope.logged_value(t.position, t.click, t.groups, k), ope.ips(*args),
                       ope.dr(*args, p_click_at=p_at), ope.snips_terms(*args))
    if t.p_attract is not None and t.examination is not None:
        e.true = ope.true_value(rank, t.p_attract, t.examination, t.groups, k)
        e.logged_true = ope.true_value(t.position, t.p_attract, t.examination, t.groups, k)
    return e


def click_summary(e: ClickEstimates, resamples: np.ndarray) -> dict[str, Any]:
    """The evaluation's off-policy section: each estimate as ``{value, ci, n}`` (SNIPS: value and
    ci), and each estimator's relative error against the true value when there is one."""
    out: dict[str, Any] = {
        "estimand": f"expected clicks in the top {e.k} slots per request",
        "logging_policy": summary(e.logged, resamples),
        "ips": summary(e.ips, resamples),
        "dr": summary(e.dr, resamples),
        "snips": snips_entry(*e.snips_terms, resamples)[0],
    }
    if e.true is not None:
        out["true_value"] = summary(e.true, resamples)
        truth = out["true_value"]["value"]
        for name in ("ips", "snips", "dr"):
            out[name]["relative_error"] = (out[name]["value"] - truth) / truth
        out["logging_policy_true"] = summary(e.logged_true, resamples)
    return out


def snips_entry(wc: np.ndarray, ws: np.ndarray, resamples: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """SNIPS ``{value, ci}`` from per-request terms, and its value on each resample (for paired CIs)."""
    draws = np.array([ope.snips_ratio(wc[s], ws[s]) for s in resamples])
    return {"value": ope.snips_ratio(wc, ws), "ci": percentile_ci(draws)}, draws


def outcome_gain(rank: np.ndarray, t: TestSet, outcome: np.ndarray, resamples: np.ndarray, k: int) -> dict[str, Any]:
    """SNIPS of a per-impression ``outcome`` (conversions, revenue) in the new ranking's top k
    against the logging policy's own, per request, and the gain per ``SESSIONS`` requests with a CI
    paired by resample."""
    model, draws = snips_entry(*ope.snips_terms(rank, t.position, outcome, t.propensity, t.groups, k), resamples)
    logged = ope.logged_value(t.position, outcome, t.groups, k)
    gain = (draws - logged[resamples].mean(axis=1)) * SESSIONS
    return {"model": model, "logging_policy": _mean_ci(logged, resamples), "estimator": "SNIPS",
            "extra_per_10k": {"value": (model["value"] - float(logged.mean())) * SESSIONS, "ci": percentile_ci(gain)}}


def _mean_ci(values: np.ndarray, resamples: np.ndarray) -> dict[str, Any]:
    entry = summary(values, resamples)
    return {"value": entry["value"], "ci": entry["ci"]}
