"""The REST contract (DESIGN.md §5): request and response models of ``/rank`` and ``/feedback``.

The BentoML service, ``offer-ranker rank`` and the latency baseline all validate requests with
these models, so an invalid request gets the same answer everywhere: 400 with the field's path in
``detail[].loc`` (413 for an oversized body, 404 for feedback on an unknown request). Limits that depend on the configuration
(candidates per request) are checked by :func:`check_limits`.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)

#: The arm of a service without an A/B test (and of logs written before arms existed).
DEFAULT_ARM = "default"

Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=128)]


def _attribute(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value}")
        return float(value)
    if isinstance(value, str):
        if len(value) > 1024:
            raise ValueError(f"a string of at most 1024 characters, got {len(value)}")
        return value
    raise ValueError(f"must be a number, a string, a boolean or null, got {type(value).__name__}")


def _naive_utc(ts: datetime) -> datetime:
    """Aware times become naive UTC (the logs' convention); years outside 1970-2200 are refused."""
    if ts.tzinfo is not None:
        try:
            ts = ts.astimezone(timezone.utc).replace(tzinfo=None)
        except OverflowError:
            raise ValueError("out of range once converted to UTC") from None
    if not 1970 <= ts.year <= 2200:
        raise ValueError(f"year {ts.year} is outside 1970-2200")
    return ts


Timestamp = Annotated[datetime, Strict(False), AfterValidator(_naive_utc)]  # ISO strings also from Python
#: A context or candidate attribute: a finite number, a string (≤ 1024 characters), a boolean or null.
Value = Annotated[Any, AfterValidator(_attribute), WithJsonSchema(
    {"anyOf": [{"type": "number"}, {"type": "string", "maxLength": 1024}, {"type": "boolean"}, {"type": "null"}]})]


class _Model(BaseModel):
    # finite numbers only: NaN and ±Infinity are rejected (Python's JSON parser would accept them)
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class Candidate(_Model):
    offer_id: Id
    features: dict[Name, Value] = Field(
        default_factory=dict, description="request-time attributes of the offer, e.g. price", max_length=256)


class RankRequest(_Model):
    user_id: Id = Field(description="first-party user id (hashed before anything is logged)")
    candidates: list[Candidate] = Field(min_length=1, description="the eligible offers to order (10-20 typically)")
    context: dict[Name, Value] = Field(
        default_factory=dict, description="device, country, surface and any other request context", max_length=256)
    k: int = Field(3, ge=1, le=10, description="offers to return")
    explain: bool = Field(False, description="add the top feature contributions of each returned offer")
    ts: Timestamp | None = Field(None, description="request time (ISO 8601, UTC); default now. For replays and tests")

    @field_validator("candidates")
    @classmethod
    def _unique_offers(cls, candidates: list[Candidate]) -> list[Candidate]:
        seen: set[str] = set()
        for i, c in enumerate(candidates):
            if c.offer_id in seen:
                raise ValueError(f"candidates[{i}].offer_id {c.offer_id!r} is a duplicate: offer ids must be unique")
            seen.add(c.offer_id)
        return candidates


class Reason(BaseModel):
    feature: str
    value: float | str | None
    contribution: float


class RankedOffer(BaseModel):
    offer_id: str
    position: int
    score: float = Field(description="the re-ranker's relevance (probability scale)")
    p_click: float = Field(description="calibrated probability of a click in this position")
    propensity: float = Field(description="probability that the policy shows this offer in this position")
    reasons: list[Reason] | None = None


class RankResponse(BaseModel):
    request_id: str
    model_version: str
    arm: str = Field(DEFAULT_ARM, description="the A/B arm the user is assigned to (serve.arms)")
    offers: list[RankedOffer]
    fallback: str | None = Field(None, description="why the ranking came from priors instead of the model")


class Feedback(_Model):
    request_id: Id
    offer_id: Id
    event: Literal["click", "conversion"]
    value: float | None = Field(None, ge=0, description="conversion value (revenue)")
    ts: Timestamp | None = Field(
        None, description="when it happened (ISO 8601, UTC); default now, or just after the page for a dated request")


class FeedbackResponse(BaseModel):
    request_id: str
    offer_id: str
    event: str
    applied: bool


class RequestError(ValueError):
    """A request the models accept but the configuration (or the moment) does not; ``field`` names
    where; ``retry_after`` (seconds) when sending it again later will do."""

    def __init__(self, field: str, message: str, status: int = 400, retry_after: int | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.status, self.retry_after = field, status, retry_after


def check_limits(request: RankRequest, max_candidates: int) -> None:
    if len(request.candidates) > max_candidates:
        raise RequestError("candidates", f"{len(request.candidates)} candidates; at most {max_candidates} allowed")
