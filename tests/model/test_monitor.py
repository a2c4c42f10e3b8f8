"""Monitoring: PSI known answers, the training reference in the bundle, and `offer-ranker monitor` on
synthetic prediction logs, in distribution (exit 0) and with planted drift and fallbacks (exit 1).

The in-distribution logs are requests drawn (with replacement) from the bundle's validation slice,
the reference's own window. Later requests are not in distribution on the simulator: its
empirical-Bayes priors move from day to day, and offer_cvr (PSI 2.2), user_ctr (0.6) and
offer_hours_to_expiry (0.3) drift past the alert threshold within two days of the window.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from offer_ranker.cli import main
from offer_ranker.config import Config, ConfigError, MonitorConfig, load_config
from offer_ranker.featurize.frame import read_frame
from offer_ranker.model.store import load
from offer_ranker.model.train import TrainResult, train
from offer_ranker.production.monitor import MonitorError, check, monitor
from offer_ranker.stats import drift
from tests.conftest import CFG

#: Fewer rounds than the shared bundle: what matters here is the reference, not the model's quality.
#: One thread: on two cores busy with other work, two LightGBM threads trained 10x slower (21 s vs 2 s).
FAST = Config.model_validate(CFG.model_dump() | {"train": CFG.train.model_dump()
                                                 | {"rounds": 20, "early_stopping": 10, "threads": 1}})
REQUESTS = 800


# ---- drift.py: known answers ----------------------------------------------------------------------

def test_psi_of_the_reference_itself_is_zero_and_of_a_fresh_sample_small() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=20_000)
    reference = drift.profile(x, kind="numeric")
    assert len(reference["edges"]) == 9 and np.allclose(reference["shares"], 0.1)
    assert drift.psi(reference, x) == 0.0
    # sampling noise alone: about (bins - 1) x (1/n + 1/n_ref) = 9 x 1.5e-4
    assert drift.psi(reference, rng.normal(size=20_000)) < 0.005


def test_psi_of_known_shifts() -> None:
    categorical = drift.profile(["a"] * 50 + ["b"] * 50, kind="categorical")
    # 50/50 -> 75/25: 0.25 ln(0.75/0.5) + (-0.25) ln(0.25/0.5); the empty other and null bins add 0
    assert drift.psi(categorical, ["a"] * 75 + ["b"] * 25) == pytest.approx(0.25 * np.log(1.5) + 0.25 * np.log(2))
    numeric = drift.profile(np.arange(1000.0), kind="numeric")
    # every value in the lower half: five deciles at 0.2, five empty ones counted as EPS
    eps = drift.EPS
    expected = 5 * 0.1 * np.log(2) + 5 * (eps - 0.1) * np.log(eps / 0.1)
    assert drift.psi(numeric, np.arange(500.0)) == pytest.approx(expected)
    assert drift.psi(numeric, []) != drift.psi(numeric, [])  # NaN: nothing to compare


def test_profiles_bin_nulls_point_masses_and_new_levels() -> None:
    counts = [0.0] * 70 + [None] * 10 + list(range(1, 21))
    p = drift.profile(counts, kind="numeric")
    # deciles of the 90 numbers: 1-7 coincide at 0 (kept once), 8 = 2.2, 9 = 11.1 (linear interpolation)
    assert p["edges"] == pytest.approx([0.0, 2.2, 11.1])
    assert p["shares"] == pytest.approx([0.0, 0.72, 0.09, 0.09]) and p["null"] == pytest.approx(0.1)
    # beyond the reference's range: the open outer bins; NaN counts as null
    assert list(drift.shares(p, [-5.0, 1e9, float("nan"), None])) == [0.25, *[0.0] * (len(p["edges"]) - 1), 0.25, 0.5]
    c = drift.profile(["x"] * 5 + ["y"] * 3 + ["z"] * 2 + [None] * 2, kind="categorical", levels=2)
    assert c["levels"] == ["x", "y"] and c["other"] == pytest.approx(2 / 12) and c["null"] == pytest.approx(2 / 12)
    assert list(drift.shares(c, ["new", "x", None, "z"])) == [0.25, 0.0, 0.5, 0.25]  # levels, other, null
    assert json.loads(json.dumps(c)) == c


# ---- the bundle's reference and synthetic prediction logs -------------------------------------------

@pytest.fixture(scope="module")
def fast(sim: Path) -> TrainResult:
    return train(sim / "features", FAST)


@pytest.fixture(scope="module")
def draws(fast: TrainResult, sim: Path) -> pl.DataFrame:
    """The top 3 offers of REQUESTS requests drawn from the validation slice, as the service would show
    them (by the bundle's score), with p_click at the shown slot: one row per shown offer."""
    b = fast.bundle
    valid = read_frame(sim / "features", start=datetime.fromisoformat(b.info["valid_from"]),
                       end=datetime.fromisoformat(b.info["train_until"]))
    ids = valid["request_id"].unique(maintain_order=True)
    picked = pl.DataFrame({"request_id": ids.sample(REQUESTS, with_replacement=True, seed=1),
                           "draw": np.arange(REQUESTS)})
    frame = picked.join(valid, on="request_id").sort("draw", "offer_id")
    top = (frame.with_columns(_score=pl.Series(b.score(b.spec.matrix(frame))), candidates=pl.len().over("draw"))
           .with_columns(position=pl.col("_score").rank("ordinal", descending=True).over("draw"))
           .filter(pl.col("position") <= 3).sort("draw", "position"))
    return top


def _records(b, top: pl.DataFrame, rng: np.random.Generator) -> list[dict]:
    """Rank records in the prediction-log schema (numeric float / None, categorical str / None)."""
    p = b.p_click(b.spec.matrix(top), top["position"].to_numpy().astype(float))
    top = top.with_columns(_p=pl.Series(p))
    records = []
    for (draw,), g in top.group_by(["draw"], maintain_order=True):
        features = {}
        for name in b.spec.names:
            values = g[name].to_list()
            features[name] = ([None if v is None else str(v) for v in values] if name in b.spec.levels
                              else [None if v is None or np.isnan(v) else float(v) for v in values])
        records.append({
            "kind": "rank", "ts": g["ts"][0].isoformat(), "request_id": f"r{draw}", "user": f"{draw:016x}",
            "model_version": b.version, "arm": "default", "arm_share": 1.0, "context": {},
            "candidates": int(g["candidates"][0]), "offers": g["offer_id"].to_list(),
            "positions": g["position"].to_list(), "scores": g["_score"].to_list(), "p_click": g["_p"].to_list(),
            "propensities": [1.0] * g.height, "explored": False, "fallback": None,
            "latency_ms": round(float(rng.lognormal(1.5, 0.5)), 3), "new_user": bool(g["user_is_new"][0] == 1.0),
            "unknown_offers": int(draw % 10 == 0), "features": features})
    return records


def _fallback(b, i: int) -> dict:
    return {"kind": "rank", "ts": "2026-01-16T00:00:00", "request_id": f"f{i}", "user": "0" * 16,
            "model_version": b.version, "candidates": 12, "offers": ["o1", "o2", "o3"], "positions": [1, 2, 3],
            "scores": [0.0] * 3, "p_click": [0.0] * 3, "propensities": [1.0] * 3, "explored": False,
            "fallback": "features_failed: KeyError", "latency_ms": 0.0}


def _write(folder: Path, records: list[dict], extra: list[str] = ()) -> Path:
    """Two process logs, the records split between them; ``extra`` lines end the second."""
    folder.mkdir(parents=True)
    half = len(records) // 2
    for name, part, tail in (("p0.jsonl", records[:half], []), ("sub/p1.jsonl", records[half:], list(extra))):
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in part) + "".join(t + "\n" for t in tail))
    return folder


def _run(logs: Path, out: Path, tag: str, *flags: str):
    return CliRunner().invoke(main, ["monitor", "--logs", str(logs), "--model", tag, "--out", str(out), *flags])


def test_the_reference_is_saved_with_the_bundle(fast: TrainResult) -> None:
    reference = fast.bundle.info["reference"]
    assert reference["k"] == 3 and reference["rows"] == 3 * reference["requests"]
    assert set(reference["features"]) == set(fast.bundle.spec.names)
    assert reference["features"]["ctx_device"]["kind"] == "categorical"
    assert load(fast.tag).info["reference"] == json.loads(json.dumps(reference))


def test_logs_from_the_training_distribution_raise_no_alert(fast: TrainResult, draws: pl.DataFrame,
                                                            tmp_path: Path) -> None:
    b = fast.bundle
    records = _records(b, draws, np.random.default_rng(0))
    other = [r | {"model_version": "offer_ranker:older"} for r in records[:40]]
    feedback = [json.dumps({"kind": "feedback", "ts": "2026-01-16T00:00:00", "request_id": "r1", "user": "0" * 16,
                            "offer": "o1", "position": 1, "event": "click", "value": None, "applied": True})] * 7
    logs = _write(tmp_path / "logs", records + other, [*feedback, '{"kind": "rank", "ts"', "[1, 2]"])
    result = _run(logs, tmp_path / "out", fast.tag)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "monitor.json").read_text())
    assert report["alerts"] == [] and not any(c["status"] == "fail" for c in report["checks"])
    assert report["records"] | {"versions": None} == {
        "monitored": REQUESTS, "rank": REQUESTS + 40, "versions": None, "feedback": 7, "explored": 0,
        "with_features": REQUESTS, "files": 2}
    lines = len(records) + 40
    n = lines - lines // 2 + 7  # lines of the second file before the malformed ones
    assert report["malformed"]["lines"] == [f"sub/p1.jsonl:{n + 1}: not valid JSON",
                                            f"sub/p1.jsonl:{n + 2}: not a rank or feedback record, got [1, 2]"]
    judged = {name: d for name, d in report["drift"].items() if d["status"] != "skip"}
    assert len(judged) > 40 and max(d["psi"] for d in judged.values()) < 0.25
    assert report["drift"]["p_click at position 1"]["psi"] < 0.1
    assert report["drift"]["offer_ctr"]["values"] == 3 * REQUESTS
    latency = [r["latency_ms"] for r in records]
    assert report["latency_ms"]["p99"] == pytest.approx(np.percentile(latency, 99))
    assert report["new_user_share"] == pytest.approx(np.mean([r["new_user"] for r in records]))
    assert report["unknown_offers"]["request_share"] == pytest.approx(0.1)
    assert report["unknown_offers"]["per_candidate"] == pytest.approx(80 / sum(r["candidates"] for r in records))
    assert sum(report["requests_per_hour"].values()) == REQUESTS
    page = (tmp_path / "out" / "monitor.html").read_text()
    assert "data:image/png;base64," in page and "offer_ctr" in page and 'src="http' not in page
    # every version: the 40 older records count too
    assert check(b, logs, MonitorConfig(all_versions=True))["records"]["monitored"] == REQUESTS + 40


def test_planted_drift_and_fallbacks_fail_the_checks(fast: TrainResult, draws: pl.DataFrame, tmp_path: Path) -> None:
    b = fast.bundle
    clean_logs = _write(tmp_path / "clean", _records(b, draws, np.random.default_rng(0)))
    clean = {name: d["psi"] for name, d in check(b, clean_logs)["drift"].items()}
    planted = draws.with_columns(pl.col("offer_ctr") * 3, ctx_device=pl.lit("web"))
    records = _records(b, planted, np.random.default_rng(0))
    fallbacks = [_fallback(b, i) for i in range(42)]  # 42 of 842: 5%
    logs = _write(tmp_path / "logs", records + fallbacks)
    result = _run(logs, tmp_path / "out", fast.tag)
    assert result.exit_code == 1, result.output
    report = json.loads((tmp_path / "out" / "monitor.json").read_text())
    status = {c["name"]: c["status"] for c in report["checks"]}
    assert status["offer_ctr"] == status["ctx_device"] == status["fallback share"] == "fail"
    assert status["p99 latency_ms"] == "pass"
    assert report["fallbacks"] == {"share": pytest.approx(42 / 842), "by_reason": {"features_failed": 42}}
    # the PSI is that of the shown offers' values, fallbacks excluded
    assert report["drift"]["offer_ctr"]["psi"] == pytest.approx(
        drift.psi(b.info["reference"]["features"]["offer_ctr"], planted["offer_ctr"]))
    # untouched features are judged exactly as before the plant
    for name in ("offer_partner", "user_ctr", "offer_payout", "ctx_country"):
        assert report["drift"][name]["psi"] == pytest.approx(clean[name]), name
    for name in ("offer_ctr", "ctx_device", "fallback share"):
        assert any(f"{name} = " in a for a in report["alerts"]) and name in result.output


# ---- errors -----------------------------------------------------------------------------------------

def test_errors_name_the_folder_and_the_fix(fast: TrainResult, tmp_path: Path) -> None:
    b = fast.bundle
    result = _run(tmp_path / "missing", tmp_path / "out", fast.tag)
    assert result.exit_code == 2 and "missing" in result.output
    (tmp_path / "empty").mkdir()
    with pytest.raises(MonitorError, match=f"no \\*.jsonl prediction logs under {tmp_path / 'empty'}"):
        monitor(b, tmp_path / "empty", tmp_path / "out")
    only_feedback = _write(tmp_path / "feedback", [], [json.dumps(  # a valid feedback record, and nothing else
        {"kind": "feedback", "ts": "2026-01-16T00:00:00", "request_id": "r1", "offer": "o1", "event": "click",
         "applied": True})])
    with pytest.raises(MonitorError, match=f"no rank records of {b.version} in {only_feedback}: 1 feedback"):
        monitor(b, only_feedback, tmp_path / "out")
    older = _write(tmp_path / "older", [_fallback(b, 0) | {"model_version": "offer_ranker:older"}])
    with pytest.raises(MonitorError, match=r"other model versions: offer_ranker:older \(1\); pass --all-versions"):
        monitor(b, older, tmp_path / "out")
    unreferenced = dataclasses.replace(b, info={k: v for k, v in b.info.items() if k != "reference"})
    with pytest.raises(MonitorError, match="has no training reference .* retrain it with `offer-ranker train`"):
        monitor(unreferenced, older, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written on an error


def test_thresholds_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"monitor\.psi_alert: .*must be at least psi_warn \(0\.1\), got 0\.05"):
        load_config(None, {"monitor": {"psi_alert": 0.05}})
    with pytest.raises(ConfigError, match=r"monitor\.max_fallback_share: .*, got 2"):
        load_config(None, {"monitor": {"max_fallback_share": 2}})
