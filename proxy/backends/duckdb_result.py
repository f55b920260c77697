"""A DuckDB statement's answer as PostgreSQL gives it: column names, type OIDs, the text of values and
the command tag (a leaf module: the session and the checkpoints' UPDATE ... RETURNING both answer this way)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb

from proxy.backends.duckdb_names import ctas_tag, pg_column_names
from proxy.pgtext import render_rows
from proxy.pgtypes import field_for_duckdb, varchar_fetch_cast
from proxy.result import Result

# Statements whose answer is rows (anything else answers with at most a row count).
_ROW_VERBS = frozenset({"SELECT", "VALUES", "TABLE", "WITH", "FROM", "SUMMARIZE", "DESCRIBE", "PIVOT", "UNPIVOT",
                        "EXPLAIN", "CALL", "SHOW"})


def _command_tag(command: str, description: Any, rows: list[tuple[Any, ...]]) -> str:
    verb = command or "SELECT"
    if verb in ("INSERT", "UPDATE", "DELETE", "MERGE"):
        count = rows[0][0] if rows and description and description[0][0] == "Count" else len(rows)
        return f"INSERT 0 {count}" if verb == "INSERT" else f"{verb} {count}"
    if description is not None and verb in _ROW_VERBS:
        return verb if verb in ("SHOW", "EXPLAIN") else f"SELECT {len(rows)}"
    return verb


def _needs_exact_text(description: Any) -> bool:
    """Python values lose what PostgreSQL prints for these (interval months, nested values)."""
    return any(str(d[1]).split("(")[0].split("[")[0] in _TEXT_EXACT_TYPES for d in description)


_TEXT_EXACT_TYPES = frozenset({"INTERVAL", "STRUCT", "MAP", "UNION"})
# DuckDB's Python values of +-infinity are date.max/min and datetime.max/min, as are the real
# 9999-12-31 and 0001-01-01: a result holding one is read again as text, which tells them apart.
_EXTREMES = {"DATE": (dt.date.max, dt.date.min), "TIMESTAMP": (dt.datetime.max, dt.datetime.min)}


def _has_extreme_dates(description: Any, rows: list[tuple[Any, ...]]) -> bool:
    columns = [(i, _EXTREMES[str(d[1])]) for i, d in enumerate(description) if str(d[1]) in _EXTREMES]
    return bool(columns) and any(row[i] in extremes for row in rows for i, extremes in columns)


def _fetch_as_text(cur: duckdb.DuckDBPyConnection, sql: str, values: list[Any] | None,
                   description: Any) -> list[tuple[Any, ...]]:
    """Read a query again with those columns cast to VARCHAR (only reads are re-read)."""
    relation = cur.sql(sql, params=values)
    exprs = []
    for i, d in enumerate(description, start=1):
        cast = varchar_fetch_cast(d[1])
        exprs.append(f"CAST(#{i} AS {cast})" if cast else f"#{i}")
    return relation.project(", ".join(exprs)).fetchall()


def run_for_result(cur: duckdb.DuckDBPyConnection, sql: str, values: list[Any] | None, command: str) -> Result:
    """Run `sql` (its values adapted already) and answer as PostgreSQL would: its column names, type OIDs,
    text of values and command tag. Reads whose Python values lose what PostgreSQL prints are read again."""
    cur.execute(sql, values)
    description = cur.description
    rows = cur.fetchall() if description is not None else []
    tag = _command_tag(command, description, rows)
    if description is None or (command not in _ROW_VERBS and len(description) == 1
                               and description[0][0] in ("Count", "Success")):
        if command == "CREATE TABLE" and description is not None and description[0][0] == "Count":
            tag = ctas_tag(sql, rows) or tag  # CREATE TABLE ... AS: PostgreSQL's `SELECT n`
        return Result(command_tag=tag)  # DuckDB's row count for DML and DDL, already in the tag
    names = pg_column_names(sql, [d[0] for d in description])  # PostgreSQL's names, not DuckDB's
    fields = [field_for_duckdb(name, d[1]) for name, d in zip(names, description, strict=True)]
    if command in _READ_VERBS and (_needs_exact_text(description) or _has_extreme_dates(description, rows)):
        rows = _fetch_as_text(cur, sql, values, description)
    return Result(fields, render_rows(description, rows), tag)


_READ_VERBS = frozenset({"SELECT", "VALUES", "TABLE", "WITH", "FROM"})  # may be read twice
