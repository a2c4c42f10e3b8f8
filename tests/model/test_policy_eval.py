"""The serving policy replayed offline: the λ sweep trades relevance for diversity; cold start."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from offer_ranker.evaluation.policy_replay import evaluate_policy
from offer_ranker.evaluation.testset import find_truth, load_test
from offer_ranker.featurize.frame import read_frame
from offer_ranker.model.train import TrainResult
from tests.conftest import CFG


def test_lambda_sweep_and_cold_start(trained: TrainResult, sim: Path) -> None:
    b = trained.bundle
    features = sim / "features"
    t = load_test(b, features, find_truth(features), CFG)
    train = read_frame(features, end=datetime.fromisoformat(b.info["train_until"]))
    report = evaluate_policy(b, t, train, CFG, max_requests=1500)
    sweep = {row["lambda"]: row for row in report["sweep"]}
    assert CFG.serve.mmr_lambda in sweep
    # pure relevance recovers more expected clicks than pure diversity, which is more diverse
    assert sweep[1.0]["efficiency"] > sweep[0.0]["efficiency"]
    assert sweep[0.0]["diversity"] > sweep[1.0]["diversity"]
    assert sweep[0.0]["coverage@3"] >= sweep[1.0]["coverage@3"]
    cold = report["cold_start"]["requests_with_a_new_offer"]
    # the prior gives new offers more of the top slots than the model alone
    assert cold["with_prior"]["new_offer_share"] > cold["without_prior"]["new_offer_share"]


def test_segment_lifts_are_fitted_at_training(trained: TrainResult) -> None:
    lifts = trained.bundle.info["segment_lifts"]
    assert "" in lifts and len(lifts) > 5
    assert all(0.2 < v < 5 for v in lifts.values())
