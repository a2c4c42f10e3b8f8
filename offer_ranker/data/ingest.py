"""Ingest raw logs: check the contract, quarantine bad rows, deduplicate, label impressions.

Every raw row ends in exactly one place: accepted, merged as a duplicate, or quarantined with
a reason, and ``read = accepted + duplicates + quarantined`` holds for every table. The SQL is
in ``sql/ingest/``: one file per table, run in dependency order (offers and users first,
impressions against them, clicks and conversions against accepted impressions).

Outputs in ``out``, all moved into place together once everything is written::

    impressions.parquet          accepted impressions with label (0/1/2), value, click_ts, conversion_ts
    clicks.parquet, conversions.parquet, offers.parquet, users.parquet   accepted rows
    quarantine/<table>.parquet   rejected rows as read, with _row and _reason
    ingest_report.json           per-table accounting (written last)
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from offer_ranker import sqlfiles as sql
from offer_ranker.config import IngestConfig
from offer_ranker.console import Track, no_track
from offer_ranker.data.schema import IMPRESSIONS, TABLES, Table
from offer_ranker.errors import OfferRankerError
from offer_ranker.io import staged_outputs

#: Why a row was quarantined, in plain words (the report repeats these).
REASONS = {
    "malformed_row": "the CSV line does not split into the header's columns (too many or too few fields)",
    "null_request_id": "request_id is missing or blank",
    "null_user_id": "user_id is missing or blank",
    "null_offer_id": "offer_id is missing or blank",
    "bad_ts": "ts is missing or not a timestamp",
    "bad_position": "position is not a whole number between 1 and 10000",
    "bad_propensity": "propensity is given but not a number in (0, 1]",
    "unknown_offer": "offer_id is not in the offers table",
    "no_impression": "no accepted impression has this (request_id, offer_id)",
    "bad_value": "value is given but not a finite number",
    "negative_value": "value is negative",
    "bad_payout": "payout is given but not a finite number",
    "negative_payout": "payout is negative",
    "bad_start_ts": "start_ts is given but not a timestamp",
    "bad_end_ts": "end_ts is given but not a timestamp",
    "end_before_start": "end_ts is not after start_ts",
    "bad_signup_ts": "signup_ts is given but not a timestamp",
}
#: Rows kept but worth knowing about.
FLAGS = {
    "unknown_user": "impression of a user_id missing from the users table (kept: new users are normal)",
    "before_impression": "event time is before its impression's time (kept; check clocks and time zones)",
    "without_click": "conversion with no logged click (kept, labelled as a conversion)",
}
#: Timestamp columns per table; the parser is chosen by the column's type in the file.
TS_COLUMNS = {"impressions": ("ts",), "clicks": ("ts",), "conversions": ("ts",),
              "offers": ("start_ts", "end_ts"), "users": ("signup_ts",)}
RESERVED = ("_row", "_reason")
#: Columns ingest adds to labelled impressions; a raw impressions column may not use these names.
ADDED_TO_IMPRESSIONS = ("label", "value", "click_ts", "conversion_ts")


class IngestError(OfferRankerError):
    """The raw logs cannot be ingested; the message names the file and what was expected."""


@dataclass(frozen=True)
class RawFile:
    """One raw table, opened as the view ``raw_<table>``."""

    table: Table
    path: Path | None  # None: an optional table that was not provided
    parsers: dict[str, str]  # "parse_<column>" -> timestamp macro for that column

    @property
    def format(self) -> str | None:
        return None if self.path is None else self.path.suffix.lstrip(".")


def ingest(
    raw_dir: Path | str,
    out_dir: Path | str,
    cfg: IngestConfig | None = None,
    *,
    track: Track = no_track,
) -> dict[str, Any]:
    """Ingest the raw folder ``raw_dir`` into ``out_dir``; returns the ingest report.

    Raises :class:`IngestError` (and writes nothing) when a required table or column is
    missing, a file cannot be read, or a column has a type that cannot hold its values.
    """
    cfg = cfg or IngestConfig()
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if not raw_dir.is_dir():
        raise IngestError(f"{raw_dir}: raw folder does not exist")
    started = time.perf_counter()
    con = duckdb.connect()
    try:
        sql.run(con, "ingest/setup.sql")
        files = [_open(con, raw_dir, table, cfg) for table in TABLES]
        report: dict[str, Any] = {"raw_dir": str(raw_dir), "out_dir": str(out_dir), "tables": {}}
        with staged_outputs(out_dir) as stage:
            sql.run(con, "ingest/temp_dir.sql", temp_dir=sql.literal(stage.root / "duckdb_tmp"))
            given = {raw.table.name: raw.path is not None for raw in files}
            for raw in track(files, "checking tables", len(files)):
                _check(con, raw, given)
            sql.run(con, "ingest/labelled.sql")
            for raw in track(files, "writing tables", len(files)):
                report["tables"][raw.table.name] = _write(con, stage, raw, cfg)
            report["labels"] = _label_summary(con, stage.path("impressions.parquet"))
            report["reasons"] = {r: REASONS[r] for t in report["tables"].values()
                                 for r in t["quarantined_by_reason"]}
            report["flags"] = {f: FLAGS[f] for t in report["tables"].values() for f in t["flagged"]}
            report["seconds"] = round(time.perf_counter() - started, 3)
            stage.write_json("ingest_report.json", report)
    except duckdb.Error as exc:  # a file that passed the first look but fails when scanned
        raise IngestError(f"{raw_dir}: reading the raw logs failed: {exc}") from None
    finally:
        con.close()
    return report


def _write(con: duckdb.DuckDBPyConnection, stage: Any, raw: RawFile, cfg: IngestConfig) -> dict[str, Any]:
    """Stage one table's accepted rows (and quarantine) and account for them."""
    name = raw.table.name
    relation = "labelled_impressions" if raw.table is IMPRESSIONS else f"clean_{name}"
    output = stage.path(f"{name}.parquet")
    try:
        sql.run(con, "ingest/write.sql", relation=relation, path=sql.literal(output), compression=cfg.compression)
        entry = _account(con, raw, output)
        entry["output"] = f"{name}.parquet"
        if entry["quarantined"]:
            target = f"quarantine/{name}.parquet"
            sql.run(con, "ingest/quarantine.sql", view=_view(name), table=name,
                    path=sql.literal(stage.path(target)), compression=cfg.compression)
            entry["quarantine"] = target
        else:  # a quarantine file from an earlier run must not look like this run's
            stage.remove(f"quarantine/{name}.parquet")
    except duckdb.Error as exc:
        raise IngestError(f"{raw.path or name}: cannot be ingested: {_first_line(exc)}") from None
    return entry


def _view(table: str) -> str:
    return f"raw_{table}"


def _find(raw_dir: Path, table: Table) -> Path | None:
    found = [raw_dir / f"{table.name}.{ext}" for ext in ("parquet", "csv")]
    found = [p for p in found if p.exists()]
    if len(found) > 1:
        raise IngestError(f"{raw_dir}: both {found[0].name} and {found[1].name} exist; keep one")
    if not found:
        if table.must_exist:
            raise IngestError(
                f"{raw_dir / table.name}.parquet (or .csv): required table '{table.name}' not found"
            )
        return None
    return found[0]


def _open(con: duckdb.DuckDBPyConnection, raw_dir: Path, table: Table, cfg: IngestConfig) -> RawFile:
    """Expose one raw table as the view ``raw_<table>`` after checking its columns."""
    path = _find(raw_dir, table)
    view = _view(table.name)
    if path is None:
        missing = _null_columns(table.known, {})
        sql.run(con, "ingest/read_empty.sql", view=view, missing=missing)
        sql.run(con, "ingest/no_malformed.sql", table=table.name)
        return RawFile(table, None, {f"parse_{c}": _ts_parser(raw_dir, c, None) for c in TS_COLUMNS[table.name]})
    type_of = _column_types(con, path)
    _check_columns(path, table, tuple(type_of))
    parsers = {f"parse_{c}": _ts_parser(path, c, type_of.get(c)) for c in TS_COLUMNS[table.name]}
    missing = _null_columns(table.optional, type_of)
    try:
        if path.suffix == ".parquet":
            sql.run(con, "ingest/read_parquet.sql", view=view, path=sql.literal(path), missing=missing)
            sql.run(con, "ingest/no_malformed.sql", table=table.name)
        else:
            text_types = "{" + ", ".join(
                f"{sql.literal(c)}: 'VARCHAR'" for c in table.known if c in type_of
            ) + "}"
            sql.run(con, "ingest/read_csv.sql", view=view, table=table.name, path=sql.literal(path),
                    missing=missing, nulls=sql.string_list(cfg.csv_nulls), types=text_types)
    except duckdb.Error as exc:
        raise IngestError(f"{path}: cannot be read: {_first_line(exc)}") from None
    return RawFile(table, path, parsers)


def _column_types(con: duckdb.DuckDBPyConnection, path: Path) -> dict[str, str]:
    """Column -> DuckDB type of a raw file. A CSV's columns come from its header line and are
    text (its contract columns are read as text); DuckDB's sniffer can misread a small file
    with a ragged row."""
    try:
        if path.suffix == ".parquet":
            probe = con.read_parquet(str(path))
            return {c: str(t) for c, t in zip(probe.columns, probe.types)}
        with path.open(newline="", encoding="utf-8") as handle:
            return dict.fromkeys(next(csv.reader(handle), []), "VARCHAR")
    except (duckdb.Error, OSError, UnicodeDecodeError, csv.Error) as exc:
        kind = "Parquet" if path.suffix == ".parquet" else "CSV"
        raise IngestError(f"{path}: cannot be read as {kind}: {_first_line(exc)}") from None


def _check_columns(path: Path, table: Table, columns: tuple[str, ...]) -> None:
    missing = [c for c in table.required if c not in columns]
    if missing:
        raise IngestError(
            f"{path}: missing required column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(c) for c in missing)} (table '{table.name}' requires "
            f"{', '.join(table.required)}; found {', '.join(columns) or 'no columns'})"
        )
    added = ADDED_TO_IMPRESSIONS if table is IMPRESSIONS else ()
    reserved = [c for c in columns if c in RESERVED or c in added or c.startswith("_flag_")]
    if reserved:
        raise IngestError(f"{path}: column name(s) {reserved} are reserved by ingest; rename them")


_TIMESTAMP_TYPES = ("TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "DATE")


def _ts_parser(path: Path, column: str, dtype: str | None) -> str:
    """The macro (sql/ingest/setup.sql) that turns this column into naive UTC timestamps."""
    if dtype is None or dtype == "VARCHAR" or dtype == '"NULL"':
        return "ts_from_text"
    if dtype in _TIMESTAMP_TYPES:
        return "ts_from_timestamp"
    if dtype.startswith("TIMESTAMP WITH TIME ZONE"):
        return "ts_from_timestamptz"
    raise IngestError(
        f"{path}: column '{column}' has type {dtype}; expected a timestamp or ISO 8601 text "
        "(e.g. 2026-01-05T10:00:00Z)"
    )


def _null_columns(names: tuple[str, ...], present: dict[str, str]) -> str:
    return "".join(f", CAST(NULL AS VARCHAR) AS {sql.ident(c)}" for c in names if c not in present)


def _check(con: duckdb.DuckDBPyConnection, raw: RawFile, given: dict[str, bool]) -> None:
    """Run the table's SQL: checks, outcomes, duplicates, accepted rows."""
    params = dict(raw.parsers)
    if raw.table is IMPRESSIONS:
        params |= {"check_offers": str(given["offers"]).lower(), "check_users": str(given["users"]).lower()}
    try:
        sql.run(con, f"ingest/{raw.table.name}.sql", view=_view(raw.table.name), **params)
    except duckdb.Error as exc:
        raise IngestError(f"{raw.path}: cannot be ingested: {_first_line(exc)}") from None


def _account(con: duckdb.DuckDBPyConnection, raw: RawFile, output: Path) -> dict[str, Any]:
    """Where every raw row of the table went; ``accepted`` counts the rows actually written."""
    name = raw.table.name
    rows = con.execute(
        sql.render("ingest/accounting.sql", view=_view(name), table=name, output=sql.literal(output))
    ).fetchall()
    counts = {"read": 0, "valid": 0, "accepted": 0}
    by_reason: dict[str, int] = {}
    flagged: dict[str, int] = {}
    for outcome, reason, n in rows:
        if outcome == "quarantined":
            by_reason[reason] = int(n)
        elif outcome == "flagged":
            if n:
                flagged[reason] = int(n)
        else:  # "read" comes in two parts: parsed rows and malformed lines
            counts[outcome] += int(n)
    quarantined = sum(by_reason.values())
    entry = {
        "file": None if raw.path is None else str(raw.path),
        "format": raw.format,
        "read": counts["read"],
        "accepted": counts["accepted"],
        "duplicates": counts["valid"] - counts["accepted"],
        "quarantined": quarantined,
        "quarantined_by_reason": dict(sorted(by_reason.items())),
        "flagged": flagged,
    }
    if entry["read"] != entry["accepted"] + entry["duplicates"] + entry["quarantined"]:
        raise AssertionError(f"ingest lost rows of {name}: {entry}")  # a bug in sql/ingest, never data
    return entry


def _label_summary(con: duckdb.DuckDBPyConnection, labelled: Path) -> dict[str, Any]:
    cur = con.execute(sql.render("ingest/label_summary.sql", path=sql.literal(labelled)))
    names = [d[0] for d in cur.description]
    row = dict(zip(names, cur.fetchone()))
    n = row["impressions"] or 0
    row["click_rate"] = round(row["clicks"] / n, 6) if n else None
    row["conversion_rate"] = round(row["conversions"] / n, 6) if n else None
    row["revenue"] = float(row["revenue"])
    return row


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]
