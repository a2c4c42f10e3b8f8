"""Atomic staging of outputs and the SQL file loader."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from offer_ranker import sqlfiles
from offer_ranker.io import staged_outputs


def test_staged_outputs_appear_together(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with staged_outputs(out) as stage:
        stage.path("a.txt").write_text("a")
        stage.path("sub/b.txt").write_text("b")
        assert not (out / "a.txt").exists()  # nothing visible until the block succeeds
    assert (out / "a.txt").read_text() == "a" and (out / "sub" / "b.txt").read_text() == "b"
    assert [p.name for p in out.iterdir() if p.name.startswith(".staging")] == []


def test_failed_stage_leaves_previous_outputs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with staged_outputs(out) as stage:
        stage.path("a.txt").write_text("old")
    with pytest.raises(RuntimeError), staged_outputs(out) as stage:
        stage.path("a.txt").write_text("new")
        raise RuntimeError("boom")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"]
    assert (out / "a.txt").read_text() == "old"


def test_a_folder_output_replaces_a_file_and_a_file_a_folder(tmp_path: Path) -> None:
    """Spark writes the frame as a folder of parts, DuckDB as one file, into the same features folder."""
    out = tmp_path / "out"
    with staged_outputs(out) as stage:
        stage.path("frame").write_text("file")
    with staged_outputs(out) as stage:
        stage.path("frame").mkdir()
        (stage.path("frame") / "part-0").write_text("part")
    assert (out / "frame").is_dir() and (out / "frame" / "part-0").read_text() == "part"
    with staged_outputs(out) as stage:
        stage.path("frame").write_text("file again")
    assert (out / "frame").read_text() == "file again"
    assert [p.name for p in out.iterdir()] == ["frame"]


def test_an_output_never_written_fails_before_anything_moves(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with staged_outputs(out) as stage:
        stage.path("frame").write_text("old")
    with pytest.raises(FileNotFoundError, match="never written: frame"), staged_outputs(out) as stage:
        stage.path("report.json").write_text("new")
        stage.path("frame")
    assert sorted(p.name for p in out.iterdir()) == ["frame"] and (out / "frame").read_text() == "old"


def test_spark_parts_are_read_in_partition_order(tmp_path: Path) -> None:
    from offer_ranker.featurize.frame import frame_files

    folder = tmp_path / "train.parquet"
    folder.mkdir()
    for n in (100000, 2, 99999, 10):  # past 99,999 partitions the names no longer sort
        (folder / f"part-{n:05d}-abc-c000.snappy.parquet").touch()
    (folder / "_SUCCESS").touch()
    assert [int(p.name.split("-")[1]) for p in frame_files(tmp_path)] == [2, 10, 99999, 100000]


def test_sql_files_load_by_name_and_render() -> None:
    text = sqlfiles.render("ingest/read_empty.sql", view="v", missing=", CAST(NULL AS VARCHAR) AS x")
    con = duckdb.connect()
    con.execute(text)
    assert con.table("v").columns == ["_row", "x"]
    with pytest.raises(KeyError, match=r"needs parameters \['missing'\]"):
        sqlfiles.render("ingest/read_empty.sql", view="v")
    with pytest.raises(FileNotFoundError, match="no SQL file sql/nope.sql"):
        sqlfiles.load("nope.sql")


def test_quoting() -> None:
    assert sqlfiles.ident('we"ird') == '"we""ird"'
    assert sqlfiles.literal("it's") == "'it''s'"
    con = duckdb.connect()
    assert con.execute(f"SELECT {sqlfiles.string_list(['a', 'b'])}").fetchone()[0] == ["a", "b"]
