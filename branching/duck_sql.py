"""What every DuckDB checkpoint module shares: the metadata schema, name
quoting, catalog look-ups, the row-slot watermark, and `Take` (one
checkpoint being taken: its id, who for, and how it is recorded)."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
from sqlglot import exp

from branching.checkpoint import CheckpointContext
from proxy.db_errors import database_error
from proxy.result import Result
from proxy.statement import Part

SETUP_SQL = """
CREATE SCHEMA IF NOT EXISTS sqlgate;
CREATE TABLE IF NOT EXISTS sqlgate.checkpoints (
    id VARCHAR PRIMARY KEY, trace_id VARCHAR, actor VARCHAR NOT NULL, token_id VARCHAR, branch VARCHAR NOT NULL,
    kind VARCHAR NOT NULL, tables VARCHAR NOT NULL, objects VARCHAR NOT NULL, seq BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL, expires_at TIMESTAMPTZ NOT NULL, undone_by VARCHAR, undoes VARCHAR);
CREATE SEQUENCE IF NOT EXISTS sqlgate.checkpoint_seq;
"""

ROWID = "__sqlgate_rowid"
NAME_TAKEN = "a relation with this name was created since"
TRASH_PREFIX = "__sqlgate_"  # tables renamed aside by DROP TABLE start with it

Cursor = duckdb.DuckDBPyConnection


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def count(cur: Cursor, statement: str, args: list[Any] | None = None) -> int:
    row = cur.execute(statement, args).fetchone()
    return int(row[0]) if row else 0


def split(cur: Cursor, name: str) -> tuple[str, str]:
    table = exp.to_table(name, dialect="duckdb")
    schema = table.db or cur.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
    return schema, table.name


def exists(cur: Cursor, schema: str, name: str, views: bool = False) -> bool:
    source = "duckdb_views()" if views else "duckdb_tables()"
    column = "view_name" if views else "table_name"
    return bool(count(cur, f"SELECT count(*) FROM {source} WHERE schema_name = ? AND {column} = ?"
                           " AND database_name = current_database()", [schema, name]))


def relation_exists(cur: Cursor, schema: str, name: str) -> bool:
    return exists(cur, schema, name) or exists(cur, schema, name, views=True)


def columns(cur: Cursor, schema: str, name: str) -> list[str]:
    rows = cur.execute("SELECT column_name FROM duckdb_columns() WHERE schema_name = ? AND table_name = ?"
                       " AND database_name = current_database() ORDER BY column_index", [schema, name]).fetchall()
    return [r[0] for r in rows]


def table_mark(cur: Cursor, schema: str, table: str) -> tuple[int, dict[str, int | None]]:
    """The watermark and the last value of each sequence the table's defaults draw from (rollback mode
    'all' sets those back). The sequences are read off the table's DDL from the same catalog row, so a
    table without such defaults costs no second catalog read."""
    mark, ddl = _table_row(cur, schema, table)
    names = _sequences_used(ddl, schema)
    values: dict[str, int | None] = {}
    if names:
        values = dict(cur.execute(
            "SELECT schema_name || '.' || sequence_name, last_value FROM duckdb_sequences()"
            f" WHERE database_name = current_database() AND schema_name || '.' || sequence_name"
            f" IN ({', '.join('?' * len(names))})", list(names)).fetchall())
    return mark, values


_NEXTVAL = re.compile(r"nextval\('((?:[^']|'')+)'")


@functools.lru_cache(maxsize=256)
def _sequences_used(ddl: str, schema: str) -> tuple[str, ...]:
    names = (m.group(1).replace("''", "'") for m in _NEXTVAL.finditer(ddl))
    return tuple(sorted({n if "." in n else f"{schema}.{n}" for n in names}))


def restore_sequences(cur: Cursor, values: dict[str, int | None]) -> None:
    """Set sequences back to their kept last values. DuckDB's setval has no is_called: a sequence
    never used before the checkpoint cannot go back, and is left as it is."""
    for name, value in values.items():
        if value is not None:
            cur.execute("SELECT setval(?, ?)", [name, value])


def watermark(cur: Cursor, schema: str, table: str) -> int:
    return _table_row(cur, schema, table)[0]


def _table_row(cur: Cursor, schema: str, table: str) -> tuple[int, str]:
    """The watermark (the highest row id a row of the table has now: rows appended later get higher
    ones; DuckDB's estimated_size counts row slots, deleted ones too, so this is O(1), not a scan) and
    the table's DDL, from one catalog read."""
    row = cur.execute("SELECT estimated_size, sql FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?"
                      " AND database_name = current_database()", [schema, table]).fetchone()
    if row is None:
        return -1, ""
    return (int(row[0]) - 1 if row[0] is not None else -1), row[1] or ""


def record(cur: Cursor, retention_days: float, cp_id: str, context: CheckpointContext | None, kind: str,
           tables: list[str], objects: list[dict[str, Any]], undoes: str | None = None) -> None:
    now = datetime.now(UTC)
    cur.execute(
        "INSERT INTO sqlgate.checkpoints VALUES (?, ?, ?, ?, ?, ?, ?, ?, nextval('sqlgate.checkpoint_seq'), ?, ?,"
        " NULL, ?)",
        [cp_id, context.trace_id if context else None, context.actor if context else "sqlgate",
         context.token_id if context else None, context.branch if context else "main", kind, json.dumps(tables),
         json.dumps(objects), now, now + timedelta(days=retention_days), undoes])


@dataclass(frozen=True)
class Take:
    """One checkpoint being taken, for the statement `part`, in `session`'s open transaction."""

    session: Any
    part: Part
    cp_id: str
    context: CheckpointContext
    retention_days: float

    def record(self, cur: Cursor, kind: str, tables: list[str], objects: list[dict[str, Any]]) -> None:
        record(cur, self.retention_days, self.cp_id, self.context, kind, tables, objects)

    def kept(self, prefix: str, n: int | str = 0) -> str:
        """The name of a table in schema sqlgate that keeps data for this checkpoint."""
        return f"sqlgate.{q(f'{prefix}_{self.cp_id}_{n}')}"

    def keep_runner(self, keep: Callable[[Cursor], None]) -> Any:
        """Runs `keep` on the statement's connection, then the statement as sent."""
        session = self.session

        async def run(original: Any, params: Any) -> Result:
            try:
                await session._run(lambda: keep(session._conn))
            except duckdb.Error as exc:
                raise database_error(exc) from exc
            return await original()  # type: ignore[no-any-return]

        return run

    def replace_runner(self, instead: Callable[[Cursor, list[Any] | None], Result | None]) -> Any:
        """Runs `instead` in place of the statement (it keeps the data and runs the statement itself);
        when it returns None the statement runs as sent afterwards."""
        session = self.session

        async def run(original: Any, params: Any) -> Result:
            args = list(params) if params else None
            try:
                result = await session._run(lambda: instead(session._conn, args))
            except duckdb.Error as exc:
                raise database_error(exc) from exc
            return result if result is not None else await original()

        return run
