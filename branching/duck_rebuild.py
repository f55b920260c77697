"""Building a DuckDB table again, and altering it with its indexes aside: DuckDB refuses most ALTER TABLE
while a table has an index, and will not change the type of (or drop) a column an index was on, even after
that index was dropped in the same transaction, so a restore that must do either builds the table again.
With the catalog look-ups both need (a table's oid, name, columns and indexes)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlglot
from sqlglot import exp

from branching.duck_moves import Moves
from branching.duck_sql import Cursor, q, watermark


def rebuild(cur: Cursor, moves: Moves, schema: str, name: str, select: str, join: str = "",
            table_sql: str | None = None, types: dict[str, str] | None = None, indexes: list[str] | None = None,
            drop: list[str] | None = None) -> None:
    """The table built again from `table_sql` (None: its definition now), its rows in row-id order as `select`
    (over t, and what `join` adds) gives them. While it is still empty, without indexes, the columns in
    `drop` go, and each other one gets its type (or the one `types` names), default and NOT NULL as now
    (changed since the kept definition, or set back already by this rollback). Its indexes go and come
    back, with `indexes` (SQL) not among them. Its row ids are renumbered and its oid changes: `moves`
    records both."""
    qualified = f"{q(schema)}.{q(name)}"
    scratch = moves.scratch("rebuild")
    mark = watermark(cur, schema, name)
    cur.execute(f"CREATE TABLE {scratch} AS SELECT t.rowid AS __old, {select} FROM {qualified} t{join}"
                " ORDER BY t.rowid")
    old_oid = table_oid(cur, schema, name)
    present = table_indexes(cur, old_oid)
    for index, _ in present:
        cur.execute(f"DROP INDEX {q(schema)}.{q(index)}")
    now = {c[0]: c for c in column_defs(cur, old_oid)}
    if table_sql is None:
        table_sql = cur.execute("SELECT sql FROM duckdb_tables() WHERE table_oid = ?", [old_oid]).fetchone()[0]  # type: ignore[index]
    if drop:
        table_sql = _without_unique(table_sql, drop)
    cur.execute(f"DROP TABLE {qualified}")
    cur.execute(f"SET schema = {q(schema)}")  # a table's or index's SQL names no schema for tables in main
    cur.execute(table_sql)
    new_oid = table_oid(cur, schema, name)
    moves.oids[old_oid] = new_oid
    moves.oid_keys[old_oid] = (schema, name)
    for col in drop or []:
        cur.execute(f"ALTER TABLE {qualified} DROP COLUMN {q(col)}")
    for col, type_, default, nullable in column_defs(cur, new_oid):
        if col not in now:  # the column put back: as its kept definition has it
            continue
        _, want, want_default, want_nullable = now[col]
        want = (types or {}).get(col, want)
        if type_ != want:
            cur.execute(f"ALTER TABLE {qualified} ALTER COLUMN {q(col)} TYPE {want}")
        if default != want_default:
            cur.execute(f"ALTER TABLE {qualified} ALTER COLUMN {q(col)} "
                        + ("DROP DEFAULT" if want_default is None else f"SET DEFAULT {want_default}"))
        if nullable != want_nullable:
            cur.execute(f"ALTER TABLE {qualified} ALTER COLUMN {q(col)} {'DROP' if want_nullable else 'SET'} NOT NULL")
    stored = ", ".join(q(c) for c in stored_columns(cur, schema, name))
    cur.execute(f"INSERT INTO {qualified} ({stored}) SELECT {stored} FROM {scratch} ORDER BY __old")
    moves.rebuilt(cur, schema, name, f"SELECT __old FROM {scratch}", mark)
    made = [sql for _, sql in present]
    for index_sql in made + [sql for sql in indexes or [] if sql not in made]:
        cur.execute(index_sql)
    cur.execute(f"DROP TABLE {scratch}")


def _without_unique(table_sql: str, columns: list[str]) -> str:
    """The CREATE TABLE without its UNIQUE constraints on any of `columns`: DuckDB will not drop a column one
    names (ADD COLUMN ... UNIQUE makes one), nor drop the constraint. As it is when there is none."""
    tree = sqlglot.parse_one(table_sql, read="duckdb")
    gone = {c.lower() for c in columns}
    found = [u for u in tree.find_all(exp.UniqueColumnConstraint)
             if isinstance(u.this, exp.Schema) and any(i.name.lower() in gone for i in u.this.expressions)]
    for u in found:
        u.pop()
    return tree.sql(dialect="duckdb") if found else table_sql


def _in_unique(cur: Cursor, oid: int, columns: list[str]) -> bool:
    """Whether a UNIQUE constraint of the table names any of `columns` (dropping one then needs a rebuild)."""
    return bool(cur.execute(
        "SELECT count(*) FROM duckdb_constraints() WHERE table_oid = ? AND constraint_type = 'UNIQUE'"
        " AND list_has_any(constraint_column_names, ?)", [oid, columns]).fetchone()[0])  # type: ignore[index]


def stored_columns(cur: Cursor, schema: str, name: str) -> list[str]:
    """The table's columns but generated ones (they take no values)."""
    return [r[0] for r in cur.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_catalog = current_database()"
        " AND table_schema = ? AND table_name = ? AND is_generated <> 'ALWAYS' ORDER BY ordinal_position",
        [schema, name]).fetchall()]


def table_indexes(cur: Cursor, oid: int) -> list[tuple[str, str]]:
    """(name, SQL) of the table's indexes."""
    return [tuple(r) for r in cur.execute("SELECT index_name, sql FROM duckdb_indexes() WHERE table_oid = ?",
                                          [oid]).fetchall()]  # type: ignore[misc]


def drop_columns(cur: Cursor, moves: Moves, oid: int, names: list[str], rebuild_anyway: bool = False) -> None:
    """DROP COLUMN each, the table's indexes aside; the table built again without them where DuckDB would
    refuse the drop: a UNIQUE names one, or `rebuild_anyway` (an index this transaction dropped was on one)."""
    if not names:
        return
    schema, name = table_of(cur, oid)  # type: ignore[misc]
    if rebuild_anyway or _in_unique(cur, oid, names):
        rebuild(cur, moves, schema, name, ", ".join(f"t.{q(c[0])}" for c in column_defs(cur, oid) if c[0] not in names),
                drop=names)
        return
    with indexes_aside(cur, oid):
        for column in names:
            cur.execute(f"ALTER TABLE {q(schema)}.{q(name)} DROP COLUMN {q(column)}")


@contextmanager
def indexes_aside(cur: Cursor, oid: int, moves: Moves | None = None) -> Iterator[list[tuple[str, str]]]:
    """DuckDB refuses most ALTER TABLE (RENAME, NOT NULL, DROP COLUMN) while the table has an index, on any
    column (a key's is no obstacle): the indexes are dropped for the change and made again after it, on the
    table as it is named then (renamed back, or built again under a new oid: `moves`). Yields them (name,
    SQL). An error aborts the transaction: nothing is made again then."""
    found = table_indexes(cur, oid)
    if found:
        schema = table_of(cur, oid)[0]  # type: ignore[index]
        for index, _ in found:
            cur.execute(f"DROP INDEX {q(schema)}.{q(index)}")
        if moves is not None:
            moves.unindexed.add(oid)
    yield found
    if not found:
        return
    schema, name = table_of(cur, moves.oid(oid) if moves else oid)  # type: ignore[misc]
    cur.execute(f"SET schema = {q(schema)}")  # an index's SQL names no schema for tables in main
    for _, index_sql in found:
        tree = sqlglot.parse_one(index_sql, read="duckdb")
        table = tree.find(exp.Table)
        if table is not None and table.name != name:  # the table was renamed back: the index goes with it
            table.replace(exp.table_(name, db=schema, quoted=True))
            index_sql = tree.sql(dialect="duckdb")
        cur.execute(index_sql)


def table_of(cur: Cursor, oid: int) -> tuple[str, str] | None:
    """(schema, name) of table `oid`; None: gone."""
    row = cur.execute("SELECT schema_name, table_name FROM duckdb_tables() WHERE table_oid = ?", [oid]).fetchone()
    return None if row is None else (row[0], row[1])


def table_oid(cur: Cursor, schema: str, name: str) -> int:
    return int(cur.execute("SELECT table_oid FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?"
                           " AND database_name = current_database()", [schema, name]).fetchone()[0])  # type: ignore[index]


def column_defs(cur: Cursor, oid: int) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in cur.execute(
        "SELECT column_name, data_type, column_default, is_nullable FROM duckdb_columns()"
        " WHERE table_oid = ? ORDER BY column_index", [oid]).fetchall()]
