"""Train a model bundle from a features folder: ranker, calibrated click model, conversion model.

Time-based split: impressions before ``train_until`` train; the last ``valid_share`` of that
range is held out for early stopping, tuning and the click model's calibration (a later slice
than the one the model learned from, so the calibration sees the drift it will meet). The models
are fitted by :mod:`offer_ranker.model.fit`; the bundle is saved to the model store and the
training recorded as an MLflow run (:mod:`offer_ranker.model.tracking`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from offer_ranker.config import Config
from offer_ranker.console import Track, no_track
from offer_ranker.featurize.frame import (
    FRAME,
    FeatureSpec,
    FrameError,
    ModelInputs,
    default_split,
    frame_files,
    read_frame,
    read_manifest,
    with_position,
)
from offer_ranker.model import fit as fitting
from offer_ranker.model import store, tracking
from offer_ranker.model.bundle import Bundle
from offer_ranker.model.engines import Booster
from offer_ranker.model.reference import reference


@dataclass(frozen=True)
class TrainResult:
    tag: str  # "" when the bundle was not saved
    bundle: Bundle
    seconds: float
    run_id: str | None = None  # the MLflow run, when tracked


def split_times(manifest: dict[str, Any], cfg: Config) -> tuple[datetime, datetime, datetime]:
    """(first timestamp, start of the validation slice, end of training)."""
    first = datetime.fromisoformat(manifest["first_ts"])
    until = cfg.train.train_until or default_split(manifest, cfg.train.split_share)
    if until <= first:
        raise FrameError(f"train.train_until {until} is not after the first logged impression ({first})")
    return first, first + (until - first) * (1 - cfg.train.valid_share), until


def train(features: Path | str, cfg: Config | None = None, *, track: Track = no_track,
          save: bool = True) -> TrainResult:
    """Train on ``features`` (the output folder of ``build_features``); save the bundle to the model
    store and record the run in MLflow (``track.enabled``). ``save=False`` does neither: the caller
    keeps the bundle (the closed loop's per-round models never reach the user's store)."""
    cfg = cfg or Config()
    started = time.perf_counter()
    started_ms = int(time.time() * 1000)
    features = Path(features)
    manifest = read_manifest(features)
    spec = FeatureSpec.from_manifest(manifest)
    first, valid_from, until = split_times(manifest, cfg)
    # + 1: the position column the click model (and the ranker, by default) takes last
    params = fitting.base_params(cfg) | {"monotone_constraints": [*spec.monotone, 0]}
    seconds: dict[str, float] = {}
    tuned: dict[str, Any] = {}
    if cfg.train.engine == "xgboost-spark":
        valid, fitted, boosters = _fit_on_spark(features, spec, valid_from, until, cfg, params, seconds, track)
    else:
        frame = read_frame(features, end=until)
        fit = ModelInputs.of(frame.filter(pl.col("ts") < valid_from), spec)
        valid = ModelInputs.of(frame.filter(pl.col("ts") >= valid_from), spec)
        fitted = fitting.SliceSummary.of(fit)
        _check(fitted, valid, valid_from, until)
        boosters = _run(_steps_here(fit, valid, cfg, params, tuned), seconds, track)

    ctr, ranker = boosters["ctr"], boosters["ranker"]
    assert ctr is not None and ranker is not None
    calibration = fitting.calibrate(ctr.predict(with_position(valid.X, valid.position)), valid.clicked)
    info: dict[str, Any] = {
        # the boosters' library (xgboost-spark trains XGBoost boosters); trained_with: the engine chosen
        "engine": ranker.engine, "trained_with": cfg.train.engine, "objective": cfg.train.objective,
        "position_bias": cfg.train.position_bias,
        "train_from": first.isoformat(), "valid_from": valid_from.isoformat(), "train_until": until.isoformat(),
        "rows": {"fit": fitted.rows, "valid": valid.frame.height},
        "requests": {"fit": fitted.requests, "valid": len(valid.groups)},
        "fingerprint": fingerprint(features),
        "features_dir": str(features.resolve()),
        "params": params, "tuning": tuned, "started_ms": started_ms,
        "train_config": cfg.train.model_dump(mode="json"),
        "conversion_rate": fitted.conversion_rate, "mean_value": fitted.mean_value,
        "seconds": seconds, "versions": store.versions(),
        "segment_lifts": fitted.segment_lifts,
    }
    bundle = Bundle(spec=spec, ranker=ranker, ctr=ctr, calibration=calibration, conversion=boosters["conversion"],
                    info=info, manifest=manifest,
                    snapshot=features / "snapshot" if (features / "snapshot").exists() else None)
    info["score_model"], info["score_model_ndcg@3"] = fitting.choose_score_model(bundle, valid, cfg)
    info["metrics"] = fitting.validation_metrics(bundle, valid)
    info["reference"] = reference(valid.frame, bundle, seed=cfg.train.seed)  # what `monitor` compares with
    info["seconds"]["total"] = round(time.perf_counter() - started, 3)
    if not save:
        return TrainResult("", bundle, round(time.perf_counter() - started, 3))
    tag = store.save(bundle)
    run_id = tracking.record_training(bundle, cfg.track.experiment, features) if cfg.track.enabled else None
    return TrainResult(tag, bundle, round(time.perf_counter() - started, 3), run_id)


#: the step that fits each of the bundle's models
_MODELS = {"ranker": "ranker", "click model": "ctr", "conversion model": "conversion"}


def _run(steps: dict[str, Callable[[], Booster | None]], seconds: dict[str, float],
         track: Track) -> dict[str, Booster | None]:
    """Run the fitting ``steps`` in order, their times into ``seconds``; the bundle's models by
    their slot (``ranker``, ``ctr``, ``conversion``)."""
    boosters: dict[str, Booster | None] = {}
    for step in track(list(steps), "training", len(steps)):
        t0 = time.perf_counter()
        result = steps[step]()
        seconds[step] = round(time.perf_counter() - t0, 3)
        if step in _MODELS:
            boosters[_MODELS[step]] = result
    return boosters


def _steps_here(fit: ModelInputs, valid: ModelInputs, cfg: Config, params: dict[str, Any],
                tuned: dict[str, Any]) -> dict[str, Callable[[], Booster | None]]:
    """The fitting steps in this process: tuning first (it updates ``params`` and ``tuned``), if asked."""
    def tune() -> None:
        from offer_ranker.model.tune import tune

        tuned.update(tune(fit, valid, cfg, params))
        params.update(tuned["best_params"])

    steps: dict[str, Callable[[], Booster | None]] = {"tune": tune} if cfg.train.tune_trials else {}
    return steps | {"ranker": lambda: fitting.fit_ranker_for(fit, valid, cfg, params),
                    "click model": lambda: fitting.fit_click_model(fit, valid, cfg, params),
                    "conversion model": lambda: fitting.fit_conversion_model(fit, valid, cfg, params)}


def _fit_on_spark(features: Path, spec: FeatureSpec, valid_from: datetime, until: datetime, cfg: Config,
                  params: dict[str, Any], seconds: dict[str, float],
                  track: Track) -> tuple[ModelInputs, fitting.SliceSummary, dict[str, Booster | None]]:
    """``--engine xgboost-spark``: Spark reads the frame and fits the models (:mod:`.distributed`);
    this process reads the validation slice only. A session from ``[spark]`` is started (and
    stopped after) unless one is active."""
    from offer_ranker.featurize.spark.runner import running_session
    from offer_ranker.model import distributed

    distributed.check(cfg)
    with running_session(cfg.spark) as spark:
        rows = distributed.spark_rows(spark, features, spec, valid_from, until, cfg.train.seed)
        try:
            fitted = distributed.summary(rows)
            valid = ModelInputs.of(read_frame(features, start=valid_from, end=until), spec)
            _check(fitted, valid, valid_from, until)
            steps = distributed.model_steps(rows, fitted, int((valid.label == 2).sum()), cfg, params)
            return valid, fitted, _run(steps, seconds, track)
        finally:
            rows.release()


def _check(fit: fitting.SliceSummary, valid: ModelInputs, valid_from: datetime, until: datetime) -> None:
    for name, rows, clicks, where in (
            ("fitting", fit.rows, fit.clicks, f"before {valid_from}"),
            ("validation", valid.frame.height, int(valid.clicked.sum()), f"from {valid_from} to {until}")):
        if rows == 0 or clicks == 0:
            raise FrameError(f"the {name} slice ({where}) has {rows:,} impressions and {clicks} clicks; training "
                             f"needs both. Adjust train.train_until, train.split_share or train.valid_share, or "
                             f"bring more logs")


def fingerprint(features: Path) -> str:
    """SHA-256 of which data trained the model: the manifest and the training frame. Of a frame
    file, every byte; of Spark's folder of parts (billions of rows, not for one process to read),
    each part's name, size and Parquet footer (its schema, row groups, row counts and per-column
    statistics), read without reading the rows."""
    digest = hashlib.sha256()
    digest.update((features / "manifest.json").read_bytes())
    parts = (features / FRAME).is_dir()
    for path in frame_files(features):
        with open(path, "rb") as f:
            if parts:
                f.seek(-8, 2)
                size = int.from_bytes(f.read(4), "little")
                f.seek(-8 - size, 2)
                digest.update(f"{path.name}:{path.stat().st_size}".encode())
                digest.update(f.read(size))
                continue
            while chunk := f.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()
