"""What every DuckDB checkpoint module shares: the metadata schema, name
quoting, catalog look-ups, the watermark, and `Take` (one
checkpoint being taken: its id, who for, and how it is recorded)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
from sqlglot import exp

from branching.checkpoint import CheckpointContext
from branching.duck_catalog import Catalog, sequences_used
from branching.duck_rowids import live_mark
from proxy.backends.duckdb_params import adapt_params
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


def restore_sequences(cur: Cursor, values: dict[str, int | None], fresh: dict[str, str] | None = None,
                      catalog: Catalog | None = None) -> None:
    """Set sequences back to their kept last values. One never used before the checkpoint (no last value;
    DuckDB's setval has no is_called, and START is also its MINVALUE by default) is created again from
    its kept definition, with the defaults that draw from it, when it has been used since."""
    for name, value in values.items():
        if value is not None:
            cur.execute("SELECT setval(?, ?)", [name, value])
        elif fresh and name in fresh:
            recreate_sequence(cur, name, fresh[name], catalog)


def recreate_sequence(cur: Cursor, name: str, sql: str, catalog: Catalog | None = None) -> None:
    """DuckDB cannot drop a sequence a default draws from: drop those defaults, drop and create the
    sequence from `sql`, set the defaults again (same text). Anything else depending on it: left as is."""
    schema, seq = name.split(".", 1)
    row = cur.execute("SELECT sequence_oid, last_value FROM duckdb_sequences() WHERE schema_name = ? AND"
                      " sequence_name = ? AND database_name = current_database()", [schema, seq]).fetchone()
    if row is None or row[1] is None:
        return  # gone (a later checkpoint of its own brings it back), or still never used
    dependents = {r[0] for r in cur.execute("SELECT refobjid FROM duckdb_dependencies() WHERE objid = ?",
                                            [row[0]]).fetchall()}
    defaults = []
    for oid in sorted(dependents):
        table = cur.execute("SELECT schema_name, table_name, sql FROM duckdb_tables() WHERE table_oid = ?",
                            [oid]).fetchone()
        if table is None:
            return  # not a table: leave the sequence as it is
        found = cur.execute("SELECT column_name, column_default FROM duckdb_columns() WHERE table_oid = ?"
                            " AND column_default IS NOT NULL ORDER BY column_index", [oid]).fetchall()
        uses = [(c, d) for c, d in found if name in sequences_used(f"{d}", table[0])]
        if not uses:
            return
        defaults += [(table[0], table[1], c, d) for c, d in uses]
    if catalog is not None:
        catalog.changed()
    for t_schema, table, column, _ in defaults:
        cur.execute(f"ALTER TABLE {q(t_schema)}.{q(table)} ALTER COLUMN {q(column)} DROP DEFAULT")
    cur.execute(f"DROP SEQUENCE {q(schema)}.{q(seq)}")
    cur.execute(f"SET schema = {q(schema)}")  # the kept definition names no schema
    cur.execute(sql)
    for t_schema, table, column, default in defaults:
        cur.execute(f"SET schema = {q(t_schema)}")  # the default's text resolves names in its table's schema
        cur.execute(f"ALTER TABLE {q(t_schema)}.{q(table)} ALTER COLUMN {q(column)} SET DEFAULT {default}")
    cur.execute("SET schema = 'main'")


def watermark(cur: Cursor, schema: str, table: str) -> int:
    """The highest live row id of the table now: rows added later get higher ids, unless DuckDB gives
    ids back (duck_rowids)."""
    return live_marks(cur, schema, table)[0]


def live_marks(cur: Cursor, schema: str, table: str) -> tuple[int, int]:
    """(highest live row id, live rows) of the table now, committed ones only (duck_rowids; -1, 0 if none)."""
    row = cur.execute("SELECT estimated_size FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?"
                      " AND database_name = current_database()", [schema, table]).fetchone()
    if row is None or row[0] is None:
        return -1, 0
    return live_mark(cur, f"{q(schema)}.{q(table)}", int(row[0]) - 1)[:2]


def record(cur: Cursor, retention_days: float, cp_id: str, context: CheckpointContext | None, kind: str,
           tables: list[str], objects: list[dict[str, Any]], seq: int, undoes: str | None = None) -> None:
    now = datetime.now(UTC)
    cur.execute(
        "INSERT INTO sqlgate.checkpoints VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
        [cp_id, context.trace_id if context else None, context.actor if context else "sqlgate",
         context.token_id if context else None, context.branch if context else "main", kind, json.dumps(tables),
         json.dumps(objects), seq, now, now + timedelta(days=retention_days), undoes])


@dataclass(frozen=True)
class Take:
    """One checkpoint being taken, for the statement `part`, in `session`'s open transaction."""

    session: Any
    part: Part
    cp_id: str
    context: CheckpointContext
    retention_days: float
    catalog: Catalog

    def record(self, cur: Cursor, kind: str, tables: list[str], objects: list[dict[str, Any]]) -> None:
        record(cur, self.retention_days, self.cp_id, self.context, kind, tables, objects, self.catalog.next_seq(cur))

    def catalog_changed(self) -> None:
        """The checkpoint changes the catalog in the statement's transaction (a DROP becomes a rename)."""
        changed = getattr(self.session, "catalog_changed", None)
        if changed is not None:
            changed()
        else:
            self.catalog.changed()

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

        sql = self.part.sql

        async def run(original: Any, params: Any) -> Result:
            def kept() -> Result | None:  # the statement's values, bound as the statement binds them
                conn = session._conn
                values = adapt_params(sql, params, conn, session.backend.catalog_version) if params else None
                return instead(conn, values)

            try:
                result = await session._run(kept)
            except duckdb.Error as exc:
                raise database_error(exc) from exc
            return result if result is not None else await original()

        return run


# --- parameters of queries built from a statement's parts ---------------------------------

def _placeholders(tree: exp.Expression) -> list[exp.Placeholder]:
    return [n for n in tree.walk(bfs=False) if isinstance(n, exp.Placeholder)]


def render_params(nodes: list[exp.Expression], whole: exp.Expression,
            types: list[str] | None = None) -> tuple[list[str], tuple[int, ...]]:
    """The nodes as SQL with their parameters renumbered $1.. in order, and which of the statement's
    parameters (0-based) those are: DuckDB refuses a parameter list longer than a query uses. `types`:
    cast a VALUES list's columns to them (parameters arrive as text; an INSERT casts them, a bare
    VALUES cannot combine text in one row with a number in the next)."""
    order = {id(p): i for i, p in enumerate(_placeholders(whole))}
    used: list[int] = []
    texts = []
    for node in nodes:
        originals = _placeholders(node)
        copy = node.copy()
        for original, placeholder in zip(originals, _placeholders(copy), strict=True):
            this = original.this
            if this is not None and str(this).isdigit():
                used.append(int(this) - 1)
            elif id(original) in order:
                used.append(order[id(original)])
            else:  # an unnumbered one in a node built apart from the statement: its place is unknown
                raise ValueError("a parameter without a number")
            placeholder.set("this", str(len(used)))
        if types is not None and isinstance(copy, exp.Values):
            for row in copy.expressions:
                for value, type_ in zip(list(row.expressions), types, strict=False):
                    value.replace(exp.cast(value.copy(), exp.DataType.build(type_, dialect="duckdb")))
        texts.append(copy.sql(dialect="duckdb"))
    return texts, tuple(used)
