"""A real ``bentoml serve`` of the session's trained bundle, on loopback, for the HTTP tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from offer_ranker.model.train import TrainResult
from offer_ranker.serve import launch
from offer_ranker.serve.examples import sample_requests


def write_config(path: Path, **serve: Any) -> Path:
    """A TOML file with a ``[serve]`` section; ``arms={name: {"model": …, "share": …}}`` become
    ``[serve.arms.<name>]`` tables. The memory store's journal goes next to the file unless given
    (a server started by a test must not replay another's events)."""
    arms = serve.pop("arms", {})
    serve.setdefault("journal", path.with_suffix(".journal.jsonl"))
    lines = ["[serve]"] + [f"{k} = {_toml(v)}" for k, v in serve.items()]
    for name, arm in arms.items():
        lines += [f"[serve.arms.{name}]"] + [f"{k} = {_toml(v)}" for k, v in arm.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value) + '"'


ARM_SALT = "test-experiment"


@pytest.fixture(scope="session")
def served(trained: TrainResult, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[launch.Server, Path]]:
    """The server and its prediction log. It runs an A/A test: two arms serving the same bundle."""
    tmp = tmp_path_factory.mktemp("serve")
    config = write_config(tmp / "serve.toml", model=trained.tag, prediction_log=tmp / "predictions.jsonl",
                          max_body_bytes=100_000, hash_salt="test-salt", arm_salt=ARM_SALT,
                          arms={"control": {"model": trained.tag, "share": 0.5},
                                "treatment": {"model": trained.tag, "share": 0.5}})
    with launch.start(None, tmp / "server.log", config=config) as server:
        yield server, tmp / "predictions.jsonl"


@pytest.fixture(scope="session")
def server(served: tuple[launch.Server, Path]) -> launch.Server:
    return served[0]


@pytest.fixture()
def client(server: launch.Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="session")
def bodies(sim: Path) -> list[dict[str, Any]]:
    """Realistic request bodies: 20 live candidates each, dated just after the logs end."""
    return sample_requests(sim / "features", 200, candidates=20, seed=1)
