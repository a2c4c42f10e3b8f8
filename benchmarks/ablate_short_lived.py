"""Which candidate feature groups pay on the short-lived scenario, measured before any is built.

    python benchmarks/ablate_short_lived.py [--users 8000] [--seed 1] [--train-seeds 3]

Simulates ``--scenario short-lived``, builds today's features (the shipped content prior among
them, measured by removing it: "without content prior"), then computes each candidate group
of issue 16 offline and point-in-time (``sql/candidate_features.sql``, plus the text models
below), adds it to a copy of the training frame, and trains and scores the bundle as
``bench_short_lived.py`` does. Every variant is trained with ``--train-seeds`` LightGBM seeds
(row and feature sampling): the spread of the baseline over those seeds is the noise any lift
must clear. Groups:

* ``session``: clicks on the candidate's category among the offers shown in the last hour;
* ``offer_scales``: the offer's counts and click rate decayed with 1-hour and 7-day constants;
* ``offer_context``: the offer's smoothed click rate within the request's device, country, surface;
* ``content``: an 8-dimensional TF-IDF + SVD vector of the offer's title and description (fitted
  on the catalogue of the training window), its similarity to the user's clicked offers and to
  the offers clicked in the request's country;
* ``neighbours``: the click rate of the offer's 10 nearest content neighbours with 20+
  impressions before the request's day (a cold-start prior);
* ``text_prior``: a ridge regression of offers' click-rate logits (relative to their category)
  on their TF-IDF text, refitted each day on offers with 20+ impressions before it;
* ``coclick``: offers clicked by the same users within a day, pointed at by the user's clicks of
  the last day.

Efficiency is the model's expected top-3 clicks over the oracle's; per variant the mean over the
train seeds, their range, and the difference to the baseline with a 95% CI from a bootstrap by
request over the seed-averaged per-request values. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
from publish import private_stores, write_result

HERE = Path(__file__).resolve().parent
GROUPS = ("session", "offer_scales", "offer_context", "content", "neighbours", "text_prior", "coclick")
KEYS = ["request_id", "offer_id"]
DIMENSIONS = 8


def offer_texts(raw: Path) -> pl.DataFrame:
    columns = ["offer_id", "category", "start_ts", "title", "description"]
    return (pl.read_parquet(raw / "offers.parquet", columns=columns)
            .with_columns(text=pl.concat_str("title", "description", separator=" ")).sort("offer_id"))


def daily_history(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """(day, offer_id, impressions, clicks) before each day of the frame."""
    return con.sql("""
        WITH days AS (SELECT DISTINCT CAST(ts AS DATE) AS day FROM fr),
        e AS (SELECT offer_id, CAST(ts AS DATE) AS d, 1 AS i, 0 AS c FROM imp
              UNION ALL SELECT offer_id, CAST(cts AS DATE), 0, 1 FROM clk)
        SELECT days.day, e.offer_id, CAST(sum(e.i) AS DOUBLE) AS impressions, CAST(sum(e.c) AS DOUBLE) AS clicks
        FROM days JOIN e ON e.d < days.day GROUP BY ALL""").pl()


def per_day(frame: pl.DataFrame, history: pl.DataFrame, name: str, score) -> pl.DataFrame:
    """``name`` for every (day, offer) of the frame: ``score(offers, known)`` with ``known`` the
    offers with 20+ impressions before the day (NULL on days with fewer than 20 of them)."""
    days = frame.select(pl.col("ts").dt.date().alias("day"), "offer_id").unique()
    parts = []
    for (day,), wanted in days.group_by(["day"]):
        known = history.filter((pl.col("day") == day) & (pl.col("impressions") >= 20))
        values = score(wanted["offer_id"].to_list(), known) if known.height >= 20 else None
        parts.append(wanted.with_columns(pl.Series(name, values, pl.Float64) if values is not None
                                         else pl.lit(None, pl.Float64).alias(name)))
    return (frame.select(*KEYS, pl.col("ts").dt.date().alias("day"))
            .join(pl.concat(parts), on=["day", "offer_id"], how="left").drop("day"))


def text_groups(con: duckdb.DuckDBPyConnection, raw: Path, frame: pl.DataFrame,
                until: datetime) -> dict[str, pl.DataFrame]:
    """content vectors (registered as ``vec`` for the SQL), neighbours and text_prior."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import normalize

    offers = offer_texts(raw)
    catalogue = offers.filter(pl.col("start_ts") < until)["text"]
    tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit(catalogue)
    svd = TruncatedSVD(DIMENSIONS, random_state=0).fit(tfidf.transform(catalogue))
    words = tfidf.transform(offers["text"])
    vectors = normalize(svd.transform(words))
    row = {o: j for j, o in enumerate(offers["offer_id"])}
    con.register("vec", pl.DataFrame({"offer_id": offers["offer_id"],
                                      **{f"content_{j}": vectors[:, j] for j in range(DIMENSIONS)}}).to_arrow())
    history = daily_history(con)
    categories = offers["category"].to_list()

    def smoothed(known: pl.DataFrame) -> np.ndarray:
        return ((known["clicks"] + 1) / (known["impressions"] + 20)).to_numpy()

    def neighbours(wanted: list[str], known: pl.DataFrame) -> np.ndarray:
        sim = vectors[[row[o] for o in wanted]] @ vectors[[row[o] for o in known["offer_id"]]].T
        own = {o: j for j, o in enumerate(known["offer_id"])}
        for i, o in enumerate(wanted):  # not the offer itself
            if o in own:
                sim[i, own[o]] = -np.inf
        top = np.argsort(-sim, axis=1)[:, :10]
        w = np.maximum(np.take_along_axis(sim, top, 1), 0) + 1e-6
        return (w * smoothed(known)[top]).sum(1) / w.sum(1)

    def text_prior(wanted: list[str], known: pl.DataFrame) -> np.ndarray:
        ctr = smoothed(known)
        y = np.log(ctr / (1 - ctr))
        cats = np.array([categories[row[o]] for o in known["offer_id"]])
        mean = {c: y[cats == c].mean() for c in set(cats)}
        model = Ridge(alpha=3.0).fit(words[[row[o] for o in known["offer_id"]]], y - [mean[c] for c in cats],
                                     sample_weight=np.sqrt(known["impressions"].to_numpy()))
        return model.predict(words[[row[o] for o in wanted]])

    return {"neighbours": per_day(frame, history, "content_neighbour_ctr", neighbours),
            "text_prior": per_day(frame, history, "content_text_logit", text_prior)}


def candidates(raw: Path, features: Path, until: datetime) -> dict[str, pl.DataFrame]:
    """Every candidate group's columns, keyed by (request_id, offer_id)."""
    frame = pl.read_parquet(features / "train.parquet", columns=[*KEYS, "ts", "user_id", "offer_ctr", "offer_category"])
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("fr", frame.to_arrow())
    con.execute(f"CREATE TABLE imp AS SELECT request_id, ts, user_id, offer_id, device, country, surface "
                f"FROM read_parquet('{raw / 'impressions.parquet'}')")
    con.execute(f"CREATE TABLE clk AS SELECT c.offer_id, c.ts AS cts, i.user_id, i.device, i.country, i.surface "
                f"FROM read_parquet('{raw / 'clicks.parquet'}') AS c JOIN imp AS i USING (request_id, offer_id)")
    con.execute(f"CREATE TABLE off AS SELECT offer_id, category FROM read_parquet('{raw / 'offers.parquet'}')")
    groups = text_groups(con, raw, frame, until)
    sums = ", ".join(f"sum(content_{j}) OVER w AS p{j}" for j in range(DIMENSIONS))
    dot = " + ".join(f"{{0}}.p{j} * v.content_{j}" for j in range(DIMENSIONS))
    norm = " + ".join(f"{{0}}.p{j} * {{0}}.p{j}" for j in range(DIMENSIONS))
    text = (HERE / "sql" / "candidate_features.sql").read_text()
    t_ref = con.execute("SELECT epoch(min(ts)) FROM imp").fetchall()[0][0]
    text = text.replace("{{ user_profile }}", sums).replace("{{ t_ref }}", repr(float(t_ref)))
    for alias in ("u", "s"):
        text = text.replace(f"{{{{ profile_dot }}}}({alias})", f"(({dot.format(alias)}) / sqrt({norm.format(alias)}))")
    con.execute(text)
    for group in GROUPS:
        if group not in groups:
            groups[group] = con.sql(f"SELECT * FROM g_{group}").pl()
    con.close()
    return groups


def score_variant(features: Path, raw: Path, frame: pl.DataFrame, manifest: dict, extra: list[pl.DataFrame],
                  out: Path, seed: int, cfg_data: dict,
                  drop: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train on the frame plus ``extra`` columns, less the ``drop`` features (a features folder in
    ``out``) with LightGBM seed ``seed``; per-request expected clicks and the oracle's, all requests
    and new offers only."""
    from bench_short_lived import efficiency, new_offer_slice

    from offer_ranker.config import Config
    from offer_ranker.evaluation.testset import load_test
    from offer_ranker.model.train import train

    described = [f for f in manifest["features"] if f["name"] not in drop]
    frame = frame.drop(drop)
    for columns in extra:
        frame = frame.join(columns, on=KEYS, how="left", maintain_order="left")
        described += [{"name": c, "entity": "offer", "dtype": "numeric", "window": "candidate", "description": c,
                       "group": "candidate"} for c in columns.columns if c not in KEYS]
    out.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(out / "train.parquet")
    (out / "manifest.json").write_text(json.dumps(manifest | {"features": described}))
    cfg = Config.model_validate(cfg_data | {"train": {"seed": seed}})
    bundle = train(out, cfg, save=False).bundle
    t = load_test(bundle, out, raw / "ground_truth.parquet", cfg)
    score = bundle.score(t.X)
    clicks, best = efficiency(score, t, cfg.evaluate.k)
    rows, groups = new_offer_slice(t)
    cold, cold_best = efficiency(score, t, min(cfg.evaluate.k, 2), rows=rows, groups=groups)
    return clicks, best, cold, cold_best


def run(tmp: Path, users: int, seed: int, train_seeds: int, bootstrap: int, groups: list[str]) -> dict:
    from offer_ranker.config import Config
    from offer_ranker.featurize.build import build_features
    from offer_ranker.model.train import split_times
    from offer_ranker.simulator import simulate

    started = time.perf_counter()
    cfg_data = {"simulate": {"scenario": "short-lived", "users": users, "seed": seed}, "track": {"enabled": False}}
    cfg = Config.model_validate(cfg_data)
    raw, features = tmp / "raw", tmp / "features"
    sim = simulate(cfg.simulate, raw)
    build_features(raw, features, cfg)
    manifest = json.loads((features / "manifest.json").read_text())
    until = split_times(manifest, cfg)[2]
    found = candidates(raw, features, until)
    frame = pl.read_parquet(features / "train.parquet")
    variants = {"baseline": [], **{g: [g] for g in groups}, "all": list(groups)}
    # the shipped content prior's own lift: the baseline without it
    shipped = ("offer_content_ctr",) if "offer_content_ctr" in frame.columns else ()
    if shipped:
        variants = {"baseline": [], "without content prior": [], **{k: v for k, v in variants.items() if k != "baseline"}}
    rng = np.random.default_rng(seed)
    results, base = {}, None
    for name, members in variants.items():
        drop = shipped if name == "without content prior" else ()
        runs = [score_variant(features, raw, frame, manifest, [found[g] for g in members], tmp / name.replace(" ", "_"),
                              s, cfg_data, drop) for s in range(train_seeds)]
        clicks, best = np.mean([r[0] for r in runs], axis=0), runs[0][1]
        cold, cold_best = np.mean([r[2] for r in runs], axis=0), runs[0][3]
        if base is None:
            base = (clicks, cold)
            resamples = rng.integers(0, clicks.size, (bootstrap, clicks.size))
            cold_resamples = rng.integers(0, cold.size, (bootstrap, cold.size))
        per_seed = [r[0].sum() / best.sum() for r in runs]
        diff = (clicks - base[0])[resamples].sum(1) / best[resamples].sum(1)
        cold_diff = (cold - base[1])[cold_resamples].sum(1) / cold_best[cold_resamples].sum(1)
        results[name] = {
            "columns": [c for g in members for c in found[g].columns if c not in KEYS],
            "efficiency": float(clicks.sum() / best.sum()), "per_seed": per_seed,
            "minus_baseline": float((clicks - base[0]).sum() / best.sum()),
            "minus_baseline_ci": [float(np.quantile(diff, 0.025)), float(np.quantile(diff, 0.975))],
            "new_offers_only": float(cold.sum() / cold_best.sum()),
            "new_offers_minus_baseline": float((cold - base[1]).sum() / cold_best.sum()),
            "new_offers_minus_baseline_ci": [float(np.quantile(cold_diff, q)) for q in (0.025, 0.975)],
        }
        print(f"  {name}: {results[name]['efficiency']:.4f}", flush=True)
    return {"users": users, "seed": seed, "impressions": sim.impressions, "train_seeds": train_seeds,
            "bootstrap": bootstrap, "variants": results, "seconds": round(time.perf_counter() - started, 1)}


def print_table(r: dict) -> None:
    base = r["variants"]["baseline"]["per_seed"]
    print(f"\nshort-lived scenario, {r['impressions']:,} impressions; each variant trained with {r['train_seeds']} "
          f"seeds (baseline range over seeds {min(base):.4f}-{max(base):.4f})")
    print(f"{'variant':<22}{'efficiency':<12}{'seed range':<17}{'minus baseline [95% CI]':<30}"
          f"{'new offers (top 2)':<20}minus baseline [95% CI]")
    for name, v in r["variants"].items():
        lo, hi = v["minus_baseline_ci"]
        clo, chi = v["new_offers_minus_baseline_ci"]
        print(f"{name:<22}{v['efficiency']:<12.4f}{min(v['per_seed']):.4f}-{max(v['per_seed']):.4f}    "
              f"{v['minus_baseline']:+.4f} [{lo:+.4f}, {hi:+.4f}]    {v['new_offers_only']:<20.4f}"
              f"{v['new_offers_minus_baseline']:+.4f} [{clo:+.4f}, {chi:+.4f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--train-seeds", type=int, default=3)
    parser.add_argument("--bootstrap", type=int, default=500)
    parser.add_argument("--groups", default=",".join(GROUPS))
    parser.add_argument("--json", type=Path, default=HERE / "results" / "short_lived_ablation.json")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    with private_stores() as tmp:
        result = run(tmp, args.users, args.seed, args.train_seeds, args.bootstrap, args.groups.split(","))
    write_result(result, args.json, print_table)


if __name__ == "__main__":
    main()
