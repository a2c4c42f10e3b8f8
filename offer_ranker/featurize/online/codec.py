"""A user's online state as one compact binary value (the Redis store keeps one per user).

Layout, version 1; ``varint`` is unsigned LEB128, a time is ``varint(0)`` for NULL, ``varint(1)``
for "the latest page" (below), or ``varint(zigzag(t - base) + 2)`` with ``t`` in µs and ``base``
the namespace's reference time::

    u8      version
    varint  requests, impressions, clicks, conversions
    time    last_visit, last_click, signup
    extras  per user pass-through column: categorical varint (0 NULL, i + 1 = levels[i]),
            numeric little-endian double (NaN = NULL)
    varint  pages, then their times, latest first: a time, then varint(previous - this) each
    varint  entries, then per user×offer entry, in offer-code order:
            varint  code - previous code (code = the offer's catalogue row + 1; 0 = not in the
                    catalogue, followed by varint length and the offer id's UTF-8 bytes)
            u8      imp (bits 0-1, 1-3) | clk (bit 2) | conv (bit 3) | page (bits 4-7, 0-14:
                    the entry's last impression is pages[page]); 0 = escape, then
                    varint imp, clk, conv and the last impression as a time

A typical entry (one to three impressions, at most one click and conversion, within the user's
last 15 pages) takes two bytes. ``scripts/user.lua`` reads and writes the same layout inside Redis.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from offer_ranker.featurize.snapshot import NULL_TS

VERSION = 1
MAX_PAGES = 15
LATEST = NULL_TS + 1  # a decoded time that stands for "the latest page"
_DOUBLE = struct.Struct("<d")


@dataclass
class UserState:
    """One user's counts, times (µs, NULL_TS), attributes and user×offer entries.

    entries: ``code -> [imp, clk, conv, seen µs]``; code = catalogue row + 1, or the offer id (str)
    for an offer the catalogue does not know.
    """

    counts: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    last_visit: int = NULL_TS
    last_click: int = NULL_TS
    signup: int = NULL_TS
    extras: list[object] = field(default_factory=list)
    entries: dict[int | str, list[int]] = field(default_factory=dict)


def _varint(out: bytearray, n: int) -> None:
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _time(out: bytearray, t: int, base: int, latest: int | None = None) -> None:
    if t == NULL_TS:
        out.append(0)
    elif t == latest:
        out.append(1)
    else:
        d = t - base
        _varint(out, ((d << 1) ^ (d >> 63) if d < 0 else d << 1) + 2)


def encode(s: UserState, base: int, layout: str, levels: list[dict[str, int]]) -> bytes:
    """``layout``: one letter per user extra, ``c`` categorical or ``n`` numeric; ``levels[i]``
    maps a categorical extra's values to their codes (1-based)."""
    out = bytearray([VERSION])
    for c in s.counts:
        _varint(out, int(c))
    pages = sorted({e[3] for e in s.entries.values() if e[0] > 0 and e[3] != NULL_TS}, reverse=True)[:MAX_PAGES]
    _time(out, int(s.last_visit), base, pages[0] if pages else None)  # usually the latest page: one byte
    for t in (s.last_click, s.signup):
        _time(out, int(t), base)
    for kind, value, codes in zip(layout, s.extras, levels):
        if kind == "n":
            out += _DOUBLE.pack(float("nan") if value is None else float(value))
        else:
            _varint(out, 0 if value is None else codes.get(value, 0))
    _varint(out, len(pages))
    for i, t in enumerate(pages):
        if i == 0:
            _time(out, t, base)
        else:
            _varint(out, pages[i - 1] - t)
    page_of = {t: i for i, t in enumerate(pages)}
    _varint(out, len(s.entries))
    previous = 0
    for code, (imp, clk, conv, seen) in sorted(s.entries.items(), key=lambda kv: (isinstance(kv[0], int), kv[0])):
        number = code if isinstance(code, int) else 0
        _varint(out, number - previous)
        previous = number
        if number == 0:
            raw = str(code).encode()
            _varint(out, len(raw))
            out += raw
        page = page_of.get(seen)
        if 1 <= imp <= 3 and clk <= 1 and conv <= 1 and page is not None:
            out.append(imp | clk << 2 | conv << 3 | page << 4)
        else:
            out.append(0)
            for n in (imp, clk, conv):
                _varint(out, int(n))
            _time(out, int(seen), base)
    return bytes(out)


class _Reader:
    __slots__ = ("data", "at")

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def varint(self) -> int:
        n = shift = 0
        while True:
            b = self.data[self.at]
            self.at += 1
            n |= (b & 0x7F) << shift
            if b < 0x80:
                return n
            shift += 7

    def time(self, base: int) -> int:
        """A time; ``LATEST`` for "the latest page" (resolved once the pages are read)."""
        z = self.varint()
        if z <= 1:
            return NULL_TS if z == 0 else LATEST
        z -= 2
        return base + ((z >> 1) ^ -(z & 1))

    def byte(self) -> int:
        b = self.data[self.at]
        self.at += 1
        return b


def decode(data: bytes, base: int, layout: str, levels: list[list[str]]) -> UserState:
    """The inverse of :func:`encode`; ``levels[i]`` lists a categorical extra's values by code - 1."""
    r = _Reader(data)
    if r.byte() != VERSION:
        raise ValueError(f"user state of version {data[0]}, expected {VERSION}")
    s = UserState(counts=[r.varint() for _ in range(4)])
    s.last_visit, s.last_click, s.signup = r.time(base), r.time(base), r.time(base)
    for kind, names in zip(layout, levels):
        if kind == "n":
            (value,) = _DOUBLE.unpack_from(data, r.at)
            r.at += 8
            s.extras.append(None if value != value else value)
        else:
            code = r.varint()
            s.extras.append(names[code - 1] if code else None)
    pages: list[int] = []
    for i in range(r.varint()):
        pages.append(r.time(base) if i == 0 else pages[-1] - r.varint())
    if s.last_visit == LATEST:
        s.last_visit = pages[0]
    code = 0
    for _ in range(r.varint()):
        code += r.varint()
        key: int | str = code
        if code == 0:
            n = r.varint()
            key = data[r.at:r.at + n].decode()
            r.at += n
        packed = r.byte()
        if packed:
            s.entries[key] = [packed & 3, packed >> 2 & 1, packed >> 3 & 1, pages[packed >> 4]]
        else:
            s.entries[key] = [r.varint(), r.varint(), r.varint(), r.time(base)]
    return s


def entry_arrays(s: UserState, catalogue_size: int) -> tuple[np.ndarray, list[str | None], np.ndarray, np.ndarray]:
    """The entries as (rows (k,) catalogue rows, ``catalogue_size`` for unknown offers; ids (k,) the
    unknown offers' ids, None for catalogue ones; counts (3, k); seen (k,) µs)."""
    k = len(s.entries)
    rows = np.empty(k, dtype=np.int64)
    ids: list[str | None] = []
    counts = np.empty((3, k))
    seen = np.empty(k, dtype=np.int64)
    for j, (code, (imp, clk, conv, t)) in enumerate(s.entries.items()):
        if isinstance(code, int):
            rows[j] = code - 1
            ids.append(None)
        else:
            rows[j] = catalogue_size
            ids.append(code)
        counts[:, j] = (imp, clk, conv)
        seen[j] = t
    return rows, ids, counts, seen
