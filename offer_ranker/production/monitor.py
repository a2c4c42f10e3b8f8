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

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from offer_ranker.config import MonitorConfig
from offer_ranker.errors import OfferRankerError
from offer_ranker.io import staged_outputs
from offer_ranker.production.logs import LogFileError, read_records
from offer_ranker.report import figure, pyplot
from offer_ranker.report import render as render_page
from offer_ranker.serve.prediction_log import RankRecord
from offer_ranker.stats import drift

if TYPE_CHECKING:
    from offer_ranker.model.bundle import Bundle

MAX_LISTED = 50  # malformed lines listed one by one; all of them are counted


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
    """The rank records under ``folder``, read as :func:`offer_ranker.production.logs.read_records`
    does (malformed lines skipped and listed as ``file:line: reason``).

    version : keep only the rank records of this ``model_version`` (None: all); all are counted
    numeric, categorical : the features collected (the reference's); a value of the wrong type for
        its feature (text for a numeric one, a number for a categorical one) counts as missing
    """
    folder = Path(folder)
    logs = Logs()
    try:
        scan = read_records(folder, rank=lambda r: _add(r, logs, version, numeric, categorical))
    except LogFileError as exc:
        raise MonitorError(str(exc)) from None
    logs.files, logs.feedback = len(scan.files), scan.feedback
    logs.malformed = [str(m) for m in scan.malformed]
    if not logs.requests:
        others = ", ".join(f"{v} ({n:,})" for v, n in logs.versions.most_common(5))
        raise MonitorError(f"no rank records{' of ' + version if version else ''} in {folder}: " + (
            f"the logs hold other model versions: {others}; pass --all-versions or --model" if others
            else f"{logs.feedback:,} feedback and {len(logs.malformed):,} malformed lines, no rank records"))
    return logs


def _add(r: RankRecord, logs: Logs, version: str | None, numeric: set[str], categorical: set[str]) -> None:
    """Add one rank record to ``logs`` (when it is of the monitored version)."""
    logs.versions[r.model_version] += 1
    if version is not None and r.model_version != version:
        return
    ts = r.ts if r.ts.tzinfo is None else r.ts.astimezone(timezone.utc).replace(tzinfo=None)
    logs.ts.append(ts)
    if r.latency_ms is not None:
        logs.latency_ms.append(r.latency_ms)
    logs.fallback.append(r.fallback)
    if r.new_user is not None:
        logs.new_user.append(r.new_user)
    if r.unknown_offers is not None and r.candidates is not None:
        logs.unknown.append((r.unknown_offers, r.candidates))
    # Drift compares with what the model chose on the reference data: an explored list (chosen at
    # random among new offers) or a fallback (no model) would show drift that is not there.
    if r.explored:
        logs.explored += 1
    elif r.fallback is None:
        if r.features is not None:
            logs.with_features += 1
            for name in numeric & r.features.keys():
                logs.features.setdefault(name, []).extend(v if isinstance(v, float) else None for v in r.features[name])
            for name in categorical & r.features.keys():
                logs.features.setdefault(name, []).extend(v if isinstance(v, str) else None for v in r.features[name])
        # the reference profiles p_click at the top slot, so only position 1 is comparable
        if r.p_click is not None:
            logs.p_top.extend(p for p, pos in zip(r.p_click, r.positions) if pos == 1)


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
    latency: dict[str, float | None] = dict.fromkeys(("p50", "p90", "p99"))
    if logs.latency_ms:
        latency = dict(zip(latency, (float(v) for v in np.percentile(logs.latency_ms, [50, 90, 99]))))
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
             f"p50 {_show(latency['p50'])}, p90 {_show(latency['p90'])}"),
            ("unknown offers", "unknown offers per candidate", per_candidate, cfg.max_unknown_offer_share,
             "high: the online snapshot is stale")):
        status = "skip" if value is None else "fail" if value > limit else "pass"
        checks.append(_check(group, name, value, f"max {limit}", status, "not logged" if value is None else detail))
    if logs.malformed:
        checks.append(_check("log", "malformed lines", len(logs.malformed), "0", "warn", logs.malformed[0]))
    alerts = [f"{c['group']}: {c['name']} = {_show(c['value'])} ({c['threshold']})"
              for c in checks if c["status"] == "fail"]
    status = "fail" if alerts else "warn" if any(c["status"] == "warn" for c in checks) else "pass"
    return {
        "status": status, "summary": _summary(status, checks, drift_rows), "alerts": alerts, "checks": checks,
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


def _summary(status: str, checks: list[dict[str, Any]], drift_rows: dict[str, Any]) -> dict[str, Any]:
    """The verdict: how many inputs drifted, the worst first, and the other failed checks."""
    judged = sorted(((name, d) for name, d in drift_rows.items() if d["status"] != "skip"), key=lambda x: -x[1]["psi"])
    drifted = [name for name, d in judged if d["status"] == "fail"]
    warned = [name for name, d in judged if d["status"] == "warn"]
    other = [f"{c['name']} = {_show(c['value'])} ({c['threshold']})" for c in checks
             if c["status"] == "fail" and c["group"] != "drift"]
    words = {"fail": "Alert", "warn": "Warning", "pass": "All checks pass"}
    text = f"{len(drifted)} of {len(judged)} inputs drifted (PSI at or above the alert threshold)"
    if warned:
        text += f", {len(warned)} more moved (warning)"
    if judged:
        text += "; worst: " + ", ".join(f"{name} {d['psi']:.3g}" for name, d in judged[:3])
    if other:
        text += ". Also failed: " + "; ".join(other)
    return {"headline": f"{words[status]}: {text}.", "inputs": len(judged), "drifted": drifted, "warned": warned,
            "other_failures": other, "worst": [{"name": name, "psi": d["psi"], "status": d["status"]}
                                               for name, d in judged[:10]]}


def _check(group: str, name: str, value: float | None, threshold: str, status: str, detail: str) -> dict[str, Any]:
    finite = value is not None and np.isfinite(value)
    return {"group": group, "name": name, "value": value if finite else None, "threshold": threshold,
            "status": status, "detail": detail}


def _show(value: float | int | None) -> str:
    return "-" if value is None else f"{value:,}" if isinstance(value, int) else f"{value:.4g}"


def render(report: dict[str, Any]) -> str:
    """The self-contained ``monitor.html``: the verdict and the PSI chart first, then the other
    checks, the drift table (worst first), volume, the service's figures and malformed lines."""
    order = ("fail", "warn", "pass", "skip")
    checks = sorted((c for c in report["checks"] if c["group"] != "drift"), key=lambda c: order.index(c["status"]))
    judged = sorted(((name, d) for name, d in report["drift"].items() if d["psi"] is not None),
                    key=lambda item: -item[1]["psi"])
    lat, fb, unk, r = report["latency_ms"], report["fallbacks"], report["unknown_offers"], report["records"]
    facts = [["latency_ms p50 / p90 / p99", " / ".join(_show(lat[q]) for q in ("p50", "p90", "p99"))],
             ["fallback share", f"{fb['share']:.2%}"],
             *[[f"fallback: {reason}", f"{count:,} requests"] for reason, count in fb["by_reason"].items()],
             ["new users (share of requests)", _pct(report["new_user_share"])],
             ["requests with unknown offers", _pct(unk["request_share"])],
             ["unknown offers per candidate", _pct(unk["per_candidate"])],
             ["explored requests (not in drift)", f"{r['explored']:,}"]]
    return render_page(
        "monitor.html.j2", report=report,
        psi_figure=_psi_figure(judged[:25], report["thresholds"]) if judged else None, shown=min(len(judged), 25),
        check_rows=[[f"{c['group']}: {c['name']}", _show(c["value"]), c["threshold"],
                     {"text": c["status"], "class": c["status"]}, c["detail"]] for c in checks],
        drift_rows=[[name, d["group"], _show(d["psi"]), f"{d['values']:,}", {"text": d["status"], "class": d["status"]}]
                    for name, d in judged],
        volume_figure=_volume_figure(report["requests_per_hour"]), facts=facts)


def _psi_figure(top: list[tuple[str, dict[str, Any]]], th: dict[str, Any]) -> dict[str, str]:
    plt = pyplot()
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
    return {"uri": figure(fig), "alt": "PSI by input, worst first"}


def _volume_figure(hours: dict[str, int]) -> dict[str, str] | None:
    if len(hours) < 2:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 2.4))
    ax.bar(range(len(hours)), list(hours.values()), color="#6a9fd4")
    step = max(1, len(hours) // 8)
    ax.set_xticks(range(0, len(hours), step), [h[5:13].replace("T", " ") + "h" for h in list(hours)[::step]],
                  fontsize=8)
    ax.set_ylabel("requests per hour")
    return {"uri": figure(fig), "alt": "requests per hour"}


def _pct(value: float | None) -> str:
    return "not logged" if value is None else f"{value:.2%}"
