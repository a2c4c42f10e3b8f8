"""``bentoml serve`` with no model configured serves what the registry's ``production`` alias
points at, never merely the newest bundle; before any promotion it serves the newest and says so
(in /readyz's detail: its ``notes``)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from offer_ranker.config import ServeConfig
from offer_ranker.model import registry, store
from offer_ranker.model.train import TrainResult
from offer_ranker.serve import launch
from offer_ranker.serve.router import Router
from tests.service.conftest import write_config


def test_the_service_serves_production_not_the_newest(trained: TrainResult, bodies: list[dict], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")  # the server inherits it
    # nothing promoted yet: the newest, and the service says so (what /readyz reports as its detail)
    router = Router.load(ServeConfig(prediction_log=None, journal=None))
    try:
        newest = store.listing()[0]["tag"]
        assert router.version == newest and router.ready
        assert len(router.notes) == 1 and "no 'production' alias" in router.notes[0] and newest in router.notes[0]
    finally:
        router.close()

    registry.promote(trained.bundle)
    # a newer bundle (saved as `train` saves one) does not change what production serves
    newer = store.save(type(trained.bundle)(**{**trained.bundle.__dict__, "info": dict(trained.bundle.info)}))
    assert store.listing()[0]["tag"] == newer != trained.tag
    config = write_config(tmp_path / "serve.toml", prediction_log=tmp_path / "predictions.jsonl")  # no model
    with launch.start(None, tmp_path / "server.log", config=config) as server:
        ready = httpx.get(server.url + "/readyz", timeout=30).json()
        ranked = httpx.post(server.url + "/rank", json=dict(bodies[0], k=3), timeout=30)
    assert ranked.status_code == 200, ranked.text
    assert ranked.json()["model_version"] == trained.tag and len(ranked.json()["offers"]) == 3
    assert ready == {"status": "ready", "detail": []}
