"""Redis killed under load: the real service keeps answering /rank with 200 (ranked from what its
snapshot knows, ``fallback: online_store_unavailable``, counted in /metrics), says it is degraded
on /readyz, refuses /feedback with 503 and Retry-After, and recovers by itself when Redis is back."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from offer_ranker.model.train import TrainResult
from offer_ranker.serve import launch
from tests.redis_server import RedisServer, require_redis
from tests.service.conftest import write_config


def _load(url: str, bodies: list[dict], seconds: float) -> list[tuple[int, str | None]]:
    """8 clients ranking for ``seconds``: (status, fallback) of every answer."""
    def client(i: int) -> list[tuple[int, str | None]]:
        out, deadline = [], time.monotonic() + seconds
        with httpx.Client(timeout=30) as c:
            while time.monotonic() < deadline:
                r = c.post(url + "/rank", json=bodies[(i * 13 + len(out)) % len(bodies)])
                out.append((r.status_code, r.json().get("fallback") if r.status_code == 200 else None))
        return out

    with ThreadPoolExecutor(8) as pool:
        return [x for batch in pool.map(client, range(8)) for x in batch]


def test_redis_outage_degrades_and_recovers(trained: TrainResult, bodies: list[dict], tmp_path: Path) -> None:
    require_redis()
    redis_server = RedisServer(tmp_path / "redis").start()
    config = write_config(tmp_path / "serve.toml", model=trained.tag, online_store=redis_server.url, workers=1,
                          store_timeout_ms=100, prediction_log=tmp_path / "p.jsonl")
    try:
        with launch.start(None, tmp_path / "server.log", config=config) as server, \
                httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.get("/readyz").json() == {"status": "ready", "detail": []}
            served = client.post("/rank", json=bodies[0]).json()
            assert served["fallback"] is None

            redis_server.kill()
            answers = _load(server.url, bodies, seconds=4)
            assert {status for status, _ in answers} == {200}  # never a 5xx
            fallbacks = sum(f == "online_store_unavailable" for _, f in answers)
            assert fallbacks >= 0.9 * len(answers) > 50
            ready = client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["status"] == "degraded"
            feedback = client.post("/feedback", json={"request_id": served["request_id"],
                                                      "offer_id": served["offers"][0]["offer_id"], "event": "click"})
            assert feedback.status_code == 503 and feedback.headers["retry-after"] == "1"
            metrics = client.get("/metrics").text
            line = next(m for m in metrics.splitlines()
                        if m.startswith('offer_ranker_fallbacks_total{reason="online_store_unavailable"}'))
            assert float(line.split()[-1]) >= fallbacks

            redis_server.start()  # back, with what was acknowledged (AOF): no restart of the service
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if client.post("/rank", json=bodies[1]).json()["fallback"] is None:
                    break
                time.sleep(0.2)
            assert client.post("/rank", json=bodies[2]).json()["fallback"] is None
            assert client.get("/readyz").json()["status"] == "ready"
            feedback = client.post("/feedback", json={"request_id": served["request_id"],
                                                      "offer_id": served["offers"][0]["offer_id"], "event": "click"})
            assert feedback.status_code == 200 and feedback.json()["applied"]  # the request survived the outage
    finally:
        redis_server.kill()
