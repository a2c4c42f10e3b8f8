"""Self-contained HTML reports: tables, and matplotlib figures embedded as PNG data URIs.

The pages open from disk with no network and no scripts.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np

from offer_ranker.stats import metrics as M

_STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #222; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.3rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f4f4f4; }
img { max-width: 100%; height: auto; }
.note { color: #555; font-size: 0.9rem; }
.ok { color: #0a7d32; font-weight: 600; } .miss { color: #b3261e; font-weight: 600; }
"""


def figure_uri(fig: Any) -> str:
    """A matplotlib figure as a ``data:image/png`` URI (the figure is closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def img(fig: Any, alt: str) -> str:
    return f'<img src="{figure_uri(fig)}" alt="{html.escape(alt)}">'


def table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page(title: str, sections: list[str]) -> str:
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{''.join(sections)}</body></html>")


def fmt(entry: dict[str, Any] | None, digits: int = 4) -> str:
    """``value [lo, hi]`` of a metric entry, or ``-``."""
    if not entry or entry.get("value") is None or not np.isfinite(entry["value"]):
        return "-"
    text = f"{entry['value']:.{digits}f}"
    if "ci" in entry and all(np.isfinite(entry["ci"])):
        text += f" [{entry['ci'][0]:.{digits}f}, {entry['ci'][1]:.{digits}f}]"
    return text


def _cell(c: Any) -> str:
    if isinstance(c, float):
        return f"{c:.4f}"
    return str(c) if isinstance(c, str) and c.startswith("<span") else html.escape(str(c))


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def headline_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Methods x headline metrics, as printed by the CLI and shown first in the report."""
    k, methods = report["k"], report["methods"]
    columns = [f"ndcg@{k}", "mrr", "auc", "ece"]
    if "oracle" in methods:
        columns = ["efficiency", f"true_ndcg@{k}", *columns]
    columns += [f"coverage@{k}", f"gini@{k}"]
    rows = [[name, *(fmt(m.get(c), 3) for c in columns)] for name, m in methods.items()]
    return ["method", *columns], rows


def evaluation_report(report: dict[str, Any], test: Any, p_click: np.ndarray) -> str:
    plt = _pyplot()
    k, methods = report["k"], report["methods"]
    t = report["test"]
    sections = [f"<p class=note>Model <b>{html.escape(report['model'])}</b> ({report['engine']}, objective "
                f"{report['objective']}) on {t['impressions']:,} impressions in {t['requests']:,} requests from "
                f"{t['from']} on ({t['clicks']:,} clicks, {t['conversions']:,} conversions). 95% CIs from "
                f"{report['bootstrap']} bootstrap resamples of requests.</p>"]
    header, rows = headline_rows(report)
    sections.append("<h2>Headline</h2>" + table(header, rows))
    sections.append(
        "<p class=note>efficiency = expected top-" f"{k}" " clicks of the method's order / the oracle's, from the "
        "simulator's true probabilities; true_ndcg uses true click probabilities as gains. ndcg and mrr use the "
        "logged clicks (gain 2^label - 1, conversions count 3), which carry the logging policy's position bias."
        "</p>")
    checks = report.get("targets", {})
    if checks:
        sections.append("<h2>Targets</h2>" + table(["target", "met"], [
            [name, '<span class="ok">yes</span>' if ok else '<span class="miss">no</span>'] for name, ok in checks.items()]))

    key = "efficiency" if "oracle" in methods else f"ndcg@{k}"
    fig, ax = plt.subplots(figsize=(7, 3.2))
    names = list(methods)
    values = [methods[n].get(key, {}).get("value", np.nan) for n in names]
    errors = np.array([[v - methods[n][key]["ci"][0], methods[n][key]["ci"][1] - v] if key in methods[n] else [0, 0]
                       for n, v in zip(names, values)]).T
    ax.barh(names, values, xerr=errors, color=["#1f77b4" if n == "model" else "#aaa" for n in names], capsize=3)
    ax.set_xlabel(f"{key} (95% CI)")
    ax.invert_yaxis()
    sections.append(f"<h2>Ranking quality by method</h2>{img(fig, key + ' by method')}")

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
    sections.append("<h2>Calibration</h2><p class=note>Equal-count bins of p_click at the logged slot.</p>"
                    + img(fig, "reliability diagram"))

    segs = report["segments"]
    seg_rows = []
    for segment in ("new_users", "returning_users"):
        if segment in segs:
            for name in names:
                m = segs[segment].get(name, {})
                seg_rows.append([segment, name, fmt(m.get("efficiency"), 3), fmt(m.get(f"ndcg@{k}"), 3),
                                 fmt(m.get(f"true_ndcg@{k}"), 3)])
    off_rows = []
    for segment in ("new_offers", "established_offers"):
        if segment in segs:
            for name in names:
                m = segs[segment].get(name, {})
                off_rows.append([segment, name, m.get(f"top{k}_slots", {}).get("value", "-"), fmt(m.get("auc"), 3),
                                 fmt(m.get("ece"), 4)])
    sections.append("<h2>Segments</h2>" + table(["users", "method", "efficiency", f"ndcg@{k}", f"true_ndcg@{k}"],
                                                seg_rows)
                    + table(["offers", "method", f"top-{k} slots", "auc", "ece"], off_rows))

    o = report.get("ope")
    if o:
        rows = [[name, fmt(o[name], 4), f"{o[name].get('relative_error', float('nan')):+.1%}"
                 if "relative_error" in o[name] else "-"]
                for name in ("logging_policy", "logging_policy_true", "ips", "snips", "dr", "true_value") if name in o]
        fig, ax = plt.subplots(figsize=(6, 2.8))
        labels = [r[0] for r in rows]
        vals = [o[n]["value"] for n in labels]
        err = np.array([[o[n]["value"] - o[n]["ci"][0], o[n]["ci"][1] - o[n]["value"]] for n in labels]).T
        ax.barh(labels, vals, xerr=err, capsize=3, color="#6a9fd4")
        ax.set_xlabel(o["estimand"])
        ax.invert_yaxis()
        sections.append("<h2>Off-policy estimates</h2><p class=note>The model's " + html.escape(o["estimand"])
                        + " estimated from the logging policy's data, next to the logging policy's own value"
                        + (" and the simulator's true value" if "true_value" in o else "") + ".</p>"
                        + table(["estimate", "value [95% CI]", "error vs truth"], rows) + img(fig, "off-policy"))
    if report.get("policy"):
        sections.append(_policy_section(report["policy"], plt))
    return page("offer-ranker evaluation", sections)


def _num(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _policy_section(policy: dict[str, Any], plt: Any) -> str:
    """The serving policy replayed: the MMR λ sweep and the cold start with and without the prior."""
    k = policy["k"]
    quality = "efficiency" if policy["sweep"][0].get("efficiency") is not None else f"ndcg@{k}"
    columns = ["efficiency", f"ndcg@{k}", "diversity", f"coverage@{k}", "new_offer_share"]
    rows = [[f"{r['lambda']:.2f}" + (" (configured)" if r["lambda"] == policy["lambda"] else "")]
            + [_num(r.get(c)) for c in columns] for r in policy["sweep"]]
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    x = [r["diversity"] for r in policy["sweep"]]
    y = [r[quality] for r in policy["sweep"]]
    ax.plot(x, y, "o-")
    for r, xi, yi in zip(policy["sweep"], x, y):
        ax.annotate(f"λ={r['lambda']:g}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(f"intra-list diversity of the top {k}")
    ax.set_ylabel(quality)
    cold_rows = [[segment.replace("_", " "), variant.replace("_", " ")] + [_num(m[variant].get(c)) for c in columns]
                 for segment, m in policy["cold_start"].items() for variant in ("with_prior", "without_prior")]
    return ("<h2>Serving policy: diversity and cold start</h2><p class=note>The service's re-ranking (cold-start "
            f"prior blend, MMR, at most {policy['partner_cap'] or 'any number of'} offer(s) per partner) replayed "
            f"on {policy['requests']:,} evaluation requests; gains: {html.escape(policy['gains'])}. Priors from the "
            "training window only.</p>"
            + table(["λ", *columns], rows) + img(fig, "quality vs diversity by lambda")
            + f"<h3>Cold start at λ = {policy['lambda']:g}</h3>" + table(["requests", "ranking", *columns], cold_rows))
