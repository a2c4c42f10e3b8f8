"""Ingest on the toy log: known answers, one test per quarantine reason, duplicates, time zones,
CSV null tokens, and contract errors that stop the run without writing anything."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from offer_ranker.cli import main
from offer_ranker.data.ingest import FLAGS, REASONS, IngestError, ingest
from tests.toy_logs import EXPECTED_LABELS, toy_tables, write_csv, write_typed_parquet


def _labels(out: Path) -> dict[tuple[str, str], tuple[int, float]]:
    frame = pl.read_parquet(out / "impressions.parquet")
    return {(r["request_id"], r["offer_id"]): (r["label"], r["value"]) for r in frame.iter_rows(named=True)}


def _balanced(report: dict) -> None:
    for name, t in report["tables"].items():
        assert t["read"] == t["accepted"] + t["duplicates"] + t["quarantined"], name
        assert t["quarantined"] == sum(t["quarantined_by_reason"].values()), name


@pytest.mark.parametrize("writer", ["csv", "parquet"])
def test_toy_log_known_answer(tmp_path: Path, writer: str) -> None:
    raw = write_csv(tmp_path / "raw", toy_tables()) if writer == "csv" else write_typed_parquet(tmp_path / "raw")
    report = ingest(raw, tmp_path / "out")
    assert _labels(tmp_path / "out") == EXPECTED_LABELS
    _balanced(report)
    assert {n: t["accepted"] for n, t in report["tables"].items()} == {
        "offers": 3, "users": 2, "impressions": 5, "clicks": 2, "conversions": 1}
    assert report["labels"]["clicks"] == 2 and report["labels"]["conversions"] == 1
    assert report["labels"]["revenue"] == 12.0
    frame = pl.read_parquet(tmp_path / "out" / "impressions.parquet")
    # contract types, extra columns kept with their type, internal columns dropped
    assert frame.schema["ts"] == pl.Datetime("us") and frame.schema["position"] == pl.Int32
    assert frame.schema["price"] == pl.Float64 and frame.schema["label"] == pl.Int8
    assert not [c for c in frame.columns if c.startswith("_")]
    assert frame.filter(pl.col("request_id") == "r1")["ts"].unique().to_list() == [datetime(2026, 1, 5, 10)]
    offers = pl.read_parquet(tmp_path / "out" / "offers.parquet")
    assert offers.sort("offer_id")["color"].to_list() == ["red", "blue", "green"]
    on_disk = json.loads((tmp_path / "out" / "ingest_report.json").read_text())
    assert on_disk["tables"] == report["tables"]


# (table, values that replace those of a valid row appended to the table, expected reason)
TEMPLATES = {
    "impressions": {"request_id": "r3", "ts": "2026-01-05T12:00:00Z", "user_id": "u1", "offer_id": "o2",
                    "position": "1", "device": "ios", "propensity": "0.5", "price": "20"},
    "clicks": {"request_id": "r1", "offer_id": "o2", "ts": "2026-01-05T10:00:09Z"},
    "conversions": {"request_id": "r2", "offer_id": "o3", "ts": "2026-01-05T11:30:00Z", "value": "5"},
    "offers": {"offer_id": "o4", "partner": "p3", "category": "food", "payout": "5",
               "start_ts": "2026-01-01T00:00:00Z", "end_ts": "2026-02-01T00:00:00Z", "color": "red"},
    "users": {"user_id": "u3", "signup_ts": "2026-01-01T00:00:00Z", "plan": "free"},
}
INVALID_ROWS = [
    ("impressions", {"request_id": None}, "null_request_id"),
    ("impressions", {"request_id": "   "}, "null_request_id"),
    ("impressions", {"user_id": None}, "null_user_id"),
    ("impressions", {"offer_id": None}, "null_offer_id"),
    ("impressions", {"ts": "yesterday at noon"}, "bad_ts"),
    ("impressions", {"ts": "2026-02-30T10:00:00Z"}, "bad_ts"),
    ("impressions", {"ts": None}, "bad_ts"),
    ("impressions", {"position": "0"}, "bad_position"),
    ("impressions", {"position": "-3"}, "bad_position"),
    ("impressions", {"position": "2.5"}, "bad_position"),
    ("impressions", {"position": "first"}, "bad_position"),
    ("impressions", {"position": None}, "bad_position"),
    ("impressions", {"position": "1e12"}, "bad_position"),
    ("impressions", {"propensity": "0"}, "bad_propensity"),
    ("impressions", {"propensity": "1.5"}, "bad_propensity"),
    ("impressions", {"propensity": "-0.2"}, "bad_propensity"),
    ("impressions", {"propensity": "often"}, "bad_propensity"),
    ("impressions", {"propensity": "nan"}, "bad_propensity"),
    ("impressions", {"offer_id": "o404"}, "unknown_offer"),
    ("clicks", {"request_id": None}, "null_request_id"),
    ("clicks", {"offer_id": ""}, "null_offer_id"),
    ("clicks", {"ts": "10:00"}, "bad_ts"),
    ("clicks", {"request_id": "r404"}, "no_impression"),
    ("clicks", {"offer_id": "o2", "request_id": "r2"}, "no_impression"),  # o2 was not shown in r2
    ("conversions", {"request_id": None}, "null_request_id"),
    ("conversions", {"ts": "soon"}, "bad_ts"),
    ("conversions", {"value": "-4"}, "negative_value"),
    ("conversions", {"value": "lots"}, "bad_value"),
    ("conversions", {"value": "inf"}, "bad_value"),
    ("conversions", {"request_id": "r404"}, "no_impression"),
    ("offers", {"offer_id": None}, "null_offer_id"),
    ("offers", {"payout": "-1"}, "negative_payout"),
    ("offers", {"payout": "free"}, "bad_payout"),
    ("offers", {"start_ts": "Monday"}, "bad_start_ts"),
    ("offers", {"end_ts": "never"}, "bad_end_ts"),
    ("offers", {"end_ts": "2025-12-01T00:00:00Z"}, "end_before_start"),
    ("users", {"user_id": None}, "null_user_id"),
    ("users", {"signup_ts": "a while ago"}, "bad_signup_ts"),
]


@pytest.mark.parametrize(("table", "change", "reason"), INVALID_ROWS)
def test_each_invalid_row_is_quarantined_with_its_reason(tmp_path: Path, table: str, change: dict, reason: str) -> None:
    tables = toy_tables()
    tables[table].append({**TEMPLATES[table], **change})
    bad_row = len(tables[table])  # 1-based data row of the appended row
    report = ingest(write_csv(tmp_path / "raw", tables), tmp_path / "out")
    entry = report["tables"][table]
    assert entry["quarantined_by_reason"] == {reason: 1}
    assert entry["duplicates"] == 0
    _balanced(report)
    quarantined = pl.read_parquet(tmp_path / "out" / "quarantine" / f"{table}.parquet")
    assert quarantined.select("_row", "_reason").rows() == [(bad_row, reason)]
    assert reason in REASONS and report["reasons"][reason] == REASONS[reason]
    # the toy log's answers are untouched by the rejected row
    assert _labels(tmp_path / "out") == EXPECTED_LABELS


def test_every_reason_is_covered_by_a_case() -> None:
    # malformed_row needs a line that is not a row at all: test_malformed_csv_lines_are_quarantined
    assert {reason for _, _, reason in INVALID_ROWS} == set(REASONS) - {"malformed_row"}


def test_malformed_csv_lines_are_quarantined(tmp_path: Path) -> None:
    raw = write_csv(tmp_path / "raw", toy_tables())
    lines = (raw / "clicks.csv").read_text().splitlines()
    # data rows: 1, 2 good; 3 too many fields; 4 too few; 5 bad ts; 6 good (a duplicate of row 1)
    lines += ["r2,o1,2026-01-05T11:00:10Z,EXTRA,MORE", "r2,o1", "r1,o2,yesterday", lines[1]]
    (raw / "clicks.csv").write_text("\n".join(lines) + "\n")
    report = ingest(raw, tmp_path / "out")
    clicks = report["tables"]["clicks"]
    assert clicks["read"] == 6 and clicks["accepted"] == 2 and clicks["duplicates"] == 1
    assert clicks["quarantined_by_reason"] == {"malformed_row": 2, "bad_ts": 1}
    quarantined = pl.read_parquet(tmp_path / "out" / "quarantine" / "clicks.parquet")
    assert quarantined.select("_row", "_reason").rows() == [(3, "malformed_row"), (4, "malformed_row"), (5, "bad_ts")]
    assert quarantined["_raw_line"].to_list()[:2] == ["r2,o1,2026-01-05T11:00:10Z,EXTRA,MORE", "r2,o1"]
    assert _labels(tmp_path / "out") == EXPECTED_LABELS


@pytest.mark.parametrize("token", ["", "NULL", "NA"])
def test_csv_null_tokens(tmp_path: Path, token: str) -> None:
    tables = toy_tables()
    tables["impressions"][1]["propensity"] = token  # optional: kept as NULL
    tables["impressions"][2]["user_id"] = token  # required: quarantined
    report = ingest(write_csv(tmp_path / "raw", tables), tmp_path / "out")
    assert report["tables"]["impressions"]["quarantined_by_reason"] == {"null_user_id": 1}
    frame = pl.read_parquet(tmp_path / "out" / "impressions.parquet")
    assert frame.filter(pl.col("offer_id") == "o2")["propensity"].to_list() == [None]


def test_mixed_time_zones_are_normalised_to_utc(tmp_path: Path) -> None:
    tables = toy_tables()
    for row, ts in zip(tables["impressions"][:3], ["2026-01-05T10:00:00Z", "2026-01-05 12:00:00+02:00",
                                                    "2026-01-05 05:00:00-05:00"]):
        row["ts"] = ts
    tables["impressions"][3]["ts"] = "2026-01-05 11:00:00"  # no offset: UTC
    ingest(write_csv(tmp_path / "raw", tables), tmp_path / "out")
    frame = pl.read_parquet(tmp_path / "out" / "impressions.parquet").sort("request_id", "position")
    assert frame["ts"].to_list() == [datetime(2026, 1, 5, 10)] * 3 + [datetime(2026, 1, 5, 11)] * 2


def test_duplicates_are_merged_and_counted(tmp_path: Path) -> None:
    tables = toy_tables()
    tables["impressions"].append(dict(tables["impressions"][0]))  # exact copy
    tables["impressions"].append({**tables["impressions"][1], "position": "9"})  # same key: first wins
    tables["clicks"].append({**tables["clicks"][0], "ts": "2026-01-05T10:00:01Z"})  # earlier click wins
    tables["conversions"].append(dict(tables["conversions"][0]))
    tables["offers"].append({**tables["offers"][1], "payout": "31"})  # catalogue: last row wins
    tables["users"].append(dict(tables["users"][0]))
    report = ingest(write_csv(tmp_path / "raw", tables), tmp_path / "out")
    dups = {name: t["duplicates"] for name, t in report["tables"].items()}
    assert dups == {"offers": 1, "users": 1, "impressions": 2, "clicks": 1, "conversions": 1}
    _balanced(report)
    out = tmp_path / "out"
    impressions = pl.read_parquet(out / "impressions.parquet")
    assert impressions.filter(pl.col("offer_id") == "o2")["position"].to_list() == [2]
    assert pl.read_parquet(out / "clicks.parquet").sort("ts")["ts"][0] == datetime(2026, 1, 5, 10, 0, 1)
    assert pl.read_parquet(out / "offers.parquet").filter(pl.col("offer_id") == "o2")["payout"].to_list() == [31.0]
    assert _labels(out) == EXPECTED_LABELS


def test_conversion_without_click_is_kept_and_flagged(tmp_path: Path) -> None:
    tables = toy_tables()
    tables["conversions"].append({"request_id": "r1", "offer_id": "o2", "ts": "2026-01-05T10:40:00Z", "value": None})
    report = ingest(write_csv(tmp_path / "raw", tables), tmp_path / "out")
    assert report["tables"]["conversions"]["flagged"] == {"without_click": 1}
    assert report["flags"]["without_click"] == FLAGS["without_click"]
    # no value given: the offer's payout is the value
    assert _labels(tmp_path / "out")[("r1", "o2")] == (2, 30.0)


def test_event_before_its_impression_is_flagged(tmp_path: Path) -> None:
    tables = toy_tables()
    tables["clicks"][0]["ts"] = "2026-01-05T09:59:00Z"
    report = ingest(write_csv(tmp_path / "raw", tables), tmp_path / "out")
    assert report["tables"]["clicks"]["flagged"] == {"before_impression": 1}
    assert report["tables"]["clicks"]["accepted"] == 2


def test_optional_tables_may_be_absent(tmp_path: Path) -> None:
    tables = toy_tables()
    del tables["offers"], tables["users"], tables["conversions"]
    report = ingest(write_csv(tmp_path / "raw", tables), tmp_path / "out")
    assert report["tables"]["offers"]["file"] is None and report["tables"]["offers"]["read"] == 0
    assert report["labels"]["conversions"] == 0
    assert pl.read_parquet(tmp_path / "out" / "users.parquet").height == 0


def _drop_column(raw: Path) -> None:
    frame = pl.read_csv(raw / "impressions.csv", infer_schema=False).drop("position")
    frame.write_csv(raw / "impressions.csv")


def _drop_clicks(raw: Path) -> None:
    (raw / "clicks.csv").unlink()


def _both_formats(raw: Path) -> None:
    pl.read_csv(raw / "users.csv").write_parquet(raw / "users.parquet")


def _truncated_parquet(raw: Path) -> None:
    pl.read_csv(raw / "impressions.csv").write_parquet(raw / "impressions.parquet")
    (raw / "impressions.csv").unlink()
    data = (raw / "impressions.parquet").read_bytes()
    (raw / "impressions.parquet").write_bytes(data[: len(data) // 2])


def _garbage_parquet(raw: Path) -> None:
    (raw / "offers.csv").unlink()
    (raw / "offers.parquet").write_bytes(b"PAR1 this is not really parquet")


def _binary_csv(raw: Path) -> None:
    (raw / "users.csv").write_bytes(b"\xff\xfe\x00garbage\x81\x82\n")


def _integer_ts(raw: Path) -> None:
    frame = pl.read_csv(raw / "clicks.csv").with_columns(pl.lit(1736071200, dtype=pl.Int64).alias("ts"))
    frame.write_parquet(raw / "clicks.parquet")
    (raw / "clicks.csv").unlink()


def _column_ingest_adds(raw: Path) -> None:
    pl.read_csv(raw / "impressions.csv").with_columns(pl.lit(99.0).alias("value")).write_csv(raw / "impressions.csv")


def _reserved_column(raw: Path) -> None:
    pl.read_csv(raw / "users.csv").with_columns(pl.lit(1).alias("_row")).write_csv(raw / "users.csv")


CONTRACT_ERRORS = [
    (_drop_column, r"impressions\.csv: missing required column 'position'"),
    (_drop_clicks, r"clicks\.parquet \(or \.csv\): required table 'clicks' not found"),
    (_both_formats, r"both users\.parquet and users\.csv exist"),
    (_truncated_parquet, r"impressions\.parquet: cannot be read as Parquet"),
    (_garbage_parquet, r"offers\.parquet: cannot be read as Parquet"),
    (_binary_csv, r"users\.csv: cannot be read as CSV"),
    (_integer_ts, r"clicks\.parquet: column 'ts' has type BIGINT; expected a timestamp"),
    (_reserved_column, r"users\.csv: column name\(s\) \['_row'\] are reserved"),
    (_column_ingest_adds, r"impressions\.csv: column name\(s\) \['value'\] are reserved"),
]


@pytest.mark.parametrize(("breakage", "message"), CONTRACT_ERRORS, ids=[f.__name__ for f, _ in CONTRACT_ERRORS])
def test_contract_errors_stop_and_write_nothing(tmp_path: Path, breakage, message: str) -> None:
    raw = write_csv(tmp_path / "raw", toy_tables())
    out = tmp_path / "out"
    ingest(raw, out)  # a previous good run
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    breakage(raw)
    with pytest.raises(IngestError, match=message):
        ingest(raw, out)
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # nothing half-written, nothing lost
    fresh = tmp_path / "fresh"
    with pytest.raises(IngestError):
        ingest(raw, fresh)
    assert not fresh.exists() or not any(fresh.iterdir())


def test_cli_reports_contract_errors_without_traceback(tmp_path: Path) -> None:
    raw = write_csv(tmp_path / "raw", toy_tables())
    _drop_column(raw)
    result = CliRunner().invoke(main, ["ingest", "--raw", str(raw), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "missing required column 'position'" in result.output
    assert "Traceback" not in result.output


def test_cli_ingest_prints_outputs(tmp_path: Path) -> None:
    raw = write_csv(tmp_path / "raw", toy_tables())
    result = CliRunner().invoke(main, ["ingest", "--raw", str(raw), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "ingest_report.json" in result.output and "impressions.parquet" in result.output


def test_a_clean_rerun_leaves_no_quarantine_of_an_earlier_run(tmp_path: Path) -> None:
    tables = toy_tables()
    tables["clicks"].append({**TEMPLATES["clicks"], "request_id": "r404"})
    ingest(write_csv(tmp_path / "raw", tables), tmp_path / "out")
    assert (tmp_path / "out" / "quarantine" / "clicks.parquet").exists()
    report = ingest(write_csv(tmp_path / "raw2", toy_tables()), tmp_path / "out")
    assert report["tables"]["clicks"]["quarantined"] == 0
    assert not (tmp_path / "out" / "quarantine" / "clicks.parquet").exists()
