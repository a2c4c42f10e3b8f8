"""Score logged impressions with a bundle: the ranking score and p_click at the logged slot."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl

from offer_ranker.featurize.frame import read_frame
from offer_ranker.io import staged_outputs
from offer_ranker.model.bundle import Bundle


def score_frame(bundle: Bundle, frame: pl.DataFrame) -> pl.DataFrame:
    """``request_id, offer_id, ts, position, score, p_click`` for every row of a feature frame."""
    X = bundle.spec.matrix(frame)
    position = frame["position"].cast(pl.Float64).to_numpy()
    return frame.select("request_id", "offer_id", "ts", "position").with_columns(
        score=pl.Series(bundle.score(X)), p_click=pl.Series(bundle.p_click(X, position)))


def score_file(bundle: Bundle, features: Path, out: Path, start: datetime | None = None) -> tuple[Path, int]:
    """Write the scores of the impressions in ``features`` (from ``start`` on) to ``out`` atomically."""
    scored = score_frame(bundle, read_frame(features, start=start))
    out = Path(out)
    with staged_outputs(out.parent) as stage:
        scored.write_parquet(stage.path(out.name))
    return out, scored.height
