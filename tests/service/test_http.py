"""The real service over HTTP: ``bentoml serve`` of a trained bundle on loopback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from offer_ranker.model.train import TrainResult
from offer_ranker.serve import launch
from offer_ranker.serve.prediction_log import hash_user
from tests.service.conftest import ARM_SALT, write_config


def _offer_partners(sim: Path) -> dict[str, str]:
    offers = pl.read_parquet(sim / "features" / "snapshot" / "offers.parquet", columns=["offer_id", "partner"])
    return dict(offers.iter_rows())


def test_rank_happy_path(client: httpx.Client, bodies: list[dict], trained: TrainResult, sim: Path) -> None:
    partners = _offer_partners(sim)
    for body in bodies[:20]:
        r = client.post("/rank", json=body)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["model_version"] == trained.tag and out["fallback"] is None
        offers = out["offers"]
        assert [o["position"] for o in offers] == list(range(1, body["k"] + 1))
        ids = [o["offer_id"] for o in offers]
        assert len(set(ids)) == len(ids) and set(ids) <= {c["offer_id"] for c in body["candidates"]}
        assert all(0 < o["p_click"] < 1 and o["propensity"] == 1.0 for o in offers)
        # the default partner cap: at most one offer per partner on top
        shown = [partners[i] for i in ids]
        assert len(set(shown)) == len(shown)


def test_unknown_user_and_unknown_offer_are_ranked(client: httpx.Client, bodies: list[dict]) -> None:
    body = dict(bodies[0], user_id="never-seen-before",
                candidates=bodies[0]["candidates"][:5] + [{"offer_id": "brand-new-offer", "features": {"x": 1.5}}], k=6)
    r = client.post("/rank", json=body)
    assert r.status_code == 200 and r.json()["fallback"] is None
    new = [o for o in r.json()["offers"] if o["offer_id"] == "brand-new-offer"]
    assert new and 0 < new[0]["score"] < 1  # scored from its prior (no partner cap applies to it)


def _loc(response: httpx.Response) -> str:
    return json.dumps(response.json())


def _candidates(n: int) -> list[dict[str, Any]]:
    return [{"offer_id": f"o{i}"} for i in range(n)]


OK = {"user_id": "u1", "candidates": _candidates(3)}
INVALID = {
    "no candidates": ({"user_id": "u1", "candidates": []}, 400, "candidates"),
    "101 candidates": ({"user_id": "u1", "candidates": _candidates(101)}, 400, "candidates"),
    "duplicate offer ids": ({"user_id": "u1", "candidates": [{"offer_id": "a"}, {"offer_id": "a"}]}, 400, "duplicate"),
    "k = 0": (OK | {"k": 0}, 400, "k"),
    "k = 11": (OK | {"k": 11}, 400, "k"),
    "k not an int": (OK | {"k": "three"}, 400, "k"),
    "user_id a number": (OK | {"user_id": 5}, 400, "user_id"),
    "user_id missing": ({"candidates": _candidates(3)}, 400, "user_id"),
    "candidates not a list": (OK | {"candidates": "o1,o2"}, 400, "candidates"),
    "empty offer id": (OK | {"candidates": [{"offer_id": ""}]}, 400, "offer_id"),
    "feature value a list": (OK | {"candidates": [{"offer_id": "a", "features": {"price": [1]}}]}, 400, "price"),
    "NaN feature": ('{"user_id": "u1", "candidates": [{"offer_id": "a", "features": {"price": NaN}}]}', 400, "price"),
    "Infinity feature": ('{"user_id": "u1", "candidates": [{"offer_id": "a", "features": {"price": Infinity}}]}',
                         400, "price"),
    "overflowing number": ('{"user_id": "u1", "candidates": [{"offer_id": "a", "features": {"price": 1e999}}]}',
                           400, "price"),
    "NaN context": ('{"user_id": "u1", "context": {"age": NaN}, "candidates": [{"offer_id": "a"}]}', 400, "age"),
    "unknown field": (OK | {"candidate": []}, 400, "candidate"),
    "bad timestamp": (OK | {"ts": "yesterday"}, 400, "ts"),
    "timestamp far from the snapshot": (OK | {"ts": "2150-01-01T00:00:00"}, 400, "ts"),
    "k a boolean": (OK | {"k": True}, 400, "k"),
    "k a numeric string": (OK | {"k": "3"}, 400, "k"),
    "numeric pass-through as text": (OK | {"candidates": [{"offer_id": "a", "features": {"price": "cheap"}}]},
                                     400, "price"),
    "timestamp out of range": (OK | {"ts": "0001-01-01T00:00:00+03:00"}, 400, "ts"),
    "malformed JSON": ('{"user_id": "u1", "candidates": [', 400, "json"),
    "not an object": ("[1, 2]", 400, "object"),
    "empty body": ("", 400, "user_id"),
    "oversized body": ('{"user_id": "' + "x" * 200_000 + '"}', 413, "body"),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_requests_get_a_4xx_naming_the_field(client: httpx.Client, case: str) -> None:
    body, status, field = INVALID[case]
    content = body if isinstance(body, str) else json.dumps(body)
    r = client.post("/rank", content=content, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert field.lower() in _loc(r).lower()


def test_wrong_content_type_is_415(client: httpx.Client) -> None:
    r = client.post("/rank", content=json.dumps(OK), headers={"content-type": "multipart/form-data"})
    assert r.status_code == 415 and "content-type" in r.text


def test_feedback_errors(client: httpx.Client, bodies: list[dict]) -> None:
    r = client.post("/feedback", json={"request_id": "nope", "offer_id": "o1", "event": "click"})
    assert r.status_code == 404 and "request_id" in r.text
    ranked = client.post("/rank", json=bodies[3]).json()
    r = client.post("/feedback", json={"request_id": ranked["request_id"], "offer_id": "not-shown", "event": "click"})
    assert r.status_code == 404 and "offer_id" in r.text
    r = client.post("/feedback", json={"request_id": ranked["request_id"],
                                       "offer_id": ranked["offers"][0]["offer_id"], "event": "view"})
    assert r.status_code == 400 and "event" in r.text


def _later(body: dict, seconds: int) -> dict:
    from datetime import datetime, timedelta

    return dict(body, ts=(datetime.fromisoformat(body["ts"]) + timedelta(seconds=seconds)).isoformat())


def test_conversion_feedback_excludes_the_offer_next_time(client: httpx.Client, bodies: list[dict]) -> None:
    """Two users see the same offer; the one who converts never sees it again, the other does."""
    offer = bodies[5]["candidates"][0]["offer_id"]
    pages = {}
    for user, converts in (("converter", True), ("control", False)):
        body = dict(bodies[5], user_id=f"conversion-{user}", candidates=[{"offer_id": offer}], k=1)
        first = client.post("/rank", json=body).json()
        assert [o["offer_id"] for o in first["offers"]] == [offer]
        if converts:
            r = client.post("/feedback", json={"request_id": first["request_id"], "offer_id": offer,
                                               "event": "conversion", "value": 12.5})
            assert r.status_code == 200 and r.json()["applied"] is True
        pages[user] = [o["offer_id"] for o in client.post("/rank", json=_later(body, 60)).json()["offers"]]
    assert pages == {"converter": [], "control": [offer]}


def test_click_feedback_changes_the_next_ranking(client: httpx.Client, bodies: list[dict]) -> None:
    """Two new users see the same one-offer page; only one clicks. Their next pages differ by it."""
    offer = bodies[7]["candidates"][0]["offer_id"]
    scores = {}
    for user, clicks in (("clicker", True), ("control", False)):
        body = dict(bodies[7], user_id=f"click-{user}", candidates=[{"offer_id": offer}], k=1)
        first = client.post("/rank", json=body).json()
        if clicks:
            r = client.post("/feedback", json={"request_id": first["request_id"], "offer_id": offer, "event": "click"})
            assert r.status_code == 200 and r.json()["applied"] is True
            again = client.post("/feedback", json={"request_id": first["request_id"], "offer_id": offer,
                                                   "event": "click"})
            assert again.status_code == 200 and again.json()["applied"] is False  # a retry counts once
        scores[user] = client.post("/rank", json=_later(body, 60)).json()["offers"][0]["score"]
    assert scores["clicker"] != scores["control"]


def _count(metrics: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(name))


def test_health_readiness_metrics_and_docs(client: httpx.Client, bodies: list[dict]) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    before = _count(client.get("/metrics").text, 'offer_ranker_latency_seconds_count{stage="total"}')
    client.post("/rank", json=bodies[9])
    metrics = client.get("/metrics").text
    assert _count(metrics, 'offer_ranker_latency_seconds_count{stage="total"}') == before + 1
    assert 'offer_ranker_latency_seconds_bucket{le="0.0005",stage="total"}' in metrics
    assert 'offer_ranker_latency_seconds_bucket{le="0.0001",stage="model"}' in metrics
    assert "offer_ranker_candidates_bucket" in metrics
    paths = client.get("/docs.json").json()["paths"]
    assert {"/rank", "/feedback"} <= set(paths)


def test_prediction_log_hashes_user_ids(client: httpx.Client, served: tuple, bodies: list[dict]) -> None:
    body = dict(bodies[11], user_id="private-user-42", context=dict(bodies[11]["context"], email="a@b.se"))
    out = client.post("/rank", json=body).json()
    lines = [json.loads(line) for line in served[1].read_text().splitlines()]
    mine = [rec for rec in lines if rec.get("request_id") == out["request_id"]]
    assert len(mine) == 1
    rec = mine[0]
    assert rec["context"] == {k: body["context"][k] for k in ("device", "country", "surface")}
    assert rec["user"] == hash_user("private-user-42", "test-salt") and rec["model_version"] == out["model_version"]
    assert rec["offers"] == [o["offer_id"] for o in out["offers"]] and rec["propensities"] == [1.0] * len(out["offers"])
    assert rec["latency_ms"] > 0
    assert "private-user-42" not in served[1].read_text() and "a@b.se" not in served[1].read_text()


def test_users_keep_their_arm_and_the_log_says_which(client: httpx.Client, served: tuple, bodies: list[dict],
                                                     trained: TrainResult) -> None:
    from offer_ranker.serve.router import assign

    arms = {}
    for body in bodies[40:80]:
        out = client.post("/rank", json=body).json()
        # deterministic: the salted hash of the user
        assert out["arm"] == assign(body["user_id"], {"control": 0.5, "treatment": 0.5}, ARM_SALT)
        arms[out["request_id"]] = out["arm"]
        again = client.post("/rank", json=body).json()
        assert again["arm"] == out["arm"]
    assert set(arms.values()) == {"control", "treatment"}
    records = {rec["request_id"]: rec for rec in map(json.loads, served[1].read_text().splitlines())
               if rec.get("kind") == "rank"}
    for request_id, arm in arms.items():
        rec = records[request_id]
        assert rec["arm"] == arm and rec["arm_share"] == 0.5 and rec["model_version"] == trained.tag
        # what monitoring reads: newness, unknown candidates, the model inputs of the shown offers
        assert isinstance(rec["new_user"], bool) and rec["unknown_offers"] == 0
        assert set(rec["features"]) == set(trained.bundle.spec.names)
        assert all(len(v) == len(rec["offers"]) for v in rec["features"].values())


def test_corrupt_snapshot_serves_a_fallback(trained: TrainResult, tmp_path: Path, bodies: list[dict]) -> None:
    snapshot = tmp_path / "snapshot"
    shutil.copytree(trained.bundle.snapshot, snapshot)
    (snapshot / "offers.parquet").write_bytes(b"PAR1 this is not parquet")
    config = write_config(tmp_path / "serve.toml", model=trained.tag, snapshot=snapshot,
                          prediction_log=tmp_path / "predictions.jsonl")
    with launch.start(None, tmp_path / "server.log", config=config, accept_unready=True) as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.get("/readyz").status_code == 503
            r = client.post("/rank", json=bodies[0])
            assert r.status_code == 200 and r.json()["fallback"] == "no_snapshot"
            assert len(r.json()["offers"]) == bodies[0]["k"]
            assert 'offer_ranker_fallbacks_total{reason="no_snapshot"} 1.0' in client.get("/metrics").text
    assert "offers.parquet" in (tmp_path / "server.log").read_text()  # the reason is logged


def test_cli_rank_prints_the_rest_response(trained: TrainResult, tmp_path: Path, bodies: list[dict]) -> None:
    """Same request, fresh state on both sides: the same answer but for the request id."""
    request = tmp_path / "request.json"
    request.write_text(json.dumps(bodies[13]))
    cli = subprocess.run([sys.executable, "-m", "offer_ranker", "rank", "--model", trained.tag,
                          "--request", str(request)], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert not (tmp_path / "runs").exists()  # nothing reaches a prediction log
    config = write_config(tmp_path / "serve.toml", model=trained.tag, prediction_log=tmp_path / "p.jsonl")
    with launch.start(None, tmp_path / "server.log", config=config) as server:
        rest = httpx.post(server.url + "/rank", content=request.read_bytes(),
                          headers={"content-type": "application/json"}, timeout=30).json()
    printed = json.loads(cli.stdout)
    assert printed.pop("request_id") and rest.pop("request_id")
    assert printed == rest

