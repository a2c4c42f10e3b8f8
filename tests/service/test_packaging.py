"""The service as it ships: a built Bento served with nothing but its own requirements (what the
container of ``bentoml containerize`` runs), and the package installed from a wheel
(``pip install .``) served with ``bentoml serve`` from the project root.

One Bento build and one fresh virtual environment, filled offline from the uv cache with the
Bento's ``env/python/requirements.txt``. The tests run in file order: the Bento is served while the
environment holds only those requirements, then the package is installed into it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any, Iterator
from unittest import mock

import httpx
import pytest

from offer_ranker.features import FEATURES
from offer_ranker.model import registry, store
from offer_ranker.model.train import TrainResult
from offer_ranker.serve import launch
from tests.service.conftest import write_config

BIN = Path(sys.executable).parent
#: what the package holds, printed as JSON by the Python under test
CONTENTS = """
import importlib.resources, json, pathlib
import offer_ranker, offer_ranker.features
sql = pathlib.Path(str(importlib.resources.files("offer_ranker.sql")))
package = pathlib.Path(offer_ranker.__file__).parent
print(json.dumps({"package": offer_ranker.__file__, "sql_root": str(sql),
                  "sql": sorted(p.relative_to(sql).as_posix() for p in sql.rglob("*.sql")),
                  "data": sorted(p.relative_to(package).as_posix() for pattern in ("*.lua", "*.j2")
                                 for p in package.rglob(pattern)),
                  "features_file": offer_ranker.features.__file__,
                  "features": [f.name for f in offer_ranker.features.FEATURES]}))
"""


def _run(*command: str | Path, **kwargs: Any) -> subprocess.CompletedProcess:
    run = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=300, **kwargs)
    assert run.returncode == 0, f"{command}:\n{run.stdout[-2000:]}{run.stderr[-2000:]}"
    return run


def _contents(python: Path, cwd: Path) -> dict[str, Any]:
    """What ``import offer_ranker`` finds when ``python`` runs a script in ``cwd``."""
    return json.loads(_run(python, "-c", CONTENTS, cwd=cwd, env=_clean_env()).stdout)


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that would lead a child to the project's own venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "MLFLOW_TRACKING_URI")}
    return env | {"BENTOML_DO_NOT_TRACK": "True"} | extra


def _assert_complete(found: dict[str, Any], inside: Path) -> None:
    """Every SQL file and feature definition of the checkout, read from ``inside``."""
    checkout = launch.PROJECT_ROOT / "offer_ranker" / "sql"
    assert found["sql"] == sorted(p.relative_to(checkout).as_posix() for p in checkout.rglob("*.sql"))
    assert found["features"] == [f.name for f in FEATURES]
    package = launch.PROJECT_ROOT / "offer_ranker"  # report templates, the online store's Lua scripts
    assert found["data"] == sorted(p.relative_to(package).as_posix() for pattern in ("*.lua", "*.j2")
                                   for p in package.rglob(pattern))
    for key in ("package", "sql_root", "features_file"):
        assert Path(found[key]).resolve().is_relative_to(inside.resolve()), (key, found[key], inside)


def _rank(server: launch.Server, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(server.url + "/rank", json=body, timeout=30)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["fallback"] is None and len(out["offers"]) == 3
    return out


@pytest.fixture(scope="module")
def bento_tag(trained: TrainResult, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``bentoml build`` in the project root, offline (no lock resolution), with ``trained`` promoted
    to ``production`` in a registry of its own and a newer bundle in the store."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('registry')}/mlflow.db"
    with mock.patch.dict(os.environ, {"MLFLOW_TRACKING_URI": uri}):
        registry.promote(trained.bundle)
    store.save(dataclasses.replace(trained.bundle, info=dict(trained.bundle.info)))  # the newest, not promoted
    run = _run(BIN / "bentoml", "build", "--output", "tag", cwd=launch.PROJECT_ROOT,
               env=_clean_env(MLFLOW_TRACKING_URI=uri))
    return run.stdout.strip().splitlines()[-1].removeprefix("__tag__:")


@pytest.fixture(scope="module")
def venv(bento_tag: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh environment holding the Bento's own requirements and nothing else, from the uv cache."""
    import bentoml

    root = tmp_path_factory.mktemp("bento-venv") / "venv"
    requirements = Path(bentoml.bentos.get(bento_tag).path) / "env" / "python" / "requirements.txt"
    _run(BIN / "uv", "venv", "--quiet", "--offline", "--python", sys.executable, root, env=_clean_env())
    _run(BIN / "uv", "pip", "install", "--quiet", "--offline", "--python", root / "bin" / "python",
         "-r", requirements, env=_clean_env())
    return root


@pytest.fixture(scope="module")
def shipped(bento_tag: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Bento as its container holds it: ``bentoml containerize`` copies the Bento folder and
    resolves its models into ``models/`` (a stored Bento only names them); ``bentoml export``
    writes the same, unpacked here."""
    tmp = tmp_path_factory.mktemp("shipped")
    _run(BIN / "bentoml", "export", bento_tag, tmp / "bento.tar")
    with tarfile.open(tmp / "bento.tar") as archive:
        archive.extractall(tmp / "bento", filter="data")
    return tmp / "bento"


@pytest.fixture()
def installed(venv: Path) -> Iterator[Path]:
    """The package installed into ``venv`` from the checkout, as ``pip install .`` does (a wheel).

    setuptools builds in the checkout's ``build/``; one this test made is removed again, since a
    stale ``build/lib`` would put deleted modules into later wheels."""
    build = launch.PROJECT_ROOT / "build"
    made_build = not build.exists()
    try:
        _run(BIN / "uv", "pip", "install", "--quiet", "--offline", "--no-deps", "--reinstall-package",
             "offer-ranker", "--python", venv / "bin" / "python", launch.PROJECT_ROOT, env=_clean_env())
        yield venv
    finally:
        if made_build:
            shutil.rmtree(build, ignore_errors=True)


@pytest.fixture()
def body(bodies: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(bodies[0], k=3)


def test_bentoml_build_packages_the_production_bundle(bento_tag: str, trained: TrainResult) -> None:
    """``bentoml build`` works offline (no lock resolution) and takes the bundle ``production``
    points at along: not the newest."""
    import bentoml

    bento = bentoml.bentos.get(bento_tag)
    assert [str(m.tag) for m in bento.info.all_models] == [trained.tag]
    assert trained.tag != str(bentoml.models.get("offer_ranker:latest").tag)


def test_the_bento_serves_with_only_its_own_requirements(bento_tag: str, shipped: Path, venv: Path,
                                                         trained: TrainResult, body: dict[str, Any], redis_server,
                                                         tmp_path: Path) -> None:
    """As its container does: ``bentoml serve <bento folder>`` in that folder, with a BentoML home
    that holds no models (the bundle must come along) and no trace of the project outside it; its
    online state in Redis, as replicas of it would share."""
    import bentoml

    python = venv / "bin" / "python"
    assert _run(python, "-c", "import importlib.util; print(importlib.util.find_spec('offer_ranker'))",
                cwd=tmp_path, env=_clean_env()).stdout.strip() == "None", "the venv must not hold the project"
    _assert_complete(_contents(python, shipped / "src"), inside=shipped / "src")

    port = launch.free_port()
    config = write_config(tmp_path / "serve.toml", prediction_log=tmp_path / "predictions.jsonl", workers=1)
    env = _clean_env(BENTOML_HOME=str(tmp_path / "bentoml-home"), OFFER_RANKER_ONLINE_STORE=redis_server.url)
    command = [str(venv / "bin" / "bentoml"), "serve", str(shipped), "--port", str(port), "--host", "127.0.0.1"]
    with launch.start(command, tmp_path / "server.log", port=port, env=env, config=config, cwd=shipped) as server:
        out = _rank(server, body)
    assert out["model_version"] == trained.tag == str(bentoml.bentos.get(bento_tag).info.all_models[0].tag)


def test_the_installed_package_serves_from_the_project_root(installed: Path, trained: TrainResult,
                                                            body: dict[str, Any], tmp_path: Path) -> None:
    """``pip install .`` then ``bentoml serve`` in the checkout. BentoML puts the working directory
    first on ``sys.path``, so there the checkout's package is imported, not the wheel: it must be
    whole as it stands (it was not while ``features/`` reached the package only through
    package-dir mapping). Elsewhere the wheel alone answers, and must hold every file too."""
    site = next((installed / "lib").glob("python3.*/site-packages"))
    _assert_complete(_contents(installed / "bin" / "python", tmp_path), inside=site)

    port = launch.free_port()
    config = write_config(tmp_path / "serve.toml", model=trained.tag, prediction_log=tmp_path / "predictions.jsonl")
    command = [str(installed / "bin" / "bentoml"), "serve", "offer_ranker.serve.service:OfferRanker",
               "--port", str(port), "--host", "127.0.0.1"]
    with launch.start(command, tmp_path / "server.log", port=port, env=_clean_env(), config=config,
                      cwd=launch.PROJECT_ROOT) as server:
        out = _rank(server, body)
    assert out["model_version"] == trained.tag
