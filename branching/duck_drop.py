"""DuckDB checkpoints for DROP TABLE and DROP VIEW: the statement is not run;
a table is renamed aside (O(1)), a view's definition is kept."""

from __future__ import annotations

from typing import Any

import duckdb
from sqlglot import exp

from branching.duck_catalog import TableFacts
from branching.duck_sql import ROWID, TRASH_PREFIX, Cursor, Take, exists, q, split
from proxy import errors
from proxy.result import Result


def drop_runner(take: Take, kind: str, name: str, if_exists: bool) -> Any:
    command = take.part.command

    def move(cur: Cursor, args: list[Any] | None) -> Result:
        if kind == "view":
            schema, table = split(cur, name)
            found = exists(cur, schema, table, views=True)
        else:  # one catalog read: the schema, whether the table exists, its DDL and indexes
            parsed = exp.to_table(name, dialect="duckdb")
            table = parsed.name
            facts = take.catalog.for_drop(cur, parsed.db or None, table)
            found = facts is not None
        if not found:
            if if_exists:
                take.record(cur, kind, [name], [])
                return Result(command_tag=command)
            word = "View" if kind == "view" else "Table"
            raise errors.SqlgateError(
                "sql.error", "42P01", f"Catalog Error: {word} with name {table} does not exist!", "",
                "fix the statement and send it again; nothing from this request was committed")
        take.catalog_changed()
        if kind == "view":
            take.record(cur, "view", [name], [drop_view(cur, schema, table)])
        else:
            assert facts is not None
            take.record(cur, "table", [name], [drop_table(take, cur, facts[0], table, facts=facts[1])])
        return Result(command_tag=command)

    return take.replace_runner(move)


def drop_view(cur: Cursor, schema: str, view: str) -> dict[str, Any]:
    view_sql = cur.execute("SELECT sql FROM duckdb_views() WHERE schema_name = ? AND view_name = ?"
                           " AND database_name = current_database()", [schema, view]).fetchone()[0]  # type: ignore[index]
    cur.execute(f"DROP VIEW {q(schema)}.{q(view)}")
    return {"kind": "view", "schema": schema, "name": view, "sql": view_sql}


def drop_table(take: Take, cur: Cursor, schema: str, table: str, n: int = 0,
               facts: TableFacts | None = None) -> dict[str, Any]:
    """Takes the table away and answers the object that brings it back. `facts`: the table's, if read."""
    qualified = f"{q(schema)}.{q(table)}"
    if facts is None:
        found = take.catalog.for_drop(cur, schema, table)
        if found is None:
            raise errors.SqlgateError("sql.error", "42P01", f"Catalog Error: Table with name {table} does not exist!",
                                      "", "fix the statement and send it again")
        facts = found[1]
    take.catalog_changed()
    indexes = list(facts.indexes or ())
    if facts.references:
        # DuckDB cannot rename a table whose foreign keys would then hold its parent: keep a copy
        # and its definition (cost: the table's rows; DuckDB has no cheaper way).
        keep = take.kept("keep", n)
        cur.execute(f"CREATE TABLE {keep} AS SELECT rowid AS {ROWID}, * FROM {qualified}")
        _drop(cur, f"DROP TABLE {qualified}")
        return {"kind": "copy", "schema": schema, "name": table, "keep": keep, "sql": facts.sql,
                "indexes": [s for _, s in indexes]}
    for index_name, _ in indexes:
        cur.execute(f"DROP INDEX {q(schema)}.{q(index_name)}")
    trash = f"{TRASH_PREFIX}{take.cp_id}_{n}"
    _drop(cur, f"ALTER TABLE {qualified} RENAME TO {q(trash)}")
    return {"kind": "relation", "schema": schema, "name": table, "trash": trash,
            "indexes": [s for _, s in indexes]}


def _drop(cur: Cursor, statement: str) -> None:
    """The drop (or rename) itself. What DuckDB refuses then, with the indexes already gone, is a table
    other tables' foreign keys reference: nothing was dropped (the transaction is aborted)."""
    try:
        cur.execute(statement)
    except duckdb.DependencyException:
        raise errors.SqlgateError(
            "sql.error", "2BP01", "Could not drop the table because this table is main key table of another"
                                  " table (a foreign key references it)", "",
            "drop the referencing table first") from None
