"""Every snapshot user's value at once, for loading a namespace: the layout of :mod:`.codec`,
byte for byte, built with numpy instead of one Python call per user and per entry (about 40x
faster: loading 1M users is bounded by Redis, not by encoding them).

Each field becomes, for all users (or all pages, all entries) at once, an array of byte lengths
and a matrix of bytes; the fields are then written into one buffer at positions computed from
the lengths, in the order :func:`.codec.encode` writes them.
"""

from __future__ import annotations

import numpy as np

from offer_ranker.featurize.online.codec import MAX_PAGES, VERSION
from offer_ranker.featurize.snapshot import NULL_TS


def varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unsigned LEB128 of non-negative int64 ``values``: (lengths, (n, width) uint8 bytes), width
    as wide as the largest value needs."""
    v = np.asarray(values).astype(np.uint64)
    top = int(v.max()) if len(v) else 0
    width = max(1, (top.bit_length() + 6) // 7)
    steps = np.arange(width, dtype=np.uint64)
    length = 1 + (v[:, None] >= (np.uint64(1) << (np.uint64(7) * steps[1:]))[None, :]).sum(axis=1)
    groups = ((v[:, None] >> (np.uint64(7) * steps)[None, :]) & np.uint64(0x7F)).astype(np.uint8)
    groups |= ((steps[None, :] < (length[:, None] - 1)).astype(np.uint8) << 7)
    return length.astype(np.int64), groups


def times(t: np.ndarray, base: int, latest: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Times as codec writes them: 0 NULL, 1 "the latest page" (where ``t == latest``), else
    zigzag(t - base) + 2."""
    d = t.astype(np.int64) - base
    z = np.where(d < 0, -2 * d - 1, 2 * d) + 2
    z = np.where(t == NULL_TS, 0, z)
    if latest is not None:
        z = np.where((t == latest) & (t != NULL_TS), 1, z)
    return varints(z)


class _Buffer:
    """Bytes of many users written field by field at each user's running position."""

    def __init__(self, lengths: np.ndarray) -> None:
        self.start = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.data = np.zeros(int(self.start[-1]), dtype=np.uint8)

    def write(self, at: np.ndarray, length: np.ndarray, data: np.ndarray) -> None:
        """Rows of ``data`` (the first ``length[i]`` bytes of row i) at positions ``at``."""
        width = data.shape[1]
        mask = np.arange(width)[None, :] < length[:, None]
        self.data[(at[:, None] + np.arange(width)[None, :])[mask]] = data[mask]


def _one_byte(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.ones(len(values), dtype=np.int64), values.astype(np.uint8)[:, None]


def encode_users(counts: list[np.ndarray], last_visit: np.ndarray, last_click: np.ndarray, signup: np.ndarray,
                 extras: list[tuple[str, np.ndarray]], entry_user: np.ndarray, entry_code: np.ndarray,
                 entry_counts: np.ndarray, entry_seen: np.ndarray, base: int) -> list[bytes]:
    """The values of n users.

    counts : four (n,) arrays; last_visit, last_click, signup : (n,) µs or NULL_TS
    extras : per user extra, ("n", float64 with NaN) or ("c", int64 codes, 0 = NULL)
    entry_* : the user×offer entries of catalogued offers, any order: user index, code (catalogue
        row + 1, unique per user), (3, m) impressions, clicks, conversions, last impression µs
    """
    n = len(last_visit)
    key = entry_user.astype(np.int64) * (int(entry_code.max(initial=0)) + 1) + entry_code
    order = np.arange(len(key)) if np.all(key[1:] > key[:-1]) else np.argsort(key, kind="stable")
    e_user, e_code, e_seen = entry_user[order], entry_code[order].astype(np.int64), entry_seen[order]
    e_imp, e_clk, e_conv = (entry_counts[k][order].astype(np.int64) for k in range(3))

    # pages: each user's distinct last-impression times of entries with impressions, latest first
    paged = (e_imp > 0) & (e_seen != NULL_TS)
    p_user, p_time = e_user[paged], e_seen[paged]
    keep = np.lexsort((-p_time, p_user))
    p_user, p_time = p_user[keep], p_time[keep]
    first = np.ones(len(p_user), dtype=bool)
    first[1:] = (p_user[1:] != p_user[:-1]) | (p_time[1:] != p_time[:-1])
    p_user, p_time = p_user[first], p_time[first]
    p_rank = _rank_within(p_user)
    top = p_rank < MAX_PAGES
    p_user, p_time, p_rank = p_user[top], p_time[top], p_rank[top]
    n_pages = np.bincount(p_user, minlength=n)
    latest = np.full(n, NULL_TS, dtype=np.int64)
    latest[p_user[p_rank == 0]] = p_time[p_rank == 0]

    # each entry's page index (or none): match (user, seen) with the pages
    page_of = np.full(len(e_user), -1, dtype=np.int64)
    if len(p_user):
        page_of = _match(p_user, p_time, p_rank, n, e_user, e_seen)
    packed = (e_imp >= 1) & (e_imp <= 3) & (e_clk <= 1) & (e_conv <= 1) & (page_of >= 0)

    # every field: (row -> user, lengths, bytes), in the order codec.encode writes them
    per_user: list[tuple[np.ndarray, np.ndarray]] = [_one_byte(np.full(n, VERSION))]
    per_user += [varints(np.asarray(c).astype(np.int64)) for c in counts]
    per_user += [times(last_visit, base, latest), times(last_click, base), times(signup, base)]
    for kind, values in extras:
        if kind == "n":
            raw = np.asarray(values, dtype="<f8").view(np.uint8).reshape(n, 8)
            per_user.append((np.full(n, 8, dtype=np.int64), raw))
        else:
            per_user.append(varints(np.asarray(values, dtype=np.int64)))
    per_user.append(varints(n_pages))
    head = sum(length for length, _ in per_user)

    prev_time = np.concatenate([[0], p_time[:-1]])
    p_len, p_bytes = times(p_time, base)
    d_len, d_bytes = varints(np.maximum(prev_time - p_time, 0))
    width = max(p_bytes.shape[1], d_bytes.shape[1])
    p_len = np.where(p_rank == 0, p_len, d_len)
    p_bytes = np.where((p_rank == 0)[:, None], _widen(p_bytes, width), _widen(d_bytes, width))

    count_len, count_bytes = varints(np.bincount(e_user, minlength=n))
    prev_code = np.concatenate([[0], e_code[:-1]])
    new_user = np.ones(len(e_user), dtype=bool)
    new_user[1:] = e_user[1:] != e_user[:-1]
    delta_len, delta_bytes = varints(np.where(new_user, e_code, e_code - prev_code))
    flag = np.where(packed, e_imp | e_clk << 2 | e_conv << 3 | np.maximum(page_of, 0) << 4, 0)
    escaped = [varints(np.where(packed, 0, x)) for x in (e_imp, e_clk, e_conv)] + [times(e_seen, base)]
    e_len = delta_len + 1 + np.where(packed, 0, sum(length for length, _ in escaped))

    total = head + np.bincount(p_user, weights=p_len, minlength=n).astype(np.int64) + count_len \
        + np.bincount(e_user, weights=e_len, minlength=n).astype(np.int64)
    buf = _Buffer(total)
    at = buf.start[:-1].copy()
    for length, data in per_user:
        buf.write(at, length, data)
        at += length
    at = _rows(buf, at, p_user, p_len, [(p_len, p_bytes)])
    buf.write(at, count_len, count_bytes)
    at += count_len
    zero = np.zeros(len(e_user), dtype=np.int64)
    parts = [(delta_len, delta_bytes), _one_byte(flag)] + [(np.where(packed, zero, length), data)
                                                          for length, data in escaped]
    _rows(buf, at, e_user, e_len, parts)
    data = buf.data.tobytes()
    start = buf.start.tolist()
    return [data[start[u]:start[u + 1]] for u in range(n)]


def _widen(data: np.ndarray, width: int) -> np.ndarray:
    return np.pad(data, ((0, 0), (0, width - data.shape[1])))


def _rank_within(group: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal (sorted) ``group`` values."""
    if not len(group):
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], group[1:] != group[:-1]]))
    run = np.repeat(starts, np.diff(np.concatenate([starts, [len(group)]])))
    return np.arange(len(group)) - run


def _match(p_user: np.ndarray, p_time: np.ndarray, p_rank: np.ndarray, n: int, e_user: np.ndarray,
           e_seen: np.ndarray) -> np.ndarray:
    """For each entry, the rank of its user's page at its time, or -1: a (users, MAX_PAGES)
    table of page times, compared with each entry's time."""
    table = np.full((n, MAX_PAGES), NULL_TS, dtype=np.int64)
    table[p_user, p_rank] = p_time
    hit = table[e_user] == e_seen[:, None]
    return np.where(hit.any(axis=1) & (e_seen != NULL_TS), hit.argmax(axis=1), -1)


def _rows(buf: _Buffer, at: np.ndarray, user: np.ndarray, row_len: np.ndarray,
          parts: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Write rows (sorted by user) after each user's position, each row made of ``parts`` in
    order; returns the positions after them."""
    within = np.zeros(len(user), dtype=np.int64)
    if len(user):
        csum = np.cumsum(row_len) - row_len  # exclusive running total over all rows
        first_of_user = np.concatenate([[True], user[1:] != user[:-1]])
        base_of_run = np.maximum.accumulate(np.where(first_of_user, csum, 0))
        within = csum - base_of_run
    pos = at[user] + within
    for length, data in parts:
        buf.write(pos, length, data)
        pos = pos + length
    return at + np.bincount(user, weights=row_len, minlength=len(at)).astype(np.int64)
