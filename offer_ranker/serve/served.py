"""The requests the service answered recently, kept so ``/feedback`` can find who was shown what.

A feedback event names only ``request_id`` and ``offer_id``: the user, the request's time and the
offer's slot come from here. Each (offer, event) is applied once, so a retried feedback counts once.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime
from typing import NamedTuple


class Served(NamedTuple):
    """One answered request. Atomic values only, so the garbage collector stops tracking it (100k
    remembered requests must not slow full collections down)."""

    user_id: str
    ts: datetime
    dated: bool  # the request gave its own ts (a replay): feedback defaults to just after it
    offers: tuple[str, ...]  # in position order
    applied: tuple[str, ...] = ()  # "offer_id event" pairs already recorded


class ServedRequests:
    """The last ``limit`` answered requests, oldest forgotten first. Not thread-safe."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._requests: OrderedDict[str, Served] = OrderedDict()

    def remember(self, request_id: str, served: Served) -> None:
        self._requests[request_id] = served
        while len(self._requests) > self.limit:
            self._requests.popitem(last=False)

    def get(self, request_id: str) -> Served | None:
        return self._requests.get(request_id)

    def __contains__(self, request_id: str) -> bool:
        return request_id in self._requests

    def mark_applied(self, request_id: str, offer_id: str, event: str) -> bool:
        """Record that ``event`` on ``offer_id`` was applied; False if it had been already."""
        served = self._requests.get(request_id)
        key = f"{offer_id} {event}"
        if served is None or key in served.applied:
            return False
        self._requests[request_id] = served._replace(applied=(*served.applied, key))
        return True
