"""Load DuckDB SQL files from ``sql/`` by name and run them.

SQL never lives in Python strings. A file may hold several statements and ``{{ name }}``
placeholders; placeholders take identifiers and literals quoted by :func:`ident` and
:func:`literal`, never raw user text.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files
from pathlib import Path

import duckdb

_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


@cache
def load(name: str) -> str:
    """Text of ``sql/<name>`` (e.g. ``"ingest/impressions.sql"``)."""
    resource = files("offer_ranker.sql").joinpath(name)
    if not resource.is_file():
        raise FileNotFoundError(f"no SQL file sql/{name}")
    return resource.read_text()


def render(name: str, **params: str) -> str:
    text = load(name)
    missing = sorted(set(_PLACEHOLDER.findall(text)) - params.keys())
    if missing:
        raise KeyError(f"sql/{name} needs parameters {missing}")
    return _PLACEHOLDER.sub(lambda m: params[m.group(1)], text)


def run(con: duckdb.DuckDBPyConnection, name: str, **params: str) -> None:
    """Execute every statement of ``sql/<name>``."""
    con.execute(render(name, **params))


def ident(name: str) -> str:
    """Quote an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: str | Path) -> str:
    """Quote an SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def string_list(values: tuple[str, ...] | list[str]) -> str:
    """``['a', 'b']`` as an SQL list literal."""
    return "[" + ", ".join(literal(v) for v in values) + "]"
