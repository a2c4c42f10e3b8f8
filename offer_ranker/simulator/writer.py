"""Writing the raw logs (DESIGN.md §1) and ground truth as Parquet, from the simulator's codes.

Impressions, clicks, conversions and ground truth are appended chunk by chunk (:class:`LogWriter`,
schemas in :data:`SCHEMAS`); the offers and users tables are written once (:func:`offers_table`,
:func:`users_table`). Ids are the index with a prefix, zero-padded: ``r000000042`` (request),
``u0000042`` (user), ``o00042`` (offer).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from offer_ranker.io import Staging
from offer_ranker.simulator.market import AGE_BANDS, COUNTRIES, DEVICES, PLANS, REWARD_TYPES, SURFACES
from offer_ranker.simulator.traffic import LogChunk
from offer_ranker.simulator.world import World

ROW_GROUP = 65_536  # rows per Parquet row group: chunks are buffered (compactly, in Arrow) up to this
TS = pa.timestamp("us")
SCHEMAS = {
    "impressions": pa.schema([("request_id", pa.string()), ("ts", TS), ("user_id", pa.string()),
                              ("offer_id", pa.string()), ("position", pa.int32()), ("surface", pa.string()),
                              ("device", pa.string()), ("country", pa.string()), ("price", pa.float64()),
                              ("propensity", pa.float64()), ("policy", pa.string())]),
    "clicks": pa.schema([("request_id", pa.string()), ("offer_id", pa.string()), ("ts", TS)]),
    "conversions": pa.schema([("request_id", pa.string()), ("offer_id", pa.string()), ("ts", TS),
                              ("value", pa.float64())]),
    "ground_truth": pa.schema([("request_id", pa.string()), ("offer_id", pa.string()),
                               ("p_attract", pa.float64()), ("p_click", pa.float64()),
                               ("p_convert", pa.float64())]),
}


def format_ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """Vectorised ``f"{prefix}{n:0{width}d}"``: (N,) integers → (N,) pyarrow strings."""
    digits = pl.Series(numbers, dtype=pl.Int64).cast(pl.String).str.zfill(width)
    return pl.select(pl.concat_str(pl.lit(prefix), digits)).to_series().to_arrow().cast(pa.string())


def id_width(n: int, minimum: int) -> int:
    """Digits for the ids of ``n`` things numbered from 0: ``minimum``, or more if ``n`` needs them."""
    return max(minimum, len(str(max(n - 1, 0))))


def user_ids(world: World) -> pa.Array:
    """(U,) user ids by user index, as the logs write them (``u0000000``, …)."""
    return format_ids("u", np.arange(world.n_users), id_width(world.n_users, 7))


def offer_ids(world: World) -> pa.Array:
    """(O,) offer ids by offer index, as the logs write them (``o00000``, …)."""
    return format_ids("o", np.arange(world.n_offers), id_width(world.n_offers, 5))


def _per_request(labels: np.ndarray, position: np.ndarray) -> pa.Array:
    """(N,) labels constant within a request → strings, converting one per request (cheap)."""
    first = position == 1
    strings = pl.Series(labels[first], dtype=pl.String).to_arrow().cast(pa.string())
    return strings.take(pa.array(np.cumsum(first) - 1))


def _strings(labels, codes: np.ndarray) -> pa.Array:
    """(N,) codes → (N,) strings: ``labels[code]``."""
    return pa.array(labels, pa.string()).take(pa.array(codes.astype(np.int64)))


class LogWriter:
    """Appends log chunks to the four per-impression Parquet files (:data:`SCHEMAS`) in ``stage``
    (an :func:`~offer_ranker.io.staged_outputs` folder), ~ROW_GROUP rows a row group.

    Call :meth:`write` per chunk, then :meth:`flush` and :meth:`close`; :meth:`summary` gives
    the counts and headline rates of what was written.
    """

    def __init__(self, world: World, stage: Staging) -> None:
        self.world = world
        self.offer_ids = offer_ids(world)
        self.user_ids = user_ids(world)
        self.request_width = id_width(world.request_ts.size, 9)
        self.writers = {name: pq.ParquetWriter(stage.path(f"{name}.parquet"), schema, compression="zstd")
                        for name, schema in SCHEMAS.items()}
        self.pending: dict[str, list[pa.Table]] = {name: [] for name in SCHEMAS}
        self.n = dict.fromkeys(("impressions", "requests", "clicks", "conversions", "clicks_position_1"), 0)

    def write(self, log: LogChunk) -> None:
        if not log.offer.size:
            return
        lo, hi = int(log.request.min()), int(log.request.max())
        rid = format_ids("r", np.arange(lo, hi + 1), self.request_width).take(pa.array(log.request - lo))
        oid = self.offer_ids.take(pa.array(log.offer))
        c, v = pa.array(log.click), pa.array(log.conversion)
        tables = {
            "impressions": [rid, pa.array(log.ts, TS), self.user_ids.take(pa.array(log.user)), oid,
                            pa.array(log.position, pa.int32()), _strings(SURFACES, log.surface),
                            _strings(DEVICES, log.device), _strings(COUNTRIES, log.country),
                            pa.array(log.price), pa.array(log.propensity),
                            _per_request(log.policy, log.position)],
            "clicks": [rid.filter(c), oid.filter(c), pa.array(log.click_ts[log.click], TS)],
            "conversions": [rid.filter(v), oid.filter(v), pa.array(log.conversion_ts[log.conversion], TS),
                            pa.array(self.world.payout[log.offer[log.conversion]])],
            "ground_truth": [rid, oid, pa.array(log.p_attract), pa.array(log.p_click), pa.array(log.p_convert)],
        }
        for name, columns in tables.items():
            self.pending[name].append(pa.table(columns, schema=SCHEMAS[name]))
        if sum(t.num_rows for t in self.pending["impressions"]) >= ROW_GROUP:
            self.flush()
        first = log.position == 1
        self.n["impressions"] += log.offer.size
        self.n["requests"] += int(first.sum())
        self.n["clicks"] += int(log.click.sum())
        self.n["conversions"] += int(log.conversion.sum())
        self.n["clicks_position_1"] += int(log.click[first].sum())

    def flush(self) -> None:
        for name, tables in self.pending.items():
            if tables:
                self.writers[name].write_table(pa.concat_tables(tables), row_group_size=4 * ROW_GROUP)
            tables.clear()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()

    def summary(self) -> tuple[dict[str, int], dict[str, float]]:
        n = self.n
        counts = {k: n[k] for k in ("impressions", "requests", "clicks", "conversions")}
        counts |= {"users": self.world.n_users, "offers": self.world.n_offers}
        rates = {"ctr": n["clicks"] / max(n["impressions"], 1),
                 "ctr_position_1": n["clicks_position_1"] / max(n["requests"], 1),
                 "conversions_per_click": n["conversions"] / max(n["clicks"], 1)}
        return counts, rates


def offers_table(world: World, offer_ids: pa.Array) -> pa.Table:
    """The offers table of the raw logs: one row per offer, ``offer_ids`` by index."""
    return pa.table({
        "offer_id": offer_ids, "partner": _strings(world.partners, world.offer_partner),
        "category": _strings(world.categories, world.offer_category), "payout": world.payout,
        "start_ts": pa.array(world.offer_start, TS), "end_ts": pa.array(world.offer_end, TS),
        "reward_type": _strings(REWARD_TYPES, world.reward_type),
        "min_spend": pa.array(world.min_spend, pa.float64(), from_pandas=True),  # NaN → NULL
        **({"title": pa.array(world.offer_title.tolist(), pa.string()),
            "description": pa.array(world.offer_description.tolist(), pa.string())}
           if world.offer_title is not None else {}),
    })


def users_table(world: World, user_ids: pa.Array) -> pa.Table:
    """The users table of the raw logs: one row per user, ``user_ids`` by index."""
    return pa.table({
        "user_id": user_ids, "signup_ts": pa.array(world.user_signup, TS),
        "country": _strings(COUNTRIES, world.user_country), "plan": _strings(PLANS, world.user_plan),
        "age_band": _strings(AGE_BANDS, world.user_age),
    })
