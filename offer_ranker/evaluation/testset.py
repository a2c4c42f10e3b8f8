"""The evaluation impressions: the rows of the features folder after a bundle's training window,
as arrays, with the ground truth of simulated logs when there is one.

The ground truth (``ground_truth.parquet`` of ``offer-ranker simulate``) gives each logged
impression's true attraction ``p_attract`` (the click probability if examined) and ``p_click`` at
its logged slot. Their ratio is the chance that a slot is examined, so the truth file alone tells
the expected clicks of any other order: nothing here depends on how the simulator works.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from offer_ranker.config import Config
from offer_ranker.featurize.frame import FrameError, ModelInputs, read_frame
from offer_ranker.model.bundle import Bundle
from offer_ranker.stats.metrics import offer_hash, request_starts

#: Slots whose examination chance is read off the truth (the evaluation uses the top few).
SLOTS = 10


@dataclass
class TestSet:
    """The evaluation impressions as arrays, requests contiguous. Per row unless noted."""

    frame: pl.DataFrame
    X: np.ndarray
    groups: np.ndarray  # (requests,) rows per request
    label: np.ndarray
    click: np.ndarray
    position: np.ndarray
    propensity: np.ndarray | None
    p_attract: np.ndarray | None
    p_click_true: np.ndarray | None
    new_user: np.ndarray  # (requests,)
    new_offer: np.ndarray
    tiebreak: np.ndarray
    examination: np.ndarray | None = None  # (SLOTS,) P(slot j + 1 is examined), from the truth


def load_test(bundle: Bundle, features: Path, truth: Path | None, cfg: Config, *,
              start: datetime | None = None) -> TestSet:
    """The impressions of ``features`` from ``start`` (default: the end of the bundle's training window)."""
    start = start or datetime.fromisoformat(bundle.info["train_until"])
    frame = read_frame(features, start=start)
    if frame.height == 0:
        raise FrameError(f"no impressions in {features} from {start.isoformat()} (the end of the training "
                         f"window); an evaluation needs later data")
    p_attract = p_click_true = exam = None
    if truth is not None:
        gt = pl.read_parquet(truth, columns=["request_id", "offer_id", "p_attract", "p_click"])
        joined = frame.select("request_id", "offer_id").join(gt, on=["request_id", "offer_id"], how="left",
                                                             maintain_order="left")
        if joined["p_attract"].null_count() == 0:
            p_attract, p_click_true = joined["p_attract"].to_numpy(), joined["p_click"].to_numpy()
            exam = examination(frame["position"].to_numpy(), p_click_true, p_attract)
    s = ModelInputs.of(frame, bundle.spec)
    label = frame["label"].to_numpy().astype(np.int64)
    propensity = frame["propensity"].to_numpy() if frame["propensity"].null_count() == 0 else None
    is_new = frame["user_is_new"].to_numpy() if "user_is_new" in frame.columns else np.zeros(frame.height)
    seen = frame["offer_impressions"].to_numpy() if "offer_impressions" in frame.columns else np.zeros(frame.height)
    return TestSet(frame, s.X, s.groups, label, (label >= 1).astype(np.float64),
                   frame["position"].to_numpy().astype(np.int64), propensity, p_attract, p_click_true,
                   is_new[request_starts(s.groups)] > 0.5, seen < cfg.evaluate.new_offer_impressions,
                   offer_hash(frame["offer_id"].to_list()), exam)


def examination(position: np.ndarray, p_click: np.ndarray, p_attract: np.ndarray) -> np.ndarray:
    """(SLOTS,) the chance each slot is examined: ``p_click / p_attract`` of the impressions logged
    there (one value per slot in a position-based click model; the median guards against rounding).
    A slot without impressions gets the last one seen below it."""
    ok = p_attract > 0
    ratio = np.where(ok, p_click / np.where(ok, p_attract, 1.0), np.nan)
    out = np.full(SLOTS, np.nan)
    for j in range(SLOTS):
        at = ok & (position == j + 1)
        if at.any():
            out[j] = float(np.median(ratio[at]))
        elif j:
            out[j] = out[j - 1]
    if np.isnan(out[0]):
        raise FrameError("the ground truth has no impressions at the top slot: cannot read the examination chances")
    return out


def find_truth(features: Path) -> Path | None:
    """``ground_truth.parquet`` of simulated logs, found through the ingest report, if any."""
    try:
        manifest = json.loads((features / "manifest.json").read_text())
        ingest_report = json.loads((Path(manifest["source"]) / "ingest_report.json").read_text())
    except (OSError, KeyError, ValueError):
        return None
    candidate = Path(ingest_report.get("raw_dir", "")) / "ground_truth.parquet"
    return candidate if candidate.exists() else None
