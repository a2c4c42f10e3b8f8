"""Production monitoring (``offer-ranker monitor``): the service's prediction logs checked against
the model bundle's training reference (``bundle.info["reference"]``, see ``offer_ranker.stats.drift``).

Reads every ``*.jsonl`` file under a folder (one per service process), keeps the rank records of
the monitored bundle (or of every version) and checks, each as pass / warn / fail (skip: shown,
not judged):

- drift: the PSI of every model input over the shown offers, and of p_click at position 1;
- fallbacks: the share of requests a fallback served (by reason);
- unknown offers: the share of candidates the online snapshot did not know (a stale snapshot);
- latency: the 99th percentile of ``latency_ms``;
- volume: enough requests to judge drift; requests per hour are reported;
and, for context, the shares of new users and of requests with unknown offers.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from offer_ranker.stats import drift
from offer_ranker.config import MonitorConfig
from offer_ranker.errors import OfferRankerError
from offer_ranker.io import staged_outputs
from offer_ranker.production.logfiles import LogFileError, read_lines
from offer_ranker.report import img, page, table

if TYPE_CHECKING:
    from offer_ranker.model.bundle import Bundle

MAX_LISTED = 50  # malformed lines listed one by one; all of them are counted
_STATUS_HTML = {"pass": '<span class="ok">pass</span>', "fail": '<span class="miss">fail</span>',
                "warn": '<span style="color:#a15c00;font-weight:600">warn</span>', "skip": '<span>skip</span>'}


class MonitorError(OfferRankerError):
    """The logs or the bundle cannot be monitored; the message says which and why."""


@dataclass
class Logs:
    """The monitored rank records of a log folder, as columns (one entry per record unless noted)."""

    files: int = 0
    versions: Counter = field(default_factory=Counter)  # rank records per model_version, all read
    feedback: int = 0
    malformed: list[str] = field(default_factory=list)  # "file:line: reason"
    ts: list[datetime] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    fallback: list[str | None] = field(default_factory=list)
    new_user: list[bool] = field(default_factory=list)  # records that logged it
    unknown: list[tuple[int, int]] = field(default_factory=list)  # (unknown offers, candidates), records that logged it
    explored: int = 0
    with_features: int = 0
    features: dict[str, list[Any]] = field(default_factory=dict)  # name -> values of every shown offer
    p_top: list[float] = field(default_factory=list)  # p_click at position 1 of the judged records

    @property
    def requests(self) -> int:
        return len(self.ts)


def read_logs(folder: Path | str, *, version: str | None, numeric: set[str], categorical: set[str]) -> Logs:
    """Parse every ``*.jsonl`` under ``folder`` (recursively, in name order).

    version : keep only the rank records of this ``model_version`` (None: all); all are counted
    numeric, categorical : the features collected (the reference's); a record whose value of one has
        the wrong type is malformed
    Feedback records are counted and skipped; blank lines are ignored; malformed lines are skipped
    and listed as ``file:line: reason``.
    """
    folder = Path(folder)
    logs = Logs()
    try:
        files, malformed = read_lines(folder, lambda line: _add(line, logs, version, numeric, categorical))
    except LogFileError as exc:
        raise MonitorError(str(exc)) from None
    logs.files = len(files)
    logs.malformed = [f"{name}:{lineno}: {reason}" for name, lineno, reason in malformed]
    if not logs.requests:
        others = ", ".join(f"{v} ({n:,})" for v, n in logs.versions.most_common(5))
        raise MonitorError(f"no rank records{' of ' + version if version else ''} in {folder}: " + (
            f"the logs hold other model versions: {others}; pass --all-versions or --model" if others
            else f"{logs.feedback:,} feedback and {len(logs.malformed):,} malformed lines, no rank records"))
    return logs


def _add(line: bytes, logs: Logs, version: str | None, numeric: set[str], categorical: set[str]) -> str | None:
    """Add one line's rank record to ``logs``; the reason it is malformed, or None."""
    try:
        r = json.loads(line)
    except ValueError as exc:  # JSONDecodeError, or UnicodeDecodeError for bytes that are not UTF-8
        return f"not JSON ({getattr(exc, 'msg', exc)})"
    if not isinstance(r, dict):
        return "not a JSON object"
    if r.get("kind") == "feedback":
        logs.feedback += 1
        return None
    if r.get("kind") != "rank":
        return f"kind must be 'rank' or 'feedback', got {r.get('kind')!r}"
    try:
        ts = datetime.fromisoformat(r["ts"])
    except (KeyError, TypeError, ValueError):
        return f"ts must be an ISO 8601 time, got {r.get('ts')!r}"
    if ts.tzinfo is not None:  # the service logs naive UTC; an offset would not compare with it
        ts = ts.astimezone(timezone.utc).replace(tzinfo=None)
    offers, positions, p_click = r.get("offers"), r.get("positions"), r.get("p_click")
    if not (isinstance(offers, list) and isinstance(positions, list) and isinstance(p_click, list)
            and len(offers) == len(positions) == len(p_click) and all(map(_number, p_click))):
        return "offers, positions and p_click must be lists of the same length (p_click numbers)"
    if not _number(r.get("latency_ms")) or not isinstance(r.get("model_version"), str):
        return "latency_ms must be a number and model_version a string"
    if not isinstance(r.get("fallback"), (str, type(None))):
        return f"fallback must be a string or null, got {r['fallback']!r}"
    features = r.get("features")
    if features is not None:
        if not isinstance(features, dict) or any(not isinstance(v, list) or len(v) != len(offers)
                                                 for v in features.values()):
            return "features must map each name to a list with one value per shown offer"
        for name in numeric & features.keys():
            if not all(v is None or _number(v) for v in features[name]):
                return f"features.{name} must hold numbers or null"
        for name in categorical & features.keys():
            if not all(v is None or isinstance(v, str) for v in features[name]):
                return f"features.{name} must hold strings or null"
    logs.versions[r["model_version"]] += 1
    if version is not None and r["model_version"] != version:
        return None
    logs.ts.append(ts)
    logs.latency_ms.append(float(r["latency_ms"]))
    logs.fallback.append(r["fallback"])
    if isinstance(r.get("new_user"), bool):
        logs.new_user.append(r["new_user"])
    if isinstance(r.get("unknown_offers"), int) and isinstance(r.get("candidates"), int):
        logs.unknown.append((r["unknown_offers"], r["candidates"]))
    # Drift compares with what the model chose on the reference data: an explored list (chosen at
    # random among new offers) or a fallback (no model) would show drift that is not there.
    if r.get("explored") is True:
        logs.explored += 1
    elif r["fallback"] is None:
        if features is not None:
            logs.with_features += 1
            for name in (numeric | categorical) & features.keys():
                logs.features.setdefault(name, []).extend(features[name])
        # the reference profiles p_click at the top slot, so only position 1 is comparable
        logs.p_top.extend(p for p, pos in zip(p_click, positions) if pos == 1)
    return None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def monitor(bundle: Bundle, logs: Path | str, out: Path | str, cfg: MonitorConfig | None = None) -> dict[str, Any]:
    """Check the prediction logs under ``logs`` against ``bundle``'s training reference; write
    ``out/monitor.json`` and ``out/monitor.html``. Returns the report; ``report["alerts"]`` names
    the failed checks (the CLI exits with 1 when there are any)."""
    report = check(bundle, logs, cfg)
    with staged_outputs(out) as stage:
        stage.write_json("monitor.json", report)
        stage.path("monitor.html").write_text(render(report))
    return report


def check(bundle: Bundle, logs: Path | str, cfg: MonitorConfig | None = None) -> dict[str, Any]:
    """The report of :func:`monitor`, without writing it."""
    cfg = cfg or MonitorConfig()
    reference = bundle.info.get("reference")
    if not reference:
        raise MonitorError(f"model {bundle.version} has no training reference to monitor against (bundles "
                           f"trained before `offer-ranker monitor` existed): retrain it with `offer-ranker train`")
    kinds = {name: p["kind"] for name, p in reference["features"].items()}
    parsed = read_logs(logs, version=None if cfg.all_versions else bundle.version,
                       numeric={n for n, k in kinds.items() if k == "numeric"},
                       categorical={n for n, k in kinds.items() if k == "categorical"})
    return summarize(parsed, reference, cfg) | {"model": bundle.version, "logs": str(Path(logs))}


def summarize(logs: Logs, reference: dict[str, Any], cfg: MonitorConfig) -> dict[str, Any]:
    """The checks and figures of the report (everything but where the logs and model came from)."""
    n = logs.requests
    latency = dict(zip(("p50", "p90", "p99"), (float(v) for v in np.percentile(logs.latency_ms, [50, 90, 99]))))
    reasons = Counter((f or "").split(":")[0] for f in logs.fallback if f is not None)
    fallback_share = sum(reasons.values()) / n
    unknown = np.array(logs.unknown, dtype=np.float64).reshape(-1, 2)
    per_candidate = float(unknown[:, 0].sum() / unknown[:, 1].sum()) if unknown[:, 1].sum() else None
    hours = Counter(t.replace(minute=0, second=0, microsecond=0).isoformat() for t in logs.ts)

    few = n < cfg.min_requests
    checks = [_check("volume", "requests", n, f"min {cfg.min_requests}", "pass" if not few else "warn",
                     f"fewer than {cfg.min_requests} requests: drift checks warn at most" if few else "")]
    drift_rows = {}
    judged = [("prediction", "p_click at position 1", reference.get("prediction"), logs.p_top)]
    judged += [("feature", name, profile, logs.features.get(name, []))
               for name, profile in reference["features"].items()]
    for group, name, profile, values in judged:
        value = drift.psi(profile, values) if profile and values else float("nan")
        if not np.isfinite(value):
            status, detail = "skip", "no values logged (serve.log_features off, or every request fell back)"
        elif name in cfg.skip_features:
            status, detail = "skip", "calendar feature: follows the monitored time window (monitor.skip_features)"
        else:
            status = "fail" if value >= cfg.psi_alert else "warn" if value >= cfg.psi_warn else "pass"
            status, detail = ("warn", "too few requests to alert") if few and status == "fail" else (status, "")
        drift_rows[name] = {"group": group, "psi": value if np.isfinite(value) else None, "values": len(values),
                            "status": status}
        checks.append(_check("drift", name, value, f"warn {cfg.psi_warn}, fail {cfg.psi_alert}", status, detail))
    for group, name, value, limit, detail in (
            ("fallbacks", "fallback share", fallback_share, cfg.max_fallback_share,
             ", ".join(f"{r} {c:,}" for r, c in reasons.most_common())),
            ("latency", "p99 latency_ms", latency["p99"], cfg.max_p99_latency_ms,
             f"p50 {latency['p50']:.2f}, p90 {latency['p90']:.2f}"),
            ("unknown offers", "unknown offers per candidate", per_candidate, cfg.max_unknown_offer_share,
             "high: the online snapshot is stale")):
        status = "skip" if value is None else "fail" if value > limit else "pass"
        checks.append(_check(group, name, value, f"max {limit}", status, "not logged" if value is None else detail))
    if logs.malformed:
        checks.append(_check("log", "malformed lines", len(logs.malformed), "0", "warn", logs.malformed[0]))
    alerts = [f"{c['group']}: {c['name']} = {_show(c['value'])} ({c['threshold']})"
              for c in checks if c["status"] == "fail"]
    return {
        "status": "fail" if alerts else "warn" if any(c["status"] == "warn" for c in checks) else "pass",
        "alerts": alerts, "checks": checks,
        "records": {"monitored": n, "rank": sum(logs.versions.values()), "versions": dict(logs.versions),
                    "feedback": logs.feedback, "explored": logs.explored, "with_features": logs.with_features,
                    "files": logs.files},
        "malformed": {"count": len(logs.malformed), "lines": logs.malformed[:MAX_LISTED]},
        "window": {"from": min(logs.ts).isoformat(), "to": max(logs.ts).isoformat()},
        "latency_ms": latency,
        "fallbacks": {"share": fallback_share, "by_reason": dict(reasons)},
        "new_user_share": float(np.mean(logs.new_user)) if logs.new_user else None,
        "unknown_offers": {"request_share": float((unknown[:, 0] > 0).mean()) if len(unknown) else None,
                           "per_candidate": per_candidate},
        "requests_per_hour": dict(sorted(hours.items())),
        "drift": drift_rows,
        "reference": {"rows": reference.get("rows"), "requests": reference.get("requests"), "k": reference.get("k")},
        "thresholds": cfg.model_dump(mode="json"),
    }


def _check(group: str, name: str, value: float | None, threshold: str, status: str, detail: str) -> dict[str, Any]:
    finite = value is not None and np.isfinite(value)
    return {"group": group, "name": name, "value": value if finite else None, "threshold": threshold,
            "status": status, "detail": detail}


def _show(value: float | int | None) -> str:
    return "-" if value is None else f"{value:,}" if isinstance(value, int) else f"{value:.4g}"


def render(report: dict[str, Any]) -> str:
    """The self-contained ``monitor.html``: the checks, the PSI chart, volume, latency, fallbacks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r, th, order = report["records"], report["thresholds"], ("fail", "warn", "pass", "skip")
    sections = ["<style>td:last-child { text-align: left; }</style>"
                f"<p class=note>Model <b>{html.escape(report['model'])}</b>: {r['monitored']:,} rank records monitored "
                f"of {r['rank']:,} read ({'every version' if th['all_versions'] else 'this version only'}) in "
                f"{r['files']} file(s) under {html.escape(report['logs'])}, {report['window']['from'][:19]} to "
                f"{report['window']['to'][:19]}; {r['feedback']:,} feedback records skipped, "
                f"{report['malformed']['count']:,} malformed lines. Overall: {_STATUS_HTML[report['status']]}.</p>"]
    if report["alerts"]:
        sections.append("<h2>Alerts</h2><ul>" + "".join(f"<li>{html.escape(a)}</li>" for a in report["alerts"])
                        + "</ul>")
    # passing drift checks are summed up in one row here and listed one by one under Drift
    checks = [c for c in report["checks"] if c["group"] != "drift" or c["status"] in ("fail", "warn")]
    judged = [d["status"] for d in report["drift"].values() if d["status"] != "skip"]
    checks.append({"group": "drift", "name": f"{judged.count('pass')} of {len(judged)} inputs pass", "value": None,
                   "threshold": "", "status": min(judged or ["skip"], key=order.index), "detail": "listed under Drift"})
    rows = [[f"{c['group']}: {c['name']}", _show(c["value"]), c["threshold"], _STATUS_HTML[c["status"]], c["detail"]]
            for c in sorted(checks, key=lambda c: order.index(c["status"]))]
    sections.append("<h2>Checks</h2>" + table(["check", "value", "threshold", "status", "detail"], rows))

    judged = sorted(((name, d) for name, d in report["drift"].items() if d["psi"] is not None),
                    key=lambda item: -item[1]["psi"])
    if judged:
        top = judged[:25]
        colours = {"fail": "#b3261e", "warn": "#e0a100", "pass": "#4c9a5a", "skip": "#aaa"}
        fig, ax = plt.subplots(figsize=(7.5, 0.24 * len(top) + 1))
        # a log scale: PSI runs from 0.001 (stable) to 10 (a new level took over)
        ax.barh([n for n, _ in top], [max(d["psi"], 1e-3) for _, d in top], left=1e-4,
                color=[colours[d["status"]] for _, d in top])
        ax.set_xscale("log")
        for x, style in ((th["psi_warn"], ":"), (th["psi_alert"], "--")):
            ax.axvline(x, color="k", ls=style, lw=1)
        ax.set_xlabel("PSI against the training reference (dotted: warn, dashed: fail; grey: not judged)")
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=8)
        rows = [[name, d["group"], _show(d["psi"]), f"{d['values']:,}", _STATUS_HTML[d["status"]]]
                for name, d in judged]
        sections.append(
            "<h2>Drift</h2><p class=note>Model inputs of the shown offers (explored lists and fallbacks excluded) and "
            "p_click at position 1, against the bundle's validation slice as the model would have shown it (its top "
            f"{report['reference']['k']} of {report['reference']['requests']:,} requests). The {len(top)} largest of "
            f"{len(judged)}:</p>" + img(fig, "PSI by feature")
            + table(["input", "kind", "PSI", "values", "status"], rows))
    hours = report["requests_per_hour"]
    if len(hours) > 1:
        fig, ax = plt.subplots(figsize=(7.5, 2.4))
        ax.bar(range(len(hours)), list(hours.values()), color="#6a9fd4")
        step = max(1, len(hours) // 8)
        ax.set_xticks(range(0, len(hours), step), [h[5:13].replace("T", " ") + "h" for h in list(hours)[::step]],
                      fontsize=8)
        ax.set_ylabel("requests per hour")
        sections.append("<h2>Volume</h2>" + img(fig, "requests per hour"))
    lat, fb, unk = report["latency_ms"], report["fallbacks"], report["unknown_offers"]
    facts = [["latency_ms p50 / p90 / p99", f"{lat['p50']:.2f} / {lat['p90']:.2f} / {lat['p99']:.2f}"],
             ["fallback share", f"{fb['share']:.2%}"],
             *[[f"fallback: {reason}", f"{count:,} requests"] for reason, count in fb["by_reason"].items()],
             ["new users (share of requests)", _pct(report["new_user_share"])],
             ["requests with unknown offers", _pct(unk["request_share"])],
             ["unknown offers per candidate", _pct(unk["per_candidate"])],
             ["explored requests (not in drift)", f"{r['explored']:,}"]]
    sections.append("<h2>Service</h2>" + table(["figure", "value"], facts))
    if report["malformed"]["count"]:
        sections.append(f"<h2>Malformed lines</h2><p class=note>Skipped; the first {len(report['malformed']['lines'])}"
                        f" of {report['malformed']['count']:,}:</p><ul>"
                        + "".join(f"<li><code>{html.escape(m)}</code></li>" for m in report["malformed"]["lines"])
                        + "</ul>")
    return page("offer-ranker monitor", sections)


def _pct(value: float | None) -> str:
    return "not logged" if value is None else f"{value:.2%}"
