"""DuckDB SQL of ``sql/`` as Spark SQL: the rewrites SQLGlot does not do on its own.

The feature SQL is written once, for DuckDB, in a portable subset; SQLGlot transpiles each
statement to Spark, and :class:`SparkDialect` closes the gaps where the two engines differ:

* DuckDB macros (``CREATE TEMP MACRO f(a, b) AS expr``) have no Spark equivalent that takes
  untyped arguments: they are remembered and inlined where they are called, recursively;
* ``hash(...)`` (64-bit) becomes ``xxhash64(...)``: Spark's ``hash`` is 32-bit, whose collisions
  would merge entities at millions of keys (the keys are internal: only equality matters);
* ``epoch_us(ts)`` becomes ``unix_micros(ts)``, the naive timestamp read in UTC;
* ``dayofweek`` counts Sunday as 0 in DuckDB and 1 in Spark;
* ``COLUMNS(t.* EXCLUDE (...))`` becomes ``t.* EXCEPT (...)``;
* a window function in arithmetic is parenthesised: Spark's parser reads ``OVER w - x`` as a
  window named ``w-x``;
* ``SET``/``RESET`` (DuckDB session settings) are dropped: Spark is configured by its session.

What is left are four kinds of statement, executed by :mod:`.runner`: a temporary table to
materialise, a query whose result goes to a Parquet file (``COPY``), a table to drop, or a query
to read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import sqlglot
from sqlglot import exp

from offer_ranker.errors import OfferRankerError


class DialectError(OfferRankerError):
    """A statement of ``sql/`` has no Spark translation; the message names the file."""


@dataclass(frozen=True)
class Statement:
    """One Spark action: ``table`` (materialise ``sql`` as temp table ``name``), ``copy`` (write
    ``sql``'s rows to the Parquet file ``name``), ``drop`` (temp table ``name``) or ``query``."""

    kind: Literal["table", "copy", "drop", "query"]
    sql: str
    name: str = ""
    compression: str = "snappy"


@dataclass(frozen=True)
class _Macro:
    params: tuple[str, ...]
    body: exp.Expression


class SparkDialect:
    """Translates the statements of one pipeline run; macros defined by earlier files stay known."""

    def __init__(self) -> None:
        self.macros: dict[str, _Macro] = {}

    def statements(self, text: str, source: str = "<sql>") -> list[Statement]:
        """Spark statements for the DuckDB statements of ``text`` (placeholders already rendered)."""
        logging.getLogger("sqlglot").setLevel(logging.ERROR)  # (it warns as it parses RESET as a command)
        try:
            parsed = sqlglot.parse(text, read="duckdb")
        except sqlglot.errors.ParseError as e:
            raise DialectError(f"{source}: not parseable as DuckDB SQL: {e}") from None
        out = []
        for node in parsed:
            if node is None or isinstance(node, exp.Set) or _is_reset(node):
                continue
            statement = self._statement(node, source)
            if statement is not None:
                out.append(statement)
        return out

    def _statement(self, node: exp.Expression, source: str) -> Statement | None:
        if isinstance(node, exp.Create) and node.kind == "MACRO":
            self._remember(node)
            return None
        if isinstance(node, exp.Create) and node.kind == "TABLE":
            return Statement("table", self.spark(node.expression), node.this.name)
        if isinstance(node, exp.Copy):
            (path,) = node.args["files"]
            options = {p.this.name.lower(): p.expression.name.lower() for p in node.args.get("params") or ()}
            if options.get("format", "parquet") != "parquet":
                raise DialectError(f"{source}: COPY writes Parquet only, not {options['format']}")
            return Statement("copy", self.spark(node.this.unnest()), path.name, options.get("compression", "snappy"))
        if isinstance(node, exp.Drop) and node.kind == "TABLE":
            (table,) = node.args["tables"]
            return Statement("drop", "", table.name)
        if isinstance(node, exp.Query):
            return Statement("query", self.spark(node))
        raise DialectError(f"{source}: no Spark translation for: {node.sql('duckdb')[:200]}")

    def _remember(self, node: exp.Create) -> None:
        function = node.this  # UserDefinedFunction: name and parameters
        params = tuple(p.name for p in function.expressions)
        self.macros[function.this.name.lower()] = _Macro(params, node.expression)

    def spark(self, query: exp.Expression) -> str:
        """The Spark SQL of one DuckDB query, every rewrite applied."""
        tree = self._inline(query.copy())
        tree = tree.transform(_rewrite, copy=False)
        return tree.sql("spark")

    def _inline(self, tree: exp.Expression) -> exp.Expression:
        """Replace every call of a remembered macro by its body, its parameters bound to the
        arguments (macro bodies may call macros)."""
        for _ in range(32):  # nesting depth; a macro calling itself would never end
            calls = [c for c in tree.find_all(exp.Anonymous) if c.name.lower() in self.macros]
            if not calls:
                return tree
            for call in calls:
                macro = self.macros[call.name.lower()]
                args = dict(zip(macro.params, call.expressions, strict=True))
                body = macro.body.copy().transform(
                    lambda n, a=args: exp.paren(a[n.name].copy(), copy=False)
                    if isinstance(n, exp.Column) and not n.table and n.name in a else n, copy=False)
                call.replace(exp.paren(body, copy=False))
        raise DialectError("macros nested more than 32 deep (a macro calling itself?)")


_LTZ = exp.DataType.build("timestamp_ltz", dialect="spark")


def _is_reset(node: exp.Expression) -> bool:
    return isinstance(node, exp.Command) and node.name.upper() == "RESET"


def _rewrite(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Anonymous):
        name = node.name.lower()
        if name == "hash":
            return exp.Anonymous(this="XXHASH64", expressions=node.expressions)
        if name == "epoch_us":  # of a timestamp without time zone: read as UTC (the session's zone)
            (ts,) = node.expressions
            return exp.Anonymous(this="UNIX_MICROS", expressions=[exp.cast(ts, _LTZ)])
    if isinstance(node, exp.Window) and isinstance(node.parent, exp.Binary):
        return exp.paren(node, copy=False)  # Spark reads `OVER w - x` as a window named "w-x"
    if isinstance(node, exp.Columns) and isinstance(node.this, exp.Column) and node.this.is_star:
        return node.this  # COLUMNS(t.* EXCLUDE (...)): the star itself, as t.* EXCEPT (...)
    if isinstance(node, exp.DayOfWeek) and not node.meta.get("spark"):
        node.meta["spark"] = True
        return exp.paren(exp.Sub(this=node, expression=exp.Literal.number(1)), copy=False)
    return node
