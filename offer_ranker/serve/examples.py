"""Example ``/rank`` request bodies drawn from a features folder: for the quickstart's
``request.json``, the service tests and the latency benchmark.

Requests are dated just after the logs end (``ts``), so the offers live then are the candidates:
simulated logs lie in the past, and a request dated now would find every simulated offer expired.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from offer_ranker.serve.prediction_log import LOGGED_CONTEXT


def end_of_logs(features: Path) -> datetime:
    """The time of the last logged impression (the snapshot's state is as of then)."""
    return datetime.fromisoformat(json.loads((Path(features) / "manifest.json").read_text())["last_ts"])


def sample_requests(features: Path, n: int, *, candidates: int = 20, k: int = 3, new_users: float = 0.2,
                    seed: int = 0, spacing: timedelta = timedelta(milliseconds=10)) -> list[dict[str, Any]]:
    """``n`` request bodies: known users (and a share of new ones), ``candidates`` offers live at
    the end of the logs each, dated one after the other from a minute after the logs end."""
    features = Path(features)
    rng = np.random.default_rng(seed)
    start = end_of_logs(features) + timedelta(minutes=1)
    offers = pl.read_parquet(features / "snapshot" / "offers.parquet", columns=["offer_id", "start_ts", "end_ts"])
    live = offers.filter((pl.col("start_ts") <= start) & (pl.col("end_ts") > start))["offer_id"].to_numpy()
    if len(live) < candidates:
        live = offers["offer_id"].to_numpy()
    users = pl.read_parquet(features / "snapshot" / "users.parquet", columns=["user_id"])["user_id"].to_numpy()
    # the request context seen in the logs: the levels of the context features, in name order
    levels = json.loads((features / "manifest.json").read_text())["categories"]
    context = {key: sorted(levels.get(f"ctx_{key}", [])) for key in LOGGED_CONTEXT}

    bodies = []
    for i in range(n):
        user = f"new-{seed}-{i}" if rng.random() < new_users or not len(users) else str(rng.choice(users))
        chosen = rng.choice(live, size=min(candidates, len(live)), replace=False)
        bodies.append({"user_id": user, "ts": (start + i * spacing).isoformat(),
                       "context": {key: str(rng.choice(values)) for key, values in context.items() if values},
                       "candidates": [{"offer_id": str(o)} for o in chosen], "k": k})
    return bodies
