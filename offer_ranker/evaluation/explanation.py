"""What ``offer-ranker explain`` computes: SHAP values of the click model, their summaries for
stakeholders (drivers, one sentence per driver, segments, worked examples) and the business value.

Explains the click model (the model that orders the page by default) at the top slot, on a
sample of whole requests after the training window, with ``shap.TreeExplainer`` (exact TreeSHAP
on the log-odds scale; for XGBoost bundles whose categorical splits TreeExplainer cannot read, the
engine's own TreeSHAP, ``pred_contribs``). Sentences and plots speak in points of click chance:
each row's log-odds contributions become probability points that lie in [−100, 100] and add up to
the row's click chance minus the base's (:func:`offer_ranker.stats.attribution.probability_points`).
The base is the average log-odds at the top slot, so a contribution says how far a feature moves
an offer's click chance from that of the average offer in the top slot.

"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from offer_ranker.config import Config
from offer_ranker.evaluation import off_policy
from offer_ranker.evaluation.testset import load_test
from offer_ranker.featurize.frame import group_sizes, with_position
from offer_ranker.model.bundle import Bundle
from offer_ranker.stats import metrics as M
from offer_ranker.stats.attribution import probability_points
from offer_ranker.stats.metrics import offer_hash, request_starts

SESSIONS = off_policy.SESSIONS


@dataclass
class Explanation:
    """SHAP values of the click model at the top slot for ``frame``'s rows (position excluded)."""

    frame: pl.DataFrame
    names: list[str]
    descriptions: dict[str, str]
    X: np.ndarray
    values: np.ndarray  # (rows, features), log-odds
    base: float  # log-odds of the average offer at the top slot
    slot: np.ndarray  # (rows,) the position column's contribution beyond its average (slot 1 for every row)
    p_click: np.ndarray  # calibrated, at slot 1
    method: str
    seconds: float

    @cached_property
    def probability_values(self) -> np.ndarray:
        """(rows, features) contributions as probabilities (× 100 for points), each in [−1, 1],
        adding up per row to the model's click probability minus that of the base (before
        calibration); the slot's small residual is shared by the features on its side."""
        return probability_points(self.values, self.base, residual=self.slot)

    def label(self, name: str) -> str:
        return f"{self.descriptions.get(name, name)} ({name})"


def sample_requests(frame: pl.DataFrame, rows: int, seed: int) -> pl.DataFrame:
    """Whole requests, drawn at random until about ``rows`` impressions (in time order)."""
    ids = frame["request_id"].unique(maintain_order=True)
    order = np.random.default_rng(seed).permutation(len(ids))
    sizes = frame.group_by("request_id", maintain_order=True).len()["len"].to_numpy()
    keep = order[: max(1, int(np.searchsorted(np.cumsum(sizes[order]), rows)) + 1)]
    return frame.filter(pl.col("request_id").is_in(ids.gather(np.sort(keep)).implode()))


def shap_values(bundle: Bundle, frame: pl.DataFrame, seconds: float) -> Explanation:
    """TreeSHAP of the click model at slot 1; rows are dropped from the end to fit ``seconds``."""
    import shap

    started = time.perf_counter()
    X = bundle.spec.matrix(frame)
    Xp = with_position(X, 1.0)
    method = "shap.TreeExplainer (tree_path_dependent)"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="LightGBM binary classifier with TreeExplainer")
            explainer = shap.TreeExplainer(bundle.ctr.model)
            first = explainer.shap_values(Xp[:200])  # time a chunk, then size the rest to the budget
            per_row = (time.perf_counter() - started) / max(1, min(200, len(Xp)))
            limit = max(200, int(seconds / max(per_row, 1e-9)))
            rest = (explainer.shap_values(Xp[200:limit]) if len(Xp) > 200 and limit > 200
                    else np.zeros((0, Xp.shape[1])))
        values = np.vstack([np.asarray(first), np.asarray(rest)])
        base = float(np.ravel(explainer.expected_value)[-1])
    except Exception:  # noqa: BLE001 - e.g. XGBoost categorical splits: the engine's own TreeSHAP
        contrib = bundle.ctr.contributions(Xp)
        values, base, method = contrib[:, :-1], float(contrib[0, -1]), f"{bundle.info['engine']} pred_contrib (TreeSHAP)"
    n = len(values)
    frame, X = frame.head(n), X[:n]
    names = list(bundle.spec.names)
    descriptions = {f["name"]: f.get("description", f["name"]) for f in bundle.manifest["features"]}
    # every explained row is at slot 1: the slot's average contribution belongs to the base
    slot = values[:, len(names)]
    top_slot = float(slot.mean()) if n else 0.0
    return Explanation(frame, names, descriptions, X, values[:, : len(names)], base + top_slot, slot - top_slot,
                       bundle.p_click(X, 1.0), method, time.perf_counter() - started)


def drivers(values: np.ndarray, names: list[str], top: int) -> list[tuple[str, float]]:
    mean_abs = np.abs(values).mean(axis=0)
    order = np.argsort(-mean_abs)[:top]
    return [(names[i], float(mean_abs[i])) for i in order]


def dependence_sentence(e: Explanation, name: str) -> str:
    """One sentence on how a driver's value moves the click chance."""
    j = e.names.index(name)
    x, v = e.X[:, j], e.probability_values[:, j]
    ok = np.isfinite(x)
    label = e.descriptions.get(name, name)
    levels = e.frame[name] if name in e.frame.columns else None
    if levels is not None and levels.dtype == pl.String:
        by = pl.DataFrame({"level": levels, "v": v}).group_by("level").agg(pl.col("v").mean(), n=pl.len())
        by = by.filter(pl.col("n") >= 20).sort("v")
        if by.height >= 2:
            lo, hi = by.row(0), by.row(by.height - 1)
            return (f"{label} '{hi[0]}' raises the click chance most (+{hi[1] * 100:.2f} points on average) and "
                    f"'{lo[0]}' lowers it most ({lo[1] * 100:+.2f} points).")
        return f"{label} Too few rows per level to say more."
    if ok.sum() < 20 or np.nanstd(x[ok]) == 0:
        return f"{label} {'Mostly missing' if ok.sum() < 20 else 'Constant'} in this sample."
    rho = float(np.corrcoef(np.argsort(np.argsort(x[ok])), np.argsort(np.argsort(v[ok])))[0, 1])
    q_lo, q_hi = np.quantile(x[ok], [0.1, 0.9])
    gap = float(v[ok][x[ok] >= q_hi].mean() - v[ok][x[ok] <= q_lo].mean()) * 100
    if abs(rho) < 0.2:
        return f"{label} No steady direction (rank correlation {rho:+.2f}): it matters through interactions."
    direction = "raise" if rho > 0 else "lower"
    return (f"{label} Higher values {direction} the click chance (rank correlation {rho:+.2f}): the top tenth "
            f"of values sits {abs(gap):.2f} points {'above' if gap > 0 else 'below'} the bottom tenth.")


def worked_examples(bundle: Bundle, e: Explanation, n: int) -> list[dict[str, Any]]:
    """The top offer of ``n`` requests and the features that put it above the other candidates."""
    scores = bundle.score(e.X)
    pv = e.probability_values
    out = []
    requests = e.frame["request_id"].to_numpy()
    ids = e.frame["offer_id"].to_numpy()
    sizes = group_sizes(e.frame["request_id"])
    starts = request_starts(sizes)
    for s, t in [(s, s + z) for s, z in zip(starts, sizes) if z >= 5][:n]:
        rows = np.arange(s, t)
        best = rows[np.lexsort((offer_hash(ids[rows]), -scores[rows]))[0]]
        others = rows[rows != best]
        lead = pv[best] - pv[others].mean(axis=0)
        top = np.argsort(-lead)[:3]
        reasons = [{"feature": e.names[j], "description": e.descriptions.get(e.names[j], e.names[j]),
                    "value": _value(e, best, j), "lead_points": float(lead[j] * 100)} for j in top if lead[j] > 0]
        out.append({"request_id": str(requests[best]), "offer_id": str(ids[best]), "candidates": int(len(rows)),
                    "p_click": float(e.p_click[best]), "others_p_click": float(e.p_click[others].mean()),
                    "reasons": reasons})
    return out


def _value(e: Explanation, row: int, j: int) -> str:
    name = e.names[j]
    value = e.frame[name][int(row)] if name in e.frame.columns else float(e.X[row, j])
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "missing"
    return f"{value:.3g}" if isinstance(value, (float, int)) else str(value)


def business_summary(bundle: Bundle, features: Path, cfg: Config, truth: Path | None) -> dict[str, Any] | None:
    """Expected top-k clicks, conversions (and revenue, when logged) per session of the model against
    the logging policy, estimated off-policy from the logs after the training window, and the extra
    per ``SESSIONS`` sessions, with 95% CIs; None without logged propensities."""
    k = cfg.evaluate.k
    t = load_test(bundle, features, truth, cfg)
    rank = M.ranks(bundle.score(t.X), t.groups, t.tiebreak)
    clicks = off_policy.click_estimates(bundle, t, rank, k)
    if clicks is None:
        return None
    G = len(t.groups)
    resamples = np.random.default_rng(cfg.evaluate.seed).integers(0, G, size=(cfg.evaluate.bootstrap, G))

    def mean(values: np.ndarray) -> dict[str, Any]:
        entry = M.summary(values, resamples)
        return {"value": entry["value"], "ci": entry["ci"]}

    converted = (t.label == 2).astype(np.float64)
    out: dict[str, Any] = {
        "k": k, "sessions": G,
        "clicks": {"model": mean(clicks.dr), "logging_policy": mean(clicks.logged),
                   "extra_per_10k": mean((clicks.dr - clicks.logged) * SESSIONS), "estimator": "doubly robust"},
        "conversions": off_policy.outcome_gain(rank, t, converted, resamples, k),
    }
    value = t.frame["value"].fill_null(0.0).to_numpy() * converted if "value" in t.frame.columns else None
    if value is not None and value.sum() > 0:
        out["revenue"] = off_policy.outcome_gain(rank, t, value, resamples, k)
    if clicks.true is not None:
        out["clicks"]["true"] = {"model": mean(clicks.true), "logging_policy": mean(clicks.logged_true),
                                 "extra_per_10k": mean((clicks.true - clicks.logged_true) * SESSIONS)}
    return out


def segment_drivers(e: Explanation) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "user_is_new" in e.frame.columns:
        new = e.frame["user_is_new"].to_numpy() == 1
        for name, mask in (("new_users", new), ("returning_users", ~new)):
            if mask.sum() >= 20:
                out[name] = [{"feature": n, "mean_abs_shap": v} for n, v in drivers(e.values[mask], e.names, 8)]
    if "offer_category" in e.frame.columns:
        cats = e.frame["offer_category"].fill_null("(none)").to_numpy()
        values, counts = np.unique(cats, return_counts=True)
        out["categories"] = {str(cat): [n for n, _ in drivers(e.values[cats == cat], e.names, 3)]
                             for cat, n in sorted(zip(values, counts), key=lambda x: -x[1])[:10] if n >= 20}
    return out
