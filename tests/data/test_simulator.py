"""The simulator: raw-log contract, ground truth consistent with outcomes, realistic structure
(position bias, cold start, history effects), exact propensities and determinism."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from offer_ranker.config import SimulateConfig
from offer_ranker.data import schema
from offer_ranker.simulator import (
    CONVERTED,
    COUNTRIES,
    DEVICES,
    FATIGUE,
    FATIGUE_CAP,
    INTEREST,
    MAX_SLATE,
    MIN_SLATE,
    SURFACES,
    World,
    attraction_logit,
    candidates,
    popularity_scores,
    simulate,
)

CFG = SimulateConfig(users=3000, offers=150, days=10, seed=11, uniform_share=0.2)
TABLES = ("impressions", "clicks", "conversions", "offers", "users", "ground_truth")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    result = simulate(CFG, out)
    frames = {name: pl.read_parquet(out / f"{name}.parquet") for name in TABLES}
    return result, frames


@pytest.fixture(scope="module")
def logs(run):
    """Impressions joined with ground truth, clicks and conversions (one row per impression)."""
    _, f = run
    key = ["request_id", "offer_id"]
    return (
        f["impressions"]
        .join(f["ground_truth"], on=key, how="left")
        .join(f["clicks"].rename({"ts": "click_ts"}), on=key, how="left")
        .join(f["conversions"].rename({"ts": "conversion_ts"}), on=key, how="left")
        .with_columns(clicked=pl.col("click_ts").is_not_null(), converted=pl.col("conversion_ts").is_not_null(),
                      offer=pl.col("offer_id").str.slice(1).cast(pl.Int64),
                      user=pl.col("user_id").str.slice(1).cast(pl.Int64),
                      day=(pl.col("ts") - pl.lit(CFG.start)).dt.total_days())
    )


@pytest.fixture(scope="module")
def popularity_slot(logs):
    """Each impression's slot under the popularity order, recomputed from the logs alone."""
    parts = []
    n_offers = CFG.offers
    for day in range(CFG.days):
        before = logs.filter(pl.col("day") < day)
        impressions = np.bincount(before["offer"].to_numpy(), minlength=n_offers)
        clicks = np.bincount(before.filter("clicked")["offer"].to_numpy(), minlength=n_offers)
        scores = popularity_scores(clicks, impressions, seed=CFG.seed, day=day)
        today = logs.filter(pl.col("day") == day)
        parts.append(today.with_columns(score=pl.Series(scores[today["offer"].to_numpy()])))
    return pl.concat(parts).with_columns(
        pop_slot=pl.col("score").rank("ordinal", descending=True).over("request_id"),
        n=pl.len().over("request_id"),
    )


def test_result_counts_match_files(run):
    result, f = run
    assert result.impressions == f["impressions"].height == f["ground_truth"].height
    assert result.requests == f["impressions"]["request_id"].n_unique()
    assert result.clicks == f["clicks"].height
    assert result.conversions == f["conversions"].height
    assert (result.users, result.offers) == (f["users"].height, f["offers"].height) == (CFG.users, CFG.offers)
    assert all(path.exists() for path in result.paths.values())


def test_tables_have_the_contract_columns(run):
    _, f = run
    for table in schema.TABLES:
        assert set(table.required) <= set(f[table.name].columns), table.name
    assert {"surface", "device", "country", "price", "propensity", "policy"} <= set(f["impressions"].columns)
    assert {"partner", "category", "payout", "start_ts", "end_ts"} <= set(f["offers"].columns)
    assert f["impressions"]["position"].dtype == pl.Int32
    assert f["impressions"]["ts"].dtype == pl.Datetime("us")
    assert f["offers"]["partner"].n_unique() <= CFG.partners
    assert f["offers"]["category"].n_unique() == CFG.categories
    assert (f["offers"]["payout"] > 0).all()
    for table in ("impressions", "clicks", "conversions", "ground_truth"):
        assert not f[table].select(["request_id", "offer_id"]).is_duplicated().any(), table


def test_positions_are_a_permutation_of_10_to_20_slots(run):
    _, f = run
    per_request = f["impressions"].group_by("request_id").agg(
        n=pl.len(), lo=pl.col("position").min(), hi=pl.col("position").max(), distinct=pl.col("position").n_unique(),
        contexts=pl.struct("ts", "user_id", "surface", "device", "country").n_unique(),
    )
    assert (per_request["lo"] == 1).all()
    assert (per_request["hi"] == per_request["n"]).all()
    assert (per_request["distinct"] == per_request["n"]).all()
    assert per_request["n"].is_between(MIN_SLATE, MAX_SLATE).all()
    assert (per_request["contexts"] == 1).all()
    assert per_request["n"].min() == MIN_SLATE and per_request["n"].max() == MAX_SLATE


def test_shown_offers_were_live_and_available(run, logs):
    _, f = run
    shown = logs.join(f["offers"], on="offer_id", how="left")
    assert shown["start_ts"].null_count() == 0
    assert ((shown["start_ts"] <= shown["ts"]) & (shown["ts"] < shown["end_ts"])).all()
    end = CFG.start + timedelta(days=CFG.days)
    assert ((shown["ts"] >= CFG.start) & (shown["ts"] < end)).all()
    world = World.from_config(CFG)
    country = shown["country"].replace_strict({c: i for i, c in enumerate(COUNTRIES)}).to_numpy()
    assert world.available[shown["offer"].to_numpy(), country].all()


def test_clicks_and_conversions_follow_impressions(run, logs):
    _, f = run
    key = ["request_id", "offer_id"]
    assert f["clicks"].join(f["impressions"], on=key, how="anti").height == 0
    assert f["conversions"].join(f["clicks"], on=key, how="anti").height == 0
    clicks = logs.filter("clicked")
    delay = (clicks["click_ts"] - clicks["ts"]).dt.total_seconds()
    assert delay.min() >= 2 and delay.max() <= 120
    conversions = logs.filter("converted").join(f["offers"].select("offer_id", "payout"), on="offer_id")
    assert (conversions["conversion_ts"] > conversions["click_ts"]).all()
    assert (conversions["value"] == conversions["payout"]).all()


def test_propensity_is_the_exact_mixture_probability(popularity_slot):
    eps = CFG.uniform_share
    df = popularity_slot
    assert ((df["propensity"] > 0) & (df["propensity"] <= 1)).all()
    assert set(df["policy"].unique()) == {"popularity", "uniform"}
    # The popularity branch is the deterministic order of the scores recomputed from earlier logs.
    assert (df.filter(pl.col("policy") == "popularity")["position"] == df.filter(pl.col("policy") == "popularity")["pop_slot"]).all()
    expected = (1 - eps) * (df["pop_slot"] == df["position"]).cast(pl.Float64) + eps / df["n"]
    assert np.allclose(df["propensity"].to_numpy(), expected.to_numpy(), rtol=0, atol=1e-12)
    share = df.filter(pl.col("policy") == "uniform")["request_id"].n_unique() / df["request_id"].n_unique()
    assert abs(share - eps) < 0.03


def test_uniform_branch_is_really_random(popularity_slot):
    # A uniform shuffle leaves on average 1 offer per request at its popularity slot (variance 1).
    uniform = popularity_slot.filter(pl.col("policy") == "uniform")
    requests, n = uniform["request_id"].n_unique(), uniform.height
    share = (uniform["position"] == uniform["pop_slot"]).mean()
    assert abs(share - requests / n) < 4 * math.sqrt(requests) / n
    assert 0.04 < share < 0.1


def test_ctr_falls_with_position(logs):
    uniform = logs.filter(pl.col("policy") == "uniform")
    top = uniform.filter(pl.col("position") <= 3)["clicked"].mean()
    low = uniform.filter(pl.col("position").is_between(8, 10))["clicked"].mean()
    assert top > 1.5 * low
    by_position = logs.group_by("position").agg(pl.col("p_click").mean()).sort("position")["p_click"].to_numpy()
    assert (np.diff(by_position) <= 0).all()
    # Position bias is in p_click only: p_attract on uniform requests does not depend on the slot.
    attract = uniform.group_by(pl.col("position") <= 3).agg(pl.col("p_attract").mean())["p_attract"]
    assert abs(attract[0] / attract[1] - 1) < 0.1


def test_headline_rates_are_realistic(logs):
    assert 0.015 < logs["clicked"].mean() < 0.05
    assert 0.05 < logs.filter(pl.col("position") == 1)["clicked"].mean() < 0.14
    assert 0.06 < logs.filter("clicked")["converted"].mean() < 0.22


def test_outcomes_match_ground_truth(logs):
    p = logs["p_click"].to_numpy()
    assert abs(logs["clicked"].sum() - p.sum()) < 4 * math.sqrt((p * (1 - p)).sum())
    q = (logs["p_click"] * logs["p_convert"]).to_numpy()
    assert abs(logs["converted"].sum() - q.sum()) < 4 * math.sqrt((q * (1 - q)).sum())
    clicked = logs.filter("clicked")
    r = clicked["p_convert"].to_numpy()  # conversions given clicks, the sharper check
    assert abs(clicked["converted"].sum() - r.sum()) < 4 * math.sqrt((r * (1 - r)).sum())
    assert (logs["p_click"] <= logs["p_attract"]).all()


def test_new_users_and_new_offers_keep_arriving(run, logs):
    _, f = run
    first_day = logs.group_by("user_id").agg(first_day=pl.col("day").min())
    late = logs.filter(pl.col("day") >= CFG.days * 2 // 3).join(first_day, on="user_id")
    assert (late["day"] - late["first_day"] <= 2).mean() > 0.4  # recent arrivals: cold start
    assert (late["first_day"] == 0).mean() > 0.02  # and some users return all along
    offers = f["offers"]
    shown = logs["offer_id"].unique()
    fresh = offers.filter(pl.col("start_ts") >= CFG.start + timedelta(days=1), pl.col("offer_id").is_in(shown.implode()))
    assert fresh.height > CFG.offers // 3
    expired = offers.filter(pl.col("end_ts") < CFG.start + timedelta(days=CFG.days - 1))
    assert expired.height > CFG.offers // 4
    lifetime = (offers["end_ts"] - offers["start_ts"]).dt.total_hours() / 24
    assert lifetime.median() < 21


def test_history_effects_are_point_in_time(logs):
    """logit(p_attract) minus the history-free logit equals the fatigue / interest / converted
    terms computed from strictly earlier logged events of the same user and offer."""
    world = World.from_config(CFG)
    df = logs.sort("user", "offer", "ts")
    pair, never = ["user", "offer"], pl.datetime(9999, 1, 1)
    df = df.with_columns(
        unclicked=(~pl.col("clicked")).cast(pl.Int64).cum_sum().shift(1, fill_value=0).over(pair),
        clicked_ts=pl.col("click_ts").fill_null(never).cum_min().shift(1, fill_value=never).over(pair),
        converted_ts=pl.col("conversion_ts").fill_null(never).cum_min().shift(1, fill_value=never).over(pair),
    ).with_columns(
        converted_before=pl.col("converted_ts") < pl.col("ts"),
        clicked_before=pl.col("clicked_ts") < pl.col("ts"),
    )
    expected = (FATIGUE * df["unclicked"].clip(0, FATIGUE_CAP)
                + INTEREST * (df["clicked_before"] & ~df["converted_before"]).cast(pl.Float64)
                + CONVERTED * df["converted_before"].cast(pl.Float64)).to_numpy()
    code = {name: i for i, name in enumerate(DEVICES)} | {name: i for i, name in enumerate(SURFACES)}
    base = attraction_logit(
        world, df["user"].to_numpy(), df["offer"].to_numpy(), df["ts"].cast(pl.Int64).to_numpy(),
        df["device"].replace_strict(code).to_numpy(), df["surface"].replace_strict(code).to_numpy(),
        df["price"].to_numpy())
    p = df["p_attract"].to_numpy()
    np.testing.assert_allclose(np.log(p / (1 - p)) - base, expected, atol=1e-6)
    # ... and the history is not trivial: repeats, clicks and conversions of earlier requests occur.
    assert (df["unclicked"] > 0).sum() > 1000
    assert df["clicked_before"].sum() > 20 and df["converted_before"].sum() > 0


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    small = SimulateConfig(users=300, offers=60, days=3, seed=5)
    a, b, c = (simulate(cfg, tmp_path / name) for name, cfg in
               (("a", small), ("b", small), ("c", small.model_copy(update={"seed": 6}))))
    for table in TABLES:
        assert a.paths[table].read_bytes() == b.paths[table].read_bytes(), table
    first = pl.read_parquet(a.paths["impressions"])
    assert first.equals(pl.read_parquet(b.paths["impressions"]))
    assert first.height > 1000
    assert not first.equals(pl.read_parquet(c.paths["impressions"]))
    assert not pl.read_parquet(a.paths["offers"]).equals(pl.read_parquet(c.paths["offers"]))


@pytest.mark.parametrize("offers", [150, 3000])  # 3000: the big-catalogue sampling path
def test_candidates_are_a_uniform_subset_of_the_eligible(offers):
    world = World.from_config(SimulateConfig(users=200, offers=offers, days=4, seed=3))
    r = int(np.searchsorted(world.request_ts, world.start + 2 * 86_400_000_000))  # a request on day 2
    ts, country = world.request_ts[r], world.user_country[world.request_user[r]]
    eligible = np.flatnonzero((world.offer_start <= ts) & (ts < world.offer_end) & world.available[:, country])
    batch = candidates(world, np.full(20_000, r), np.random.default_rng(0))
    shown = batch.offer[batch.offer >= 0]
    assert np.isin(shown, eligible).all()
    assert ((batch.offer >= 0).sum(1) == batch.n).all() and batch.n.min() == MIN_SLATE
    assert all(len(set(row[row >= 0])) == n for row, n in zip(batch.offer[:200], batch.n[:200]))
    counts = np.bincount(shown, minlength=world.n_offers)[eligible]
    expected = shown.size / eligible.size  # every eligible offer equally likely to be included
    assert np.abs(counts - expected).max() < 5 * math.sqrt(expected)
