"""The short-lived scenario (``offer-ranker simulate --scenario short-lived``): offers live 2-48
hours and arrive all the time, carry text that hints at their quality without naming it, and
users come in sessions whose clicks share an intent. The default scenario is unchanged."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from offer_ranker.config import Config, SimulateConfig
from offer_ranker.featurize.build import build_features
from offer_ranker.simulator import MAX_SLATE, World, simulate
from offer_ranker.simulator.text import PRAISE, SHOUT

CFG = SimulateConfig(scenario="short-lived", users=3000, days=6, seed=4)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, World]:
    out = tmp_path_factory.mktemp("short-lived")
    simulate(CFG, out / "raw")
    return out, World.from_config(CFG)


def test_offers_live_2_to_48_hours_and_keep_arriving(run: tuple[Path, World]) -> None:
    out, world = run
    offers = pl.read_parquet(out / "raw" / "offers.parquet")
    assert offers.height == CFG.offers == 60 * CFG.days
    hours = (offers["end_ts"] - offers["start_ts"]).dt.total_seconds() / 3600
    assert hours.min() >= 2 and hours.max() <= 48
    # offers start in every 6-hour block of the period: a continuous stream, not a launch
    start = offers["start_ts"].filter(offers["start_ts"].is_between(CFG.start, CFG.start + timedelta(days=CFG.days),
                                                                   closed="left"))
    blocks = ((start - CFG.start).dt.total_hours() // 6).unique()
    assert blocks.len() == CFG.days * 4
    # every country can fill a slate at every moment (the always-on lanes)
    for at in np.linspace(world.start, world.start + CFG.days * 86_400_000_000 - 1, 97).astype(np.int64):
        live = (world.offer_start <= at) & (at < world.offer_end)
        assert (world.available[live].sum(0) >= MAX_SLATE).all(), at
    # nearly every candidate shown on a day was new the day before
    imp = pl.read_parquet(out / "raw" / "impressions.parquet", columns=["offer_id", "ts"])
    first_seen = imp.group_by("offer_id").agg(pl.col("ts").min().alias("first"))
    late = imp.filter(pl.col("ts") >= CFG.start + timedelta(days=3)).join(first_seen, on="offer_id")
    assert (late["ts"] - late["first"] < timedelta(hours=48)).mean() > 0.95


def test_text_hints_at_quality_without_naming_it(run: tuple[Path, World]) -> None:
    out, world = run
    offers = pl.read_parquet(out / "raw" / "offers.parquet")
    assert offers["title"].null_count() == offers["description"].null_count() == 0
    assert offers["title"].n_unique() > 0.8 * offers.height
    praised = np.array([any(w in t.lower() for w in PRAISE) for t in offers["title"]])
    quality = world.offer_quality  # offer ids follow creation order: o<index>
    order = offers["offer_id"].str.slice(1).cast(pl.Int64).to_numpy()
    high = quality[order] > np.median(quality)
    # praise is likelier for good offers, and far from certain either way
    assert 0.6 < praised[high].mean() < 0.95 and 0.05 < praised[~high].mean() < 0.4
    shouting = np.array([any(w in t for w in SHOUT) for t in offers["title"]])
    assert shouting.mean() < 0.3
    # the category speaks through synonyms: most categories use several words across offers
    things = offers.with_columns(thing=pl.col("title").str.extract(r"^\S+ ([^:]+):"))
    assert (things.group_by("category").agg(pl.col("thing").n_unique())["thing"] >= 3).mean() > 0.8


def test_sessions_share_an_intent(run: tuple[Path, World]) -> None:
    out, world = run
    assert world.request_intent is not None and (world.request_intent >= 0).mean() == pytest.approx(0.7, abs=0.05)
    imp = pl.read_parquet(out / "raw" / "impressions.parquet", columns=["request_id", "user_id", "ts"])
    requests = imp.group_by("request_id").agg(pl.col("user_id").first(), pl.col("ts").first())
    assert requests.height / requests["user_id"].n_unique() > 4  # several requests a session
    # clicks of one session land on the same category far more often than two random clicks do
    clicks = pl.read_parquet(out / "raw" / "clicks.parquet").join(
        pl.read_parquet(out / "raw" / "offers.parquet", columns=["offer_id", "category"]), on="offer_id")
    gt = pl.read_parquet(out / "raw" / "ground_truth.parquet", columns=["request_id", "offer_id", "p_attract"])
    assert gt.height == imp.height
    by_user = clicks.join(requests.select("request_id", "user_id"), on="request_id").sort("ts")
    pairs = by_user.with_columns(prev=pl.col("category").shift(1).over("user_id"),
                                 gap=(pl.col("ts") - pl.col("ts").shift(1).over("user_id")))
    close = pairs.filter(pl.col("gap") < timedelta(minutes=20))
    same_in_session = (close["category"] == close["prev"]).mean()
    shares = clicks["category"].value_counts(normalize=True)["proportion"].to_numpy()
    assert same_in_session > 2 * float((shares ** 2).sum())


def test_features_skip_the_text_columns(run: tuple[Path, World]) -> None:
    out, _ = run
    build_features(out / "raw", out / "features", Config(simulate=CFG))
    columns = pl.read_parquet_schema(out / "features" / "train.parquet")
    assert not [c for c in columns if "title" in c or "description" in c]


def test_the_default_scenario_is_unchanged(tmp_path: Path) -> None:
    """Same bytes as before the scenario existed (digests of seed 11's files, recorded then)."""
    simulate(SimulateConfig(users=3000, offers=150, days=10, seed=11), tmp_path)
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in sorted(tmp_path.glob("*.parquet"))}
    assert digests == {"clicks.parquet": "f965b0f53f391ad2", "conversions.parquet": "a2b3956f6dc5c82e",
                       "ground_truth.parquet": "88a125a9e9d2123a", "impressions.parquet": "d1fa1c4af8f616dd",
                       "offers.parquet": "7645885dbbbfe6e1", "users.parquet": "0ffa10ecf1cc8ba7"}
