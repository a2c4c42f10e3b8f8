"""Online features: the snapshot the service loads, and the feature vector of one request.

``build_features`` writes ``snapshot/``: the state of every offer, user, user×category,
user×partner and user×offer from the events before the snapshot time, plus the priors of the
day. :class:`OnlineStore` loads it into numpy arrays (ids sorted, looked up with
``np.searchsorted``; user×offer rows as one contiguous range per user, from which the
user×category and user×partner counts are summed), keeps the events recorded since then in small
dict overlays, and computes for a request the values ``train.parquet`` holds for the same request
at the same time, mirroring ``sql/features/*.sql`` formula by formula
(``tests/data/test_online_parity.py`` replays a day and compares).

Times are naive UTC, held as int64 microseconds since the epoch (DuckDB's ``epoch_us``). The
priors are those of the snapshot's ``prior_day``: offline, each day has its own, so the store is
meant to be rebuilt from a fresh snapshot every night.
"""

from __future__ import annotations

import heapq
import json
import math
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
from offer_ranker.features import IMPRESSION_PREFIX

#: A NULL timestamp in the int64 arrays.
NULL_TS = np.iinfo(np.int64).min
_EPOCH = datetime(1970, 1, 1)
#: Offer state columns of ``snapshot/offers.parquet``, in the order of the ``(n, 6)`` state matrix.
OFFER_STATE = ("impressions", "clicks", "conversions", "expected_clicks", "impressions_scaled", "clicks_scaled")
USER_COUNTS = ("requests", "impressions", "clicks", "conversions")
EVENT_KINDS = ("impression", "click", "conversion")


def epoch_us(ts: datetime) -> int:
    """Microseconds since the epoch of a naive-UTC (or aware) datetime, as DuckDB's ``epoch_us``."""
    if ts.tzinfo is not None:
        ts = ts.astimezone(timezone.utc).replace(tzinfo=None)
    return (ts - _EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True)
class Event:
    """Something that happened to one offer shown to one user, at ``ts`` (the event's own time:
    for a click its click time). ``position`` (1-based) is needed for impressions only."""

    kind: str
    user_id: str
    offer_id: str
    ts: datetime
    position: int | None = None


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


def _smoothed(successes, trials, mean, strength):
    """``smoothed`` of setup.sql: a rate pulled towards ``mean`` with ``strength`` pseudo-trials."""
    return (successes + mean * strength) / (trials + strength)


def _hours(later: int | np.ndarray, earlier: int | np.ndarray) -> float | np.ndarray:
    """``hours_between(earlier, later)`` of setup.sql; NaN where either is ``NULL_TS``."""
    later, earlier = np.asarray(later), np.asarray(earlier)
    null = (later == NULL_TS) | (earlier == NULL_TS)
    return np.where(null, np.nan, (np.where(null, 0, later) - np.where(null, 0, earlier)) / 3.6e9)


class _UserOffers:
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

    def index_users(self, user_ids: pl.Series) -> _UserOffers:
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


class OnlineStore:
    """The online feature state: a loaded snapshot plus the events recorded since.

    ``OnlineStore.load(path)``, then :meth:`feature_columns` / :meth:`features` per request and
    :meth:`apply` per event. Offers and users are rows of sorted id arrays; index ``n`` (one past
    the end) is the unknown entity, whose row holds the cold-start values (counts 0, attributes
    NULL). Not thread-safe: serialise the calls (one lock around apply and the features).
    """

    def __init__(self, snapshot: Path, manifest: Mapping[str, Any]) -> None:
        meta = json.loads((snapshot / "snapshot.json").read_text())
        self.t_ref, self.tau = float(meta["t_ref"]), float(meta["tau_seconds"])
        self.prior_day, self.as_of = meta["prior_day"], meta["as_of"]
        self.settings = dict(manifest["settings"])
        self.names = [f["name"] for f in manifest["features"]]
        self.dtypes = {f["name"]: f["dtype"] for f in manifest["features"]}
        self._passthrough = [(f["name"], f["entity"]) for f in manifest["features"] if f["group"] == "passthrough"]
        self._crosses = [(f["name"], tuple(f["inputs"])) for f in manifest["features"] if f["group"] == "crosses"]
        self._load_offers(_parquet(snapshot / "offers.parquet").read(), extras=self._extras("offer"))
        # user × category and user × partner counts are sums of user × offer counts over the offers
        # of the category / partner: derived per request, so only user_offer.parquet is loaded
        # (tests/data/test_online_parity.py checks the sums against the snapshot's own tables)
        with ThreadPoolExecutor(1) as pool:  # Arrow and numpy release the GIL: overlap the reads
            user_offers = pool.submit(_UserOffers, snapshot / "user_offer.parquet", self._offer_ids_pa)
            users = _parquet(snapshot / "users.parquet", read_dictionary=[
                c for c in self._extras("user") if self.dtypes[c] == "categorical"]).read()
            self._load_users(users, extras=self._extras("user"))
            self._uo = user_offers.result().index_users(self._user_ids_pl)
        self._load_priors(_parquet(snapshot / "priors.parquet").read().to_pylist())
        # overlays: events recorded after the snapshot, as deltas (counts) and maxima (times)
        self._offer_delta: dict[str, list[float]] = {}  # offer_id -> OFFER_STATE deltas
        self._user_delta: dict[str, list[float]] = {}  # user_id -> USER_COUNTS deltas + [last_visit, last_click]
        self._uo_delta: dict[str, dict[str, list[float]]] = {}  # user_id -> offer_id -> [imp, clk, conv, last_seen]
        # recorded events not yet counted, a heap of (t µs, sequence, user, offer, kind, expected):
        # a request at t sees only events strictly before t, as the offline features do
        self._pending: list[tuple[int, int, str, str, tuple[int, int, int], float]] = []
        self._sequence = 0

    @classmethod
    def load(cls, path: Path | str, manifest: Mapping[str, Any] | Path | str | None = None) -> OnlineStore:
        """Load ``path``: a features folder (``manifest.json`` + ``snapshot/``) or a snapshot folder
        (then ``manifest`` is the manifest, its path, or found in the parent folder)."""
        path = Path(path)
        snapshot = path if (path / "snapshot.json").exists() else path / "snapshot"
        if not (snapshot / "snapshot.json").exists():
            raise FileNotFoundError(f"{path}: no snapshot.json here nor in {path / 'snapshot'}")
        if manifest is None:
            manifest = snapshot.parent / "manifest.json"
        if not isinstance(manifest, Mapping):
            manifest = json.loads(Path(manifest).read_text())
        return cls(snapshot, manifest)

    def _extras(self, entity: str) -> list[str]:
        return [name for name, e in self._passthrough if e == entity]

    def _load_offers(self, t: pa.Table, extras: list[str]) -> None:
        self._offer_ids_pa = t["offer_id"].combine_chunks()
        self._offer_ids = pl.Series(self._offer_ids_pa).to_numpy()  # object array of str
        state = np.column_stack([_floats(t[c]) for c in OFFER_STATE]) if t.num_rows else np.zeros((0, 6))
        self._offer_state = np.vstack([state, np.zeros((1, 6))])  # (offers + 1, 6)
        codes, levels = _strings(t["category"])  # code -1 (NULL, or the unknown offer) -> None
        self._offer_category, self._category_names = np.append(codes, -1), levels.to_pylist() + [None]
        codes, levels = _strings(t["partner"])
        self._offer_partner, self._partner_names = np.append(codes, -1), levels.to_pylist() + [None]
        self._offer_payout = np.append(_floats(t["payout"]), np.nan)
        self._offer_start = np.append(_times(t["start_ts"]), NULL_TS)
        self._offer_end = np.append(_times(t["end_ts"]), NULL_TS)
        self._offer_extras = {name: self._column(t[name]) for name in extras}

    def _load_users(self, t: pa.Table, extras: list[str]) -> None:
        self._user_ids_pl = pl.Series(t["user_id"].combine_chunks())
        self._user_ids = self._user_ids_pl.to_numpy()
        self._user_counts = [np.append(_floats(t[c]), 0.0) for c in USER_COUNTS]
        self._user_last = [np.append(_times(t[c]), NULL_TS) for c in ("last_visit", "last_click")]
        self._user_signup = np.append(_times(t["signup_ts"]), NULL_TS)
        self._user_extras = {name: self._column(t[name]) for name in extras}

    @staticmethod
    def _column(col: pa.ChunkedArray) -> np.ndarray:
        """A pass-through column with a NULL row appended: float64, or an object array of str."""
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type) or pa.types.is_dictionary(col.type):
            codes, levels = _strings(col)
            return np.array(levels.to_pylist() + [None], dtype=object)[np.append(codes, -1)]
        return np.append(_floats(col), np.nan)

    def _load_priors(self, rows: list[dict[str, Any]]) -> None:
        self._offer_priors = {r["key"]: (r["ctr_mean"], r["ctr_strength"], r["cvr_mean"], r["cvr_strength"])
                              for r in rows if r["kind"] == "offer"}
        # '' is the global prior (priors.sql always writes it); the configured fallback if absent
        s = self.settings
        self._offer_priors.setdefault("", (s["fallback_ctr"], float(s["fallback_strength"]),
                                           s["fallback_cvr"], float(s["fallback_strength"])))
        self._global = self._offer_priors[""]
        user = [(r["ctr_mean"], r["ctr_strength"]) for r in rows if r["kind"] == "user"]
        self.user_prior = user[0] if user else (self.settings["fallback_ctr"], self.settings["fallback_strength"])
        self._position_ctr = {int(r["key"]): r["ctr_mean"] for r in rows if r["kind"] == "position"}
        # a position never logged: smoothed(0, 0, global prior), as priors.sql gives a new position
        self._new_position_ctr = _smoothed(0, 0, self._global[0], self._global[1])

    # ---- lookups ------------------------------------------------------------------------------

    def _user_index(self, user_id: str) -> int:
        """Row of ``user_id``; ``len(users)`` (the cold-start row) if unknown."""
        i = int(np.searchsorted(self._user_ids, user_id))
        return i if i < len(self._user_ids) and self._user_ids[i] == user_id else len(self._user_ids)

    def _offer_index(self, offer_ids: list[str]) -> np.ndarray:
        """Rows of ``offer_ids`` (n,); ``len(offers)`` (the cold-start row) where unknown."""
        n = len(self._offer_ids)
        i = np.searchsorted(self._offer_ids, np.array(offer_ids, dtype=object))
        ok = i < n
        ok[ok] = self._offer_ids[i[ok]] == np.array(offer_ids, dtype=object)[ok]
        return np.where(ok, i, n)

    def unknown_offers(self, offer_ids: list[str]) -> int:
        """How many of ``offer_ids`` the snapshot does not know (scored from priors)."""
        return int((self._offer_index(offer_ids) == len(self._offer_ids)).sum())

    def offer_prior(self, category: str | None) -> tuple[float, float, float, float]:
        """(ctr_mean, ctr_strength, cvr_mean, cvr_strength) of a category; global if it has none."""
        return self._offer_priors.get(category or "", self._offer_priors[""])

    @property
    def numeric_request_columns(self) -> list[str]:
        """Raw names of the numeric pass-through columns a request carries (per candidate or in
        the context), e.g. ``price`` for the feature ``imp_x_price``."""
        return [name.removeprefix(IMPRESSION_PREFIX) for name, entity in self._passthrough
                if entity not in ("offer", "user") and self.dtypes[name] == "numeric"]

    @property
    def global_prior(self) -> tuple[float, float]:
        """(ctr_mean, ctr_strength) of all offers: the empirical-Bayes prior of an unknown category."""
        return self._global[0], self._global[1]

    def position_ctr(self, position: int) -> float:
        """Click rate of a slot (1-based) in the logs; a slot never logged gets the global prior."""
        return self._position_ctr.get(int(position), self._new_position_ctr)

    def partner_category_totals(self) -> dict[tuple[str, str | None], tuple[float, float]]:
        """(impressions, clicks) of each partner's offers per category, in the snapshot."""
        imp, clk = self._offer_state[:-1, 0], self._offer_state[:-1, 1]
        partner, category = self._offer_partner[:-1], self._offer_category[:-1]
        totals: dict[tuple[str, str | None], list[float]] = {}
        for p, c, i, k in zip(partner.tolist(), category.tolist(), imp.tolist(), clk.tolist()):
            if p >= 0:
                t = totals.setdefault((self._partner_names[p], self._category_names[c]), [0.0, 0.0])
                t[0] += i
                t[1] += k
        return {key: (t[0], t[1]) for key, t in totals.items()}

    # ---- features -----------------------------------------------------------------------------

    def features(self, request: Mapping[str, Any]) -> pl.DataFrame:
        """One row per candidate, one column per manifest feature, in manifest order: numeric as
        Float64 (null where the SQL gives NULL), categorical as Utf8. See :meth:`feature_columns`."""
        cols = self.feature_columns(request)
        return pl.DataFrame([pl.Series(n, cols[n], dtype=pl.Float64, nan_to_null=True) if self.dtypes[n] == "numeric"
                             else pl.Series(n, cols[n].tolist(), dtype=pl.Utf8) for n in self.names])

    def feature_columns(self, request: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The features of one request, as ``train.parquet`` holds them for the same request.

        ``request``: ``user_id``, ``ts`` (naive UTC datetime), ``context`` (``device``,
        ``country``, ``surface``, optional), ``candidates`` (list of ``{"offer_id", "features":
        {pass-through columns such as price}}``). Returns ``{name: array (n_candidates,)}`` in
        manifest order: numeric float64 (NaN for NULL), categorical object arrays of str / None.
        """
        user_id, ts = str(request["user_id"]), request["ts"]
        context = request.get("context") or {}
        cands = list(request["candidates"])
        oids = [str(c["offer_id"]) for c in cands]
        n, t = len(oids), epoch_us(ts)
        self._fold(t)
        if ts.tzinfo is not None:
            ts = ts.astimezone(timezone.utc).replace(tzinfo=None)
        o, u = self._offer_index(oids), self._user_index(user_id)
        f: dict[str, Any] = {}
        # offer history (offer_history.sql)
        st = self._offer_state[o]
        for j, oid in enumerate(oids):
            if (d := self._offer_delta.get(oid)) is not None:
                st[j] += d
        imp, clk, conv, expected, imp_scaled, clk_scaled = st.T
        decay = math.exp((self.t_ref - t / 1e6) / self.tau)
        cat_codes = self._offer_category[o]
        categories = [self._category_names[c] for c in cat_codes]
        ctr_m, ctr_s, cvr_m, cvr_s = np.array([self.offer_prior(c) for c in categories], dtype=float).reshape(n, 4).T
        f |= {"offer_impressions": imp, "offer_clicks": clk, "offer_conversions": conv,
              "offer_impressions_recent": imp_scaled * decay, "offer_clicks_recent": clk_scaled * decay,
              "offer_ctr": _smoothed(clk, imp, ctr_m, ctr_s),
              "offer_ctr_recent": _smoothed(clk_scaled * decay, imp_scaled * decay, ctr_m, ctr_s),
              "offer_cvr": _smoothed(conv, clk, cvr_m, cvr_s),
              "offer_coec": (clk + ctr_m * ctr_s) / (expected + ctr_m * ctr_s)}
        # user history (user_history.sql)
        req, uimp, uclk, uconv = (float(c[u]) for c in self._user_counts)
        last_visit, last_click = (int(c[u]) for c in self._user_last)
        if (d := self._user_delta.get(user_id)) is not None:
            req, uimp, uclk, uconv = req + d[0], uimp + d[1], uclk + d[2], uconv + d[3]
            last_visit, last_click = max(last_visit, d[4]), max(last_click, d[5])
        user = {"user_requests": req, "user_impressions": uimp, "user_clicks": uclk, "user_conversions": uconv,
                "user_ctr": _smoothed(uclk, uimp, *self.user_prior), "user_is_new": float(req == 0),
                "user_hours_since_last_visit": _hours(t, last_visit),
                "user_hours_since_last_click": _hours(t, last_click),
                "user_days_since_signup": _hours(t, self._user_signup[u]) / 24}
        f |= {k: np.full(n, v, dtype=float) for k, v in user.items()}
        # user × offer, × category, × partner (user_offer.sql, user_category.sql, user_partner.sql):
        # the user's offers, from the snapshot and the overlay, summed per candidate offer, category
        # and partner (user × category counts are those of the category's offers, and so on)
        partners = [self._partner_names[p] for p in self._offer_partner[o]]
        rows, counts, seen = self._uo.of(u)
        hit = rows[:, None] == o[None, :]  # (k, n); -2 (not in the catalogue) matches nothing
        rows = np.where(rows < 0, len(self._offer_ids), rows)
        if mine := self._uo_delta.get(user_id):
            hit = np.vstack([hit, np.array(list(mine), dtype=object)[:, None] == np.array(oids, dtype=object)])
            rows = np.concatenate([rows, self._offer_index(list(mine))])
            counts = np.hstack([counts, np.array([d[:3] for d in mine.values()]).T])
            seen = np.concatenate([seen, np.array([d[3] for d in mine.values()], dtype=np.int64)])
        uo_imp, uo_clk, uo_conv = counts @ hit
        uo_seen = np.where(hit, seen[:, None], NULL_TS).max(axis=0, initial=NULL_TS)
        uc_imp, uc_clk = _sum_by(self._offer_category[rows], cat_codes, counts[:2])
        up_imp, up_clk, up_conv = _sum_by(self._offer_partner[rows], self._offer_partner[o], counts)
        share = uc_clk / uclk if uclk > 0 else np.full(n, np.nan)
        f |= {"uc_impressions": uc_imp, "uc_clicks": uc_clk, "uc_ctr": _smoothed(uc_clk, uc_imp, ctr_m, ctr_s),
              "uc_click_share": share, "up_impressions": up_imp, "up_clicks": up_clk, "up_conversions": up_conv,
              "uo_impressions": uo_imp, "uo_clicks": uo_clk, "uo_conversions": uo_conv,
              "uo_hours_since_seen": _hours(t, uo_seen)}
        # offer lifecycle and context (offer_lifecycle.sql, context.sql)
        payout = self._offer_payout[o]
        f |= {"offer_age_hours": _hours(t, self._offer_start[o]),
              "offer_hours_to_expiry": _hours(self._offer_end[o], t), "offer_payout": payout, "offer_category": np.array(categories, dtype=object),
              "offer_partner": np.array(partners, dtype=object),
              "ctx_hour": np.full(n, float(ts.hour)), "ctx_weekday": np.full(n, float(ts.isoweekday() % 7))}
        for name in ("device", "country", "surface"):
            value = context.get(name)
            f[f"ctx_{name}"] = np.array([None if value is None else str(value)] * n, dtype=object)
        # list-wise (listwise.sql): avg ignores NULLs; nullif(avg, 0)
        f["lw_candidates"] = np.full(n, float(n))
        f["lw_payout_rel"] = payout / _avg(payout)
        f["lw_ctr_rel"] = f["offer_ctr"] / _avg(f["offer_ctr"])
        # pass-through (passthrough.sql): request columns from the candidate (or the context)
        for name, entity in self._passthrough:
            if entity == "offer":
                f[name] = self._offer_extras[name][o]
            elif entity == "user":
                f[name] = np.full(n, self._user_extras[name][u], dtype=self._user_extras[name].dtype)
            else:
                raw = name.removeprefix(IMPRESSION_PREFIX)  # the request carries the raw column name
                values = [(c.get("features") or {}).get(raw, context.get(raw)) for c in cands]
                f[name] = (np.array([np.nan if v is None else float(v) for v in values])
                           if self.dtypes[name] == "numeric"
                           else np.array([None if v is None else str(v) for v in values], dtype=object))
        # crosses (crosses.sql): CAST(segment AS VARCHAR) || ' × ' || category
        for name, (segment, category) in self._crosses:
            f[name] = np.array([None if a is None or b is None else f"{a} × {b}"
                                for a, b in zip(_texts(f[segment]), f[category])], dtype=object)
        missing = [name for name in self.names if name not in f]
        if missing:
            raise KeyError(f"the online store does not compute features {missing} of the manifest")
        return {name: f[name] for name in self.names}

    # ---- events -------------------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        """Record an event (as events.sql dates it). Requests strictly after ``event.ts`` see it;
        a request at or before that time does not, whatever order events and requests arrive in
        (so logging a page's impressions before scoring it again changes nothing)."""
        if event.kind not in EVENT_KINDS:
            raise ValueError(f"event kind must be one of {EVENT_KINDS}, got {event.kind!r}")
        expected = 0.0
        if event.kind == "impression":
            if event.position is None:
                raise ValueError("an impression needs its position")
            expected = self._position_ctr.get(int(event.position), self._new_position_ctr)
        kind = tuple(int(event.kind == k) for k in EVENT_KINDS)
        self._sequence += 1
        heapq.heappush(self._pending, (epoch_us(event.ts), self._sequence, str(event.user_id),
                                       str(event.offer_id), kind, expected))

    def _fold(self, t: int) -> None:
        """Count the pending events dated strictly before ``t`` µs, in time order."""
        while self._pending and self._pending[0][0] < t:
            when, _, user_id, offer_id, kind, expected = heapq.heappop(self._pending)
            self._count(user_id, offer_id, when, kind, expected)

    def record_impression(self, user_id: str, offer_id: str, ts: datetime, position: int) -> None:
        """The offer was shown to the user at ``ts`` in ``position`` (1-based)."""
        self.apply(Event("impression", user_id, offer_id, ts, position))

    def record_click(self, user_id: str, offer_id: str, ts: datetime) -> None:
        """The user clicked the offer at ``ts``."""
        self.apply(Event("click", user_id, offer_id, ts))

    def record_conversion(self, user_id: str, offer_id: str, ts: datetime) -> None:
        """The user converted on the offer at ``ts``."""
        self.apply(Event("conversion", user_id, offer_id, ts))

    def _count(self, user_id: str, offer_id: str, t: int, kind: tuple[int, int, int], expected: float = 0.0) -> None:
        """Add one event at ``t`` µs (``kind``: impression, click, conversion as 0/1) to the overlays."""
        imp, clk, conv = kind
        scaled = math.exp((t / 1e6 - self.t_ref) / self.tau)
        _add(self._offer_delta, offer_id, (imp, clk, conv, expected, imp * scaled, clk * scaled))
        d = _add(self._user_delta, user_id, (0, imp, clk, conv), times=2)
        if imp:  # one page view per (user, ts): all its impressions share the ts
            d[0] += t != max(int(self._user_last[0][self._user_index(user_id)]), d[4])
            d[4] = max(d[4], t)
        if clk:
            d[5] = max(d[5], t)
        d = _add(self._uo_delta.setdefault(user_id, {}), offer_id, (imp, clk, conv), times=1)
        if imp:
            d[3] = max(d[3], t)

    def __repr__(self) -> str:
        return (f"OnlineStore(offers={len(self._offer_ids)}, users={len(self._user_ids)}, "
                f"prior_day={self.prior_day}, overlay_users={len(self._user_delta)})")


def _sum_by(groups: np.ndarray, wanted: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(m, n): for each code of ``wanted`` (n,), the sums of ``values`` (m, k) over the rows whose
    code in ``groups`` (k,) equals it; code -1 (NULL) matches nothing."""
    return values @ ((groups[:, None] == wanted[None, :]) & (wanted >= 0)[None, :])


def _texts(values: np.ndarray) -> list[str | None]:
    """``CAST(x AS VARCHAR)`` per value: text as it is, a float as DuckDB writes a DOUBLE (Python's
    shortest repr, e.g. '13.0'), None for NULL / NaN."""
    if values.dtype != object:
        return [None if math.isnan(v) else repr(float(v)) for v in values.tolist()]
    return [None if v is None else str(v) for v in values.tolist()]


def _avg(x: np.ndarray) -> float:
    """``nullif(avg(x), 0)``: the mean of the non-NaN values; NaN if none or if it is 0."""
    ok = ~np.isnan(x)
    mean = x[ok].sum() / ok.sum() if ok.any() else np.nan
    return np.nan if mean == 0 else mean


def _add(overlay: dict, key: Any, deltas: tuple[float, ...], times: int = 0) -> list:
    """Add ``deltas`` to the first entries of ``overlay[key]``, a list created as zeros followed by
    ``times`` NULL timestamps (maxima the caller updates); returns the list."""
    d = overlay.get(key)
    if d is None:
        d = overlay[key] = [0.0] * len(deltas) + [NULL_TS] * times
    for i, x in enumerate(deltas):
        d[i] += x
    return d
