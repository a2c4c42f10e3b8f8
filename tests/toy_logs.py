"""A tiny raw log whose right answers are obvious, written as CSV (all text) or Parquet.

Two requests at 2026-01-05 10:00 and 11:00 UTC:

    r1 (u1): o1@1 clicked and converted (value 12), o2@2, o3@3
    r2 (u2): o3@1 clicked, o1@2
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import polars as pl

IMPRESSIONS = [
    {"request_id": "r1", "ts": "2026-01-05T10:00:00Z", "user_id": "u1", "offer_id": "o1", "position": "1",
     "device": "ios", "propensity": "0.5", "price": "10.5"},
    {"request_id": "r1", "ts": "2026-01-05T10:00:00Z", "user_id": "u1", "offer_id": "o2", "position": "2",
     "device": "ios", "propensity": "0.25", "price": "20"},
    {"request_id": "r1", "ts": "2026-01-05T10:00:00Z", "user_id": "u1", "offer_id": "o3", "position": "3",
     "device": "ios", "propensity": "0.25", "price": "7"},
    {"request_id": "r2", "ts": "2026-01-05T11:00:00Z", "user_id": "u2", "offer_id": "o3", "position": "1",
     "device": "web", "propensity": "1", "price": "7"},
    {"request_id": "r2", "ts": "2026-01-05T11:00:00Z", "user_id": "u2", "offer_id": "o1", "position": "2",
     "device": "web", "propensity": "1", "price": "10.5"},
]
CLICKS = [
    {"request_id": "r1", "offer_id": "o1", "ts": "2026-01-05T10:00:05Z"},
    {"request_id": "r2", "offer_id": "o3", "ts": "2026-01-05T11:00:10Z"},
]
CONVERSIONS = [{"request_id": "r1", "offer_id": "o1", "ts": "2026-01-05T10:30:00Z", "value": "12"}]
OFFERS = [
    {"offer_id": "o1", "partner": "p1", "category": "finance", "payout": "12",
     "start_ts": "2026-01-01T00:00:00Z", "end_ts": "2026-02-01T00:00:00Z", "color": "red"},
    {"offer_id": "o2", "partner": "p2", "category": "travel", "payout": "30",
     "start_ts": "2026-01-01T00:00:00Z", "end_ts": "2026-02-01T00:00:00Z", "color": "blue"},
    {"offer_id": "o3", "partner": "p1", "category": "food", "payout": "5",
     "start_ts": None, "end_ts": None, "color": "green"},
]
USERS = [
    {"user_id": "u1", "signup_ts": "2025-12-01T00:00:00Z", "plan": "free"},
    {"user_id": "u2", "signup_ts": "2026-01-05T09:00:00Z", "plan": "plus"},
]

#: (request_id, offer_id) -> (label, value) after ingest
EXPECTED_LABELS = {
    ("r1", "o1"): (2, 12.0), ("r1", "o2"): (0, 0.0), ("r1", "o3"): (0, 0.0),
    ("r2", "o3"): (1, 0.0), ("r2", "o1"): (0, 0.0),
}


def toy_tables() -> dict[str, list[dict[str, str | None]]]:
    """Fresh copies of the toy rows, table name -> rows of text values."""
    return {
        "impressions": [dict(r) for r in IMPRESSIONS],
        "clicks": [dict(r) for r in CLICKS],
        "conversions": [dict(r) for r in CONVERSIONS],
        "offers": [dict(r) for r in OFFERS],
        "users": [dict(r) for r in USERS],
    }


def write_csv(raw: Path, tables: dict[str, list[dict[str, str | None]]]) -> Path:
    """Write each table as <name>.csv with None as an empty field."""
    raw.mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        columns = list(dict.fromkeys(k for row in rows for k in row))
        lines = [",".join(columns)]
        for row in rows:
            lines.append(",".join("" if row.get(c) is None else str(row[c]) for c in columns))
        (raw / f"{name}.csv").write_text("\n".join(lines) + "\n")
    return raw


def _ts(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


def write_typed_parquet(raw: Path) -> Path:
    """The same toy log as Parquet with native types (timestamps with time zone, ints, floats)."""
    raw.mkdir(parents=True, exist_ok=True)
    t = toy_tables()
    pl.DataFrame([{**r, "ts": _ts(r["ts"]), "position": int(r["position"]), "propensity": float(r["propensity"]),
                   "price": float(r["price"])} for r in t["impressions"]]).write_parquet(raw / "impressions.parquet")
    pl.DataFrame([{**r, "ts": _ts(r["ts"])} for r in t["clicks"]]).write_parquet(raw / "clicks.parquet")
    pl.DataFrame([{**r, "ts": _ts(r["ts"]), "value": float(r["value"])}
                  for r in t["conversions"]]).write_parquet(raw / "conversions.parquet")
    pl.DataFrame([{**r, "payout": float(r["payout"]), "start_ts": _ts(r["start_ts"]), "end_ts": _ts(r["end_ts"])}
                  for r in t["offers"]],
                 schema_overrides={"start_ts": pl.Datetime("us", "UTC"), "end_ts": pl.Datetime("us", "UTC")},
                 ).write_parquet(raw / "offers.parquet")
    # naive timestamps in Parquet are read as UTC
    pl.DataFrame([{**r, "signup_ts": _ts(r["signup_ts"]).astimezone(timezone.utc).replace(tzinfo=None)}
                  for r in t["users"]]).write_parquet(raw / "users.parquet")
    return raw
