"""Point-in-time features: the training frame, the feature manifest (and the online snapshot).

Every feature of an impression at time t uses only events strictly before t; all impressions of
one request share t and so see the same history. The SQL is in ``sql/features/``, one file per
feature group, run in dependency order; each group's features are defined in ``features/``.

Outputs in ``out``::

    train.parquet    one row per impression: request_id, user_id, offer_id, ts, position, label,
                     value, propensity, policy, then every feature column (a file; from Spark, by
                     default a folder of parts in row order: :func:`.frame.frame_files`)
    manifest.json    the features (name, type, group, description), categorical levels seen,
                     pass-through columns, time range and settings; training and serving read it
    snapshot/        the online state as of the end of the logs (see :func:`write_snapshot`)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from offer_ranker import sqlfiles as sql
from offer_ranker.config import Config
from offer_ranker.console import Track, no_track
from offer_ranker.data.ingest import ingest
from offer_ranker.data.schema import BY_NAME as TABLES
from offer_ranker.errors import OfferRankerError
from offer_ranker.features import CONTENT, FEATURES, Feature, crosses, passthrough
from offer_ranker.featurize import content
from offer_ranker.featurize.engine import Engine, EngineName, open_engine
from offer_ranker.featurize.frame import FRAME
from offer_ranker.io import staged_outputs

#: Feature groups in dependency order (user_category and listwise read earlier groups).
GROUPS = ("offer_history", "user_history", "user_category", "user_partner", "user_offer",
          "offer_lifecycle", "context", "listwise", "passthrough", "crosses")
#: Columns of the training frame that are not features.
ID_COLUMNS = ("request_id", "user_id", "offer_id", "ts", "position", "label", "value", "propensity", "policy")
#: Columns ingest adds to impressions (outcomes, never features).
_INGEST_COLUMNS = ("click_ts", "conversion_ts", "label", "value")
_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
            "UBIGINT", "FLOAT", "DOUBLE", "BOOLEAN")
Extras = list[tuple[tuple[str, str], Feature]]  # ((table alias, raw column), its feature)
#: "after every event" for a snapshot of the whole log (DuckDB's 'infinity' has no Spark equivalent)
_END_OF_TIME = datetime(9999, 12, 31, 23, 59, 59)
# exp() of the decayed counts' running sums overflows past ~700 time constants
_MAX_DECAY_SPAN = 600


class FeatureError(OfferRankerError):
    """The logs cannot be turned into features; the message says why."""


@dataclass(frozen=True)
class FeatureResult:
    out: Path
    train: Path
    manifest: Path
    rows: int
    features: int
    seconds: float


def build_features(source: Path | str, out: Path | str, cfg: Config | None = None, *,
                   snapshot_as_of: datetime | None = None, engine: EngineName = "duckdb",
                   track: Track = no_track) -> FeatureResult:
    """Build the training frame, manifest and online snapshot from ``source``, the SQL run by
    ``engine`` (:mod:`.engine`: DuckDB here, or Spark; the outputs are the same).

    ``source`` is either an ingested folder (it has ``ingest_report.json``) or a raw folder,
    which is ingested into ``out/ingested`` first. The snapshot holds the state after the last
    event, or, with ``snapshot_as_of`` (naive UTC), the state from the events strictly before it.
    """
    cfg = cfg or Config()
    source, out = Path(source), Path(out)
    started = time.perf_counter()
    if not (source / "ingest_report.json").exists():
        ingest(source, out / "ingested", cfg.ingest, track=track)
        source = out / "ingested"
    with staged_outputs(out) as stage, open_engine(engine, cfg, stage.root / f"{engine}_tmp") as runner:
        n, features = _build(runner, stage, source, cfg, snapshot_as_of, track)
    return FeatureResult(out, out / FRAME, out / "manifest.json", n, len(features),
                         round(time.perf_counter() - started, 3))


SNAPSHOT_TABLES = ("offers", "users", "user_category", "user_partner", "user_offer", "priors")


def write_snapshot(runner: Engine, stage: Any, source: Path, extras: Extras,
                   as_of: datetime | None, first_day: date, last_day: date,
                   params: dict[str, str]) -> dict[str, Any]:
    """Stage ``snapshot/<table>.parquet`` from the events and state tables of the pipeline run on
    ``runner`` (``params``: the pipeline's, for t_ref and tau).

    The priors are those of the day the next request falls on: the day of ``as_of``, or the day
    after the last event.
    """
    if as_of is None:
        cutoff, prior_day = f"TIMESTAMP {sql.literal(str(_END_OF_TIME))}", last_day + timedelta(days=1)
    else:
        cutoff, prior_day = f"TIMESTAMP {sql.literal(as_of.isoformat(sep=' '))}", as_of.date()
        if not first_day <= prior_day <= last_day + timedelta(days=1):
            raise FeatureError(f"snapshot_as_of {as_of} must fall between the first day of the log "
                               f"({first_day}) and the day after the last ({last_day + timedelta(days=1)})")
    lists = {"offer_extras": _select_list(extras, "o", qualified=False),
             "user_extras": _select_list(extras, "u", qualified=False)}
    runner.run("features/snapshot.sql", t_ref=params["t_ref"], tau=params["tau"], as_of=cutoff,
            prior_day=f"DATE {sql.literal(prior_day.isoformat())}",
            offers=sql.literal(source / "offers.parquet"), users=sql.literal(source / "users.parquet"),
            **lists, **{f"{t}_path": sql.literal(stage.path(f"snapshot/{t}.parquet")) for t in SNAPSHOT_TABLES})
    # the events the snapshot counts are those before this time: the online stores replay theirs from it
    before = as_of or runner.rows("features/events_until.sql")[0][0] + timedelta(microseconds=1)
    return {"as_of": None if as_of is None else as_of.isoformat(), "prior_day": prior_day.isoformat(),
            "events_before": before.isoformat(), "tables": [f"{t}.parquet" for t in SNAPSHOT_TABLES]}


def _build(runner: Engine, stage: Any, source: Path, cfg: Config,
           snapshot_as_of: datetime | None, track: Track) -> tuple[int, tuple[Feature, ...]]:
    """Run every SQL step on ``runner`` and stage the outputs; returns rows and features."""
    extras = _passthrough_columns(source, cfg.features.text_columns)
    runner.run("features/base.sql", impressions=sql.literal(source / "impressions.parquet"),
            offers=sql.literal(source / "offers.parquet"), users=sql.literal(source / "users.parquet"),
            extras=_select_list(extras))
    t_ref, first_ts, last_ts, n = runner.rows("features/origin.sql")[0]
    if n == 0:
        raise FeatureError(f"{source / 'impressions.parquet'}: no accepted impressions to build features from")
    tau = cfg.features.decay_hours * 3600
    if ((last_ts - datetime(1970, 1, 1)).total_seconds() - t_ref) / tau > _MAX_DECAY_SPAN:  # naive UTC
        raise FeatureError(
            f"the log spans more than {_MAX_DECAY_SPAN} decay time constants "
            f"(features.decay_hours = {cfg.features.decay_hours}); raise decay_hours or split the log")
    crossed = crosses(FEATURES + tuple(f for _, f in extras))
    params = _params(cfg) | {"t_ref": repr(float(t_ref)), "tau": repr(float(tau)),
                             "columns": "".join(f", {sql.ident(f.name)}" for _, f in extras),
                             "crosses": "".join(f", category_by({', '.join(map(sql.ident, f.inputs))}) AS "
                                                f"{sql.ident(f.name)}" for f in crossed)}
    steps = ("events", "priors", *GROUPS)
    for step in track(steps, "building features", len(steps)):
        runner.run(f"features/{step}.sql", **params)
    text = _content_priors(runner, source, cfg, first_ts, last_ts)
    runner.run("features/content.sql")
    # The snapshot reads the events and user_state; the training frame needs only base and the
    # f_* tables, so the snapshot is written first and the rest freed before assembling.
    snapshot = write_snapshot(runner, stage, source, extras, snapshot_as_of, first_ts.date(), last_ts.date(), params)
    stage.write_json("snapshot/snapshot.json", snapshot | {"t_ref": t_ref, "tau_seconds": tau})
    runner.run("features/release.sql")
    train = stage.path(FRAME)
    runner.run("features/assemble.sql", path=sql.literal(train), columns=params["columns"],
               crosses=params["crosses"], content=", ct.offer_content_ctr AS offer_content_ctr" if text else "")
    features = FEATURES + (CONTENT if text else ()) + tuple(f for _, f in extras) + crossed
    manifest = {
        "features": [_describe(f) for f in features],
        "categories": {f.name: _levels(runner, train, f.name, cfg.features.max_categories)
                       for f in features if f.dtype == "categorical"},
        "id_columns": list(ID_COLUMNS),
        "rows": n,
        "first_ts": first_ts.isoformat(),
        "last_ts": last_ts.isoformat(),
        "t_ref": t_ref,
        "source": str(source),
        "settings": cfg.features.model_dump(),
    }
    stage.write_json("manifest.json", manifest)
    return n, features


def _content_priors(runner: Engine, source: Path, cfg: Config, first_ts: datetime,
                    last_ts: datetime) -> tuple[str, ...]:
    """Register ``content_priors`` (day, offer_id, offer_content_ctr: :mod:`.content`) for every
    day of the priors; returns the offers' text columns it was computed from (none: an empty table)."""
    import pyarrow.parquet as pq

    f = cfg.features
    columns = pq.read_schema(source / "offers.parquet").names
    text = tuple(c for c in f.text_columns if c in columns) if f.content_neighbours else ()
    priors = pl.DataFrame(schema=content.SCHEMA)
    if text:
        offers = pl.read_parquet(source / "offers.parquet", columns=["offer_id", "start_ts", "end_ts", *text])
        history = runner.frame("features/content_history.sql")
        days = runner.frame("features/content_days.sql")["day"].to_list()
        until = cfg.train.train_until or first_ts + (last_ts - first_ts) * cfg.train.split_share
        priors = content.neighbour_priors(offers, history, text, until, days, f.content_neighbours, f.min_evidence)
    runner.register("content_priors", priors.to_arrow())
    return text


def _select_list(extras: Extras, alias: str | None = None, *, qualified: bool = True) -> str:
    """``, o."col" AS "offer_x_col"`` items for the pass-through columns (of one table alias)."""
    return "".join(f", {a + '.' if qualified else ''}{sql.ident(col)} AS {sql.ident(f.name)}"
                   for (a, col), f in extras if alias in (None, a))


def _params(cfg: Config) -> dict[str, str]:
    f = cfg.features
    return {"min_evidence": str(f.min_evidence), "min_group": str(f.min_group),
            "fallback_ctr": repr(f.fallback_ctr), "fallback_cvr": repr(f.fallback_cvr),
            "fallback_strength": repr(f.fallback_strength)}


def _passthrough_columns(source: Path, text: tuple[str, ...] = ()) -> Extras:
    """Extra columns of the ingested tables that become features as they are.

    Numeric and boolean columns are numeric features, string columns categorical, except the
    offers' free ``text`` columns; other types (timestamps, nested) are left out.
    """
    known = {"impressions": set(TABLES["impressions"].known) | set(_INGEST_COLUMNS),
             "offers": set(TABLES["offers"].known) | set(text), "users": set(TABLES["users"].known)}
    aliases = {"impressions": "i", "offers": "o", "users": "u"}
    found = []
    con = duckdb.connect()  # (the schemas of the ingested files, whichever engine builds the features)
    for table, alias in aliases.items():
        rel = con.read_parquet(str(source / f"{table}.parquet"))
        for column, dtype in zip(rel.columns, rel.types):
            if column in known[table]:
                continue
            dtype = str(dtype)
            if dtype in _NUMERIC or dtype.startswith("DECIMAL"):
                found.append(((alias, column), passthrough(table, column, numeric=True)))
            elif dtype == "VARCHAR":
                found.append(((alias, column), passthrough(table, column, numeric=False)))
    con.close()
    return found


def _levels(runner: Engine, train: Path, column: str, limit: int) -> list[str]:
    rows = runner.rows("features/levels.sql", column=sql.ident(column), path=sql.literal(train), limit=str(limit))
    return [str(level) for level, _ in rows]


def _describe(f: Feature) -> dict[str, Any]:
    return {"name": f.name, "entity": f.entity, "dtype": f.dtype, "window": f.window,
            "description": f.description, "group": f.group} | ({"inputs": list(f.inputs)} if f.inputs else {})
