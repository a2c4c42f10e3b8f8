"""A reference for bench_model.py: the simulator's own click model form, fitted on observable data.

The simulator's attraction logit is additive: offer quality (partner, category, reward type,
minimum spend and a latent part) + plan × category + country × category + age band × category +
hour × category + device × category + surface + price + the user × offer history (+ the user's
latent clickiness and taste, which no log shows). This fits exactly those terms — one-hot, with
the offer's own id for its latent quality, and the position — by logistic regression on the
training window's clicks, and orders the test requests by it at the top slot.

It is not a product model: it knows the simulator's functional form, which real logs do not
reveal. It tells how much of the oracle's expected clicks the logged data support at all, so a
target above it cannot be met by any learner from these features and this much data.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression

#: Terms of the simulator's attraction logit (offer_ranker.simulator.attraction_logit) as one-hot blocks.
ONE_HOT = {"offer": ["offer_id"], "partner": ["offer_partner"], "category": ["offer_category"],
           "reward": ["offer_x_reward_type"], "plan×category": ["user_x_plan", "offer_category"],
           "country×category": ["ctx_country", "offer_category"], "age×category": ["user_x_age_band", "offer_category"],
           "hour×category": ["ctx_hour", "offer_category"], "device×category": ["ctx_device", "offer_category"],
           "surface": ["ctx_surface"], "age": ["user_x_age_band"], "position": ["position"]}
NUMERIC = ["log_price", "min_spend", "fatigue", "clicked_before", "converted_before", "fresh_user"]


def reference(features: Path, truth: Path, until: datetime) -> dict[str, float]:
    """Efficiency (all requests, new users) and AUC of the well-specified model trained before
    ``until``, on the impressions from ``until`` on, measured like ``offer-ranker evaluate``."""
    from offer_ranker.featurize.frame import group_sizes
    from offer_ranker.simulator import examination
    from offer_ranker.stats import metrics as M

    test, top, logged = scores(features, until)
    p_attract = test.join(pl.read_parquet(truth, columns=["request_id", "offer_id", "p_attract"]),
                          on=["request_id", "offer_id"], how="left", maintain_order="left")["p_attract"].to_numpy()
    groups, exam = group_sizes(test["request_id"]), examination(np.arange(1, 11))
    mine = M.dcg_per_request(M.ranks(top, groups), p_attract, groups, 3, discount=exam)
    best = M.dcg_per_request(M.ranks(p_attract, groups), p_attract, groups, 3, discount=exam)
    new = test["user_is_new"].to_numpy()[M.request_starts(groups)] > 0.5
    return {"efficiency": float(mine.sum() / best.sum()), "efficiency_new_users": float(mine[new].sum() / best[new].sum()),
            "auc": M.auc(logged, (test["label"] >= 1).to_numpy().astype(float))}


def scores(features: Path, until: datetime) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """(test frame, scores at the top slot, scores at the logged slot) of the well-specified
    model trained before ``until``."""
    from offer_ranker.simulator import CATEGORIES, CATEGORY_PRICE

    frame = pl.read_parquet(features / "train.parquet").with_columns(
        (pl.col("imp_x_price").log() - pl.col("offer_category").replace_strict(
            dict(zip(CATEGORIES, CATEGORY_PRICE.tolist())), return_dtype=pl.Float64).log()).alias("log_price"),
        (pl.col("offer_x_min_spend").fill_null(0) / 30).log1p().alias("min_spend"),
        pl.col("uo_impressions").clip(0, 5).alias("fatigue"),
        (pl.col("uo_clicks") > 0).cast(pl.Float64).alias("clicked_before"),
        (pl.col("uo_conversions") > 0).cast(pl.Float64).alias("converted_before"),
        (pl.col("user_days_since_signup") < 1).cast(pl.Float64).alias("fresh_user"))
    train, test = frame.filter(pl.col("ts") < until), frame.filter(pl.col("ts") >= until)
    X, vocab = _design(train)
    model = LogisticRegression(C=1.0, max_iter=3000).fit(X, (train["label"] >= 1).to_numpy())
    top, _ = _design(test.with_columns(pl.lit(1, dtype=train["position"].dtype).alias("position")), vocab)
    return test, model.decision_function(top), model.decision_function(_design(test, vocab)[0])


def _design(frame: pl.DataFrame, vocab: dict | None = None) -> tuple[sp.csr_matrix, dict]:
    vocab = {} if vocab is None else vocab
    blocks = []
    for name, columns in ONE_HOT.items():
        key = frame.select(pl.concat_str([pl.col(c).cast(pl.String).fill_null("?") for c in columns],
                                         separator="|")).to_series()
        if name not in vocab:
            vocab[name] = {k: i for i, k in enumerate(sorted(key.unique().to_list()))}
        index = key.replace_strict(vocab[name], default=-1, return_dtype=pl.Int64).to_numpy()
        rows = np.flatnonzero(index >= 0)
        blocks.append(sp.csr_matrix((np.ones(rows.size), (rows, index[rows])), shape=(frame.height, len(vocab[name]))))
    blocks.append(sp.csr_matrix(frame.select(NUMERIC).fill_null(0).to_numpy()))
    return sp.hstack(blocks).tocsr(), vocab
