"""Runs the feature SQL on a Spark session: the Spark side of :mod:`offer_ranker.featurize.engine`.

A DuckDB temporary table becomes a locally checkpointed temporary view (memory, spilling to disk); a
``COPY ... TO 'name.parquet'`` writes the query's partitions, in parallel, to the folder
``name.parquet/`` (Spark's own output: ``part-*`` files whose names sort in the query's order) when
``name.parquet`` is one of the engine's ``parts`` (the training frame, by default), or else joins
them, in order, on the driver into the one Parquet file DuckDB would have written (the online
snapshot, which the stores load as files); ``DROP TABLE`` unpersists. Only what this engine started
is stopped on close: a session that already existed (spark-submit, a notebook, the tests) is reused
and left running.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from offer_ranker import sqlfiles as sql
from offer_ranker.config.offline import SparkConfig
from offer_ranker.errors import OfferRankerError
from offer_ranker.featurize.frame import ordered_parts
from offer_ranker.featurize.spark.dialect import SparkDialect, Statement

#: Settings that make Spark compute what DuckDB computes: UTC, timestamps without time zone (the
#: logs' are naive UTC, and Parquet timestamps without one are read as such), and NULL rather than
#: an error on a division by zero, as in DuckDB.
SEMANTICS = {"spark.sql.session.timeZone": "UTC", "spark.sql.timestampType": "TIMESTAMP_NTZ",
             "spark.sql.ansi.enabled": "false", "spark.sql.parquet.inferTimestampNTZ.enabled": "true"}


class SparkSQLError(OfferRankerError):
    """A statement of ``sql/`` failed on Spark; the message names the file and the statement."""


class SparkUnavailable(OfferRankerError):
    """Spark cannot start here: PySpark or a Java runtime is missing; the message says which."""


@contextmanager
def running_session(cfg: SparkConfig) -> Iterator[Any]:
    """The active Spark session, else one started from ``cfg`` and stopped on exit; with the
    ``SEMANTICS`` settings while inside (a shared session gets its own back)."""
    spark, started = session(cfg)
    restore = {key: spark.conf.get(key, None) for key in SEMANTICS}
    try:
        for key, value in SEMANTICS.items():
            spark.conf.set(key, value)
        yield spark
    finally:
        if started:
            spark.stop()
        else:
            for key, value in restore.items():
                if value is None:
                    spark.conf.unset(key)
                else:
                    spark.conf.set(key, value)


def session(cfg: SparkConfig) -> tuple[Any, bool]:
    """The active Spark session, else a new one from ``cfg`` (or ``SPARK_REMOTE``); and whether it
    was started here."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise SparkUnavailable("Spark needs PySpark: install offer-ranker with its `spark` extra "
                               "(pip install 'offer-ranker[spark]'; `make install` has it)") from None

    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    builder = SparkSession.builder.appName("offer-ranker")
    if os.environ.get("SPARK_REMOTE"):
        builder = builder.remote(os.environ["SPARK_REMOTE"])
    else:
        # Python workers (xgboost.spark's) run this interpreter, with this environment's packages
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = (builder.master(cfg.master).config("spark.driver.memory", cfg.driver_memory)
                   .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false"))
    for key, value in ({"spark.sql.shuffle.partitions": str(cfg.shuffle_partitions)} | cfg.conf).items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as e:  # PySparkRuntimeError JAVA_GATEWAY_EXITED and kin
        java = shutil.which("java") or "no `java` on PATH"
        raise SparkUnavailable(f"Spark did not start ({java}; it needs a Java 17+ runtime, e.g. Debian's "
                               f"default-jre-headless): {str(e).strip().splitlines()[0][:300]}") from e
    if not os.environ.get("SPARK_REMOTE"):
        spark.sparkContext.setLogLevel("ERROR")
    return spark, True


class SparkEngine:
    def __init__(self, spark: Any, temp_dir: Path, parts: tuple[str, ...] = ()) -> None:
        self.spark = spark
        self.temp_dir = temp_dir
        self.parts = parts  # names of the outputs written as folders of parts
        self.dialect = SparkDialect()
        self.tables: dict[str, Any] = {}

    @classmethod
    @contextmanager
    def open(cls, cfg: SparkConfig, temp_dir: Path, parts: tuple[str, ...] = ()) -> Iterator[SparkEngine]:
        with running_session(cfg) as spark:
            engine = cls(spark, temp_dir, parts)
            try:
                yield engine
            finally:
                engine.close()

    def close(self) -> None:
        for name in list(self.tables):
            self._drop(name)

    def run(self, name: str, **params: str) -> None:
        for i, statement in enumerate(self.dialect.statements(sql.render(name, **params), f"sql/{name}"), 1):
            try:
                if statement.kind == "table":
                    self._table(statement)
                elif statement.kind == "copy":
                    self._copy(statement)
                elif statement.kind == "drop":
                    self._drop(statement.name)
                else:
                    self.spark.sql(statement.sql).collect()
            except Exception as e:
                if type(e).__module__.startswith(("pyspark", "py4j")):
                    first = str(e).strip().splitlines()[0][:500]
                    raise SparkSQLError(f"sql/{name}, statement {i} ({statement.kind} {statement.name}) failed on "
                                        f"Spark: {first}\n{statement.sql}") from e
                raise

    def rows(self, name: str, **params: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._query(name, params).collect()]

    def frame(self, name: str, **params: str) -> Any:
        import polars as pl

        return pl.from_arrow(self._query(name, params).toArrow())

    def _query(self, name: str, params: dict[str, str]) -> Any:
        """The Spark DataFrame of ``sql/<name>``, which must hold one query."""
        *before, last = self.dialect.statements(sql.render(name, **params), f"sql/{name}")
        if before or last.kind != "query":
            raise ValueError(f"sql/{name} is not a single query")
        return self.spark.sql(last.sql)

    def register(self, name: str, table: Any) -> None:
        self._keep(name, self.spark.createDataFrame(table).localCheckpoint(eager=True))

    def _keep(self, name: str, frame: Any) -> None:
        if name in self.tables:
            self._drop(name)
        frame.createOrReplaceTempView(name)
        self.tables[name] = frame

    def _table(self, statement: Statement) -> None:
        """Materialise now, as DuckDB does: a local checkpoint keeps the rows (memory, then disk)
        and cuts the plan, so later statements read a table, not the SQL that made it (Spark's
        optimizer also fails on cached plans that hold CTEs of their own)."""
        self._keep(statement.name, self.spark.sql(statement.sql).localCheckpoint(eager=True))

    def _drop(self, name: str) -> None:
        self.tables.pop(name).unpersist()
        self.spark.catalog.dropTempView(name)

    def _copy(self, statement: Statement) -> None:
        """Write the query's rows to ``statement.name``, in the query's order: a folder of parts
        (one of ``parts``) or one Parquet file."""
        target = Path(statement.name)
        folder = target if target.name in self.parts else self.temp_dir / f"spark-{uuid.uuid4().hex}"
        self.spark.sql(statement.sql).write.parquet(str(folder), compression=statement.compression)
        if folder == target:
            for checksum in target.glob(".*.crc"):  # Hadoop's local checksums: no reader needs them
                checksum.unlink()
            return
        try:
            join_parts(folder, target, statement.compression)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def join_parts(folder: Path, target: Path, compression: str) -> None:
    """Append the row groups of Spark's ``part-*`` files (in partition order, so a sorted query's
    order is kept) to one Parquet file, a batch at a time (memory stays flat)."""
    import pyarrow.parquet as pq

    parts = ordered_parts(folder)
    schema = pq.read_schema(parts[0])
    target.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(target, schema, compression=compression) as writer:
        for part in parts:
            for batch in pq.ParquetFile(part).iter_batches(batch_size=1 << 16):
                writer.write_batch(batch)
