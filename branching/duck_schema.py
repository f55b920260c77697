"""DuckDB checkpoints for DROP SCHEMA: DuckDB can neither rename a schema nor
move a table to another one, so its tables are copied into schema `sqlgate`
(cost: the schema's rows) with the definitions of everything in it; rollback
creates the schema again in creation order: sequences (at their current
values), tables with their rows, indexes, views."""

from __future__ import annotations

from typing import Any

from branching import common
from branching.duck_moves import Moves
from branching.duck_sql import ROWID, Cursor, Take, columns, count, q
from proxy import errors
from proxy.result import Result


def drop_schema_runner(take: Take, schema: str, if_exists: bool, cascade: bool) -> Any:
    part = take.part

    def keep(cur: Cursor, args: list[Any] | None) -> Result | None:
        if not count(cur, "SELECT count(*) FROM duckdb_schemas() WHERE schema_name = ?"
                          " AND database_name = current_database()", [schema]):
            if if_exists:
                take.record(cur, "schema", [f"{schema}.*"], [])
                return Result(command_tag=part.command)
            raise errors.SqlgateError(
                "sql.error", "3F000", f"Catalog Error: Schema with name {schema} does not exist!", "",
                "fix the statement and send it again; nothing from this request was committed")
        others = count(cur, "SELECT (SELECT count(*) FROM duckdb_functions() WHERE schema_name = $1"
                            " AND database_name = current_database() AND NOT internal)"
                            " + (SELECT count(*) FROM duckdb_types() WHERE schema_name = $1"
                            " AND database_name = current_database() AND NOT internal)", [schema])
        if others:
            raise common.unavailable(part, f"schema {schema} holds macros or types, which sqlgate cannot keep on"
                                           " DuckDB yet (drop its tables and views one by one: each is kept)")
        obj = _keep_schema(take, cur, schema) if cascade else {"kind": "schema", "schema": schema, "name": "*"}
        take.catalog_changed()
        cur.execute(part.sql, args)  # without CASCADE DuckDB refuses a schema that is not empty
        take.record(cur, "schema", [f"{schema}.*"], [obj])
        return Result(command_tag=part.command)

    return take.replace_runner(keep)


def _keep_schema(take: Take, cur: Cursor, schema: str) -> dict[str, Any]:
    where = "WHERE schema_name = ? AND database_name = current_database()"
    sequences = [list(r) for r in cur.execute(
        f"SELECT sql, sequence_name, last_value FROM duckdb_sequences() {where} ORDER BY sequence_oid",
        [schema]).fetchall()]
    tables = []
    for i, (name, sql) in enumerate(cur.execute(
            f"SELECT table_name, sql FROM duckdb_tables() {where} ORDER BY table_oid", [schema]).fetchall()):
        keep = take.kept("sch", i)
        cur.execute(f"CREATE TABLE {keep} AS SELECT rowid AS {ROWID}, * FROM {q(schema)}.{q(name)}")
        tables.append({"name": name, "sql": sql, "keep": keep})
    indexes = [r[0] for r in cur.execute(f"SELECT sql FROM duckdb_indexes() {where} ORDER BY index_oid",
                                         [schema]).fetchall() if r[0]]
    views = [r[0] for r in cur.execute(f"SELECT sql FROM duckdb_views() {where} AND NOT internal ORDER BY view_oid",
                                       [schema]).fetchall()]
    return {"kind": "schema", "schema": schema, "name": "*", "sequences": sequences, "tables": tables,
            "indexes": indexes, "views": views, "keeps": [t["keep"] for t in tables]}


def copy_back(cur: Cursor, moves: Moves, schema: str, name: str, keep: str) -> None:
    """Fill the table created again from its kept copy, in row-id order; `moves` records the new row
    ids (copies kept by an older sqlgate carry none: the table is then marked rebuilt without them)."""
    qualified = f"{q(schema)}.{q(name)}"
    if ROWID not in columns(cur, "sqlgate", keep.split(".", 1)[1].strip('"')):
        cur.execute(f"INSERT INTO {qualified} SELECT * FROM {keep}")
        moves.rebuilt(cur, schema, name, None, -1)
        return
    cur.execute(f"INSERT INTO {qualified} SELECT * EXCLUDE ({ROWID}) FROM {keep} ORDER BY {ROWID}")
    mark = count(cur, f"SELECT coalesce(max({ROWID}), -1) FROM {keep}")
    moves.rebuilt(cur, schema, name, f"SELECT {ROWID} AS __old FROM {keep}", mark)


def restore_schema(cur: Cursor, cp_id: str, o: dict[str, Any], moves: Moves) -> None:
    schema = o["schema"]
    if count(cur, "SELECT count(*) FROM duckdb_schemas() WHERE schema_name = ? AND database_name = current_database()",
             [schema]):
        raise common.conflicts_error(cp_id, [{"schema": schema, "conflict": "a schema with this name exists again"}])
    cur.execute(f"CREATE SCHEMA {q(schema)}")
    cur.execute(f"SET schema = {q(schema)}")  # sequence definitions name no schema
    for sql, name, last_value in o.get("sequences", []):
        cur.execute(sql)
        if last_value is not None:  # the DDL names the next value; currval comes back too
            cur.execute("SELECT setval(?, ?)", [f"{schema}.{name}", last_value])
    for t in o.get("tables", []):
        cur.execute(t["sql"])
        copy_back(cur, moves, schema, t["name"], t["keep"])
        cur.execute(f"DROP TABLE {t['keep']}")
    for sql in [*o.get("indexes", []), *o.get("views", [])]:
        cur.execute(sql)
    cur.execute("SET schema = 'main'")
