"""Replicas of the real service sharing one Redis: feedback on any replica, nothing lost on restart,
no lost update under concurrency; and the memory store, durable through its journal."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from offer_ranker.config import ServeConfig
from offer_ranker.featurize.online.layout import OFFER
from offer_ranker.featurize.online.loader import LAYOUT_FIELD
from offer_ranker.model.train import TrainResult
from offer_ranker.serve import launch
from offer_ranker.serve.api import Feedback, RankRequest
from offer_ranker.serve.engine import Engine
from tests.service.conftest import write_config


def _start(tmp: Path, name: str, **serve: Any) -> launch.Server:
    config = write_config(tmp / f"{name}.toml", prediction_log=tmp / f"{name}.jsonl", **serve)
    return launch.start(None, tmp / f"{name}.log", config=config)


def _start_all(tmp: Path, names: list[str], **serve: Any) -> list[launch.Server]:
    with ThreadPoolExecutor(len(names)) as pool:  # two cores: start them side by side
        return list(pool.map(lambda n: _start(tmp, n, **serve), names))


def _score(response: dict, offer: str) -> float:
    return next(o["score"] for o in response["offers"] if o["offer_id"] == offer)


def _body(bodies: list[dict], i: int, minutes: int) -> dict:
    """A dated request: every replica and the in-process engine see the same time."""
    from datetime import datetime, timedelta

    body = dict(bodies[i])
    body["ts"] = (datetime.fromisoformat(bodies[0]["ts"]) + timedelta(minutes=minutes)).isoformat()
    return body


@pytest.mark.slow  # four `bentoml serve` starts, ~75 s: `make test-all`; the concurrent test shares state in CI
def test_feedback_on_any_replica_survives_restarts(trained: TrainResult, bodies: list[dict], redis_server,
                                                   tmp_path: Path) -> None:
    serve = {"model": trained.tag, "online_store": redis_server.url, "workers": 1, "partner_cap": 0,
             "mmr_lambda": 1.0}
    a, b = _start_all(tmp_path, ["a", "b"], **serve)
    first, again, later = _body(bodies, 5, 1), _body(bodies, 5, 3), _body(bodies, 5, 5)
    try:
        shown = httpx.post(a.url + "/rank", json=first, timeout=30).json()
        offer = shown["offers"][0]["offer_id"]
        clicked = httpx.post(b.url + "/feedback", timeout=30, json={
            "request_id": shown["request_id"], "offer_id": offer, "event": "click"})
        assert clicked.status_code == 200 and clicked.json()["applied"], clicked.text
        after = httpx.post(a.url + "/rank", json=again, timeout=30).json()
    finally:
        a.stop()
        b.stop()
    # the same requests through an in-process engine on the memory store: what A must have seen
    engine = Engine.load(ServeConfig(**{k: v for k, v in serve.items() if k not in ("online_store", "workers")},
                                     prediction_log=None, journal=None))
    mine = engine.rank(RankRequest.model_validate(first)).response
    engine.feedback(Feedback(request_id=mine.request_id, offer_id=offer, event="click"))
    expected = engine.rank(RankRequest.model_validate(again)).response.model_dump()
    expected_later = engine.rank(RankRequest.model_validate(later)).response.model_dump()
    engine.close()
    assert _score(after, offer) == pytest.approx(_score(expected, offer), rel=1e-9)
    assert _score(after, offer) != pytest.approx(_score(shown, offer), rel=1e-6)  # the click moved it

    redis_server.restart()  # SIGKILL, then AOF replay: what was acknowledged with 200 is there
    a, b = _start_all(tmp_path, ["a2", "b2"], **serve)
    try:
        restarted = httpx.post(b.url + "/rank", json=later, timeout=30).json()
    finally:
        a.stop()
        b.stop()
    assert _score(restarted, offer) == pytest.approx(_score(expected_later, offer), rel=1e-9)


def test_concurrent_feedback_across_replicas_counts_exactly(trained: TrainResult, bodies: list[dict],
                                                            redis_server, tmp_path: Path) -> None:
    serve = {"model": trained.tag, "online_store": redis_server.url, "workers": 1}
    a, b = _start_all(tmp_path, ["a", "b"], **serve)
    try:
        with httpx.Client(timeout=30) as client:
            pages = [client.post(a.url + "/rank", json=_body(bodies, i, 10 + i)).json() for i in range(30)]
        events = [(p["request_id"], o["offer_id"]) for p in pages for o in p["offers"]]
        offers_hash = OFFER  # six doubles per offer in the namespace's hash
        import redis

        r = redis.Redis.from_url(redis_server.url)
        from offer_ranker.featurize.online.layout import Keys
        from offer_ranker.featurize.snapshot import _snapshot_id
        from offer_ranker.model.store import bentoml_path

        key = Keys("or", _snapshot_id(Path(bentoml_path(trained.tag)) / "snapshot")).offers  # the bundle's namespace
        before = {o: offers_hash.unpack(v)[1] for o, v in r.hgetall(key).items() if o != LAYOUT_FIELD.encode()}

        def send(i: int) -> list[int]:
            # 8 clients, each sends every event to both replicas, in its own order: 16 copies of each
            order = np.random.default_rng(i).permutation(len(events))
            with httpx.Client(timeout=30) as c:
                return [c.post(url + "/feedback", json={"request_id": events[j][0], "offer_id": events[j][1],
                                                        "event": "click"}).status_code
                        for j in order for url in (a.url, b.url)]

        with ThreadPoolExecutor(8) as pool:
            statuses = [s for batch in pool.map(send, range(8)) for s in batch]
    finally:
        a.stop()
        b.stop()
    assert statuses == [200] * (16 * len(events))
    after = {o: offers_hash.unpack(v)[1] for o, v in r.hgetall(key).items() if o != LAYOUT_FIELD.encode()}
    gained = {o.decode(): after[o] - before.get(o, 0.0) for o in after}
    expected: dict[str, float] = {}
    for _, offer in events:
        expected[offer] = expected.get(offer, 0.0) + 1.0
    assert {o: g for o, g in gained.items() if g} == expected  # each click counted once: no lost update


def test_memory_store_keeps_acknowledged_events_through_a_crash(trained: TrainResult, bodies: list[dict],
                                                                 tmp_path: Path) -> None:
    serve = {"model": trained.tag, "journal": tmp_path / "journal.jsonl", "partner_cap": 0, "mmr_lambda": 1.0}
    first, again = _body(bodies, 7, 1), _body(bodies, 7, 3)
    server = _start(tmp_path, "m", **serve)
    shown = httpx.post(server.url + "/rank", json=first, timeout=30).json()
    offer = shown["offers"][0]["offer_id"]
    response = httpx.post(server.url + "/feedback", timeout=30,
                          json={"request_id": shown["request_id"], "offer_id": offer, "event": "click"})
    assert response.status_code == 200 and response.json()["applied"]
    expected = httpx.post(server.url + "/rank", json=again, timeout=30).json()
    server.kill()  # a crash: no shutdown, nothing flushed at exit
    server = _start(tmp_path, "m2", **serve)
    try:
        restarted = httpx.post(server.url + "/rank", json=again, timeout=30).json()
    finally:
        server.stop()
    assert _score(restarted, offer) == pytest.approx(_score(expected, offer), rel=1e-9)
    assert _score(expected, offer) != pytest.approx(_score(shown, offer), rel=1e-6)
