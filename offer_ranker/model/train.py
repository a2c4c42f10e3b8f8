"""Train a model bundle from a features folder: ranker, calibrated click model, conversion model.

Time-based split: impressions before ``train_until`` train; the last ``valid_share`` of that
range is held out for early stopping, tuning and the click model's calibration (a later slice
than the one the model learned from, so the calibration sees the drift it will meet).

Labels are graded (0 shown, 1 clicked, 2 converted). The objective sets the LambdaRank gains:
clicks ``[0, 1, 1]``, conversions ``[0, 1, 5]``, revenue ``[0, 1, 3]`` with conversions weighted
by their value; revenue orders the page by ``p_click x p_convert x payout``.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from offer_ranker.model import bundle as bundles
from offer_ranker.stats import drift
from offer_ranker.stats import metrics
from offer_ranker.config import Config
from offer_ranker.console import Track, no_track
from offer_ranker.model.engines import Booster, RankData, fit_classifier, fit_ranker
from offer_ranker.featurize.frame import (FeatureSpec, FrameError, default_split, group_sizes, read_frame, read_manifest,
                                with_position)
from offer_ranker.policy.priors import segment_lifts

GAINS = {"clicks": (0.0, 1.0, 1.0), "conversions": (0.0, 1.0, 5.0), "revenue": (0.0, 1.0, 3.0)}
#: Fewer conversions than this in the fitting slice (or a tenth of it in validation): no conversion model.
MIN_CONVERSIONS = 50


@dataclass(frozen=True)
class TrainResult:
    tag: str
    bundle: bundles.Bundle
    seconds: float


@dataclass
class Slice:
    """A time slice of the frame as model inputs."""

    frame: pl.DataFrame
    X: np.ndarray
    groups: np.ndarray
    categorical: list[int]

    @property
    def label(self) -> np.ndarray:
        return self.frame["label"].to_numpy().astype(np.int64)

    @property
    def clicked(self) -> np.ndarray:
        return (self.label >= 1).astype(np.float64)

    @property
    def position(self) -> np.ndarray:
        return self.frame["position"].to_numpy().astype(np.float64)


def make_slice(frame: pl.DataFrame, spec: FeatureSpec) -> Slice:
    return Slice(frame, spec.matrix(frame), group_sizes(frame["request_id"]), spec.categorical)


def split_times(manifest: dict[str, Any], cfg: Config) -> tuple[datetime, datetime, datetime]:
    """(first timestamp, start of the validation slice, end of training)."""
    first = datetime.fromisoformat(manifest["first_ts"])
    until = cfg.train.train_until or default_split(manifest, cfg.train.split_share)
    if until <= first:
        raise FrameError(f"train.train_until {until} is not after the first logged impression ({first})")
    return first, first + (until - first) * (1 - cfg.train.valid_share), until


def base_params(cfg: Config) -> dict[str, Any]:
    t = cfg.train
    return {"learning_rate": t.learning_rate, "num_leaves": t.num_leaves, "min_data_in_leaf": t.min_data_in_leaf,
            "max_bin": t.max_bin,
            "feature_fraction": t.feature_fraction, "bagging_fraction": t.bagging_fraction, "bagging_freq": 1,
            "lambda_l2": t.lambda_l2, "num_threads": t.threads, "seed": t.seed, "deterministic": True,
            "force_col_wise": True, "lambdarank_truncation_level": 20, "max_cat_to_onehot": 8}


def ranker_data(s: Slice, cfg: Config) -> RankData:
    """The ranker's inputs for ``s`` under the configured objective and position-bias handling."""
    t = cfg.train
    X = with_position(s.X, s.position) if t.position_bias == "feature" else s.X
    weight = None
    if t.objective == "revenue":
        value = s.frame["value"].fill_null(0.0).to_numpy()
        positive = value[value > 0]
        weight = 1.0 + value / positive.mean() if positive.size else None
    return RankData(X, s.label, s.groups, weight, s.position.astype(np.int32) if t.position_bias == "lambdarank" else None)


def fit_ranker_for(fit: Slice, valid: Slice, cfg: Config, params: dict[str, Any], report: Any = None) -> Booster:
    t = cfg.train
    return fit_ranker(t.engine, ranker_data(fit, cfg), ranker_data(valid, cfg),
                      params, gains=GAINS[t.objective], categorical=fit.categorical,
                      rounds=t.rounds, early_stopping=t.early_stopping,
                      position_aware=t.position_bias == "lambdarank", report=report)


def train(features: Path | str, cfg: Config | None = None, *, track: Track = no_track) -> TrainResult:
    """Train on ``features`` (the output folder of ``build_features``) and save the bundle."""
    cfg = cfg or Config()
    started = time.perf_counter()
    features = Path(features)
    manifest = read_manifest(features)
    spec = FeatureSpec.from_manifest(manifest)
    first, valid_from, until = split_times(manifest, cfg)
    frame = read_frame(features, end=until)
    fit = make_slice(frame.filter(pl.col("ts") < valid_from), spec)
    valid = make_slice(frame.filter(pl.col("ts") >= valid_from), spec)
    _check(fit, valid, valid_from, until)
    # + 1: the position column the click model (and the ranker, by default) takes last
    params = base_params(cfg) | {"monotone_constraints": [*spec.monotone, 0]}
    seconds: dict[str, float] = {}
    tuned: dict[str, Any] = {}

    steps = ["tune"] if cfg.train.tune_trials else []
    steps += ["ranker", "click model", "conversion model"]
    boosters: dict[str, Booster | None] = {}
    for step in track(steps, "training", len(steps)):
        t0 = time.perf_counter()
        if step == "tune":
            from offer_ranker.model.tune import tune

            tuned = tune(fit, valid, cfg, params)
            params |= tuned["best_params"]
        elif step == "ranker":
            boosters["ranker"] = fit_ranker_for(fit, valid, cfg, params)
        elif step == "click model":
            boosters["ctr"] = fit_classifier(
                cfg.train.engine, RankData(with_position(fit.X, fit.position), fit.clicked, fit.groups),
                RankData(with_position(valid.X, valid.position), valid.clicked, valid.groups), params,
                categorical=spec.categorical, rounds=cfg.train.rounds, early_stopping=cfg.train.early_stopping)
        else:
            boosters["conversion"] = _fit_conversion(fit, valid, cfg, spec, params)
        seconds[step] = round(time.perf_counter() - t0, 3)

    ctr = boosters["ctr"]
    assert ctr is not None and boosters["ranker"] is not None
    raw_valid = ctr.predict(with_position(valid.X, valid.position))
    calibration = _calibrate(raw_valid, valid.clicked)
    clicks = fit.frame.filter(pl.col("label") >= 1)
    values = clicks["value"].drop_nulls()
    info: dict[str, Any] = {
        "engine": cfg.train.engine, "objective": cfg.train.objective, "position_bias": cfg.train.position_bias,
        "train_from": first.isoformat(), "valid_from": valid_from.isoformat(), "train_until": until.isoformat(),
        "rows": {"fit": fit.frame.height, "valid": valid.frame.height},
        "requests": {"fit": len(fit.groups), "valid": len(valid.groups)},
        "fingerprint": fingerprint(features),
        "features_dir": str(features.resolve()),
        "params": params, "tuning": tuned,
        "conversion_rate": float((clicks["label"] == 2).mean() or 0.0) if clicks.height else 0.0,
        "mean_value": float(values.filter(values > 0).mean() or 1.0) if values.len() else 1.0,
        "seconds": seconds, "versions": bundles.versions(),
        "segment_lifts": segment_lifts(fit.frame),
    }
    bundle = bundles.Bundle(spec=spec, ranker=boosters["ranker"], ctr=ctr, calibration=calibration,
                            conversion=boosters["conversion"], info=info, manifest=manifest,
                            snapshot=features / "snapshot" if (features / "snapshot").exists() else None)
    info["score_model"], info["score_model_ndcg@3"] = _choose_score_model(bundle, valid, cfg)
    info["metrics"] = validation_metrics(bundle, valid)
    info["reference"] = drift.reference(valid.frame, bundle, seed=cfg.train.seed)  # what `monitor` compares with
    info["seconds"]["total"] = round(time.perf_counter() - started, 3)
    tag = bundles.save(bundle)
    return TrainResult(tag, bundle, round(time.perf_counter() - started, 3))


def validation_metrics(bundle: bundles.Bundle, valid: Slice) -> dict[str, float]:
    """Headline metrics on the validation slice (the evaluation proper uses later data)."""
    score = bundle.score(valid.X)
    p = bundle.p_click(valid.X, valid.position)
    y = valid.clicked
    gains = np.asarray(GAINS[bundle.objective])[valid.label]
    return {"valid_ndcg@3": float(np.nanmean(metrics.ndcg_per_request(score, gains, valid.groups, 3))),
            "valid_auc": metrics.auc(p, y), "valid_logloss": metrics.log_loss(p, y),
            "valid_ece": metrics.ece(p, y)}


def _choose_score_model(bundle: bundles.Bundle, valid: Slice, cfg: Config) -> tuple[str, dict[str, float]]:
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


def _fit_conversion(fit: Slice, valid: Slice, cfg: Config, spec: FeatureSpec, params: dict[str, Any]) -> Booster | None:
    """P(conversion | click) on clicked impressions, when there are enough conversions to learn from."""
    fit_rows, valid_rows = fit.label >= 1, valid.label >= 1
    if (fit.label == 2).sum() < MIN_CONVERSIONS or (valid.label == 2).sum() < MIN_CONVERSIONS // 10:
        return None
    small = params | {"min_data_in_leaf": max(20, min(params["min_data_in_leaf"], int(fit_rows.sum()) // 50)),
                      "num_leaves": min(params["num_leaves"], 15)}
    return fit_classifier(cfg.train.engine,
                          RankData(fit.X[fit_rows], (fit.label[fit_rows] == 2).astype(float), np.array([])),
                          RankData(valid.X[valid_rows], (valid.label[valid_rows] == 2).astype(float), np.array([])),
                          small, categorical=spec.categorical, rounds=cfg.train.rounds,
                          early_stopping=cfg.train.early_stopping)


def _calibrate(raw: np.ndarray, y: np.ndarray) -> bundles.Calibration:
    """Isotonic regression of clicks on the raw click probability, as interpolation knots."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y)
    return bundles.Calibration(tuple(float(v) for v in iso.X_thresholds_), tuple(float(v) for v in iso.y_thresholds_))


def _check(fit: Slice, valid: Slice, valid_from: datetime, until: datetime) -> None:
    for name, s, where in (("fitting", fit, f"before {valid_from}"), ("validation", valid,
                                                                      f"from {valid_from} to {until}")):
        if s.frame.height == 0 or s.clicked.sum() == 0:
            raise FrameError(f"the {name} slice ({where}) has {s.frame.height:,} impressions and "
                             f"{int(s.clicked.sum())} clicks; training needs both. Adjust train.train_until, "
                             f"train.split_share or train.valid_share, or bring more logs")


def fingerprint(features: Path) -> str:
    """SHA-256 of the training frame and manifest files: which data trained the model."""
    digest = hashlib.sha256()
    for name in ("manifest.json", "train.parquet"):
        with open(features / name, "rb") as f:
            while chunk := f.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()
