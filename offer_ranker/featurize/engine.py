"""Where the feature SQL runs: DuckDB in this process (the default) or Apache Spark.

Both engines run the same files of ``sql/features/`` in the same order (:mod:`.build` drives
them); an engine only executes a file's statements (:meth:`Engine.run`) and returns a query's
rows (:meth:`Engine.rows`). DuckDB runs the SQL as written; Spark runs it through
:mod:`.spark.dialect`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

import duckdb
import polars as pl
import pyarrow as pa

from offer_ranker import sqlfiles as sql
from offer_ranker.config import Config
from offer_ranker.featurize.frame import FRAME

EngineName = Literal["duckdb", "spark"]


class Engine(Protocol):
    def run(self, name: str, **params: str) -> None:
        """Execute every statement of ``sql/<name>``."""

    def rows(self, name: str, **params: str) -> list[tuple[Any, ...]]:
        """The rows of the query ``sql/<name>``."""

    def frame(self, name: str, **params: str) -> pl.DataFrame:
        """The result of the query ``sql/<name>`` as a (driver-side) DataFrame."""

    def register(self, name: str, table: pa.Table) -> None:
        """Make ``table`` (computed in Python) the temporary table ``name`` of later statements."""


class DuckDBEngine:
    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def run(self, name: str, **params: str) -> None:
        sql.run(self.con, name, **params)

    def rows(self, name: str, **params: str) -> list[tuple[Any, ...]]:
        return self.con.execute(sql.render(name, **params)).fetchall()

    def frame(self, name: str, **params: str) -> pl.DataFrame:
        return self.con.sql(sql.render(name, **params)).pl()

    def register(self, name: str, table: pa.Table) -> None:
        self.con.register("_registered", table)
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {sql.ident(name)} AS SELECT * FROM _registered")
        self.con.unregister("_registered")


@contextmanager
def open_engine(name: EngineName, cfg: Config, temp_dir: Path) -> Iterator[Engine]:
    """An engine with ``features/setup.sql`` run (settings and shared macros); ``temp_dir`` is
    where it may spill. Closed on exit."""
    setup = {"memory_limit": sql.literal(cfg.features.memory_limit), "temp_dir": sql.literal(temp_dir)}
    if name == "spark":
        from offer_ranker.featurize.spark.runner import SparkEngine

        with SparkEngine.open(cfg.spark, temp_dir, parts=(FRAME,) if cfg.spark.frame == "parts" else ()) as engine:
            engine.run("features/setup.sql", **setup)
            yield engine
        return
    con = duckdb.connect()
    try:
        engine = DuckDBEngine(con)
        engine.run("features/setup.sql", **setup)
        yield engine
    finally:
        con.close()
