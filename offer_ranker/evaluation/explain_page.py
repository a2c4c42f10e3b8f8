"""The explain report's ``report.html`` for stakeholders: what the model is worth first, then what
drives the ranking and how. Figures are drawn here; the page is ``templates/explain.html.j2``."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from offer_ranker.evaluation.explanation import Explanation
from offer_ranker.report import ci, figure, pyplot, render


def explain_page(s: dict[str, Any], e: Explanation) -> str:
    return render("explain.html.j2", s=s, business=_business(s.get("business")),
                  drivers_figure=_drivers_figure(s, e), beeswarm_figure=_beeswarm_figure(s, e),
                  dependence=[{"sentence": sentence, "figure": _dependence_figure(e, name)}
                              for name, sentence in s["dependence"].items()],
                  segments_figure=_segments_figure(s["segments"]),
                  category_rows=[[c, *(v + ["", "", ""])[:3]] for c, v in s["segments"].get("categories", {}).items()],
                  examples=[_example(ex) for ex in s["examples"]])


def _business(b: dict[str, Any] | None) -> dict[str, Any] | None:
    """The verdict in business terms: the headline sentence and the table behind it."""
    if not b:
        return None
    k, clicks = b["k"], b["clicks"]
    rows = [[f"expected clicks in the top {k} per session ({clicks['estimator']})", ci(clicks["model"]),
             ci(clicks["logging_policy"]), ci(clicks["extra_per_10k"], 0)],
            [f"top-{k} click-through rate", ci(clicks["model"], 2, scale=100 / k) + " %",
             ci(clicks["logging_policy"], 2, scale=100 / k) + " %", ""],
            [f"expected conversions in the top {k} per session ({b['conversions']['estimator']})",
             ci(b["conversions"]["model"], 4), ci(b["conversions"]["logging_policy"], 4),
             ci(b["conversions"]["extra_per_10k"], 1)]]
    if "revenue" in b:
        rows.append([f"expected revenue in the top {k} per session ({b['revenue']['estimator']})",
                     ci(b["revenue"]["model"]), ci(b["revenue"]["logging_policy"]),
                     ci(b["revenue"]["extra_per_10k"], 0)])
    if "true" in clicks:
        t = clicks["true"]
        rows.append([f"true expected clicks in the top {k} (simulator)", ci(t["model"]), ci(t["logging_policy"]),
                     ci(t["extra_per_10k"], 0)])
    extra = clicks["extra_per_10k"]
    lo, hi = extra["ci"]
    outcome = "good" if lo > 0 else "bad" if hi < 0 else "mixed"
    if outcome == "good":
        headline = (f"With the model, the top {k} would get about {extra['value']:,.0f} more clicks per 10,000 sessions "
                    f"than with the current policy (95% CI {lo:,.0f} to {hi:,.0f}).")
    elif outcome == "bad":
        headline = (f"With the model, the top {k} would get about {-extra['value']:,.0f} fewer clicks per 10,000 "
                    f"sessions than with the current policy (95% CI {-hi:,.0f} to {-lo:,.0f}).")
    else:
        headline = (f"The model cannot be told apart from the current policy on clicks: {extra['value']:+,.0f} per "
                    f"10,000 sessions (95% CI {lo:+,.0f} to {hi:+,.0f}).")
    return {"headline": headline, "outcome": outcome, "rows": rows, "sessions": b["sessions"]}


def _drivers_figure(s: dict[str, Any], e: Explanation) -> dict[str, str]:
    plt, drivers = pyplot(), s["drivers"]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(drivers) + 1))
    ax.barh([e.label(d["feature"]) for d in drivers][::-1], [d["mean_abs_shap"] for d in drivers][::-1],
            color="#1f77b4")
    ax.set_xlabel("mean |SHAP value| (log-odds of a click)")
    return {"uri": figure(fig), "alt": "mean absolute SHAP value per feature"}


def _beeswarm_figure(s: dict[str, Any], e: Explanation) -> dict[str, str]:
    import shap

    plt = pyplot()
    top = [e.names.index(d["feature"]) for d in s["drivers"][:12]]
    explanation = shap.Explanation(values=e.values[:, top], base_values=np.full(len(e.values), e.base),
                                   data=e.X[:, top], feature_names=[e.names[j] for j in top])
    plt.figure()
    shap.plots.beeswarm(explanation, max_display=12, show=False)
    return {"uri": figure(plt.gcf()), "alt": "SHAP beeswarm"}


def _dependence_figure(e: Explanation, name: str) -> dict[str, str]:
    plt = pyplot()
    j = e.names.index(name)
    fig, ax = plt.subplots(figsize=(4.2, 3))
    ax.scatter(e.X[:, j], e.probability_values[:, j] * 100, s=4, alpha=0.4)
    ax.axhline(0, color="k", lw=0.6)
    categorical = name in e.frame.columns and e.frame[name].dtype == pl.String
    ax.set_xlabel(name + (" (category code)" if categorical else ""))
    ax.set_ylabel("contribution (points of click chance)")
    return {"uri": figure(fig), "alt": f"dependence {name}"}


def _segments_figure(seg: dict[str, Any]) -> dict[str, str] | None:
    if "new_users" not in seg or "returning_users" not in seg:
        return None
    plt = pyplot()
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
    return {"uri": figure(fig), "alt": "drivers for new and returning users"}


def _example(ex: dict[str, Any]) -> dict[str, Any]:
    because = [f"{r['description'].rstrip('.').lower()} ({r['feature']} = {r['value']}, "
               f"+{r['lead_points']:.2f} points over the other candidates)" for r in ex["reasons"]]
    return ex | {"because": "; ".join(because) or "no single feature stood out"}
