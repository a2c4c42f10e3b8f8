"""The A/B test report (``offer-ranker ab-report``): arms compared from the service's prediction logs.

Reads every ``*.jsonl`` log under a folder (one per service process), splits each hashed user's
rank requests into sessions at gaps over ``session_gap_minutes``, adds the applied feedback of a
request to its session, and compares every arm with the control arm. Each metric is a ratio of
per-unit sums, R = sum(Y) / sum(X), with the delta-method variance ``var(Y - R X) / (n mean(X)^2)``
over n units: CTR is clicks / impressions; conversions and revenue per session have X = 1 per
session (a plain mean). Differences are z-tests of independent arms; the relative lift
m_t / m_c - 1 has the delta-method variance ``v_t / m_c^2 + m_t^2 v_c / m_c^4``. Also: a
sample-ratio-mismatch chi-square test of users per arm against the logged ``arm_share``, the
minimum detectable effect at the current sample, and the units per arm that detect ``target_lift``.

The service randomises users, not sessions: with many sessions per user, sessions of one user are
correlated and session-level intervals are too narrow. So by default (``unit = "user"``) each
user's sessions are summed into one unit first (conversions per session is then a ratio too);
``unit = "session"`` gives the plain session-level delta method.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from offer_ranker.config import ABConfig, ConfigError
from offer_ranker.errors import OfferRankerError
from offer_ranker.io import staged_outputs
from offer_ranker.production.logs import read_records
from offer_ranker.report import ci, num, render
from offer_ranker.serve.prediction_log import FeedbackRecord, RankRecord
from offer_ranker.stats.abtest import compare, entry, ratio, srm

#: metric -> (numerator, denominator) of the per-unit sums
METRICS = {"ctr": ("clicks", "impressions"), "conversions_per_session": ("conversions", "sessions"),
           "revenue_per_session": ("revenue", "sessions")}
COUNTS = ("requests", "impressions", "clicks", "conversions", "revenue")
MAX_LISTED = 200  # malformed lines listed one by one in the report; all of them are counted


@dataclass
class Logs:
    """Parsed prediction-log records, one tuple per valid line.

    ``ranks``: ``(request_id, user, ts, arm, arm_share, impressions)``, ``ts`` in seconds since the
    epoch (UTC), ``arm_share`` NaN when not logged; ``feedback``: ``(request_id, event, value,
    applied)``, ``value`` 0 when null; ``malformed``: ``(file, line, reason)``.
    """

    ranks: list[tuple[str, str, float, str, float, int]] = field(default_factory=list)
    feedback: list[tuple[str, str, float, bool]] = field(default_factory=list)
    malformed: list[tuple[str, int, str]] = field(default_factory=list)
    files: dict[str, int] = field(default_factory=dict)  # file -> lines read
    other_kinds: Counter = field(default_factory=Counter)


def read_logs(folder: Path) -> Logs:
    """Every ``*.jsonl`` file under ``folder`` (recursively, in name order), parsed as
    :func:`offer_ranker.production.logs.read_records` does: malformed lines are skipped and kept with
    file and line number, records of other kinds are counted, blank lines are ignored; a file that
    cannot be read is an :class:`OfferRankerError`."""
    logs = Logs()

    def rank(r: RankRecord) -> None:
        ts = r.ts.replace(tzinfo=timezone.utc) if r.ts.tzinfo is None else r.ts  # naive = UTC
        logs.ranks.append((r.request_id, r.user, ts.timestamp(), r.arm,
                           math.nan if r.arm_share is None else r.arm_share, len(r.offers)))

    def feedback(r: FeedbackRecord) -> None:
        logs.feedback.append((r.request_id, r.event, r.value or 0.0, r.applied))

    scan = read_records(folder, rank=rank, feedback=feedback)
    logs.files, logs.other_kinds = scan.files, scan.other_kinds
    logs.malformed = [(m.file, m.line, m.reason) for m in scan.malformed]
    return logs


def analyse(logs: Logs, cfg: ABConfig, *, source: str = "") -> dict[str, Any]:
    """The A/B report of parsed logs, a JSON-ready dict (``source`` names the logs in it).

    ``arms[arm]``: users, sessions, the totals of ``COUNTS``, the logged share and ``metrics[m]``
    = ``{value, se, ci}``; ``comparisons[arm][m]`` for every arm but the control: ``difference``
    (with ``p_value``) and ``relative`` as ``{value, se, ci}``, ``significant``, ``mde`` (absolute
    and relative) and ``required_per_arm`` (units); ``srm``; ``records`` and ``malformed`` counts.
    """
    if not logs.ranks:
        raise OfferRankerError(f"no valid rank records in the prediction logs{' under ' + source if source else ''} "
                               f"({len(logs.malformed):,} malformed lines)")
    s = _sessions(logs, cfg.session_gap_minutes * 60.0)
    names = s["arms"]
    control = cfg.control or ("control" if "control" in names else names[0])
    if control not in names:
        raise ConfigError(f"ab.control: no arm {control!r} in the logs; arms: {', '.join(names)}")
    z, z_power = stats.norm.ppf(1 - cfg.alpha / 2), stats.norm.ppf(cfg.power)
    units = _units(s, cfg.unit)
    arms, estimates = {}, {}
    for a, arm in enumerate(names):
        in_arm, unit_in_arm, shares = s["arm"] == a, units["arm"] == a, s["shares"][a]
        estimates[arm] = {m: (*ratio(units[y][unit_in_arm], units[x][unit_in_arm]), int(unit_in_arm.sum()))
                          for m, (y, x) in METRICS.items()}
        arms[arm] = {"users": int(np.unique(s["user"][in_arm]).size), "sessions": int(in_arm.sum()),
                     **{k: float(s[k][in_arm].sum()) for k in COUNTS},
                     # several shares: changed during the test (then no SRM test)
                     "arm_share": shares[0] if len(shares) == 1 else (shares or None),
                     "metrics": {m: entry(v, var, z) for m, (v, var, _) in estimates[arm].items()}}
    ts = [r[2] for r in logs.ranks]
    return {
        "logs": source, "files": logs.files, "config": cfg.model_dump(), "control": control, "unit": cfg.unit,
        "period": {"from": _iso(min(ts)), "to": _iso(max(ts))},
        "records": {"rank": len(logs.ranks), "feedback": len(logs.feedback), **s["counts"],
                    "other_kinds": dict(logs.other_kinds)},
        "malformed": {"count": len(logs.malformed),
                      "lines": [{"file": f, "line": n, "reason": r} for f, n, r in logs.malformed[:MAX_LISTED]]},
        "arms": arms,
        "comparisons": {arm: {m: compare(estimates[arm][m], estimates[control][m], z, z_power, alpha=cfg.alpha,
                                         target_lift=cfg.target_lift) for m in METRICS}
                        for arm in names if arm != control},
        "srm": srm(arms, cfg.srm_alpha),
    }


def ab_report(logs_dir: Path, out: Path, cfg: ABConfig) -> dict[str, Any]:
    """Read the logs, analyse them, write ``ab_report.html`` and ``ab_report.json`` to ``out``."""
    report = analyse(read_logs(logs_dir), cfg, source=str(logs_dir))
    with staged_outputs(out) as stage:
        stage.path("ab_report.html").write_text(render_html(report))
        stage.write_json("ab_report.json", report)  # last: it marks a complete run
    return report


def _sessions(logs: Logs, gap_seconds: float) -> dict[str, Any]:
    """Per-session arrays of shape (n_sessions,): ``arm`` and ``user`` codes and the ``COUNTS``; plus
    the arm names (sorted), each arm's distinct logged shares, and bookkeeping counts."""
    requests, users, times, arms, shares, impressions = zip(*logs.ranks)
    first: dict[str, int] = {}
    # a request logged twice (copied files, a replayed log) counts once
    keep = np.flatnonzero([first.setdefault(r, i) == i for i, r in enumerate(requests)])
    names = sorted(set(arms))
    index = {a: i for i, a in enumerate(names)}
    arm = np.array([index[a] for a in arms])[keep]
    codes: dict[str, int] = {}
    user = np.array([codes.setdefault(u, len(codes)) for u in users])[keep]
    ts, share = np.asarray(times, dtype=float)[keep], np.asarray(shares, dtype=float)[keep]
    order = np.lexsort((ts, user, arm))
    # a user seen in two arms (a new salt or new shares) gets separate sessions in each
    new = np.ones(keep.size, dtype=bool)
    new[1:] = (np.diff(arm[order]) != 0) | (np.diff(user[order]) != 0) | (np.diff(ts[order]) > gap_seconds)
    session = np.full(len(requests), -1, dtype=np.int64)  # by rank record; -1 for a dropped duplicate
    session[keep[order]] = np.cumsum(new) - 1
    n = int(new.sum())
    fb = list(zip(*logs.feedback)) or [(), (), (), ()]
    fb_row = np.array([first.get(r, -1) for r in fb[0]], dtype=np.int64)
    fb_session = np.where(fb_row >= 0, session[fb_row], -1)  # -1: its request is in no log
    event, value, applied = np.asarray(fb[1], dtype=str), np.asarray(fb[2], float), np.asarray(fb[3], bool)
    counted = applied & (fb_session >= 0)  # a retried feedback is logged again with applied=false

    def per_session(mask: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(fb_session[mask], weights=None if weights is None else weights[mask],
                           minlength=n).astype(float)

    arms_of_user = Counter(u for u, _ in set(zip(user.tolist(), arm.tolist())))
    return {
        "arms": names, "arm": arm[order][new], "user": user[order][new],
        "shares": [sorted(set(share[(arm == a) & ~np.isnan(share)].tolist())) for a in range(len(names))],
        "requests": np.bincount(session[keep], minlength=n).astype(float),
        "impressions": np.bincount(session[keep], weights=np.asarray(impressions, float)[keep], minlength=n),
        "clicks": per_session(counted & (event == "click")),
        "conversions": per_session(counted & (event == "conversion")),
        "revenue": per_session(counted & (event == "conversion"), value),
        "counts": {"duplicate_requests": int(len(requests) - keep.size), "feedback_not_applied": int((~applied).sum()),
                   "feedback_without_request": int((applied & (fb_session < 0)).sum()),
                   "users_in_several_arms": sum(k > 1 for k in arms_of_user.values())},
    }


def _units(s: dict[str, Any], unit: str) -> dict[str, np.ndarray]:
    """Per-unit sums of shape (n_units,): the sessions as they are, or each (arm, user)'s summed."""
    keys = ("clicks", "impressions", "conversions", "revenue")
    if unit == "session":
        return {"arm": s["arm"], "sessions": np.ones(s["arm"].size), **{k: s[k] for k in keys}}
    pairs, unit_of = np.unique(np.stack([s["arm"], s["user"]]), axis=1, return_inverse=True)
    m, unit_of = pairs.shape[1], unit_of.ravel()
    return {"arm": pairs[0], "sessions": np.bincount(unit_of, minlength=m).astype(float),
            **{k: np.bincount(unit_of, weights=s[k], minlength=m) for k in keys}}


def summary_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Metric x arm rows for the terminal: value [CI], difference and relative lift vs control, p."""
    rows = [[metric, *_row(report, metric, arm)[:5]] for metric in METRICS for arm in report["arms"]]
    return ["metric", "arm", "value [CI]", "difference [CI]", "relative [CI]", "p"], rows


def srm_line(report: dict[str, Any]) -> str:
    """The sample-ratio verdict in one line."""
    srm = report["srm"]
    if srm["p_value"] is None:
        return "sample ratio: " + srm["note"]
    return (f"sample ratio: {'MISMATCH' if srm['mismatch'] else 'ok'} (chi-square p = {srm['p_value']:.3g}, flagged "
            f"below {srm['alpha']:g}); users " + ", ".join(f"{a} {n:,}" for a, n in srm["users"].items()))


def verdict(report: dict[str, Any]) -> dict[str, Any]:
    """What the test says, in a few sentences: the sample-ratio check first (a mismatch voids the
    lifts), then each arm's significant lifts against the control."""
    if report["srm"]["mismatch"]:
        return {"outcome": "bad", "lines": ["Do not trust the lifts: the users per arm do not match the configured "
                                            "shares (" + srm_line(report) + ")."]}
    lines, outcome = [], "mixed"
    for arm, metrics in report["comparisons"].items():
        found = [f"{m} {num(c['relative']['value'] * 100 if c['relative']['value'] is not None else None, 1)}% "
                 f"(p = {num(c['difference']['p_value'], 2, significant=True)})"
                 for m, c in metrics.items() if c["significant"]]
        if found:
            lines.append(f"{arm} differs from {report['control']} significantly in " + ", ".join(found) + ".")
            ups = [c["difference"]["value"] > 0 for c in metrics.values() if c["significant"]]
            outcome = "good" if all(ups) else "bad" if not any(ups) else "mixed"
        else:
            needed = [c["required_per_arm"] for c in metrics.values() if c["required_per_arm"]]
            lines.append(f"{arm} cannot be told apart from {report['control']} on any metric yet"
                         + (f"; about {max(needed):,} {report['unit']}s per arm detect a "
                            f"{report['config']['target_lift']:+.0%} lift on every metric." if needed else "."))
    return {"outcome": outcome, "lines": lines or ["Only one arm: nothing to compare."]}


def render_html(report: dict[str, Any]) -> str:
    """A self-contained page: the verdict, arms, a table per metric with CIs, SRM, MDE and sample sizes."""
    cfg, arms = report["config"], report["arms"]
    level = f"{1 - cfg['alpha']:.0%}"
    header = ["arm", f"value [{level} CI]", "difference", "relative lift", "p", "significant", "MDE", "MDE relative",
              f"{report['unit']}s per arm for {cfg['target_lift']:+.0%}"]
    return render("ab.html.j2", report=report, verdict=verdict(report), level=level, srm=srm_line(report),
                  arm_rows=[[n, a["arm_share"], a["users"], a["sessions"], *(f"{a[k]:,.6g}" for k in COUNTS)]
                            for n, a in arms.items()],
                  counts=COUNTS, metric_tables=[(m, header, [_row(report, m, arm) for arm in arms]) for m in METRICS],
                  records=[[k, str(v)] for k, v in report["records"].items()],
                  malformed=[list(m.values()) for m in report["malformed"]["lines"]])


def _row(report: dict[str, Any], metric: str, arm: str) -> list[str]:
    """arm, value [CI], difference [CI], relative [CI], p, significant, MDE, relative MDE, units needed."""
    c = report["comparisons"].get(arm, {}).get(metric)
    value = _short_ci(report["arms"][arm]["metrics"][metric])
    if c is None:
        return [arm if arm == "control" else f"{arm} (control)", value] + [""] * 7
    return [arm, value, _short_ci(c["difference"]), _short_ci(c["relative"], as_percent=True),
            _short_ci({"value": c["difference"]["p_value"]}), "yes" if c["significant"] else "no",
            _short_ci({"value": c["mde"]["absolute"]}), _short_ci({"value": c["mde"]["relative"]}, as_percent=True),
            "-" if c["required_per_arm"] is None else f"{c['required_per_arm']:,}"]


def _short_ci(entry: dict[str, Any], *, as_percent: bool = False) -> str:
    return ci(entry, 4, significant=True, as_percent=as_percent)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).replace(tzinfo=None).isoformat()
