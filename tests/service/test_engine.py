"""The ranking engine in process: model failure, cold-start prior, exploration."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from offer_ranker.config import ServeConfig
from offer_ranker.featurize.online import OnlineStore
from offer_ranker.model import bundle as bundles
from offer_ranker.model import store as model_store
from offer_ranker.model.train import TrainResult
from offer_ranker.serve.api import RankRequest
from offer_ranker.serve.engine import Engine


def _engine(trained: TrainResult, bundle: bundles.Bundle | None = None, **cfg) -> Engine:
    bundle = bundle or model_store.load(trained.tag)
    store = OnlineStore.load(bundle.snapshot, bundle.manifest)
    return Engine(ServeConfig(prediction_log=None, **cfg), bundle, store)


def test_a_failing_model_falls_back_to_priors(trained: TrainResult, tmp_path: Path, bodies: list[dict]) -> None:
    """A real broken bundle: its click model was trained on 3 features, not the manifest's."""
    broken = tmp_path / "bundle"
    shutil.copytree(model_store.bentoml_path(trained.tag), broken)
    rng = np.random.default_rng(0)
    X = rng.random((200, 3))
    wrong = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(X, (X[:, 0] > 0.5).astype(int)), 5)
    wrong.save_model(str(broken / "ctr.txt"))
    engine = _engine(trained, bundles.read(broken))
    result = engine.rank(RankRequest.model_validate(bodies[0]))
    assert result.response.fallback == "model_failed: LightGBMError"
    assert len(result.response.offers) == bodies[0]["k"]
    assert engine.fallbacks["model_failed"] == 1


def test_an_offer_without_evidence_gets_its_prior_and_a_known_one_the_model(trained: TrainResult,
                                                                            bodies: list[dict]) -> None:
    engine = _engine(trained, mmr_lambda=1.0, partner_cap=0)
    body = RankRequest.model_validate(dict(bodies[0], k=10, candidates=bodies[0]["candidates"][:9]
                                           + [{"offer_id": "new-offer"}]))
    offers = {o.offer_id: o for o in engine.rank(body).response.offers}
    prior = engine.prior.top_slot([None], [None], new_user=False)[0]
    assert offers["new-offer"].score == pytest.approx(prior)
    # a known offer: the blend of the model's p_click and the prior, weighted by its impressions
    cols = engine.store.feature_columns({"user_id": body.user_id, "ts": body.ts, "context": body.context,
                                         "candidates": [{"offer_id": body.candidates[0].offer_id}]})
    X = engine.bundle.spec.row_matrix(cols)
    p_model = engine.bundle.p_click(X, 1.0)[0]
    n = cols["offer_impressions"][0]
    assert n > 0
    known = offers.get(body.candidates[0].offer_id)
    if known is not None:  # (it may be ineligible for this user)
        w = n / (n + engine.cfg.prior_impressions)
        prior_known = engine.prior.top_slot([cols["offer_category"][0]], [cols["offer_partner"][0]], False)[0]
        assert known.score == pytest.approx(w * p_model + (1 - w) * prior_known, rel=1e-9)


def test_exploration_logs_propensities(trained: TrainResult, bodies: list[dict], tmp_path: Path) -> None:
    log = tmp_path / "predictions.jsonl"
    bundle = model_store.load(trained.tag)
    engine = Engine(ServeConfig(prediction_log=log, explore_rate=0.5, explore_below=10**9, seed=3), bundle,
                    OnlineStore.load(bundle.snapshot, bundle.manifest))
    results = [engine.rank(RankRequest.model_validate(b)) for b in bodies[:40]]
    engine.close()
    explored = [r for r in results if r.explored]
    assert 5 < len(explored) < 35
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["explored"] for r in records] == [r.explored for r in results]
    props = [p for r in records for p in r["propensities"]]
    assert all(0 < p <= 1 for p in props) and min(props) < 1
