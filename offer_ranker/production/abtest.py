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

import html
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, ValidationError
from scipy import stats

from offer_ranker.config import ABConfig, ConfigError
from offer_ranker.errors import OfferRankerError
from offer_ranker.io import staged_outputs
from offer_ranker.production.logfiles import read_lines

#: metric -> (numerator, denominator) of the per-unit sums
METRICS = {"ctr": ("clicks", "impressions"), "conversions_per_session": ("conversions", "sessions"),
           "revenue_per_session": ("revenue", "sessions")}
COUNTS = ("requests", "impressions", "clicks", "conversions", "revenue")
MAX_LISTED = 200  # malformed lines listed one by one in the report; all of them are counted
DEFAULT_ARM = "default"  # what the service logs without an experiment (and what older logs mean)


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
    """Every ``*.jsonl`` file under ``folder`` (recursively, in name order), parsed.

    Malformed lines are skipped and kept with file and line number, records of other kinds are
    counted, blank lines are ignored; a file that cannot be read is an :class:`OfferRankerError`.
    """
    logs = Logs()
    logs.files, logs.malformed = read_lines(folder, lambda line: _parse(line, logs))
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
        estimates[arm] = {m: (*_ratio(units[y][unit_in_arm], units[x][unit_in_arm]), int(unit_in_arm.sum()))
                          for m, (y, x) in METRICS.items()}
        arms[arm] = {"users": int(np.unique(s["user"][in_arm]).size), "sessions": int(in_arm.sum()),
                     **{k: float(s[k][in_arm].sum()) for k in COUNTS},
                     # several shares: changed during the test (then no SRM test)
                     "arm_share": shares[0] if len(shares) == 1 else (shares or None),
                     "metrics": {m: _entry(v, var, z) for m, (v, var, _) in estimates[arm].items()}}
    ts = [r[2] for r in logs.ranks]
    return {
        "logs": source, "files": logs.files, "config": cfg.model_dump(), "control": control, "unit": cfg.unit,
        "period": {"from": _iso(min(ts)), "to": _iso(max(ts))},
        "records": {"rank": len(logs.ranks), "feedback": len(logs.feedback), **s["counts"],
                    "other_kinds": dict(logs.other_kinds)},
        "malformed": {"count": len(logs.malformed),
                      "lines": [{"file": f, "line": n, "reason": r} for f, n, r in logs.malformed[:MAX_LISTED]]},
        "arms": arms,
        "comparisons": {arm: {m: _compare(estimates[arm][m], estimates[control][m], z, z_power, cfg) for m in METRICS}
                        for arm in names if arm != control},
        "srm": _srm(arms, cfg.srm_alpha),
    }


def ab_report(logs_dir: Path, out: Path, cfg: ABConfig) -> dict[str, Any]:
    """Read the logs, analyse them, write ``ab_report.html`` and ``ab_report.json`` to ``out``."""
    report = analyse(read_logs(logs_dir), cfg, source=str(logs_dir))
    with staged_outputs(out) as stage:
        stage.path("ab_report.html").write_text(render_html(report))
        stage.write_json("ab_report.json", report)  # last: it marks a complete run
    return report


class _Rank(BaseModel):
    """The fields of a rank record the report uses (the others are ignored)."""

    request_id: str = Field(min_length=1)
    user: str = Field(min_length=1)
    ts: datetime
    offers: list[Any]
    arm: str = Field(DEFAULT_ARM, min_length=1)
    arm_share: float | None = Field(None, gt=0, le=1, strict=True)


class _Feedback(BaseModel):
    request_id: str = Field(min_length=1)
    event: Literal["click", "conversion"]
    applied: bool = Field(strict=True)
    value: float | None = Field(None, strict=True, allow_inf_nan=False)


def _parse(line: bytes, logs: Logs) -> str | None:
    """Append the record on ``line`` to ``logs``; return why it is malformed, or None."""
    try:
        obj = json.loads(line)
    except ValueError:  # includes bytes that are not UTF-8
        return "not valid JSON" + ("" if line.endswith(b"\n") else " (a truncated last line?)")
    kind = obj.get("kind") if isinstance(obj, dict) else None
    if kind not in ("rank", "feedback"):
        if isinstance(kind, str):
            logs.other_kinds[kind] += 1  # a record kind added later is not an error
            return None
        return f"not a rank or feedback record, got {_short(obj)}"
    try:
        record = (_Rank if kind == "rank" else _Feedback).model_validate(obj)
    except ValidationError as exc:
        err = exc.errors()[0]
        got = "missing" if err["type"] == "missing" else f"got {_short(err['input'])}"
        return f"{kind}: {'.'.join(map(str, err['loc']))}: {err['msg']}, {got}"
    if isinstance(record, _Feedback):
        logs.feedback.append((record.request_id, record.event, record.value or 0.0, record.applied))
    else:
        ts = record.ts.replace(tzinfo=timezone.utc) if record.ts.tzinfo is None else record.ts  # naive = UTC
        logs.ranks.append((record.request_id, record.user, ts.timestamp(), record.arm,
                           math.nan if record.arm_share is None else record.arm_share, len(record.offers)))
    return None


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


def _ratio(y: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """sum(y) / sum(x) over n units and its delta-method variance (NaN when undefined)."""
    n, total = y.size, x.sum()
    if n == 0 or total <= 0:
        return math.nan, math.nan
    r = y.sum() / total
    return float(r), float(np.var(y - r * x, ddof=1) / (n * (total / n) ** 2)) if n > 1 else math.nan


def _compare(t: tuple[float, float, int], c: tuple[float, float, int], z: float, z_power: float,
             cfg: ABConfig) -> dict[str, Any]:
    """Arm ``t`` against the control ``c``, each ``(value, variance of the value, units)``."""
    (mt, vt, nt), (mc, vc, nc) = t, c
    diff, var = mt - mc, vt + vc
    se = math.sqrt(var) if var >= 0 else math.nan
    p = float(2 * stats.norm.sf(abs(diff) / se)) if se > 0 else math.nan
    mde = (z + z_power) * se
    # two equal arms with the per-unit variances seen (n v), to detect a difference of m_c * target_lift
    needed = _div((z + z_power) ** 2 * (nc * vc + nt * vt), (cfg.target_lift * mc) ** 2)
    return {"difference": _entry(diff, var, z) | {"p_value": _num(p)},
            "relative": _entry(_div(mt, mc) - 1, _div(vt, mc**2) + _div(mt**2 * vc, mc**4), z),
            "significant": bool(p < cfg.alpha), "mde": {"absolute": _num(mde), "relative": _num(_div(mde, mc))},
            "required_per_arm": math.ceil(needed) if math.isfinite(needed) else None}


def _srm(arms: dict[str, Any], srm_alpha: float) -> dict[str, Any]:
    """Chi-square goodness of fit of users per arm against the logged shares."""
    users, shares = {a: v["users"] for a, v in arms.items()}, {a: v["arm_share"] for a, v in arms.items()}
    out = {"users": users, "shares": shares, "alpha": srm_alpha, "chi2": None, "p_value": None, "mismatch": False}
    if len(arms) < 2 or not all(isinstance(s, float) for s in shares.values()):
        return out | {"note": "not tested: needs two or more arms, each with one logged arm_share"}
    total, share_sum = sum(users.values()), sum(shares.values())
    expected = {a: total * shares[a] / share_sum for a in arms}  # an arm without traffic is not in the logs
    chi2, p = stats.chisquare(list(users.values()), list(expected.values()))
    out |= {"expected": expected, "chi2": float(chi2), "p_value": float(p), "mismatch": bool(p < srm_alpha)}
    if abs(share_sum - 1) > 1e-6:
        out["note"] = f"the logged shares of the arms seen sum to {share_sum:g}: an arm may have had no users"
    return out


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


def render_html(report: dict[str, Any]) -> str:
    """A self-contained page: arms, a table per metric with CIs, SRM verdict, MDE and sample sizes."""
    from offer_ranker.report import page, table

    cfg, arms, bad = report["config"], report["arms"], report["malformed"]
    level = f"{1 - cfg['alpha']:.0%}"
    header = ["arm", f"value [{level} CI]", "difference", "relative lift", "p", "significant", "MDE", "MDE relative",
              f"{report['unit']}s per arm for {cfg['target_lift']:+.0%}"]
    sections = [
        f"<p class=note>Logs {html.escape(report['logs'])} ({len(report['files'])} files) from "
        f"{report['period']['from']} to {report['period']['to']}; sessions end after {cfg['session_gap_minutes']:g} "
        f"idle minutes; variances by {report['unit']}; {level} CIs; control arm <b>{html.escape(report['control'])}"
        "</b>. No correction for several arms or metrics.</p>",
        "<h2>Arms</h2>" + table(["arm", "logged share", "users", "sessions", *COUNTS], [
            [n, a["arm_share"], a["users"], a["sessions"], *(f"{a[k]:,.6g}" for k in COUNTS)]
            for n, a in arms.items()]),
        f"<h2>Sample ratio</h2><p><span class={'miss' if report['srm']['mismatch'] else 'ok'}>"
        f"{html.escape(srm_line(report))}</span></p>",
        *(f"<h2>{m}</h2>" + table(header, [_row(report, m, arm) for arm in arms]) for m in METRICS),
        f"<p class=note>MDE: the smallest true difference detected with power {cfg['power']:g} at alpha "
        f"{cfg['alpha']:g} with the current samples.</p>",
        "<h2>Records</h2>" + table(["records", "count"], [[k, str(v)] for k, v in report["records"].items()]),
        f"<h2>Malformed lines: {bad['count']:,}</h2>"
        + (table(["file", "line", "reason"], [list(m.values()) for m in bad["lines"]]) if bad["lines"] else "")]
    return page("offer-ranker A/B report", sections)


def _row(report: dict[str, Any], metric: str, arm: str) -> list[str]:
    """arm, value [CI], difference [CI], relative [CI], p, significant, MDE, relative MDE, units needed."""
    c = report["comparisons"].get(arm, {}).get(metric)
    value = _fmt(report["arms"][arm]["metrics"][metric])
    if c is None:
        return [arm if arm == "control" else f"{arm} (control)", value] + [""] * 7
    return [arm, value, _fmt(c["difference"]), _fmt(c["relative"], percent=True),
            _fmt({"value": c["difference"]["p_value"]}), "yes" if c["significant"] else "no",
            _fmt({"value": c["mde"]["absolute"]}), _fmt({"value": c["mde"]["relative"]}, percent=True),
            "-" if c["required_per_arm"] is None else f"{c['required_per_arm']:,}"]


def _entry(value: float, var: float, z: float) -> dict[str, Any]:
    se = math.sqrt(var) if var >= 0 else math.nan  # NaN >= 0 is False
    return {"value": _num(value), "se": _num(se), "ci": [_num(value - z * se), _num(value + z * se)]}


def _fmt(entry: dict[str, Any], *, percent: bool = False) -> str:
    def one(v: float | None) -> str:
        return "-" if v is None else f"{v:+.1%}" if percent else f"{v:.4g}"

    ci = entry.get("ci")
    return one(entry.get("value")) + (f" [{one(ci[0])}, {one(ci[1])}]" if ci and None not in ci else "")


def _num(value: float) -> float | None:
    """JSON has no NaN or infinity: undefined values are null."""
    return float(value) if math.isfinite(value) else None


def _div(a: float, b: float) -> float:
    return a / b if b else math.nan


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).replace(tzinfo=None).isoformat()
