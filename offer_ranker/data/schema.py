"""The raw-log contract (DESIGN.md §1): tables, their required and known optional columns.

Shared by the simulator (which writes it), ingest (which checks it) and the tests. Any column
not named here is an extra column: kept, and used as a feature later.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Table:
    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    key: tuple[str, ...] = ()
    must_exist: bool = False

    @property
    def known(self) -> tuple[str, ...]:
        return self.required + self.optional


IMPRESSIONS = Table(
    "impressions",
    required=("request_id", "ts", "user_id", "offer_id", "position"),
    optional=("surface", "device", "country", "propensity", "policy", "arm"),
    key=("request_id", "offer_id"),
    must_exist=True,
)
CLICKS = Table("clicks", required=("request_id", "offer_id", "ts"), key=("request_id", "offer_id"), must_exist=True)
CONVERSIONS = Table(
    "conversions", required=("request_id", "offer_id", "ts"), optional=("value",), key=("request_id", "offer_id")
)
OFFERS = Table(
    "offers",
    required=("offer_id",),
    optional=("partner", "category", "payout", "start_ts", "end_ts"),
    key=("offer_id",),
)
USERS = Table("users", required=("user_id",), optional=("signup_ts",), key=("user_id",))

# Ingest order matters: impressions are checked against offers, clicks and conversions
# against accepted impressions.
TABLES: tuple[Table, ...] = (OFFERS, USERS, IMPRESSIONS, CLICKS, CONVERSIONS)
BY_NAME = {t.name: t for t in TABLES}

RAW_FORMATS = ("parquet", "csv")
