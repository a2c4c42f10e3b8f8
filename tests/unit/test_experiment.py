"""A/B assignment and routing: deterministic, in proportion to the shares, one log for all arms."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from offer_ranker.config import ServeConfig
from offer_ranker.serve.api import Feedback, RankRequest
from offer_ranker.serve.engine import Engine
from offer_ranker.serve.prediction_log import PredictionLog
from offer_ranker.serve.router import Router, assign


def test_assignment_is_deterministic_and_follows_the_shares() -> None:
    shares = {"control": 0.7, "treatment": 0.3}
    users = [f"user-{i}" for i in range(20_000)]
    arms = [assign(u, shares, "salt-a") for u in users]
    assert arms == [assign(u, shares, "salt-a") for u in users]
    treated = np.mean([a == "treatment" for a in arms])
    assert abs(treated - 0.3) < 4 * np.sqrt(0.3 * 0.7 / len(users))  # binomial: 4 standard errors
    # a new salt reshuffles: about 0.7² + 0.3² of the users keep their arm, not all
    same = np.mean([a == assign(u, shares, "salt-b") for u, a in zip(users, arms)])
    assert abs(same - 0.58) < 0.02


def test_three_arms_get_their_shares() -> None:
    shares = {"a": 0.5, "b": 0.25, "c": 0.25}
    counts = {name: 0 for name in shares}
    for i in range(20_000):
        counts[assign(str(i), shares, "s")] += 1
    assert all(abs(counts[n] / 20_000 - shares[n]) < 0.015 for n in shares)


def _request(user: str) -> RankRequest:
    return RankRequest(user_id=user, candidates=[{"offer_id": f"o{i}"} for i in range(5)], k=2)


def test_router_ranks_with_the_users_arm_and_routes_feedback(tmp_path: Path) -> None:
    """Engines without a model (the fallback path): routing, the arm in responses and log lines."""
    log = PredictionLog(tmp_path / "p.jsonl")
    cfg = ServeConfig(prediction_log=None)
    shares = {"control": 0.5, "treatment": 0.5}
    router = Router({name: Engine(cfg, None, None, arm=name, arm_share=0.5, log=log) for name in shares},
                    shares, "s")
    served = {}
    for i in range(40):
        user = f"u{i}"
        out = router.rank(_request(user)).response
        assert out.arm == assign(user, shares, "s") and out.fallback == "no_model"
        served[out.request_id] = out
    assert {o.arm for o in served.values()} == {"control", "treatment"}
    request_id, out = next(iter(served.items()))
    fb = router.feedback(Feedback(request_id=request_id, offer_id=out.offers[0].offer_id, event="click"))
    assert fb.request_id == request_id
    router.close()
    records = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    ranks = {r["request_id"]: r for r in records if r["kind"] == "rank"}
    assert len(ranks) == 40 and all(ranks[k]["arm"] == v.arm and ranks[k]["arm_share"] == 0.5 for k, v in served.items())
    feedback = [r for r in records if r["kind"] == "feedback"]
    assert len(feedback) == 1 and feedback[0]["arm"] == out.arm


def test_router_without_arms_serves_one_default_arm() -> None:
    router = Router({"default": Engine(ServeConfig(prediction_log=None), None, None)}, {"default": 1.0}, "s")
    assert router.rank(_request("anyone")).response.arm == "default"


@pytest.mark.parametrize("arms, message", [
    ({"a": {"model": "m", "share": 0.6}, "b": {"model": "m", "share": 0.6}}, "arm shares must sum to 1, got 1.2"),
    ({"a": {"model": "m", "share": 0.0}}, "greater than 0"),
    ({"a": {"share": 1.0}}, "model"),
])
def test_invalid_arms_are_config_errors(arms: dict, message: str) -> None:
    from offer_ranker.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=message):
        load_config(None, {"serve": {"arms": arms}})
