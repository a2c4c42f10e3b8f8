"""The service's own logs as training and evaluation data: rank with ε-greedy exploration,
record feedback, convert the prediction log to raw logs, ingest, build features, evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from click.testing import CliRunner

from offer_ranker.cli import main
from offer_ranker.config import Config, ServeConfig
from offer_ranker.evaluation.evaluate import evaluate
from offer_ranker.featurize.build import build_features
from offer_ranker.model.train import TrainResult
from offer_ranker.serve.api import Feedback, RankRequest
from offer_ranker.serve.engine import Engine
from offer_ranker.serve.examples import sample_requests


def test_prediction_logs_become_raw_logs_that_evaluate_off_policy(trained: TrainResult, sim: Path,
                                                                  tmp_path: Path) -> None:
    log = tmp_path / "logs" / "predictions.jsonl"
    cfg = ServeConfig(model=trained.tag, prediction_log=log, explore_rate=0.3, exploration="epsilon", seed=7,
                      journal=None)
    engine = Engine.load(cfg)
    shown, clicks = 0, 0
    prices = {}
    for i, body in enumerate(sample_requests(sim / "features", 200, candidates=12, seed=4)):
        for j, c in enumerate(body["candidates"]):  # the request-time price, a pass-through column
            c["features"] = {"price": 10.0 + j}
        out = engine.rank(RankRequest.model_validate(body)).response
        prices |= {(out.request_id, o.offer_id): 10.0 + [c["offer_id"] for c in body["candidates"]].index(o.offer_id)
                   for o in out.offers}
        shown += len(out.offers)
        if i % 4 == 0:  # a click on the top offer of every fourth page, and a conversion of some
            engine.feedback(Feedback(request_id=out.request_id, offer_id=out.offers[0].offer_id, event="click"))
            clicks += 1
            if i % 8 == 0:
                engine.feedback(Feedback(request_id=out.request_id, offer_id=out.offers[0].offer_id,
                                         event="conversion", value=20.0))
    engine.close()
    with log.open("a") as f:
        f.write("{not json\n")
    raw = tmp_path / "raw"
    run = CliRunner().invoke(main, ["logs-to-raw", "--logs", str(log.parent), "--out", str(raw),
                                    "--offers", str(sim / "raw" / "offers.parquet")])
    assert run.exit_code == 0, run.output
    report = json.loads((raw / "logs_to_raw.json").read_text())
    assert (report["impressions"], report["clicks"], report["conversions"], report["malformed"]) == (shown, clicks, 25, 1)
    imps = pl.read_parquet(raw / "impressions.parquet")
    explored = imps.filter(pl.col("policy") == "explore")
    assert explored.height > 0 and (explored["propensity"] < 1).all()  # exact ε-greedy propensities
    assert set(pl.read_parquet(raw / "users.parquet").columns) >= {"user_id", "plan", "age_band", "country"}
    assert {(r, o): p for r, o, p in imps.select("request_id", "offer_id", "price").iter_rows()} == prices
    # the raw contract: ingest accepts every row, and the features and off-policy evaluation run
    features = tmp_path / "features"
    build_features(raw, features, Config())
    ingest_report = json.loads((features / "ingested" / "ingest_report.json").read_text())
    assert ingest_report["tables"]["impressions"]["accepted"] == shown
    assert ingest_report["tables"]["clicks"]["accepted"] == clicks
    metrics = evaluate(trained.bundle, features, tmp_path / "eval", Config())
    assert metrics["test"]["impressions"] == shown and metrics["ope"] is not None
    assert metrics["ope"]["logging_policy"]["value"] > 0 and metrics["ope"]["dr"]["value"] > 0
