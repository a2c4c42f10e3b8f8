"""The evaluation's ``report.html``: the verdict against the baselines first, then the headline
table, ranking quality by method, calibration, segments, off-policy estimates and the serving
policy replayed. Figures are drawn here; the page is ``templates/evaluation.html.j2``."""

from __future__ import annotations

from typing import Any

import numpy as np

from offer_ranker.evaluation.methods import BASELINES, headline_metric
from offer_ranker.evaluation.testset import TestSet
from offer_ranker.report import ci, figure, pyplot, render
from offer_ranker.stats import metrics as M


def headline_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Methods x headline metrics, as printed by the CLI and shown in the report."""
    k, methods = report["k"], report["methods"]
    columns = [f"ndcg@{k}", "mrr", "auc", "ece"]
    if "oracle" in methods:
        columns = ["efficiency", f"true_ndcg@{k}", *columns]
    columns += [f"coverage@{k}", f"gini@{k}"]
    rows = [[name, *(ci(m.get(c), 3) for c in columns)] for name, m in methods.items()]
    return ["method", *columns], rows


def evaluation_page(report: dict[str, Any], test: TestSet, p_click: np.ndarray) -> str:
    k = report["k"]
    header, rows = headline_rows(report)
    verdict = report["verdict"]
    return render(
        "evaluation.html.j2", report=report, k=k, headline_header=header, headline_rows=rows,
        verdict_rows=[[BASELINES[name], ci(a["difference"], 4), a["outcome"]]
                      for name, a in verdict["baselines"].items()],
        quality_figure=_quality_figure(report), calibration_figure=_calibration_figure(test, p_click),
        user_rows=_user_rows(report), offer_rows=_offer_rows(report),
        ope=_ope(report.get("ope")), policy=_policy(report.get("policy")))


def _quality_figure(report: dict[str, Any]) -> dict[str, str]:
    plt, methods = pyplot(), report["methods"]
    key = headline_metric(report, report["k"])
    names = list(methods)
    values = [methods[n].get(key, {}).get("value", np.nan) for n in names]
    errors = np.array([[v - methods[n][key]["ci"][0], methods[n][key]["ci"][1] - v] if key in methods[n] else [0, 0]
                       for n, v in zip(names, values)]).T
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.barh(names, values, xerr=errors, color=["#1f77b4" if n == "model" else "#aaa" for n in names], capsize=3)
    ax.set_xlabel(f"{key} (95% CI)")
    ax.invert_yaxis()
    return {"uri": figure(fig), "alt": f"{key} by method"}


def _calibration_figure(test: TestSet, p_click: np.ndarray) -> dict[str, str]:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    for name, p in (("model", p_click), ("oracle", test.p_click_true)):
        if p is not None:
            x, y = M.reliability(p, test.click)
            ax.plot(x, y, "o-", ms=3, label=name)
    hi = float(max(np.quantile(p_click, 0.999), 1e-3))
    ax.plot([0, hi], [0, hi], "k--", lw=1, label="perfect")
    ax.set_xlabel("predicted p_click")
    ax.set_ylabel("observed click rate")
    ax.legend()
    return {"uri": figure(fig), "alt": "reliability diagram"}


def _user_rows(report: dict[str, Any]) -> list[list[str]]:
    k, segments = report["k"], report["segments"]
    return [[segment, name, ci(m.get("efficiency"), 3), ci(m.get(f"ndcg@{k}"), 3), ci(m.get(f"true_ndcg@{k}"), 3)]
            for segment in ("new_users", "returning_users") if segment in segments
            for name in report["methods"] for m in [segments[segment].get(name, {})]]


def _offer_rows(report: dict[str, Any]) -> list[list[Any]]:
    k, segments = report["k"], report["segments"]
    return [[segment, name, m.get(f"top{k}_slots", {}).get("value", "-"), ci(m.get("auc"), 3), ci(m.get("ece"), 4)]
            for segment in ("new_offers", "established_offers") if segment in segments
            for name in report["methods"] for m in [segments[segment].get(name, {})]]


def _ope(o: dict[str, Any] | None) -> dict[str, Any] | None:
    if not o:
        return None
    names = [n for n in ("logging_policy", "logging_policy_true", "ips", "snips", "dr", "true_value") if n in o]
    rows = [[n, ci(o[n], 4), f"{o[n]['relative_error']:+.1%}" if "relative_error" in o[n] else "-"] for n in names]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 2.8))
    err = np.array([[o[n]["value"] - o[n]["ci"][0], o[n]["ci"][1] - o[n]["value"]] for n in names]).T
    ax.barh(names, [o[n]["value"] for n in names], xerr=err, capsize=3, color="#6a9fd4")
    ax.set_xlabel(o["estimand"])
    ax.invert_yaxis()
    return {"estimand": o["estimand"], "has_truth": "true_value" in o, "rows": rows,
            "figure": {"uri": figure(fig), "alt": "off-policy estimates"}}


def _policy(policy: dict[str, Any] | None) -> dict[str, Any] | None:
    """The serving policy replayed: the MMR λ sweep and the cold start with and without the prior."""
    if not policy:
        return None
    k = policy["k"]
    quality = "efficiency" if policy["sweep"][0].get("efficiency") is not None else f"ndcg@{k}"
    columns = ["efficiency", f"ndcg@{k}", "diversity", f"coverage@{k}", "new_offer_share"]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    x = [r["diversity"] for r in policy["sweep"]]
    y = [r[quality] for r in policy["sweep"]]
    ax.plot(x, y, "o-")
    for r, xi, yi in zip(policy["sweep"], x, y):
        ax.annotate(f"λ={r['lambda']:g}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(f"intra-list diversity of the top {k}")
    ax.set_ylabel(quality)
    return {
        "k": k, "columns": columns, "lambda": policy["lambda"], "partner_cap": policy["partner_cap"],
        "requests": policy["requests"], "gains": policy["gains"],
        "sweep": [[f"{r['lambda']:.2f}" + (" (configured)" if r["lambda"] == policy["lambda"] else "")]
                  + [ci({"value": r.get(c)}) for c in columns] for r in policy["sweep"]],
        "cold_start": [[segment.replace("_", " "), variant.replace("_", " ")]
                       + [ci({"value": m[variant].get(c)}) for c in columns]
                       for segment, m in policy["cold_start"].items() for variant in ("with_prior", "without_prior")],
        "figure": {"uri": figure(fig), "alt": "quality vs diversity by lambda"},
    }
