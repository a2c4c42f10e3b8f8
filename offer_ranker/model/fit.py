"""Fitting the three models of a bundle on time slices of the training frame, and the choices
made on the validation slice: the ranker (LambdaRank), the click model and its calibration, the
conversion model, and which model orders the page.

Labels are graded (0 shown, 1 clicked, 2 converted). The objective sets the LambdaRank gains:
clicks ``[0, 1, 1]``, conversions ``[0, 1, 5]``, revenue ``[0, 1, 3]`` with conversions weighted
by their value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from offer_ranker.config import Config
from offer_ranker.featurize.frame import ModelInputs, with_position
from offer_ranker.model.bundle import Bundle, Calibration
from offer_ranker.model.engines import Booster, RankData, fit_classifier, fit_ranker
from offer_ranker.policy.priors import segment_lifts
from offer_ranker.stats import metrics


@dataclass(frozen=True)
class SliceSummary:
    """What the bundle records of the fitting slice: its size, its clicks' conversions and mean
    value, the new users' segment lifts. From the slice on the driver (:meth:`of`) or counted by
    Spark (:func:`.distributed.summary`)."""

    rows: int
    requests: int
    clicks: int
    conversions: int
    mean_value: float  # of a clicked impression with a value (1.0 when none has one)
    segment_lifts: dict[str, float]

    @classmethod
    def of(cls, s: ModelInputs) -> SliceSummary:
        clicks = s.frame.filter(pl.col("label") >= 1)
        values = clicks["value"].drop_nulls()
        positive = values.filter(values > 0)
        return cls(s.frame.height, len(s.groups), clicks.height, int((clicks["label"] == 2).sum()),
                   float(positive.mean()) if positive.len() else 1.0, segment_lifts(s.frame))

    @property
    def conversion_rate(self) -> float:
        """Conversions per click."""
        return self.conversions / self.clicks if self.clicks else 0.0


GAINS = {"clicks": (0.0, 1.0, 1.0), "conversions": (0.0, 1.0, 5.0), "revenue": (0.0, 1.0, 3.0)}
#: Fewer conversions than this in the fitting slice (or a tenth of it in validation): no conversion model.
MIN_CONVERSIONS = 50


def base_params(cfg: Config) -> dict[str, Any]:
    """The boosting parameters of ``[train]``, in LightGBM's names (XGBoost's are translated)."""
    t = cfg.train
    return {"learning_rate": t.learning_rate, "num_leaves": t.num_leaves, "min_data_in_leaf": t.min_data_in_leaf,
            "max_bin": t.max_bin,
            "feature_fraction": t.feature_fraction, "bagging_fraction": t.bagging_fraction, "bagging_freq": 1,
            "lambda_l2": t.lambda_l2, "num_threads": t.threads, "seed": t.seed, "deterministic": True,
            "force_col_wise": True, "lambdarank_truncation_level": 20, "max_cat_to_onehot": 8}


def ranker_data(s: ModelInputs, cfg: Config) -> RankData:
    """The ranker's inputs for ``s`` under the configured objective and position-bias handling."""
    t = cfg.train
    X = with_position(s.X, s.position) if t.position_bias == "feature" else s.X
    weight = None
    if t.objective == "revenue":
        value = s.frame["value"].fill_null(0.0).to_numpy()
        positive = value[value > 0]
        weight = 1.0 + value / positive.mean() if positive.size else None
    return RankData(X, s.label, s.groups, weight, s.position.astype(np.int32) if t.position_bias == "lambdarank" else None)


def fit_ranker_for(fit: ModelInputs, valid: ModelInputs, cfg: Config, params: dict[str, Any],
                   report: Any = None) -> Booster:
    """LambdaRank on ``fit``, early-stopped on ``valid``'s NDCG@3 (``report`` gets each round's score)."""
    t = cfg.train
    return fit_ranker(t.engine, ranker_data(fit, cfg), ranker_data(valid, cfg),
                      params, gains=GAINS[t.objective], categorical=fit.categorical,
                      rounds=t.rounds, early_stopping=t.early_stopping,
                      position_aware=t.position_bias == "lambdarank", report=report)


def fit_click_model(fit: ModelInputs, valid: ModelInputs, cfg: Config, params: dict[str, Any]) -> Booster:
    """P(click | features, position): a binary classifier with the screen position as the last input."""
    return fit_classifier(cfg.train.engine, RankData(with_position(fit.X, fit.position), fit.clicked, fit.groups),
                          RankData(with_position(valid.X, valid.position), valid.clicked, valid.groups), params,
                          categorical=fit.categorical, rounds=cfg.train.rounds, early_stopping=cfg.train.early_stopping)


def fit_conversion_model(fit: ModelInputs, valid: ModelInputs, cfg: Config, params: dict[str, Any]) -> Booster | None:
    """P(conversion | click) on clicked impressions, when there are enough conversions to learn from."""
    fit_rows, valid_rows = fit.label >= 1, valid.label >= 1
    if not enough_conversions(int((fit.label == 2).sum()), int((valid.label == 2).sum())):
        return None
    small = conversion_params(params, int(fit_rows.sum()))
    return fit_classifier(cfg.train.engine,
                          RankData(fit.X[fit_rows], (fit.label[fit_rows] == 2).astype(float), np.array([])),
                          RankData(valid.X[valid_rows], (valid.label[valid_rows] == 2).astype(float), np.array([])),
                          small, categorical=fit.categorical, rounds=cfg.train.rounds,
                          early_stopping=cfg.train.early_stopping)


def enough_conversions(fitting: int, validation: int) -> bool:
    """Whether the slices hold enough conversions to fit (and early-stop) a conversion model."""
    return fitting >= MIN_CONVERSIONS and validation >= MIN_CONVERSIONS // 10


def conversion_params(params: dict[str, Any], clicks: int) -> dict[str, Any]:
    """Smaller trees for the conversion model, fitted on the ``clicks`` clicked impressions."""
    return params | {"min_data_in_leaf": max(20, min(params["min_data_in_leaf"], clicks // 50)),
                     "num_leaves": min(params["num_leaves"], 15)}


def calibrate(raw: np.ndarray, y: np.ndarray) -> Calibration:
    """Isotonic regression of clicks on the raw click probability, as interpolation knots."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y)
    return Calibration(tuple(float(v) for v in iso.X_thresholds_), tuple(float(v) for v in iso.y_thresholds_))


def choose_score_model(bundle: Bundle, valid: ModelInputs, cfg: Config) -> tuple[str, dict[str, float]]:
    """The model that orders the page: as configured, or (auto) the better on validation NDCG@3.

    On the simulator the pointwise click model often orders better than LambdaRank, which learns
    only from the minority of requests with a click; the choice is measured, not assumed.
    """
    gains = np.asarray(GAINS[cfg.train.objective])[valid.label]
    ndcg = {}
    for choice in ("ranker", "click_model"):
        bundle.info["score_model"] = choice
        ndcg[choice] = float(np.nanmean(metrics.ndcg_per_request(bundle.score(valid.X), gains, valid.groups, 3)))
    choice = cfg.train.score_model if cfg.train.score_model != "auto" else max(ndcg, key=ndcg.__getitem__)
    return choice, ndcg


def validation_metrics(bundle: Bundle, valid: ModelInputs) -> dict[str, float]:
    """Headline metrics on the validation slice (the evaluation proper uses later data)."""
    score = bundle.score(valid.X)
    p = bundle.p_click(valid.X, valid.position)
    y = valid.clicked
    gains = np.asarray(GAINS[bundle.objective])[valid.label]
    return {"valid_ndcg@3": float(np.nanmean(metrics.ndcg_per_request(score, gains, valid.groups, 3))),
            "valid_auc": metrics.auc(p, y), "valid_logloss": metrics.log_loss(p, y),
            "valid_ece": metrics.ece(p, y)}
