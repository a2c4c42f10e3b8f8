"""The service's prediction log as raw logs (``offer-ranker logs-to-raw``): what it showed, and
what users did, in the raw-log contract, so ingest, features, train and evaluate (its off-policy
estimates included) run on the service's own traffic.

* ``impressions``: one row per shown offer of every rank record (request id, time, hashed user
  id, offer, position, the logged propensity, ``policy`` = ``explore`` or ``model``, the arm, the
  context's device / country / surface, and the request-level pass-through columns the service
  logged as model inputs, e.g. ``imp_x_price`` → ``price``);
* ``clicks`` and ``conversions``: the applied ``/feedback`` events (with the conversion value);
* ``users``: one row per hashed user, with the user attributes the service logged as model
  inputs (``user_x_plan`` → ``plan``; first-party only, keyed by the hash);
* ``offers``: the catalogue given (the log names offers but does not describe them).

Only the shown offers are in the log, so an evaluation of these logs reorders the offers that
were shown; with ``serve.exploration = "epsilon"`` their propensities are exact.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import polars as pl

from offer_ranker.errors import OfferRankerError
from offer_ranker.features import IMPRESSION_PREFIX, USER_PREFIX
from offer_ranker.io import staged_outputs
from offer_ranker.production.logs import read_records
from offer_ranker.serve.prediction_log import LOGGED_CONTEXT, FeedbackRecord, RankRecord


class LogError(OfferRankerError):
    """The prediction logs cannot be converted; the message names the file or line."""


def logs_to_raw(logs: Path | str, offers: Path | str, out: Path | str) -> dict[str, Any]:
    """Convert every ``*.jsonl`` under ``logs`` (plus the ``offers`` catalogue, Parquet or CSV) to
    a raw-log folder ``out``; returns counts, including the lines skipped as malformed."""
    logs, offers, out = Path(logs), Path(offers), Path(out)
    if offers.suffix not in (".parquet", ".csv") or not offers.is_file():
        raise LogError(f"{offers}: expected the offers catalogue as a .parquet or .csv file")
    impressions: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    users: dict[str, dict[str, Any]] = {}

    def feedback(record: FeedbackRecord) -> None:
        if record.applied:
            events.append({"request_id": record.request_id, "offer": record.offer, "ts": record.ts.isoformat(),
                           "event": record.event, "value": record.value})

    scan = read_records(logs, rank=lambda record: _rank(record, impressions, users), feedback=feedback)
    files, malformed = scan.files, scan.malformed
    if not impressions:
        raise LogError(f"{logs}: no rank records with shown offers in {len(files)} files")
    applied = pl.DataFrame(events, schema={"request_id": pl.String, "offer": pl.String, "ts": pl.String,
                                            "event": pl.String, "value": pl.Float64})
    with staged_outputs(out) as stage:
        pl.DataFrame(impressions, infer_schema_length=None).write_parquet(stage.path("impressions.parquet"))
        for event, name in (("click", "clicks"), ("conversion", "conversions")):
            rows = applied.filter(pl.col("event") == event).rename({"offer": "offer_id"})
            rows = rows.select("request_id", "offer_id", "ts", *(["value"] if event == "conversion" else []))
            rows.write_parquet(stage.path(f"{name}.parquet"))
        pl.DataFrame(list(users.values()), infer_schema_length=None).write_parquet(stage.path("users.parquet"))
        shutil.copyfile(offers, stage.path(f"offers{offers.suffix}"))
        report = {"files": len(files), "impressions": len(impressions), "users": len(users),
                  "clicks": int((applied["event"] == "click").sum()),
                  "conversions": int((applied["event"] == "conversion").sum()),
                  "malformed": len(malformed), "malformed_lines": [str(m) for m in malformed[:20]]}
        stage.write_json("logs_to_raw.json", report)
    return report


def _rank(record: RankRecord, impressions: list[dict[str, Any]], users: dict[str, dict[str, Any]]) -> None:
    """Add one rank record's shown offers (and its user) to the tables."""
    features = record.features or {}
    propensities = record.propensities or [None] * len(record.offers)
    row = {"request_id": record.request_id, "ts": record.ts.isoformat(), "user_id": record.user,
           **{k: record.context.get(k) for k in LOGGED_CONTEXT},
           "policy": "explore" if record.explored else "model", "arm": record.arm}
    passthrough = {name.removeprefix(IMPRESSION_PREFIX): values for name, values in features.items()
                   if name.startswith(IMPRESSION_PREFIX)}
    impressions.extend([row | {"offer_id": offer, "position": position, "propensity": propensity}
                        | {raw: values[j] for raw, values in passthrough.items()}
                        for j, (offer, position, propensity) in enumerate(zip(record.offers, record.positions,
                                                                               propensities))])
    if record.user not in users:
        users[record.user] = {"user_id": record.user} | {name.removeprefix(USER_PREFIX): values[0] if values else None
                                                         for name, values in features.items()
                                                         if name.startswith(USER_PREFIX)}
