"""The A/B report: exact counts on a toy log, the delta method, A/A false-positive rate, power on a
planted lift, sample-ratio mismatch, malformed lines, and the CLI.

The repeated experiments build :class:`~offer_ranker.production.abtest.Logs` directly (the parsed form of
the JSON lines) so hundreds of them run in seconds; one of them also goes through files on disk
and must give the same report.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from offer_ranker.cli import main
from offer_ranker.config import ABConfig, ConfigError, load_config
from offer_ranker.errors import OfferRankerError
from offer_ranker.production.abtest import Logs, analyse, read_logs, summary_rows

Z95 = 1.959963984540054
T0 = datetime(2026, 1, 18, 10, 0, 0)
CFG = ABConfig(unit="session")  # the toy numbers below are per session


def rank(rid: str, user: str, minute: float, arm: str = "control", offers: int = 3, share: float = 0.5) -> dict:
    return {"kind": "rank", "ts": _at(minute), "request_id": rid, "user": user, "model_version": "offer_ranker:x",
            "arm": arm, "arm_share": share, "context": {"device": "ios"}, "candidates": 15,
            "offers": [f"o{i}" for i in range(offers)], "positions": list(range(1, offers + 1))}


def feedback(rid: str, event: str = "click", value: float | None = None, applied: bool = True) -> dict:
    return {"kind": "feedback", "ts": _at(0), "request_id": rid, "user": "u", "arm": "control", "offer": "o0",
            "position": 1, "event": event, "value": value, "applied": applied}


def _at(minute: float) -> str:
    return datetime.fromtimestamp(T0.replace(tzinfo=timezone.utc).timestamp() + minute * 60,
                                  timezone.utc).replace(tzinfo=None).isoformat()


def write(path: Path, lines: list[dict | str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


# --- known answers ---------------------------------------------------------------------------------

def toy_logs(folder: Path) -> Path:
    """Two service processes. control: u1 has sessions {r1, r2} (30 min apart: one session) and {r3}
    (31 min later: a new one), u2 has {r4}; treatment: u3 has {r5}, u4 has {r6}."""
    write(folder / "proc-a.jsonl", [
        rank("r1", "u1", 0, offers=3), rank("r2", "u1", 30, offers=2), rank("r3", "u1", 61, offers=1),
        feedback("r1"), feedback("r1", applied=False),  # the retry of the same click
        feedback("r2"), feedback("r2", "conversion", 10.0),
        rank("r5", "u3", 0, "treatment", offers=3), feedback("r5"), feedback("r5", "conversion", None),
    ])
    write(folder / "sub" / "proc-b.jsonl", [
        rank("r4", "u2", 5, offers=2), feedback("r4", "conversion", 4.0),
        rank("r6", "u4", 5, "treatment", offers=3), feedback("r6"), feedback("r6"),
        rank("r6", "u4", 5, "treatment", offers=3),  # the same request logged twice counts once
        feedback("r-unknown"),  # its request is in no log
    ])
    return folder


def test_toy_log_counts_and_estimates(tmp_path: Path) -> None:
    report = analyse(read_logs(toy_logs(tmp_path)), CFG)
    c, t = report["arms"]["control"], report["arms"]["treatment"]
    # control sessions: (impressions, clicks, conversions, revenue) = (5, 2, 1, 10), (1, 0, 0, 0), (2, 0, 1, 4)
    assert (c["sessions"], c["users"], c["requests"], c["impressions"]) == (3, 2, 4, 8)
    assert (c["clicks"], c["conversions"], c["revenue"]) == (2, 2, 14.0)
    assert (t["sessions"], t["users"], t["impressions"]) == (2, 2, 6)
    assert (t["clicks"], t["conversions"], t["revenue"]) == (3, 1, 0)
    assert report["records"] | {"other_kinds": None} == {
        "rank": 7, "feedback": 10, "duplicate_requests": 1, "feedback_not_applied": 1,
        "feedback_without_request": 1, "users_in_several_arms": 0, "other_kinds": None}
    assert report["control"] == "control" and list(report["comparisons"]) == ["treatment"]
    assert report["period"] == {"from": "2026-01-18T10:00:00", "to": "2026-01-18T11:01:00"}

    m = c["metrics"]
    assert m["ctr"]["value"] == pytest.approx(2 / 8)
    # conversions per session 1, 0, 1: mean 2/3, sd 0.57735, se = sd / sqrt(3) = 1/3
    assert m["conversions_per_session"]["value"] == pytest.approx(2 / 3)
    assert m["conversions_per_session"]["se"] == pytest.approx(1 / 3)
    assert m["conversions_per_session"]["ci"] == pytest.approx([2 / 3 - Z95 / 3, 2 / 3 + Z95 / 3])
    assert m["revenue_per_session"]["value"] == pytest.approx(14 / 3)
    # treatment revenue 0, 0 vs control's 14/3: difference -14/3, se = control's se
    rev = report["comparisons"]["treatment"]["revenue_per_session"]
    assert rev["difference"]["value"] == pytest.approx(-14 / 3)
    assert rev["difference"]["se"] == pytest.approx(np.std([10, 0, 4], ddof=1) / math.sqrt(3))
    assert rev["relative"]["value"] == pytest.approx(-1.0)


def test_a_longer_session_gap_merges_sessions(tmp_path: Path) -> None:
    report = analyse(read_logs(toy_logs(tmp_path)), ABConfig(session_gap_minutes=31, unit="session"))
    assert report["arms"]["control"]["sessions"] == 2  # r3 now joins r1 and r2


def test_by_user_a_users_sessions_are_one_unit(tmp_path: Path) -> None:
    report = analyse(read_logs(toy_logs(tmp_path)), ABConfig(unit="user"))
    conv = report["arms"]["control"]["metrics"]["conversions_per_session"]
    # u1: 1 conversion in 2 sessions, u2: 1 in 1. R = 2/3; Y - R X = (-1/3, 1/3): var 2/9 / (2 * 1.5^2)
    assert conv["value"] == pytest.approx(2 / 3)
    assert conv["se"] == pytest.approx(math.sqrt(2 / 9 / 4.5))


def test_default_control_other_arms_and_missing_shares(tmp_path: Path) -> None:
    write(tmp_path / "p.jsonl", [
        rank("r1", "u1", 0, "green"), rank("r2", "u2", 0, "blue"), rank("r3", "u3", 0, "red"),
        rank("r4", "u1", 60, "blue"),  # u1 again, in another arm: its own session there
        {k: v for k, v in rank("r5", "u5", 0, "red").items() if k != "arm_share"},
    ])
    report = analyse(read_logs(tmp_path), CFG)
    assert report["control"] == "blue"  # no arm named control: the first in name order
    assert list(report["comparisons"]) == ["green", "red"]
    assert report["records"]["users_in_several_arms"] == 1
    assert [report["arms"][a]["sessions"] for a in ("blue", "green", "red")] == [2, 1, 2]
    assert report["arms"]["red"]["arm_share"] == 0.5
    # logs without arms are the service's single "default" arm
    write(tmp_path / "p.jsonl", [{k: v for k, v in rank("r1", "u1", 0).items() if k not in ("arm", "arm_share")}])
    single = analyse(read_logs(tmp_path), CFG)
    assert list(single["arms"]) == ["default"] and single["comparisons"] == {}
    assert single["srm"]["p_value"] is None and single["srm"]["note"].startswith("not tested")


def _one_request_sessions(impressions: np.ndarray, clicks: np.ndarray, arm: str, start: int) -> Logs:
    logs = Logs()
    for i, (x, y) in enumerate(zip(impressions, clicks), start):
        logs.ranks.append((f"r{i}", f"u{i}", 0.0, arm, 0.5, int(x)))
        logs.feedback += [(f"r{i}", "click", 0.0, True)] * int(y)
    return logs


def test_ctr_variance_is_the_delta_method_formula() -> None:
    rng = np.random.default_rng(1)
    x = {arm: rng.integers(1, 4, 60) for arm in ("control", "treatment")}
    y = {arm: rng.binomial(x[arm], 0.3 if arm == "control" else 0.4) for arm in x}
    a, b = (_one_request_sessions(x[arm], y[arm], arm, 100 * k) for k, arm in enumerate(x))
    report = analyse(Logs(ranks=a.ranks + b.ranks, feedback=a.feedback + b.feedback), CFG)

    def direct(arm: str) -> tuple[float, float]:
        xs, ys, n = x[arm].astype(float), y[arm].astype(float), x[arm].size
        r, cov = ys.sum() / xs.sum(), np.cov(ys, xs)  # sample (co)variances with n - 1
        return r, (cov[0, 0] - 2 * r * cov[0, 1] + r**2 * cov[1, 1]) / (n * xs.mean() ** 2)

    (rc, vc), (rt, vt) = direct("control"), direct("treatment")
    assert report["arms"]["control"]["metrics"]["ctr"]["value"] == pytest.approx(rc)
    assert report["arms"]["control"]["metrics"]["ctr"]["se"] == pytest.approx(math.sqrt(vc))
    ctr = report["comparisons"]["treatment"]["ctr"]
    assert ctr["difference"]["se"] == pytest.approx(math.sqrt(vc + vt))
    assert ctr["difference"]["p_value"] == pytest.approx(math.erfc(abs(rt - rc) / math.sqrt(2 * (vc + vt))))
    assert ctr["relative"]["value"] == pytest.approx(rt / rc - 1)
    # the first-order variance of rt / rc with independent arms
    assert ctr["relative"]["se"] == pytest.approx(math.sqrt(vt / rc**2 + rt**2 * vc / rc**4))
    # MDE and sample size for the default alpha 0.05, power 0.8 (z = 1.95996 + 0.84162)
    assert ctr["mde"]["absolute"] == pytest.approx(2.8015852 * math.sqrt(vc + vt))
    assert ctr["required_per_arm"] == math.ceil(2.8015852**2 * 60 * (vc + vt) / (0.05 * rc) ** 2)


# --- repeated synthetic experiments ----------------------------------------------------------------

def experiment(rng: np.random.Generator, *, users: int, salt: str, lift: float = 1.0, share: float = 0.5,
               logged_share: float | None = None, extra_sessions: float = 0.5, user_spread: float | None = None,
               ctr: float = 0.1) -> Logs:
    """Users split by a salted hash (as ``offer_ranker.serve.router.assign``: sha256 of ``salt:user``,
    arms in name order over [0, 1)); each has 1 + Poisson(extra_sessions) sessions 3 h apart of
    1 + Poisson(0.3) requests 5 min apart showing 1-3 offers; each offer is clicked with the arm's
    CTR (times ``lift`` for treatment; per user from a Beta with concentration ``user_spread``), a
    click converts with probability 0.2 for an exponential value of mean 20. A tenth of the clicks
    is retried (logged again, not applied)."""
    ids = [f"{salt}{i:012x}" for i in range(users)]
    point = np.array([int.from_bytes(hashlib.sha256(f"{salt}:{u}".encode()).digest()[:8], "big") / 2**64
                      for u in ids])
    treated = point >= share
    sessions = 1 + rng.poisson(extra_sessions, users)
    session_user = np.repeat(np.arange(users), sessions)
    session_no = np.arange(session_user.size) - np.repeat(np.cumsum(sessions) - sessions, sessions)
    requests = 1 + rng.poisson(0.3, session_user.size)
    req_session = np.repeat(np.arange(session_user.size), requests)
    req_no = np.arange(req_session.size) - np.repeat(np.cumsum(requests) - requests, requests)
    user = session_user[req_session]
    ts = T0.timestamp() + session_no[req_session] * 3 * 3600.0 + req_no * 300.0 + user % 60
    shown = rng.integers(1, 4, req_session.size)
    p_user = rng.beta(user_spread * ctr, user_spread * (1 - ctr), users) if user_spread else np.full(users, ctr)
    clicks = rng.binomial(shown, p_user[user] * np.where(treated[user], lift, 1.0))
    conversions = rng.binomial(clicks, 0.2)
    rid = [f"{salt}-{i}" for i in range(req_session.size)]
    arms = np.where(treated, "treatment", "control")[user]
    shares = np.where(treated, 1 - share, share)[user] if logged_share is None else \
        np.where(treated[user], 1 - logged_share, logged_share)
    logs = Logs(ranks=list(zip(rid, np.asarray(ids)[user].tolist(), ts.tolist(), arms.tolist(), shares.tolist(),
                               shown.tolist())))
    click_rid = np.repeat(rid, clicks).tolist()
    retried = rng.random(len(click_rid)) < 0.1
    conv_rid = np.repeat(rid, conversions).tolist()
    logs.feedback = ([(r, "click", 0.0, True) for r in click_rid]
                     + [(r, "click", 0.0, False) for r, again in zip(click_rid, retried) if again]
                     + [(r, "conversion", float(v), True)
                        for r, v in zip(conv_rid, rng.exponential(20, len(conv_rid)))])
    return logs


def repeat(n: int, seed: int, cfg: ABConfig = CFG, **kwargs: Any) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [analyse(experiment(rng, salt=f"s{seed}x{i}", **kwargs), cfg) for i in range(n)]


def _rejects(reports: list[dict], metric: str) -> np.ndarray:
    return np.array([r["comparisons"]["treatment"][metric]["significant"] for r in reports])


def test_aa_false_positive_rate_is_alpha() -> None:
    reports = repeat(300, seed=11, users=500)
    for metric in ("ctr", "conversions_per_session", "revenue_per_session"):
        # 300 tests at alpha 0.05: 15 expected, binomial sd 3.8
        assert 0.02 <= _rejects(reports, metric).mean() <= 0.09, metric
    # the relative lift's CI covers 0 as often as the difference's
    rel = np.array([r["comparisons"]["treatment"]["ctr"]["relative"]["ci"] for r in reports])
    assert 0.02 <= np.mean((rel[:, 0] > 0) | (rel[:, 1] < 0)) <= 0.09
    # the delta-method standard error matches the spread of the estimates across experiments
    ctr = np.array([r["arms"]["control"]["metrics"]["ctr"]["value"] for r in reports])
    se = np.array([r["arms"]["control"]["metrics"]["ctr"]["se"] for r in reports])
    assert np.std(ctr, ddof=1) == pytest.approx(np.mean(se), rel=0.12)
    # a fair split: the SRM p-values are uniform, so rarely flagged
    assert 0.02 <= np.mean([r["srm"]["p_value"] < 0.05 for r in reports]) <= 0.09
    assert sum(r["srm"]["mismatch"] for r in reports) <= 2  # 0.3 expected at srm_alpha 0.001


def test_session_level_intervals_are_too_narrow_when_users_differ() -> None:
    """Users with their own click rates and many sessions: sessions of a user are correlated, so by
    session the A/A test rejects far more than alpha; by user (the randomisation unit) it does not."""
    rng = np.random.default_rng(5)
    logs = [experiment(rng, salt=f"u{i}", users=300, extra_sessions=4, user_spread=5) for i in range(200)]
    by_session = _rejects([analyse(x, CFG) for x in logs], "ctr").mean()
    by_user = _rejects([analyse(x, ABConfig(unit="user")) for x in logs], "ctr").mean()
    assert by_session > 0.12
    assert 0.02 <= by_user <= 0.09


def test_planted_lift_is_detected() -> None:
    reports = repeat(80, seed=12, users=1500, lift=1.3)
    detected = _rejects(reports, "ctr") & np.array([r["comparisons"]["treatment"]["ctr"]["difference"]["value"] > 0
                                                    for r in reports])
    assert detected.mean() >= 0.8
    lifts = [r["comparisons"]["treatment"]["ctr"]["relative"]["value"] for r in reports]
    assert np.mean(lifts) == pytest.approx(0.3, abs=0.03)
    # at this sample the detectable effect is below the planted one
    assert np.median([r["comparisons"]["treatment"]["ctr"]["mde"]["relative"] for r in reports]) < 0.3


def test_required_sample_size_gives_the_configured_power() -> None:
    """A large running experiment with a +30% lift says how many sessions per arm detect +30%; at
    that size the lift is detected about 80% of the time (the configured power)."""
    cfg = ABConfig(target_lift=0.3, unit="session")
    pilot = repeat(1, seed=13, cfg=cfg, users=4000, lift=1.3)[0]["comparisons"]["treatment"]["ctr"]["required_per_arm"]
    assert 300 < pilot < 1500  # ~600 sessions per arm for CTR 0.10 -> 0.13
    users = round(2 * pilot / 1.5)  # 1.5 sessions per user, two equal arms
    power = _rejects(repeat(120, seed=14, cfg=cfg, users=users, lift=1.3), "ctr").mean()
    assert 0.7 <= power <= 0.9  # configured power 0.8; binomial sd 0.037


def test_sample_ratio_mismatch_is_flagged() -> None:
    rng = np.random.default_rng(15)
    planted = analyse(experiment(rng, salt="a", users=2000, share=0.6, logged_share=0.5), CFG)["srm"]
    fair = analyse(experiment(rng, salt="b", users=2000, share=0.5), CFG)["srm"]
    uneven = analyse(experiment(rng, salt="c", users=2000, share=0.2), CFG)["srm"]
    assert planted["mismatch"] and planted["p_value"] < 1e-10
    assert planted["expected"] == {"control": 1000.0, "treatment": 1000.0}
    assert not fair["mismatch"] and fair["p_value"] > 0.01
    # 20/80 logged as 20/80 is no mismatch
    assert not uneven["mismatch"] and uneven["shares"] == {"control": 0.2, "treatment": 0.8}


def test_files_and_parsed_records_give_the_same_report(tmp_path: Path) -> None:
    logs = experiment(np.random.default_rng(16), salt="f", users=300)
    shown = {rid: k for rid, *_, k in logs.ranks}
    records = [rank(rid, user, (ts - T0.replace(tzinfo=timezone.utc).timestamp()) / 60, arm, k, share)
               for rid, user, ts, arm, share, k in logs.ranks]
    records += [feedback(rid, event, value if event == "conversion" else None, applied)
                for rid, event, value, applied in logs.feedback]
    half = len(records) // 2
    write(tmp_path / "a.jsonl", records[:half])  # feedback may sit in another process's file than its request
    write(tmp_path / "b.jsonl", records[half:])
    from_files = analyse(read_logs(tmp_path), CFG)
    assert sum(a["impressions"] for a in from_files["arms"].values()) == sum(shown.values())
    direct = analyse(logs, CFG)
    assert json.dumps(from_files["arms"]) == json.dumps(direct["arms"])
    assert json.dumps(from_files["comparisons"]) == json.dumps(direct["comparisons"])


# --- bad input -------------------------------------------------------------------------------------

def test_malformed_lines_are_counted_with_their_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path / "p.jsonl", [
        rank("r1", "u1", 0),
        "{not json",
        "",  # blank: ignored
        "[1, 2]",
        {"kind": "heartbeat"},  # a record kind added later: counted, not an error
        {"ts": _at(0)},
        rank("r2", "u2", 0) | {"ts": "yesterday"},
        rank("r3", "u3", 0) | {"arm_share": 1.5},
        feedback("r1", "view"),
        {k: v for k, v in feedback("r1").items() if k != "applied"},
        feedback("r1", "conversion", "12"),
        feedback("r1"),
    ])
    with path.open("ab") as handle:
        handle.write(b'{"kind": "rank", "user": "\xff"}\n{"kind": "rank", "ts"')  # not UTF-8; cut off
    report = analyse(read_logs(tmp_path), CFG)
    assert report["records"]["rank"] == 1 and report["records"]["feedback"] == 1
    assert report["records"]["other_kinds"] == {"heartbeat": 1}
    assert report["malformed"]["count"] == 10
    assert [(m["file"], m["line"]) for m in report["malformed"]["lines"]] == [
        ("p.jsonl", n) for n in (2, 4, 6, 7, 8, 9, 10, 11, 13, 14)]
    reasons = [m["reason"] for m in report["malformed"]["lines"]]
    assert reasons == [
        "not valid JSON",
        "not a rank or feedback record, got [1, 2]",
        "not a rank or feedback record, got {'ts': '2026-01-18T10:00:00'}",
        "rank: ts: Input should be a valid datetime or date, input is too short, got 'yesterday'",
        "rank: arm_share: Input should be less than or equal to 1, got 1.5",
        "feedback: event: Input should be 'click' or 'conversion', got 'view'",
        "feedback: applied: Field required, missing",
        "feedback: value: Input should be a valid number, got '12'",  # a string is not coerced
        "not valid JSON",
        "not valid JSON (a truncated last line?)",
    ]


def test_unreadable_inputs_are_errors_naming_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(OfferRankerError, match="no \\*.jsonl prediction logs under"):
        read_logs(tmp_path)
    write(tmp_path / "bad.jsonl", ["garbage"])
    with pytest.raises(OfferRankerError, match="no valid rank records .*1 malformed lines"):
        analyse(read_logs(tmp_path), CFG)
    real_open = Path.open

    def deny(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self.name == "bad.jsonl":
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", deny)
    with pytest.raises(OfferRankerError, match=r"cannot read prediction log .*bad\.jsonl: Permission denied"):
        read_logs(tmp_path)


INVALID = [
    ({"ab": {"alpha": 0.7}}, r"ab\.alpha: Input should be less than 0\.5, got 0\.7"),
    ({"ab": {"session_gap_minutes": 0}}, r"ab\.session_gap_minutes: .*greater than 0, got 0"),
    ({"ab": {"unit": "request"}}, r"ab\.unit: .*, got 'request'"),
    ({"ab": {"power": 1}}, r"ab\.power: .*less than 1, got 1"),
    ({"ab": {"srm": 0.01}}, r"ab\.srm: unknown setting"),
]


@pytest.mark.parametrize(("overrides", "message"), INVALID)
def test_invalid_settings_are_named_and_quoted(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_an_unknown_control_arm_names_the_arms(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ab.control: no arm 'ctrl' in the logs; arms: control, treatment"):
        analyse(read_logs(toy_logs(tmp_path)), ABConfig(control="ctrl"))


# --- the command -----------------------------------------------------------------------------------

def test_cli_writes_both_reports(tmp_path: Path) -> None:
    logs, out = toy_logs(tmp_path / "logs"), tmp_path / "out"
    config = write(tmp_path / "c.toml", [])
    config.write_text("[ab]\nsession_gap_minutes = 31\nalpha = 0.1\n")
    result = CliRunner().invoke(main, ["ab-report", "--logs", str(logs), "--out", str(out), "--config", str(config),
                                       "--control", "treatment"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "ab_report.json").read_text())
    assert report["control"] == "treatment" and list(report["comparisons"]) == ["control"]
    assert report["arms"]["control"]["sessions"] == 2  # the file's gap of 31 minutes
    assert report["config"]["alpha"] == 0.1
    page = (out / "ab_report.html").read_text()
    assert "<h2>ctr</h2>" in page and "90% CI" in page and "sample ratio: ok" in page
    assert not list(out.glob(".staging-*"))
    assert "A/B report of 6 requests, 90% CIs by user, control treatment:" in result.output
    header, rows = summary_rows(report)
    assert any(line.split() == " ".join(rows[1]).split() for line in result.output.splitlines())
    assert str(out / "ab_report.json") in result.output.replace("\n", "")

    bad = CliRunner().invoke(main, ["ab-report", "--logs", str(logs), "--out", str(out), "--control", "ctrl"])
    assert bad.exit_code == 2 and "no arm 'ctrl' in the logs" in bad.output
