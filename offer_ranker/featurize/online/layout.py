"""Where the Redis store keeps what, and in which form: key names and value layouts, shared by the
store and the loader."""

from __future__ import annotations

import math
import re
import struct

#: an offer's state: six little-endian doubles, OFFER_STATE order
OFFER = struct.Struct("<6d")
#: between the offer ids of a served request and of a journal entry
SEP = "\x1f"
_REQUEST = re.compile(r"^[0-9a-f]{16}-[0-9a-f]+$")


class Keys:
    """The key names of one namespace. A user's keys hold the user key as 8 raw bytes in their hash
    tag (short keys are much of a user's memory in Redis), after a ``u``: a tag that began with
    ``}`` would be empty, and Redis Cluster would hash the whole key instead."""

    def __init__(self, prefix: str, ns: str) -> None:
        self.prefix, self.ns = prefix, ns
        self.meta, self.lock = f"{prefix}:{{{ns}}}:meta", f"{prefix}:{{{ns}}}:lock"
        self.offers = f"{prefix}:{{{ns}}}:offers"
        self.journal = f"{prefix}:journal"
        self._user = f"{prefix}:{ns[:8]}{{".encode()
        self._seen = f"{prefix}:{ns[:8]}:s{{".encode()
        self._served = f"{prefix}:r{{".encode()

    def user(self, key: int) -> bytes:
        return self._user + _tag(key) + b"}"

    def user_of_digest(self, digest: bytes) -> bytes:
        """:meth:`user` of the key whose 8 bytes are ``digest`` (see ``store.user_digest``)."""
        return self._user + b"u" + digest + b"}"

    def served(self, request_id: str) -> bytes | None:
        """The served request's key, or None for an id this service did not make."""
        if not _REQUEST.match(request_id):
            return None
        tag, _, rest = request_id.partition("-")
        return self._served + b"u" + bytes.fromhex(tag) + b"}" + rest.encode()

    def seen_user(self, key: int, event_id: str) -> bytes:
        return self._seen + _tag(key) + b"}" + event_id.encode()

    def seen_offers(self, event_id: str) -> str:
        return f"{self.prefix}:{{{self.ns}}}:s:{event_id}"

    def patterns(self) -> list[bytes]:
        """SCAN patterns of every key of the namespace (its users, seen keys, offers, metadata)."""
        return [self._user + b"*", self._seen + b"*", f"{self.prefix}:{{{self.ns}}}:*".encode()]


def _tag(key: int) -> bytes:
    return b"u" + (key & (2**64 - 1)).to_bytes(8, "big")


def request_user(request_id: str) -> int:
    """The user key a request id names (see :meth:`OnlineStore.new_request_id`)."""
    value = int(request_id[:16], 16)
    return value - 2**64 if value >= 2**63 else value


def offer_delta(kind: str, t: int, t_ref: float, tau: float) -> tuple[float, ...]:
    """An offer's six deltas for one click or conversion at ``t`` µs."""
    if kind == "click":
        return 0.0, 1.0, 0.0, 0.0, 0.0, math.exp((t / 1e6 - t_ref) / tau)
    return 0.0, 0.0, 1.0, 0.0, 0.0, 0.0
