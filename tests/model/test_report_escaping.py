"""Every HTML report escapes what comes from data or configuration: a marketplace whose offer,
partner and category ids, extra column names and values, model tag and A/B arm names are HTML and
script, run through the real pipeline, gives four reports in which none of it survives as markup."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from offer_ranker.config import Config, ServeConfig
from offer_ranker.evaluation.evaluate import evaluate
from offer_ranker.evaluation.explain import explain
from offer_ranker.featurize.build import build_features
from offer_ranker.featurize.online import OnlineStore
from offer_ranker.model.train import train
from offer_ranker.production.abtest import ab_report
from offer_ranker.production.monitor import monitor
from offer_ranker.serve.api import Feedback, RankRequest
from offer_ranker.serve.engine import Engine
from offer_ranker.serve.examples import sample_requests
from offer_ranker.serve.prediction_log import PredictionLog
from offer_ranker.simulator import simulate

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(2)>"
SPAN = "<span><img src=x onerror=alert(3)></span>"
QUOTE = '"><svg onload=alert(4)>'
PAYLOADS = (SCRIPT, IMG, SPAN, QUOTE)
#: what must never reach a page unescaped: the start of every payload's markup
MARKUP = re.compile(r"<script|<img src=x|<span><img|<svg|\"><svg")
CFG = Config.model_validate({"simulate": {"users": 700, "offers": 60, "days": 5, "seed": 11},
                             "train": {"rounds": 40, "early_stopping": 10},
                             "explain": {"rows": 300, "dependence": 4},
                             "evaluate": {"bootstrap": 20}})


def _hostile_raw(raw: Path) -> None:
    """Rewrite the simulated logs: hostile offer, partner and category ids, and an offer column
    and a user column whose names and values are markup."""
    offers = pl.read_parquet(raw / "offers.parquet")
    rename = {o: f"{PAYLOADS[i % 4]}{o}" for i, o in enumerate(offers["offer_id"].to_list())}
    offers = offers.with_columns(
        pl.col("offer_id").replace_strict(rename),
        pl.concat_str(pl.lit(SPAN), pl.col("partner")).alias("partner"),
        pl.concat_str(pl.lit(SCRIPT), pl.col("category")).alias("category"),
        pl.concat_str(pl.lit(QUOTE), pl.col("reward_type")).alias(IMG))
    offers.write_parquet(raw / "offers.parquet")
    for table in ("impressions", "clicks", "conversions", "ground_truth"):
        frame = pl.read_parquet(raw / f"{table}.parquet")
        frame.with_columns(pl.col("offer_id").replace_strict(rename)).write_parquet(raw / f"{table}.parquet")
    users = pl.read_parquet(raw / "users.parquet")
    users.with_columns(pl.concat_str(pl.lit(IMG), pl.col("plan")).alias(SCRIPT)).write_parquet(raw / "users.parquet")


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("hostile")
    simulate(CFG.simulate, tmp / "raw")
    _hostile_raw(tmp / "raw")
    build_features(tmp / "raw", tmp / "features", CFG)
    bundle = train(tmp / "features", CFG).bundle
    bundle.info["tag"] = f"offer_ranker:{SCRIPT}"  # a model tag from elsewhere, as a report would show it
    evaluate(bundle, tmp / "features", tmp / "evaluation", CFG)
    examples = explain(bundle, tmp / "features", tmp / "explanation", CFG)["examples"]

    logs = tmp / f"logs{IMG}"  # a folder name with markup: the reports name their sources
    log = PredictionLog(logs / "p.jsonl")
    engines = {arm: Engine(ServeConfig(seed=1, explore_rate=0.2, exploration="epsilon"), bundle,
                           OnlineStore.load(tmp / "features"), arm=arm, arm_share=0.5, log=log)
               for arm in (SPAN, QUOTE)}
    for i, body in enumerate(sample_requests(tmp / "features", 120, candidates=12, seed=2)):
        body["context"]["device"] = IMG if i % 3 == 0 else body["context"].get("device")
        engine = engines[SPAN if i % 2 else QUOTE]
        out = engine.rank(RankRequest.model_validate(body)).response
        if i % 3 == 0:
            engine.feedback(Feedback(request_id=out.request_id, offer_id=out.offers[0].offer_id, event="click"))
    log.close()
    with (logs / "p.jsonl").open("a") as f:
        f.write(json.dumps({"kind": SCRIPT}) + "\n" + json.dumps({"kind": "rank", "ts": IMG}) + "\n")
    monitor(bundle, logs, tmp / "monitor", CFG.monitor.model_copy(update={"all_versions": True, "min_requests": 10}))
    ab_report(logs, tmp / "ab", CFG.ab.model_copy(update={"control": SPAN}))
    return {"examples": [ex["offer_id"] for ex in examples],
            "evaluation": (tmp / "evaluation" / "report.html").read_text(),
            "explain": (tmp / "explanation" / "report.html").read_text(),
            "monitor": (tmp / "monitor" / "monitor.html").read_text(),
            "ab": (tmp / "ab" / "ab_report.html").read_text()}


#: per report, hostile strings it always shows: the model tag, feature names and values, arm names,
#: the log folder, malformed lines, context values
SHOWN = {"evaluation": [SCRIPT], "explain": [SCRIPT], "monitor": [SCRIPT, IMG], "ab": [SPAN, QUOTE, IMG, SCRIPT]}


def _escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;")


@pytest.mark.parametrize("report", sorted(SHOWN))
def test_no_hostile_string_reaches_a_report_unescaped(pages: dict[str, Any], report: str) -> None:
    page = pages[report]
    assert not MARKUP.search(page), MARKUP.search(page)
    for payload in SHOWN[report]:  # the field was rendered, escaped
        assert _escaped(payload) in page, (report, payload)


def test_the_explain_reports_worked_examples_show_the_hostile_offer_ids_escaped(pages: dict[str, Any]) -> None:
    assert pages["examples"] and all(any(p in offer for p in PAYLOADS) for offer in pages["examples"])
    for offer in pages["examples"]:
        assert _escaped(offer) in pages["explain"]
