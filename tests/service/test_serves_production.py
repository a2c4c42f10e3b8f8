"""``bentoml serve`` with no model configured serves what the registry's ``production`` alias
points at, never merely the newest bundle; before any promotion it serves the newest and says so
in /readyz."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from offer_ranker.model import registry, store
from offer_ranker.model.train import TrainResult
from offer_ranker.serve import launch
from tests.service.conftest import write_config


def _serve(tmp: Path, name: str, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Start a server with no serve.model (the default, production), rank ``body``; /readyz and the answer."""
    config = write_config(tmp / f"{name}.toml", prediction_log=tmp / f"{name}.jsonl")
    with launch.start(None, tmp / f"{name}.log", config=config) as server:
        ready = httpx.get(server.url + "/readyz", timeout=30).json()
        ranked = httpx.post(server.url + "/rank", json=body, timeout=30)
    assert ranked.status_code == 200, ranked.text
    return ready, ranked.json()


def test_the_service_serves_production_not_the_newest(trained: TrainResult, bodies: list[dict], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")  # the server inherits it
    body = dict(bodies[0], k=3)
    ready, ranked = _serve(tmp_path, "before", body)  # nothing promoted yet: the newest, and /readyz says so
    newest = store.listing()[0]["tag"]
    assert ranked["model_version"] == newest
    assert ready["status"] == "ready" and "no 'production' alias" in ready["detail"][0] and newest in ready["detail"][0]

    registry.promote(trained.tag)
    # a newer bundle (the same model saved again) does not change what production serves
    newer = store.save(type(trained.bundle)(**{**trained.bundle.__dict__, "info": dict(trained.bundle.info)}))
    assert store.listing()[0]["tag"] == newer != trained.tag
    ready, ranked = _serve(tmp_path, "after", body)
    assert ranked["model_version"] == trained.tag and len(ranked["offers"]) == 3
    assert ready == {"status": "ready", "detail": []}
