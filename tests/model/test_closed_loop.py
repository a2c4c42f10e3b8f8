"""The closed loop: the simulator as live traffic against the real engine, retrained per round."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from click.testing import CliRunner

from offer_ranker.cli import main
from offer_ranker.model.registry import aliases
from offer_ranker.model.store import listing


def test_the_retrained_engine_beats_the_heuristic_on_the_same_traffic(tmp_path: Path) -> None:
    config = tmp_path / "loop.toml"
    config.write_text("[simulate]\nusers = 4000\nseed = 5\n"
                      "[simulate_online]\nrounds = 1\ndays_per_round = 1\nwarmup_days = 3\nexplore_rate = 0.3\n"
                      "[train]\nrounds = 300\nearly_stopping = 30\nlearning_rate = 0.1\n")
    stored, promoted = listing(), aliases()
    run = CliRunner().invoke(main, ["simulate-online", "--out", str(tmp_path / "loop"), "--config", str(config)])
    assert run.exit_code == 0, run.output
    # the loop's models stay in its own folder: the user's model store, runs and aliases are untouched
    assert listing() == stored and aliases() == promoted
    assert (tmp_path / "loop" / "model" / "round-1" / "bundle" / "bundle.json").exists()
    report = json.loads((tmp_path / "loop" / "simulate_online.json").read_text())
    arms = report["arms"]
    assert set(arms) == {"logging", "model", "explore"} and all(len(r) == 2 for r in arms.values())
    # round 0 is the same heuristic on the same world for every arm: identical traffic and outcomes
    assert arms["logging"][0] == arms["model"][0] == arms["explore"][0]
    # same users, requests and candidates in round 1; only the top 3 differ (true click probabilities)
    assert arms["model"][1]["requests"] == arms["logging"][1]["requests"] > 1500
    assert arms["model"][1]["top_expected_ctr"] > 1.1 * arms["logging"][1]["top_expected_ctr"]
    assert (tmp_path / "loop" / "simulate_online.png").stat().st_size > 10_000
    # each round's logs are real raw logs; the exploring arm logged propensities below 1 on top
    logs = pl.read_parquet(tmp_path / "loop" / "explore" / "round-1" / "logs" / "impressions.parquet")
    top = logs.filter(pl.col("position") <= 3)
    assert (top["policy"] == "model").all() and (top["propensity"] < 1).any()
    assert pl.read_parquet(tmp_path / "loop" / "model" / "round-1" / "logs" / "impressions.parquet")\
        .filter(pl.col("position") <= 3)["propensity"].min() == 1.0
