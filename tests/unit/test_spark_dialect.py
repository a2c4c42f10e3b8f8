"""The DuckDB -> Spark SQL rewrites (offer_ranker/featurize/spark/dialect.py), without a JVM; the
Spark tests (tests/spark/) run the translated pipeline and compare its outputs with DuckDB's."""

import pytest

from offer_ranker import sqlfiles
from offer_ranker.featurize.spark.dialect import DialectError, SparkDialect


def _one(dialect: SparkDialect, text: str):
    (statement,) = dialect.statements(text)
    return statement


def test_macros_are_inlined_with_their_arguments_even_when_nested() -> None:
    d = SparkDialect()
    assert d.statements("CREATE OR REPLACE TEMP MACRO twice(x) AS x * 2;"
                        "CREATE OR REPLACE TEMP MACRO quad(x) AS twice(twice(x));") == []
    sql = _one(d, "CREATE OR REPLACE TEMP TABLE t AS SELECT quad(a.x + 1) AS y, x FROM a").sql
    assert "TWICE" not in sql.upper() and "QUAD" not in sql.upper()
    assert sql.count("* 2") == 2 and "a.x + 1" in sql and sql.endswith("AS y, x FROM a")


def test_a_qualified_column_named_like_a_parameter_is_left_alone() -> None:
    d = SparkDialect()
    d.statements("CREATE TEMP MACRO f(x) AS x + t.x;")
    assert "(y) + t.x" in _one(d, "SELECT f(y) FROM t").sql


@pytest.mark.parametrize(("duckdb", "spark"), [
    ("SELECT hash(a, b) FROM t", "XXHASH64(a, b)"),
    ("SELECT epoch_us(ts) FROM t", "UNIX_MICROS(CAST(ts AS TIMESTAMP_LTZ))"),
    ("SELECT dayofweek(ts) FROM t", "(DAYOFWEEK(ts) - 1)"),
    ("SELECT sum(x) OVER w - x FROM t WINDOW w AS (ORDER BY ts)", "(SUM(x) OVER w) - x"),
    ("SELECT COLUMNS(t.* EXCLUDE (k, ts)) FROM t", "SELECT t.* EXCEPT (k, ts) FROM t"),
    ("SELECT any_value(x) FROM t", "ANY_VALUE(x) IGNORE NULLS"),
])
def test_duckdb_functions_become_their_spark_equivalents(duckdb: str, spark: str) -> None:
    assert spark in _one(SparkDialect(), duckdb).sql


def test_statement_kinds() -> None:
    d = SparkDialect()
    kinds = [(s.kind, s.name, s.compression) for s in d.statements(
        "SET memory_limit = '1GB'; CREATE OR REPLACE TEMP TABLE t AS SELECT 1 AS x;"
        "COPY (SELECT * FROM t ORDER BY x) TO '/out/t.parquet' (FORMAT parquet, COMPRESSION zstd);"
        "DROP TABLE t; RESET memory_limit; SELECT 1")]
    assert kinds == [("table", "t", "snappy"), ("copy", "/out/t.parquet", "zstd"), ("drop", "t", "snappy"),
                     ("query", "", "snappy")]


def test_what_cannot_be_translated_names_the_file() -> None:
    with pytest.raises(DialectError, match=r"sql/x\.sql: COPY writes Parquet only, not csv"):
        SparkDialect().statements("COPY (SELECT 1) TO 'x.csv' (FORMAT csv)", "sql/x.sql")
    with pytest.raises(DialectError, match=r"sql/y\.sql: not parseable"):
        SparkDialect().statements("SELECT (", "sql/y.sql")


def test_every_feature_file_translates() -> None:
    """Every statement of sql/features/ has a Spark form (placeholders filled with dummies)."""
    import re
    from importlib.resources import files

    d = SparkDialect()
    for path in sorted(files("offer_ranker.sql").joinpath("features").iterdir(), key=lambda p: p.name):
        name = f"features/{path.name}"
        text = sqlfiles.load(name)
        params = {p: "'/tmp/x.parquet'" if p.endswith(("path", "impressions", "offers", "users", "dir")) else "1"
                  for p in re.findall(r"\{\{\s*(\w+)\s*\}\}", text)}
        params |= {p: "" for p in ("extras", "columns", "crosses", "content", "offer_extras", "user_extras")
                   if p in params}
        params |= {p: "DATE '2026-01-01'" for p in ("prior_day",) if p in params}
        params |= {p: "TIMESTAMP '2026-01-01 00:00:00'" for p in ("as_of",) if p in params}
        params |= {p: "'ts'" for p in ("column",) if p in params}
        for statement in d.statements(sqlfiles.render(name, **params), name):
            assert statement.kind in {"table", "copy", "drop", "query"}
