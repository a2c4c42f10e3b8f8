"""The training reference a bundle keeps for monitoring: drift profiles of what the model shows.

``offer-ranker monitor`` compares the prediction log with it (PSI per model input and of p_click,
see :mod:`offer_ranker.stats.drift`).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from offer_ranker.stats.drift import profile

#: Rows of the validation slice profiled for the bundle's training reference (sampled beyond it).
REFERENCE_ROWS = 50_000


def reference(frame: pl.DataFrame, model: Any, *, k: int = 3, rows: int = REFERENCE_ROWS,
              seed: int = 0) -> dict[str, Any]:
    """The training reference a bundle keeps for monitoring, from the impressions in ``frame``.

    The prediction log holds the inputs of the offers the service *showed*, which the model chose:
    they have a higher past CTR and p_click than the candidates at large (on the simulator, p_click
    of all candidates against that of the shown top offers has a PSI of 4.5). So the
    reference profiles what the model would show too: the top ``k`` rows of each request by
    ``model.score``, and p_click at the top slot of the top row (the monitor compares it with the
    logged p_click at position 1).

    frame : impressions of whole requests, each request's rows contiguous (a slice of ``train.parquet``)
    model : a ``Bundle`` (``spec``, ``score(X)``, ``p_click(X, position)``)
    rows : requests are sampled so that at most this many top rows are profiled
    Returns ``{"features": {name: profile}, "prediction": profile | None, "rows": n, "requests": m, "k": k}``.
    """
    spec = model.spec
    ids = frame["request_id"].unique(maintain_order=True)
    if len(ids) * k > rows:
        frame = frame.filter(pl.col("request_id").is_in(ids.sample(rows // k, seed=seed).implode()))
    score = pl.Series(model.score(spec.matrix(frame)) if frame.height else [], dtype=pl.Float64)
    top = (frame.with_columns(_score=score)
           .with_columns(_rank=pl.col("_score").rank("ordinal", descending=True).over("request_id"))
           .filter(pl.col("_rank") <= k))
    features = {name: profile(top[name], kind="categorical" if name in spec.levels else "numeric")
                for name in spec.names}
    first = top.filter(pl.col("_rank") == 1)
    prediction = profile(model.p_click(spec.matrix(first), 1.0), kind="numeric") if first.height else None
    return {"features": features, "prediction": prediction, "rows": top.height, "requests": first.height, "k": k}
