"""The online snapshot as the service reads it: ``build_features`` writes ``snapshot/`` (the state of
every offer, user and user×offer from the events before the snapshot time, plus the priors of the
day; see :func:`offer_ranker.featurize.build.write_snapshot`) and :meth:`Snapshot.read` loads it into
numpy arrays.

Offers and users are rows of sorted id arrays, looked up with ``np.searchsorted``; row ``n`` (one
past the end) is the unknown entity, whose row holds the cold-start values (counts 0, attributes
NULL). A user's user×offer rows are one contiguous range (:class:`UserOffers`). Times are naive
UTC, held as int64 microseconds since the epoch (DuckDB's ``epoch_us``).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from offer_ranker.errors import OfferRankerError

#: A NULL timestamp in the int64 arrays.
NULL_TS = np.iinfo(np.int64).min
_EPOCH = datetime(1970, 1, 1)
#: Offer state columns of ``snapshot/offers.parquet``, in the order of the ``(n, 6)`` state matrix.
OFFER_STATE = ("impressions", "clicks", "conversions", "expected_clicks", "impressions_scaled", "clicks_scaled")
USER_COUNTS = ("requests", "impressions", "clicks", "conversions")


def epoch_us(ts: datetime) -> int:
    """Microseconds since the epoch of a naive-UTC (or aware) datetime, as DuckDB's ``epoch_us``."""
    if ts.tzinfo is not None:
        ts = ts.astimezone(timezone.utc).replace(tzinfo=None)
    return (ts - _EPOCH) // timedelta(microseconds=1)


def plain(value: Any) -> Any:
    """An attribute value as the features take it: None for NULL (None or NaN), else as it is."""
    return None if value is None or (isinstance(value, float) and value != value) else value


def smoothed(successes: Any, trials: Any, mean: Any, strength: Any) -> Any:
    """``smoothed`` of setup.sql: a rate pulled towards ``mean`` with ``strength`` pseudo-trials."""
    return (successes + mean * strength) / (trials + strength)


class SnapshotError(OfferRankerError):
    """A snapshot file is missing or unreadable; the message names it."""


def _parquet(path: Path, **kwargs: Any) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path, **kwargs)
    except FileNotFoundError:
        raise SnapshotError(f"{path}: missing from the snapshot") from None
    except (pa.ArrowException, OSError) as exc:
        raise SnapshotError(f"{path}: not a readable Parquet file ({exc})") from None


def _indices(chunk: pa.DictionaryArray) -> np.ndarray:
    """The dictionary indices of one chunk, -1 for NULL."""
    return chunk.indices.to_numpy() if chunk.null_count == 0 else pc.fill_null(chunk.indices, -1).to_numpy()


class UserOffers:
    """``user_offer.parquet``, its rows sorted by user id as snapshot.sql writes them: user ``u``'s
    rows are ``offsets[u]:offsets[u + 1]``. Per row: ``offer`` (int32 row in offers.parquet, -2 if
    not there), ``counts`` (3, rows) float32 impressions, clicks, conversions (exact below 2**24),
    ``seen`` int64 µs of the last impression."""

    def __init__(self, path: Path, offer_ids: pa.Array) -> None:
        # One row group at a time into arrays allocated once (little memory to touch); ids read as
        # the Parquet dictionaries (no string per row): ``offer`` first holds 1 + an index into
        # the concatenated dictionaries (0 for NULL), mapped to rows of ``offer_ids`` at the end.
        file = _parquet(path, read_dictionary=["user_id", "offer_id"])
        n = file.metadata.num_rows
        self.path, self.offer = path, np.empty(n, np.int32)
        self.counts, self.seen = np.empty((3, n), np.float32), np.empty(n, np.int64)
        self._users: list[pa.Array] = []  # each row group's dictionary lists its users in order,
        self._user_rows: list[np.ndarray] = []  # with the rows of each
        levels, start, n_levels = [pa.array([None], pa.string())], 0, 1
        for g in range(file.num_row_groups):
            group = file.read_row_group(g)
            stop = start + group.num_rows
            for c in group["user_id"].chunks:
                self._users.append(c.dictionary)
                self._user_rows.append(np.bincount(_indices(c), minlength=len(c.dictionary)))
            at = start
            for c in group["offer_id"].chunks:
                idx, dest = _indices(c), self.offer[at:at + len(c)]
                np.add(idx, n_levels, out=dest, casting="unsafe")
                dest[idx < 0] = 0
                levels.append(c.dictionary)
                at, n_levels = at + len(c), n_levels + len(c.dictionary)
            for j, name in enumerate(("impressions", "clicks", "conversions")):
                self.counts[j, start:stop] = _numpy(group[name])
            self.seen[start:stop] = _times(group["last_seen"])
            start = stop
        found = pc.fill_null(pc.index_in(pa.concat_arrays(levels), value_set=offer_ids), -2).to_numpy()
        np.take(found.astype(np.int32), self.offer, out=self.offer, mode="clip")  # element-wise: in place is safe

    def index_users(self, user_ids: pl.Series) -> UserOffers:
        """Find each user's rows, given the sorted ids of users.parquet (every user is there)."""
        entries = pl.Series(pa.concat_arrays(self._users) if self._users else pa.array([], pa.string()))
        where = user_ids.search_sorted(entries).to_numpy().astype(np.int64)
        if not ((where < len(user_ids)).all() and (user_ids.gather(where) == entries).all()
                and (np.diff(where) >= 0).all()):
            raise ValueError(f"{self.path}: rows are not sorted by the ids of users.parquet, or name unknown users")
        rows = np.concatenate([np.zeros(0), *self._user_rows])
        per_user = np.bincount(where, weights=rows, minlength=len(user_ids) + 1).astype(np.int64)
        # offsets[n_users] == offsets[n_users + 1]: the unknown user (index n_users) has no rows
        self.offsets = np.concatenate(([0], np.cumsum(per_user)))
        del self._users, self._user_rows
        return self

    def of(self, u: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """User ``u``'s rows: offers (k,), counts (3, k) float64, last seen (k,) int64 µs."""
        lo, hi = self.offsets[u], self.offsets[u + 1]
        return self.offer[lo:hi], self.counts[:, lo:hi].astype(np.float64), self.seen[lo:hi]


def _numpy(col: pa.ChunkedArray) -> np.ndarray:
    """A column as one numpy array. (pyarrow's ``to_numpy`` imports pandas on first use, ~1 s in a
    fresh process; the service imports it anyway, with lightgbm.)"""
    return col.combine_chunks().to_numpy(zero_copy_only=False)


def _floats(col: pa.ChunkedArray) -> np.ndarray:
    """float64 values, NaN for NULL."""
    return _numpy(col.cast(pa.float64()))


def _times(col: pa.ChunkedArray) -> np.ndarray:
    """int64 µs since the epoch, ``NULL_TS`` for NULL (numpy's NaT is that very value)."""
    if col.type != pa.timestamp("us"):
        col = col.cast(pa.timestamp("us"))
    return _numpy(col).view(np.int64)


def _strings(col: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """A text column as (int64 codes, -1 for NULL; the levels the codes index)."""
    if not pa.types.is_dictionary(col.type):
        col = pc.dictionary_encode(col)
    arr = col.combine_chunks()  # unifies the row groups' dictionaries
    return _indices(arr).astype(np.int64), arr.dictionary


def _column(col: pa.ChunkedArray) -> np.ndarray:
    """A pass-through column with a NULL row appended: float64, or an object array of str."""
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type) or pa.types.is_dictionary(col.type):
        codes, levels = _strings(col)
        return np.array(levels.to_pylist() + [None], dtype=object)[np.append(codes, -1)]
    return np.append(_floats(col), np.nan)


@dataclass(frozen=True)
class Manifest:
    """What the online features need from the feature manifest: names and types in order, the
    pass-through columns (name, entity) and the crosses (name, (segment, category))."""

    names: tuple[str, ...]
    dtypes: dict[str, str]
    passthrough: tuple[tuple[str, str], ...]
    crosses: tuple[tuple[str, tuple[str, str]], ...]
    settings: dict[str, Any]

    @classmethod
    def of(cls, manifest: Mapping[str, Any]) -> Manifest:
        features = manifest["features"]
        return cls(tuple(f["name"] for f in features), {f["name"]: f["dtype"] for f in features},
                   tuple((f["name"], f["entity"]) for f in features if f["group"] == "passthrough"),
                   tuple((f["name"], tuple(f["inputs"])) for f in features if f["group"] == "crosses"),
                   dict(manifest["settings"]))

    def extras(self, entity: str) -> list[str]:
        """The pass-through features of ``entity`` (``offer`` or ``user``)."""
        return [name for name, e in self.passthrough if e == entity]


class Snapshot:
    """A loaded snapshot: the offers' and users' state and attributes as arrays (one row more than
    there are entities: the unknown one), the user×offer rows, and the priors of ``prior_day``."""

    def __init__(self, folder: Path, manifest: Manifest, *, users: bool = True) -> None:
        """``users``: load the users' arrays too (a store that keeps user state elsewhere skips them)."""
        meta = json.loads((folder / "snapshot.json").read_text())
        self.folder = folder
        self.t_ref, self.tau = float(meta["t_ref"]), float(meta["tau_seconds"])
        self.prior_day, self.as_of = meta["prior_day"], meta["as_of"]
        # events dated from here on are not in the snapshot (older snapshots: from as_of, or after prior_day began)
        before = meta.get("events_before") or meta["as_of"] or meta["prior_day"]
        self.events_before_us = epoch_us(datetime.fromisoformat(before))
        self.id = _snapshot_id(folder)
        self._offers(_parquet(folder / "offers.parquet").read(), manifest.extras("offer"))
        self._priors(_parquet(folder / "priors.parquet").read().to_pylist(), manifest.settings)
        if users:
            self.load_users(manifest)

    def load_users(self, manifest: Manifest) -> None:
        """The users' arrays and user×offer rows."""
        folder = self.folder
        # user × category and user × partner counts are sums of user × offer counts over the offers
        # of the category / partner: derived per request, so only user_offer.parquet is loaded
        # (tests/data/test_online_parity.py checks the sums against the snapshot's own tables)
        with ThreadPoolExecutor(1) as pool:  # Arrow and numpy release the GIL: overlap the reads
            user_offers = pool.submit(UserOffers, folder / "user_offer.parquet", self.offer_ids_pa)
            users = _parquet(folder / "users.parquet", read_dictionary=[
                c for c in manifest.extras("user") if manifest.dtypes[c] == "categorical"]).read()
            self._users(users, manifest.extras("user"))
            self.user_offers = user_offers.result().index_users(self.user_ids_pl)

    def _offers(self, t: pa.Table, extras: list[str]) -> None:
        self.offer_ids_pa = t["offer_id"].combine_chunks()
        self.offer_ids = pl.Series(self.offer_ids_pa).to_numpy()  # object array of str
        state = np.column_stack([_floats(t[c]) for c in OFFER_STATE]) if t.num_rows else np.zeros((0, 6))
        self.offer_state = np.vstack([state, np.zeros((1, 6))])  # (offers + 1, 6)
        codes, levels = _strings(t["category"])  # code -1 (NULL, or the unknown offer) -> None
        self.offer_category, self.category_names = np.append(codes, -1), levels.to_pylist() + [None]
        codes, levels = _strings(t["partner"])
        self.offer_partner, self.partner_names = np.append(codes, -1), levels.to_pylist() + [None]
        self.offer_payout = np.append(_floats(t["payout"]), np.nan)
        self.offer_start = np.append(_times(t["start_ts"]), NULL_TS)
        self.offer_end = np.append(_times(t["end_ts"]), NULL_TS)
        # the content prior of the day (NaN: none; snapshots written before it existed have no column)
        content = _floats(t["content_ctr"]) if "content_ctr" in t.column_names else np.full(t.num_rows, np.nan)
        self.offer_content_ctr = np.append(content, np.nan)
        self.offer_extras = {name: _column(t[name]) for name in extras}

    def _users(self, t: pa.Table, extras: list[str]) -> None:
        self.user_ids_pl = pl.Series(t["user_id"].combine_chunks())
        self.user_ids = self.user_ids_pl.to_numpy()
        self.user_counts = [np.append(_floats(t[c]), 0.0) for c in USER_COUNTS]
        self.user_last = [np.append(_times(t[c]), NULL_TS) for c in ("last_visit", "last_click")]
        self.user_signup = np.append(_times(t["signup_ts"]), NULL_TS)
        self.user_extras = {name: _column(t[name]) for name in extras}

    def _priors(self, rows: list[dict[str, Any]], settings: dict[str, Any]) -> None:
        self.offer_priors = {r["key"]: (r["ctr_mean"], r["ctr_strength"], r["cvr_mean"], r["cvr_strength"])
                             for r in rows if r["kind"] == "offer"}
        # '' is the global prior (priors.sql always writes it); the configured fallback if absent
        self.offer_priors.setdefault("", (settings["fallback_ctr"], float(settings["fallback_strength"]),
                                          settings["fallback_cvr"], float(settings["fallback_strength"])))
        user = [(r["ctr_mean"], r["ctr_strength"]) for r in rows if r["kind"] == "user"]
        self.user_prior = user[0] if user else (settings["fallback_ctr"], settings["fallback_strength"])
        self.position_ctr = {int(r["key"]): r["ctr_mean"] for r in rows if r["kind"] == "position"}
        # a position never logged: smoothed(0, 0, global prior), as priors.sql gives a new position
        ctr, strength = self.offer_priors[""][:2]
        self.new_position_ctr = smoothed(0, 0, ctr, strength)

    @staticmethod
    def no_times() -> tuple[int, int, int]:
        """(last visit, last click, signup) of a user the snapshot does not know."""
        return NULL_TS, NULL_TS, NULL_TS

    def user_index(self, user_id: str) -> int:
        """Row of ``user_id``; ``len(users)`` (the cold-start row) if unknown."""
        i = int(np.searchsorted(self.user_ids, user_id))
        return i if i < len(self.user_ids) and self.user_ids[i] == user_id else len(self.user_ids)

    def offer_index(self, offer_ids: list[str]) -> np.ndarray:
        """Rows of ``offer_ids`` (n,); ``len(offers)`` (the cold-start row) where unknown."""
        n = len(self.offer_ids)
        wanted = np.array(offer_ids, dtype=object)
        i = np.searchsorted(self.offer_ids, wanted)
        ok = i < n
        ok[ok] = self.offer_ids[i[ok]] == wanted[ok]
        return np.where(ok, i, n)


def _snapshot_id(folder: Path) -> str:
    """12 hex digits naming a snapshot's content: its metadata and the sizes of its tables."""
    import hashlib

    digest = hashlib.sha256((folder / "snapshot.json").read_bytes())
    for name in sorted(p.name for p in folder.glob("*.parquet")):
        digest.update(f"{name}:{(folder / name).stat().st_size}".encode())
    return digest.hexdigest()[:12]


def find(path: Path | str, manifest: Mapping[str, Any] | Path | str | None = None) -> tuple[Path, Mapping[str, Any]]:
    """The snapshot folder and the manifest for ``path``: a features folder (``manifest.json`` +
    ``snapshot/``) or a snapshot folder (then ``manifest`` is the manifest, its path, or found in
    the parent folder)."""
    path = Path(path)
    folder = path if (path / "snapshot.json").exists() else path / "snapshot"
    if not (folder / "snapshot.json").exists():
        raise FileNotFoundError(f"{path}: no snapshot.json here nor in {path / 'snapshot'}")
    if manifest is None:
        manifest = folder.parent / "manifest.json"
    if not isinstance(manifest, Mapping):
        manifest = json.loads(Path(manifest).read_text())
    return folder, manifest
