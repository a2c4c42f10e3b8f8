"""Ranking quality where offers are short-lived and cold: the short-lived simulator scenario.

    python benchmarks/bench_short_lived.py [--users 8000] [--seed 1] [--bootstrap 500]

Simulates ``--scenario short-lived`` (offers of 2-48 hours with text, users in sessions), builds
features, trains a bundle (nothing saved or tracked) on the default split and scores every
request after the training window with:

* ``model``: the bundle's ranking;
* ``popularity``: the smoothed offer CTR feature (``offer_ctr``), as the evaluation's baseline;
* ``recent popularity``: the offer's clicks in the hour before the request, from the logs
  (point in time; ties broken at random);
* ``oracle``: the true attraction.

The ceiling: the oracle again, each time knowing less of what no log shows, so the model can be
placed between them (an upper bound of what features can reach): without the session's intent
term, then with each user's individual taste replaced by the mean taste of their attribute group
(plan × country × age band), then without the offers' latent quality (what the offer's category,
partner, reward type and minimum spend do not explain, fitted by least squares over the
catalogue).

Efficiency is the expected top-3 clicks of a method's order over the oracle's, from the ground
truth, with a 95% CI from a bootstrap by request; differences to the model are paired by request.
``new offers only`` ranks, in each request with two or more of them, only the candidates with
fewer than ``evaluate.new_offer_impressions`` (100) impressions before the request: the cold start
on its own. (Candidates with no impression at all are too rare to measure: a new offer is shown
within minutes of its start.)
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
from publish import private_stores, write_result

HERE = Path(__file__).resolve().parent


def recent_clicks(raw: Path, frame: pl.DataFrame, hours: float = 1.0) -> np.ndarray:
    """(rows,) clicks on each row's offer in the ``hours`` before its request, from the raw logs."""
    clicks = (pl.read_parquet(raw / "clicks.parquet", columns=["offer_id", "ts"]).sort("ts")
              .with_columns(n=pl.int_range(1, pl.len() + 1).over("offer_id")))
    rows = frame.select("offer_id", "ts").with_row_index("row")

    def upto(shift: float) -> np.ndarray:  # clicks on the offer strictly before ts - shift hours
        at = rows.with_columns(t=pl.col("ts") - pl.duration(microseconds=int(shift * 3.6e9) + 1)).sort("t")
        joined = at.join_asof(clicks, left_on="t", right_on="ts", by="offer_id", strategy="backward",
                              check_sortedness=False)  # sorted by time above; polars cannot check it with `by`
        return joined.sort("row")["n"].fill_null(0).to_numpy()

    return (upto(0.0) - upto(hours)).astype(np.float64)


def efficiency(score: np.ndarray, t, k: int, rows: np.ndarray | None = None,
               groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(requests,) expected top-k clicks of ``score``'s order and of the oracle's, over the test
    set ``t`` (or its ``rows``, requests of ``groups`` rows each)."""
    from offer_ranker.stats import metrics as M

    p, tiebreak = t.p_attract, t.tiebreak
    if rows is not None:
        score, p, tiebreak = score[rows], p[rows], tiebreak[rows]
    groups = t.groups if groups is None else groups
    clicks = M.dcg_per_request(M.ranks(score, groups, tiebreak), p, groups, k, discount=t.examination)
    best = M.dcg_per_request(M.ranks(p, groups, tiebreak), p, groups, k, discount=t.examination)
    return clicks, best


def new_offer_slice(t) -> tuple[np.ndarray, np.ndarray]:
    """The cold start on its own: the rows of each request's new candidates (fewer than
    ``evaluate.new_offer_impressions`` earlier impressions) in requests with two or more of them,
    and those requests' sizes, for :func:`efficiency`'s ``rows`` and ``groups``."""
    from offer_ranker.stats import metrics as M

    request = M.request_index(t.groups)
    per = np.bincount(request[t.new_offer], minlength=len(t.groups))
    return np.flatnonzero(t.new_offer & (per[request] >= 2)), per[per >= 2]


def ceilings(cfg, t) -> dict[str, float]:
    """Efficiency of the oracle's order knowing less and less of the latent terms (see the module
    docstring); ``t`` is the test set, whose ids carry the simulator's indices."""
    from scipy.special import logit

    from offer_ranker.simulator import World
    from offer_ranker.simulator.truth import INTENT

    world = World.from_config(cfg.simulate)

    def index(column: str) -> np.ndarray:
        return t.frame[column].str.slice(1).cast(pl.Int64).to_numpy()

    request, offer, user = index("request_id"), index("offer_id"), index("user_id")
    category = world.offer_category[offer]
    known = logit(t.p_attract) - INTENT * (category == world.request_intent[request])
    groups = (world.user_plan * 100 + world.user_country) * 100 + world.user_age
    taste = pl.DataFrame(world.user_preference).with_columns(g=groups)
    mean_taste = taste.select(pl.exclude("g").mean().over("g")).to_numpy()
    attributes = known - world.user_preference[user, category] + mean_taste[user, category]
    o = pl.DataFrame({"category": world.offer_category, "partner": world.offer_partner,
                      "reward": world.reward_type, "spend": np.log1p(np.nan_to_num(world.min_spend) / 30)})
    design = np.column_stack([o.select(pl.col(c).cast(pl.String)).to_dummies().to_numpy()
                              for c in ("category", "partner", "reward")] + [o["spend"].to_numpy()[:, None]])
    fitted = design @ np.linalg.lstsq(design, world.offer_quality, rcond=None)[0]
    latent = world.offer_quality - fitted
    rows = {"oracle without the session intent": known,
            "... and individual taste → its group's mean": attributes,
            "... and without the offers' latent quality": attributes - latent[offer]}
    out = {}
    for name, score in rows.items():
        clicks, best = efficiency(score, t, cfg.evaluate.k)
        out[name] = float(clicks.sum() / best.sum())
    return out


def run(tmp: Path, users: int, seed: int, bootstrap: int) -> dict:
    from offer_ranker.config import Config
    from offer_ranker.evaluation.testset import load_test
    from offer_ranker.featurize.build import build_features
    from offer_ranker.model.baselines import PopularityRanker
    from offer_ranker.model.train import train
    from offer_ranker.simulator import simulate
    from offer_ranker.stats import metrics as M

    cfg = Config.model_validate({"simulate": {"scenario": "short-lived", "users": users, "seed": seed},
                                 "track": {"enabled": False}})
    t0 = time.perf_counter()
    sim = simulate(cfg.simulate, tmp / "raw")
    build_features(tmp / "raw", tmp / "features", cfg)
    result = train(tmp / "features", cfg, save=False)
    bundle = result.bundle
    t = load_test(bundle, tmp / "features", tmp / "raw" / "ground_truth.parquet", cfg)
    k, G = cfg.evaluate.k, len(t.groups)
    rng = np.random.default_rng(seed)
    resamples = rng.integers(0, G, size=(bootstrap, G))
    scores = {"model": bundle.score(t.X), "popularity": PopularityRanker(bundle.spec).score(t.X),
              "recent popularity": recent_clicks(tmp / "raw", t.frame) + 1e-6 * rng.random(len(t.click))}
    best = None
    per_request = {}
    for name, score in scores.items():
        per_request[name], best = efficiency(score, t, k)
    methods = {name: M.summary(v, resamples, weights=best) for name, v in per_request.items()}
    versus = {name: M.summary(per_request["model"] - per_request[name], resamples, weights=best)
              for name in scores if name != "model"}
    rows, groups = new_offer_slice(t)
    cold_resamples = rng.integers(0, groups.size, size=(bootstrap, groups.size))
    cold = {}
    cold_best = None
    for name, score in scores.items():
        v, cold_best = efficiency(score, t, min(k, 2), rows=rows, groups=groups)
        cold[name] = v
    cold_methods = {name: M.summary(v, cold_resamples, weights=cold_best) for name, v in cold.items()}
    return {
        "users": users, "seed": seed, "impressions": sim.impressions, "offers": sim.offers,
        "test": {"requests": int(G), "impressions": int(len(t.click)), "from": bundle.info["train_until"],
                 "share_of_candidates_new": float(t.new_offer.mean()),
                 "share_of_candidates_unseen": float((t.frame["offer_impressions"].to_numpy() == 0).mean()),
                 "requests_with_2+_new": int(groups.size)},
        "k": k, "bootstrap": bootstrap, "efficiency": methods, "model_minus": versus,
        "new_offers_only": {"k": min(k, 2), "efficiency": cold_methods},
        "ceiling": ceilings(cfg, t),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def print_table(r: dict) -> None:
    def ci(s: dict) -> str:
        return f"{s['value']:.3f} [{s['ci'][0]:.3f}, {s['ci'][1]:.3f}]"

    print(f"short-lived scenario: {r['impressions']:,} impressions, {r['offers']:,} offers; test "
          f"{r['test']['requests']:,} requests, {r['test']['share_of_candidates_new']:.0%} of candidates new")
    print(f"{'method':<20}{'efficiency':<26}{'model minus it':<28}{'new offers only (top 2)'}")
    for name, s in r["efficiency"].items():
        diff = ci(r["model_minus"][name]) if name in r["model_minus"] else "-"
        print(f"{name:<20}{ci(s):<26}{diff:<28}{ci(r['new_offers_only']['efficiency'][name])}")
    print("\nceiling: the oracle's efficiency knowing less of what no log shows")
    for name, value in r["ceiling"].items():
        print(f"  {name:<50}{value:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bootstrap", type=int, default=500)
    parser.add_argument("--json", type=Path, default=HERE / "results" / "short_lived.json")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    with private_stores() as tmp:
        result = run(tmp, args.users, args.seed, args.bootstrap)
    write_result(result, args.json, print_table)


if __name__ == "__main__":
    main()
