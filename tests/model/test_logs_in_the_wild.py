"""Train, score and evaluate on logs unlike the simulator's: an obvious answer, and a hostile mix
(hashed categoricals, NULL-heavy columns, 20-40 candidates, every user new, offers seen once)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from offer_ranker.cli import main
from offer_ranker.config import Config
from offer_ranker.featurize.build import build_features
from offer_ranker.featurize.frame import read_frame
from offer_ranker.model.baselines import order
from offer_ranker.model.train import train

CFG = Config.model_validate({"train": {"rounds": 60, "early_stopping": 20, "min_data_in_leaf": 20}})
START = datetime(2026, 3, 2)


def _write(raw: Path, impressions: list[dict], clicks: list[dict], offers: list[dict], users: list[dict]) -> Path:
    raw.mkdir(parents=True)
    pl.DataFrame(impressions).write_parquet(raw / "impressions.parquet")
    pl.DataFrame(clicks, schema={"request_id": pl.String, "offer_id": pl.String, "ts": pl.Datetime}).write_parquet(
        raw / "clicks.parquet")
    pl.DataFrame(schema={"request_id": pl.String, "offer_id": pl.String, "ts": pl.Datetime,
                         "value": pl.Float64}).write_parquet(raw / "conversions.parquet")
    pl.DataFrame(offers).write_parquet(raw / "offers.parquet")
    pl.DataFrame(users).write_parquet(raw / "users.parquet")
    return raw


def obvious_logs(raw: Path, seed: int = 0) -> Path:
    """40 offers; 'star' is in every request at a random slot and clicked 40% of the time, others 2%."""
    rng = np.random.default_rng(seed)
    offers = [f"o{i}" for i in range(39)] + ["star"]
    imps, clicks = [], []
    for r in range(3000):
        ts = START + timedelta(minutes=4 * r)
        shown = ["star", *rng.choice(offers[:-1], 11, replace=False)]
        for pos, slot in enumerate(rng.permutation(12), start=1):
            offer = shown[slot]
            imps.append({"request_id": f"r{r}", "ts": ts, "user_id": f"u{r % 700}", "offer_id": offer, "position": pos})
            if rng.random() < (0.4 if offer == "star" else 0.02):
                clicks.append({"request_id": f"r{r}", "offer_id": offer, "ts": ts + timedelta(seconds=5)})
    return _write(raw, imps, clicks, [{"offer_id": o, "category": f"c{i % 5}"} for i, o in enumerate(offers)],
                  [{"user_id": f"u{i}"} for i in range(700)])


def wild_logs(raw: Path, seed: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    categories = [f"{rng.integers(1 << 62):016x}" for _ in range(1500)]
    imps, clicks, offers = [], [], []
    for r in range(1500):
        ts = START + timedelta(minutes=9 * r)
        n = int(rng.integers(20, 41))
        for pos in range(1, n + 1):
            offer = f"{rng.integers(1 << 62):016x}"  # every offer seen once
            cat = categories[int(rng.integers(len(categories)))]
            price = None if rng.random() < 0.9 else float(rng.gamma(2, 10))  # NULL-heavy
            imps.append({"request_id": f"q{r}", "ts": ts, "user_id": f"user{r}", "offer_id": offer, "position": pos,
                         "price": price, "segment_hash": categories[int(rng.integers(40))],
                         "sparse_score": None if rng.random() < 0.97 else float(rng.normal())})
            offers.append({"offer_id": offer, "category": cat, "partner": cat[:3], "payout": None})
            if rng.random() < 0.08 / pos ** 0.5:
                clicks.append({"request_id": f"q{r}", "offer_id": offer, "ts": ts + timedelta(seconds=3)})
    return _write(raw, imps, clicks, offers, [{"user_id": f"user{r}", "plan": None} for r in range(1500)])


def test_minimum_functionality_an_obvious_winner_is_ranked_first(tmp_path: Path) -> None:
    build_features(obvious_logs(tmp_path / "raw"), tmp_path / "features", CFG)
    result = train(tmp_path / "features", CFG)
    test = read_frame(tmp_path / "features", start=datetime.fromisoformat(result.bundle.info["train_until"]))
    X = result.bundle.spec.matrix(test)
    scores = result.bundle.score(X)
    firsts = []
    for _, rows in test.with_row_index().group_by("request_id"):
        idx = rows["index"].to_numpy()
        firsts.append(rows["offer_id"][int(order(scores[idx], rows["offer_id"].to_list())[0])])
    assert len(firsts) > 300
    assert np.mean([f == "star" for f in firsts]) >= 0.95


@pytest.mark.parametrize("engine", ["lightgbm", "xgboost"])
def test_wild_logs_train_score_and_evaluate_through_the_cli(tmp_path: Path, engine: str) -> None:
    raw = wild_logs(tmp_path / "raw")
    runner = CliRunner()
    done = runner.invoke(main, ["features", "--raw", str(raw), "--out", str(tmp_path / "features")])
    assert done.exit_code == 0, done.output
    config = tmp_path / "c.toml"
    config.write_text(f'[train]\nengine = "{engine}"\nrounds = 40\nmin_data_in_leaf = 20\n')
    done = runner.invoke(main, ["train", "--features", str(tmp_path / "features"), "--config", str(config)])
    assert done.exit_code == 0, done.output
    tag = done.stdout.strip().splitlines()[-1]
    assert tag.startswith("offer_ranker:")
    done = runner.invoke(main, ["score", "--model", tag, "--features", str(tmp_path / "features"),
                                "--out", str(tmp_path / "scores.parquet")])
    assert done.exit_code == 0, done.output
    scores = pl.read_parquet(tmp_path / "scores.parquet")
    assert scores.columns[:2] == ["request_id", "offer_id"] and {"score", "p_click"} <= set(scores.columns)
    assert scores.height == pl.read_parquet(tmp_path / "features" / "train.parquet").height
    done = runner.invoke(main, ["evaluate", "--model", tag, "--features", str(tmp_path / "features"),
                                "--out", str(tmp_path / "eval")])
    assert done.exit_code == 0, done.output
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["test"]["requests"] > 100
    assert report["ope"] is None  # no propensities logged
    assert 0.0 <= report["methods"]["model"]["auc"]["value"] <= 1.0
    assert (tmp_path / "eval" / "report.html").stat().st_size > 10_000
    done = runner.invoke(main, ["models", "list"])
    assert tag in done.output


def test_train_explains_an_impossible_split(tmp_path: Path) -> None:
    build_features(obvious_logs(tmp_path / "raw"), tmp_path / "features", CFG)
    done = CliRunner().invoke(main, ["train", "--features", str(tmp_path / "features"),
                                     "--train-until", "2020-01-01T00:00:00"])
    assert done.exit_code != 0
    assert "train_until" in done.output and "Traceback" not in done.output
    done = CliRunner().invoke(main, ["train", "--features", str(tmp_path / "features"), "--train-until", "soon"])
    assert done.exit_code == 2 and "ISO 8601" in done.output
