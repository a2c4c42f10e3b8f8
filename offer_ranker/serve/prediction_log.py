"""The prediction log: one JSON line per ranking and per feedback event, written by the service and
read by ``offer-ranker monitor``, ``ab-report`` and ``logs-to-raw``.

:class:`RankRecord` and :class:`FeedbackRecord` are the one definition of a line: the writer
serialises them and the readers validate against them (``offer_ranker.production.logs``), so a line
is well-formed or malformed for all three alike. User ids are written as :func:`hash_user` hashes,
never raw; the request context is reduced to :data:`LOGGED_CONTEXT`.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

from offer_ranker.featurize.online.store import hash_user
from offer_ranker.serve.api import DEFAULT_ARM

log = logging.getLogger("offer_ranker.serve")

#: Request context written to the log: first-party segment keys only (anything else a client puts
#: in ``context`` could identify the user).
LOGGED_CONTEXT = ("device", "country", "surface")

Number = Annotated[float, Strict()]  # a JSON number; a string or a boolean is not coerced


class _Record(BaseModel):
    # extra fields are allowed: a newer writer may add some, and readers use what they know
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class RankRecord(_Record):
    """One ``/rank`` answer. The per-offer lists hold one entry per shown offer, in position order."""

    kind: Literal["rank"] = "rank"
    ts: datetime = Field(description="request time, naive UTC")
    request_id: str = Field(min_length=1)
    user: str = Field(min_length=1, description="hash_user of the user id")
    model_version: str = Field(min_length=1)
    arm: str = Field(DEFAULT_ARM, min_length=1)
    arm_share: Number | None = Field(None, gt=0, le=1)
    context: dict[str, Any] = Field(default_factory=dict, description="the LOGGED_CONTEXT keys the request had")
    candidates: int | None = Field(None, ge=0)
    offers: list[str]
    positions: list[int]
    scores: list[Number] | None = None
    p_click: list[Number] | None = None
    propensities: list[Number] | None = None
    explored: bool = False
    fallback: str | None = None
    latency_ms: Number | None = Field(None, ge=0)
    new_user: bool | None = None
    unknown_offers: int | None = Field(None, ge=0)
    features: dict[str, list[Number | str | None]] | None = Field(
        None, description="model inputs of the shown offers (serve.log_features): numeric or text, null if missing")

    @model_validator(mode="after")
    def _one_entry_per_offer(self) -> RankRecord:
        n = len(self.offers)
        for name in ("positions", "scores", "p_click", "propensities"):
            values = getattr(self, name)
            if values is not None and len(values) != n:
                raise ValueError(f"{name} has {len(values)} entries for {n} offers")
        for name, values in (self.features or {}).items():
            if len(values) != n:
                raise ValueError(f"features.{name} has {len(values)} entries for {n} offers")
        return self


class FeedbackRecord(_Record):
    """One ``/feedback`` event; ``applied`` is false for a retry of an event already recorded."""

    kind: Literal["feedback"] = "feedback"
    ts: datetime
    request_id: str = Field(min_length=1)
    user: str | None = None
    arm: str = Field(DEFAULT_ARM, min_length=1)
    offer: str = Field(min_length=1)
    position: int | None = Field(None, ge=1)
    event: Literal["click", "conversion"]
    value: Number | None = Field(None, ge=0)
    applied: Annotated[bool, Strict()]


RECORDS: dict[str, type[_Record]] = {"rank": RankRecord, "feedback": FeedbackRecord}

__all__ = ["DEFAULT_ARM", "LOGGED_CONTEXT", "RECORDS", "FeedbackRecord", "PredictionLog", "RankRecord", "hash_user"]


class PredictionLog:
    """Append-only JSON lines; flushed per line (a crash loses nothing)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.failures = 0
        self._file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives with the engine

    def write(self, record: RankRecord | FeedbackRecord) -> None:
        """Append one record; a failed write (disk full, …) is counted and logged, never raised:
        the ranking has been served and the store updated already."""
        if self._file is None:
            return
        try:
            self._file.write(record.model_dump_json(exclude_none=False) + "\n")
        except (OSError, ValueError, TypeError):
            self.failures += 1
            log.exception("prediction log write failed (%d so far)", self.failures)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
