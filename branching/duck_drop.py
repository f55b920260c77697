"""DuckDB checkpoints for DROP TABLE and DROP VIEW: the statement is not run;
a table is renamed aside (O(1)), a view's definition is kept."""

from __future__ import annotations

from typing import Any

from branching.duck_sql import TRASH_PREFIX, Cursor, Take, exists, q, split
from proxy import errors
from proxy.result import Result


def drop_runner(take: Take, kind: str, name: str, if_exists: bool) -> Any:
    command = take.part.command

    def move(cur: Cursor, args: list[Any] | None) -> Result:
        schema, table = split(cur, name)
        if not exists(cur, schema, table, views=kind == "view"):
            if if_exists:
                take.record(cur, kind, [name], [])
                return Result(command_tag=command)
            word = "View" if kind == "view" else "Table"
            raise errors.SqlgateError(
                "sql.error", "42P01", f"Catalog Error: {word} with name {table} does not exist!", "",
                "fix the statement and send it again; nothing from this request was committed")
        if kind == "view":
            take.record(cur, "view", [name], [drop_view(cur, schema, table)])
        else:
            take.record(cur, "table", [name], [drop_table(take, cur, schema, table)])
        return Result(command_tag=command)

    return take.replace_runner(move)


def drop_view(cur: Cursor, schema: str, view: str) -> dict[str, Any]:
    view_sql = cur.execute("SELECT sql FROM duckdb_views() WHERE schema_name = ? AND view_name = ?"
                           " AND database_name = current_database()", [schema, view]).fetchone()[0]  # type: ignore[index]
    cur.execute(f"DROP VIEW {q(schema)}.{q(view)}")
    return {"kind": "view", "schema": schema, "name": view, "sql": view_sql}


def drop_table(take: Take, cur: Cursor, schema: str, table: str, n: int = 0) -> dict[str, Any]:
    """Takes the table away and answers the object that brings it back."""
    qualified = f"{q(schema)}.{q(table)}"
    # One catalog read: who references it, whether it references others, its indexes.
    referencing, outgoing, index_rows = cur.execute(
        "SELECT (SELECT list(table_name) FROM duckdb_constraints() WHERE constraint_type = 'FOREIGN KEY'"
        "        AND referenced_table = $2 AND schema_name = $1 AND table_name <> $2),"
        " (SELECT count(*) FROM duckdb_constraints() WHERE constraint_type = 'FOREIGN KEY'"
        "        AND schema_name = $1 AND table_name = $2 AND database_name = current_database()),"
        " (SELECT list([index_name, sql]) FROM duckdb_indexes() WHERE schema_name = $1"
        "        AND table_name = $2 AND database_name = current_database())",
        [schema, table]).fetchone()  # type: ignore[misc]
    if referencing:
        raise errors.SqlgateError(
            "sql.error", "2BP01",
            f"Could not drop the table because this table is main key table of the table \"{referencing[0]}\"",
            "", "drop the referencing table first")
    indexes = [tuple(r) for r in index_rows or []]
    if outgoing:
        # DuckDB cannot rename a table whose foreign keys would then hold its parent: keep a copy
        # and its definition (cost: the table's rows; DuckDB has no cheaper way).
        table_sql = cur.execute(
            "SELECT sql FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?"
            " AND database_name = current_database()", [schema, table]).fetchone()[0]  # type: ignore[index]
        keep = take.kept("keep", n)
        cur.execute(f"CREATE TABLE {keep} AS SELECT * FROM {qualified}")
        cur.execute(f"DROP TABLE {qualified}")
        return {"kind": "copy", "schema": schema, "name": table, "keep": keep, "sql": table_sql,
                "indexes": [s for _, s in indexes]}
    for index_name, _ in indexes:
        cur.execute(f"DROP INDEX {q(schema)}.{q(index_name)}")
    trash = f"{TRASH_PREFIX}{take.cp_id}_{n}"
    cur.execute(f"ALTER TABLE {qualified} RENAME TO {q(trash)}")
    return {"kind": "relation", "schema": schema, "name": table, "trash": trash,
            "indexes": [s for _, s in indexes]}
