"""SHAP explanations of a bundle for commercial stakeholders: ``offer-ranker explain``.

Explains the click model (the model that orders the page by default) at the top slot, on a
sample of whole requests after the training window, with ``shap.TreeExplainer`` (exact
TreeSHAP on the log-odds scale; for XGBoost bundles whose categorical splits TreeExplainer
cannot read, the engine's own TreeSHAP, ``pred_contribs``). Where a sentence reads better in
probabilities, a row's contributions are rescaled to add up to its ``p_click`` minus the base
rate (their shares are kept).

``report.html`` (self-contained): what drives the ranking (mean |SHAP| with the features'
plain-language descriptions, beeswarm), dependence plots of the top drivers with one sentence
each, drivers for new vs returning users and per offer category, three worked examples, and the
evaluation summary in business terms (expected top-3 clicks and conversions against the current
logging policy, with 95% CIs, and extra clicks per 10,000 sessions).
"""

from __future__ import annotations

import html
import time
import warnings
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
from offer_ranker.featurize.frame import FrameError, read_frame, with_position
from offer_ranker.io import staged_outputs
from offer_ranker.model.baselines import offer_hash
from offer_ranker.report import img, page, table

SESSIONS = 10_000


@dataclass
class Explanation:
    """SHAP values of the click model at the top slot for ``frame``'s rows (position excluded)."""

    frame: pl.DataFrame
    names: list[str]
    descriptions: dict[str, str]
    X: np.ndarray
    values: np.ndarray  # (rows, features), log-odds
    base: float
    slot: np.ndarray  # (rows,) the contribution of the position column (slot 1 for every row)
    p_click: np.ndarray  # calibrated, at slot 1
    method: str
    seconds: float

    @property
    def probability_values(self) -> np.ndarray:
        """Contributions in probability points: each row's log-odds shares of p − p(base)."""
        raw = self.base + self.values.sum(axis=1) + self.slot
        delta = _sigmoid(raw) - _sigmoid(self.base)
        total = self.values.sum(axis=1)
        scale = np.divide(delta, total, out=np.zeros_like(delta), where=np.abs(total) > 1e-12)
        return self.values * scale[:, None]

    def label(self, name: str) -> str:
        return f"{self.descriptions.get(name, name)} ({name})"


def _sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1 / (1 + np.exp(-np.asarray(x, dtype=np.float64)))


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
    return Explanation(frame, names, descriptions, X, values[:, : len(names)], base, values[:, len(names)],
                       bundle.p_click(X, 1.0), method, time.perf_counter() - started)


def _drivers(values: np.ndarray, names: list[str], top: int) -> list[tuple[str, float]]:
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
    starts = np.flatnonzero(np.r_[True, requests[1:] != requests[:-1]])
    stops = np.r_[starts[1:], len(requests)]
    sizes = stops - starts
    for s, t in [(s, t) for s, t, z in zip(starts, stops, sizes) if z >= 5][:n]:
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
    """Expected top-k clicks and conversions per session of the model vs the logging policy."""
    from offer_ranker.evaluation.evaluate import load_test
    from offer_ranker.simulator import examination

    k = cfg.evaluate.k
    t = load_test(bundle, features, truth, cfg)
    if t.propensity is None:
        return None
    rank = M.ranks(bundle.score(t.X), t.groups, t.tiebreak)
    rng = np.random.default_rng(cfg.evaluate.seed)
    resamples = rng.integers(0, len(t.groups), size=(cfg.evaluate.bootstrap, len(t.groups)))
    p_at = np.column_stack([bundle.p_click(t.X, float(j)) for j in range(1, k + 1)])
    args = (rank, t.position, t.click, t.propensity, t.groups, k)
    model_clicks = ope.dr(*args, p_click_at=p_at)
    logged_clicks = ope.logged_value(t.position, t.click, t.groups, k)
    converted = (t.label == 2).astype(np.float64)
    conv_args = (rank, t.position, converted, t.propensity, t.groups, k)
    wc, ws = ope.snips_terms(*conv_args)
    logged_conv = ope.logged_value(t.position, converted, t.groups, k)

    def ci(values: np.ndarray) -> dict[str, Any]:
        lo, hi = M.bootstrap_ci(values, resamples)
        return {"value": float(np.mean(values)), "ci": [lo, hi]}

    snips_draws = np.array([ope.snips_ratio(wc[s], ws[s]) for s in resamples])
    conv_gain = (snips_draws - logged_conv[resamples].mean(axis=1)) * SESSIONS  # paired by resample
    out: dict[str, Any] = {
        "k": k, "sessions": int(len(t.groups)),
        "clicks": {"model": ci(model_clicks), "logging_policy": ci(logged_clicks),
                   "extra_per_10k": ci((model_clicks - logged_clicks) * SESSIONS), "estimator": "doubly robust"},
        "conversions": {"model": {"value": ope.snips_ratio(wc, ws),
                                  "ci": [float(v) for v in np.percentile(snips_draws, [2.5, 97.5])]},
                        "logging_policy": ci(logged_conv), "estimator": "SNIPS"},
    }
    out["conversions"]["extra_per_10k"] = {
        "value": (out["conversions"]["model"]["value"] - out["conversions"]["logging_policy"]["value"]) * SESSIONS,
        "ci": [float(v) for v in np.percentile(conv_gain, [2.5, 97.5])]}
    value = t.frame["value"].fill_null(0.0).to_numpy() * converted if "value" in t.frame.columns else None
    if value is not None and value.sum() > 0:
        wv, wsv = ope.snips_terms(rank, t.position, value, t.propensity, t.groups, k)
        logged_rev = ope.logged_value(t.position, value, t.groups, k)
        draws = np.array([ope.snips_ratio(wv[s], wsv[s]) for s in resamples])
        gain = (draws - logged_rev[resamples].mean(axis=1)) * SESSIONS
        model_rev = ope.snips_ratio(wv, wsv)
        out["revenue"] = {"model": {"value": model_rev, "ci": [float(v) for v in np.percentile(draws, [2.5, 97.5])]},
                          "logging_policy": ci(logged_rev), "estimator": "SNIPS",
                          "extra_per_10k": {"value": (model_rev - float(logged_rev.mean())) * SESSIONS,
                                            "ci": [float(v) for v in np.percentile(gain, [2.5, 97.5])]}}
    if t.p_attract is not None:
        exam = examination(np.arange(1, 11))
        true_model = ope.true_value(rank, t.p_attract, exam, t.groups, k)
        true_logged = ope.true_value(t.position, t.p_attract, exam, t.groups, k)
        out["clicks"]["true"] = {"model": ci(true_model), "logging_policy": ci(true_logged),
                                 "extra_per_10k": ci((true_model - true_logged) * SESSIONS)}
    return out


def explain(bundle: Bundle, features: Path | str, out: Path | str, cfg: Config | None = None, *,
            truth: Path | None = None) -> dict[str, Any]:
    """Write ``report.html`` and ``explanation.json`` to ``out``; return the summary."""
    from offer_ranker.evaluation.evaluate import find_truth

    cfg = cfg or Config()
    features, out = Path(features), Path(out)
    frame = read_frame(features, start=datetime.fromisoformat(bundle.info["train_until"]))
    if frame.height == 0:
        raise FrameError(f"no impressions in {features} after the training window; explain needs later data")
    c = cfg.explain
    e = shap_values(bundle, sample_requests(frame, c.rows, c.seed), c.seconds)
    truth = truth if truth is not None else find_truth(features)
    drivers = _drivers(e.values, e.names, 15)
    summary = {
        "model": bundle.version, "method": e.method, "rows": int(len(e.values)), "seconds": round(e.seconds, 2),
        "base_value": e.base, "drivers": [{"feature": n, "mean_abs_shap": v, "description": e.descriptions.get(n, n)}
                                          for n, v in drivers],
        "dependence": {n: dependence_sentence(e, n) for n, _ in drivers[: c.dependence]},
        "segments": _segment_drivers(e),
        "examples": worked_examples(bundle, e, c.examples),
        "business": business_summary(bundle, features, cfg, truth),
    }
    with staged_outputs(out) as stage:
        stage.write_json("explanation.json", summary)
        stage.path("report.html").write_text(render(summary, e))
    return summary


def _segment_drivers(e: Explanation) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "user_is_new" in e.frame.columns:
        new = e.frame["user_is_new"].to_numpy() == 1
        for name, mask in (("new_users", new), ("returning_users", ~new)):
            if mask.sum() >= 20:
                out[name] = [{"feature": n, "mean_abs_shap": v} for n, v in _drivers(e.values[mask], e.names, 8)]
    if "offer_category" in e.frame.columns:
        cats = e.frame["offer_category"].fill_null("(none)").to_numpy()
        values, counts = np.unique(cats, return_counts=True)
        out["categories"] = {str(cat): [n for n, _ in _drivers(e.values[cats == cat], e.names, 3)]
                             for cat, n in sorted(zip(values, counts), key=lambda x: -x[1])[:10] if n >= 20}
    return out


def render(s: dict[str, Any], e: Explanation) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import shap

    sections = [f"<p class=note>Model <b>{html.escape(s['model'])}</b>: why offers rank where they do. The click "
                f"model at the top slot is explained on {s['rows']:,} impressions of whole requests after the "
                f"training window ({html.escape(s['method'])}, {s['seconds']} s). A contribution is how much a "
                "feature moved the predicted click chance away from the average offer's.</p>"]
    b = s.get("business")
    if b:
        sections.append(_business_section(b))
    drivers = s["drivers"]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(drivers) + 1))
    ax.barh([e.label(d["feature"]) for d in drivers][::-1], [d["mean_abs_shap"] for d in drivers][::-1], color="#1f77b4")
    ax.set_xlabel("mean |SHAP value| (log-odds of a click)")
    sections.append("<h2>What drives the ranking</h2>" + img(fig, "mean absolute SHAP value per feature"))
    top = [e.names.index(d["feature"]) for d in drivers[:12]]
    explanation = shap.Explanation(values=e.values[:, top], base_values=np.full(len(e.values), e.base),
                                   data=np.nan_to_num(e.X[:, top], nan=np.nan), feature_names=[e.names[j] for j in top])
    plt.figure()
    shap.plots.beeswarm(explanation, max_display=12, show=False)
    sections.append("<p class=note>Each dot is one impression: its position shows the feature's contribution, its "
                    "colour the feature's value (red high, blue low; grey missing or a category code).</p>"
                    + img(plt.gcf(), "SHAP beeswarm"))
    dep = []
    for name, sentence in s["dependence"].items():
        j = e.names.index(name)
        fig, ax = plt.subplots(figsize=(4.2, 3))
        ax.scatter(e.X[:, j], e.probability_values[:, j] * 100, s=4, alpha=0.4)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xlabel(name + (" (category code)" if name in e.frame.columns and e.frame[name].dtype == pl.String else ""))
        ax.set_ylabel("contribution (points of click chance)")
        dep.append(f"<div style='display:inline-block;width:48%;vertical-align:top'>{img(fig, 'dependence ' + name)}"
                   f"<p>{html.escape(sentence)}</p></div>")
    sections.append("<h2>How the top drivers act</h2>" + "".join(dep))
    seg = s["segments"]
    if "new_users" in seg and "returning_users" in seg:
        names = [d["feature"] for d in seg["new_users"]]
        names += [d["feature"] for d in seg["returning_users"] if d["feature"] not in names]
        new = {d["feature"]: d["mean_abs_shap"] for d in seg["new_users"]}
        old = {d["feature"]: d["mean_abs_shap"] for d in seg["returning_users"]}
        fig, ax = plt.subplots(figsize=(7, 0.32 * len(names) + 1))
        y = np.arange(len(names))
        ax.barh(y - 0.2, [new.get(n, 0) for n in names], 0.4, label="new users")
        ax.barh(y + 0.2, [old.get(n, 0) for n in names], 0.4, label="returning users")
        ax.set_yticks(y, names)
        ax.invert_yaxis()
        ax.legend()
        ax.set_xlabel("mean |SHAP value|")
        sections.append("<h2>New vs returning users</h2>" + img(fig, "drivers for new and returning users"))
    if seg.get("categories"):
        sections.append("<h2>Top drivers per offer category</h2>" + table(
            ["category", "1st", "2nd", "3rd"], [[c, *(v + ["", "", ""])[:3]] for c, v in seg["categories"].items()]))
    examples = []
    for ex in s["examples"]:
        because = "; ".join(f"{r['description'].rstrip('.').lower()} ({r['feature']} = {r['value']}, "
                            f"+{r['lead_points']:.2f} points over the other candidates)" for r in ex["reasons"])
        examples.append(f"<li>In request {html.escape(ex['request_id'])}, offer <b>{html.escape(ex['offer_id'])}</b> "
                        f"ranked first of {ex['candidates']} (click chance {ex['p_click']:.1%} vs "
                        f"{ex['others_p_click']:.1%} for the others) mainly because: {html.escape(because) or 'no single feature stood out'}.</li>")
    sections.append("<h2>Worked examples</h2><ul>" + "".join(examples) + "</ul>")
    return page("offer-ranker: why offers rank where they do", sections)


def _business_section(b: dict[str, Any]) -> str:
    k = b["k"]

    def cell(entry: dict[str, Any] | None, scale: float = 1.0, digits: int = 3) -> str:
        if not entry:
            return "-"
        text = f"{entry['value'] * scale:.{digits}f}"
        if entry.get("ci"):
            text += f" [{entry['ci'][0] * scale:.{digits}f}, {entry['ci'][1] * scale:.{digits}f}]"
        return text

    rows = [["expected clicks in the top %d per session (%s)" % (k, b["clicks"]["estimator"]),
             cell(b["clicks"]["model"]), cell(b["clicks"]["logging_policy"]),
             cell(b["clicks"]["extra_per_10k"], digits=0)],
            [f"top-{k} click-through rate", cell(b["clicks"]["model"], 100 / k, 2) + " %",
             cell(b["clicks"]["logging_policy"], 100 / k, 2) + " %", ""],
            [f"expected conversions in the top {k} per session ({b['conversions']['estimator']})",
             cell(b["conversions"]["model"], digits=4), cell(b["conversions"]["logging_policy"], digits=4),
             cell(b["conversions"]["extra_per_10k"], digits=1)]]
    if "revenue" in b:
        rows.append([f"expected revenue in the top {k} per session ({b['revenue']['estimator']})",
                     cell(b["revenue"]["model"], digits=3), cell(b["revenue"]["logging_policy"], digits=3),
                     cell(b["revenue"]["extra_per_10k"], digits=0)])
    if "true" in b["clicks"]:
        t = b["clicks"]["true"]
        rows.append(["true expected clicks in the top %d (simulator)" % k, cell(t["model"]), cell(t["logging_policy"]),
                     cell(t["extra_per_10k"], digits=0)])
    return ("<h2>What the model is worth</h2><p class=note>Estimated from the logs of the current (logging) policy "
            f"on {b['sessions']:,} sessions after the training window, 95% bootstrap CIs.</p>"
            + table(["", "with the model", "current policy", f"extra per {SESSIONS:,} sessions"], rows))
