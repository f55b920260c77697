"""Rollback on DuckDB, objects: bring back what a checkpoint kept of
relations and definitions (tables renamed aside or copied, views, columns,
index / sequence / view definitions, a table's column definitions)."""

from __future__ import annotations

from typing import Any

from branching import common
from branching.duck_moves import Moves, Space
from branching.duck_schema import copy_back, restore_schema
from branching.duck_sql import NAME_TAKEN, ROWID, Cursor, columns, exists, q, relation_exists, watermark


def restore_object(cur: Cursor, cp_id: str, mode: str, o: dict[str, Any], moves: Moves | None = None,
                   seq: int = 0) -> str | None:
    """Puts one kept object back; answers its name for the outcome (None: not an object kind).
    `seq`: the checkpoint's, whose row ids the kept values carry (duck_moves maps them to the table's)."""
    moves = moves or Moves(cp_id)
    kind = o["kind"]
    here = f"{o['schema']}.{o['name']}"
    if kind == "relation":
        if relation_exists(cur, o["schema"], o["name"]):
            if mode == "statement":
                raise common.conflicts_error(cp_id, [{"table": here, "conflict": NAME_TAKEN}])
            raise common.rollback_failed(f"{here} exists again; drop it first")
        cur.execute(f"ALTER TABLE {q(o['schema'])}.{q(o['trash'])} RENAME TO {q(o['name'])}")
        for index_sql in o.get("indexes", []):
            cur.execute(index_sql)
    elif kind == "copy":
        if relation_exists(cur, o["schema"], o["name"]):
            raise common.conflicts_error(cp_id, [{"table": here, "conflict": NAME_TAKEN}])
        cur.execute(f"SET schema = {q(o['schema'])}")
        cur.execute(o["sql"])
        copy_back(cur, moves, o["schema"], o["name"], o["keep"])
        for index_sql in o.get("indexes", []):
            cur.execute(index_sql)
        cur.execute(f"DROP TABLE {o['keep']}")
    elif kind == "column":
        restore_column(cur, cp_id, o, moves, seq)
        return f"{here}.{o['column']}"
    elif kind == "definition":
        restore_definition(cur, o, moves, cp_id, seq)
    elif kind in ("indexdef", "sequencedef", "viewdef"):
        cur.execute(f"SET schema = {q(o['schema'])}")
        statement = o["sql"]
        if kind == "viewdef":
            statement = statement.replace("CREATE VIEW", "CREATE OR REPLACE VIEW", 1)
        elif exists(cur, o["schema"], o["name"]) or cur.execute(
                "SELECT count(*) FROM duckdb_indexes() WHERE schema_name = ? AND index_name = ?",
                [o["schema"], o["name"]]).fetchone()[0]:  # type: ignore[index]
            raise common.conflicts_error(cp_id, [{"object": o["name"], "conflict": NAME_TAKEN}])
        cur.execute(statement)
        if o.get("last_value") is not None:
            cur.execute("SELECT setval(?, ?)", [f"{o['schema']}.{o['name']}", o["last_value"]])
    elif kind == "schema":
        restore_schema(cur, cp_id, o, moves)
    elif kind == "view":
        if relation_exists(cur, o["schema"], o["name"]):
            raise common.conflicts_error(cp_id, [{"view": here, "conflict": NAME_TAKEN}])
        cur.execute(f"SET schema = {q(o['schema'])}")
        cur.execute(o["sql"])
    else:
        return None
    return here


def _keyed(cur: Cursor, moves: Moves, cp_id: str, o: dict[str, Any], seq: int, column: str) -> str:
    """The kept values of `column` by the table's row ids now (__r), through every rebuild since.
    Rows the checkpoint's own transaction had appended before the statement had temporary row ids then
    (COMMIT gave them ids above the watermark, in order): their values come from the copy kept of them
    (`appended`), matched by the other columns' values, in row-id order among equal rows."""
    live = Space(cur, moves, cp_id, o["schema"], o["name"], seq).live()
    keyed = f"SELECT s.__live AS __r, k.{q(column)} FROM ({live}) s JOIN {o['keep']} k ON k.{ROWID} = s.__k"
    if o.get("appended") and o.get("watermark") is not None:
        copied = columns(cur, "sqlgate", o["appended"].split(".", 1)[1].strip('"'))
        others = [c for c in columns(cur, o["schema"], o["name"]) if c != column and c in copied]
        by = ", ".join(q(c) for c in others) or "NULL"
        match = " AND ".join([f"c.{q(c)} IS NOT DISTINCT FROM a.{q(c)}" for c in others] + ["c.__n = a.__n"])
        keyed += (f" UNION ALL SELECT c.__live, a.{q(column)} FROM (SELECT s.__live, t.*,"
                  f" row_number() OVER (PARTITION BY {', '.join(f't.{q(c)}' for c in others) or 'NULL'}"
                  f" ORDER BY s.__live) AS __n FROM ({live}) s JOIN {q(o['schema'])}.{q(o['name'])} t"
                  f" ON t.rowid = s.__live WHERE s.__k > {int(o['watermark'])}) c JOIN (SELECT *, row_number()"
                  f" OVER (PARTITION BY {by} ORDER BY {by}) AS __n FROM {o['appended']}) a ON {match}")
    return f"({keyed})"


def restore_column(cur: Cursor, cp_id: str, o: dict[str, Any], moves: Moves, seq: int) -> None:
    qualified = f"{q(o['schema'])}.{q(o['name'])}"
    if o["column"] in columns(cur, o["schema"], o["name"]):
        raise common.conflicts_error(cp_id, [{"column": o["column"],
                                              "conflict": "a column with this name was added since"}])
    # A mode 'all' rollback may restore rows kept after the drop (without the column) with these values.
    moves.fills.setdefault((o["schema"], o["name"]), {})[o["column"]] = (o["keep"], seq)
    moves.drop_later.append(o["keep"])
    if o.get("rebuild"):
        rebuild_with_column(cur, cp_id, o, moves, seq)
        return
    if o.get("notnull"):  # kept in place before NOT NULL columns were rebuilt: DuckDB cannot set it after
        raise common.rollback_failed(  # the values' UPDATE; refused before anything changes
            f"column {o['column']} was NOT NULL, and this checkpoint kept it in a format that cannot put the"
            " constraint back (taken by an older sqlgate)")
    default = f" DEFAULT {o['default']}" if o.get("default") is not None else ""
    values = _keyed(cur, moves, cp_id, o, seq, o["column"])
    cur.execute(f"ALTER TABLE {qualified} ADD COLUMN {q(o['column'])} {o['type']}{default}")
    cur.execute(f"UPDATE {qualified} SET {q(o['column'])} = k.{q(o['column'])} FROM {values} k"
                f" WHERE {qualified}.rowid = k.__r")


def rebuild_with_column(cur: Cursor, cp_id: str, o: dict[str, Any], moves: Moves, seq: int) -> None:
    """The table again from its kept definition, rows in row-id order with the column's kept values
    (DuckDB cannot add a column between others). Its row ids are renumbered: `moves` records how."""
    schema, name, column = o["schema"], o["name"], o["column"]
    qualified = f"{q(schema)}.{q(name)}"
    if columns(cur, schema, name) != [c for c in o["columns"] if c != column]:
        raise common.conflicts_error(cp_id, [{"table": f"{schema}.{name}", "conflict": "its columns changed since"}])
    scratch = f"sqlgate.{q('rebuild_' + cp_id)}"
    select = ", ".join(f"k.{q(c)}" if c == column else f"t.{q(c)}" for c in o["columns"])
    mark = watermark(cur, schema, name)
    cur.execute(f"CREATE TABLE {scratch} AS SELECT t.rowid AS __old, {select} FROM {qualified} t"
                f" LEFT JOIN {_keyed(cur, moves, cp_id, o, seq, column)} k ON t.rowid = k.__r ORDER BY t.rowid")
    for (index,) in cur.execute("SELECT index_name FROM duckdb_indexes() WHERE schema_name = ? AND table_name = ?"
                                " AND database_name = current_database()", [schema, name]).fetchall():
        cur.execute(f"DROP INDEX {q(schema)}.{q(index)}")
    cur.execute(f"DROP TABLE {qualified}")
    cur.execute(f"SET schema = {q(schema)}")  # the kept definition names no schema for tables in main
    cur.execute(o["table_sql"])
    cur.execute(f"INSERT INTO {qualified} SELECT * EXCLUDE (__old) FROM {scratch} ORDER BY __old")
    moves.rebuilt(cur, schema, name, f"SELECT __old FROM {scratch}", mark)
    for index_sql in o.get("indexes", []):
        cur.execute(index_sql)
    cur.execute(f"DROP TABLE {scratch}")


def restore_definition(cur: Cursor, o: dict[str, Any], moves: Moves, cp_id: str, seq: int) -> None:
    row = cur.execute("SELECT schema_name, table_name FROM duckdb_tables() WHERE table_oid = ?",
                      [o["oid"]]).fetchone()
    if row is None:
        raise common.rollback_failed(f"table {o['schema']}.{o['name']} is gone")
    qualified = f"{q(o['schema'])}.{q(o['name'])}"
    if row[1] != o["name"]:
        cur.execute(f"ALTER TABLE {q(row[0])}.{q(row[1])} RENAME TO {q(o['name'])}")
        moves.follow_rename(f"{q(row[0])}.{q(row[1])}", qualified)
    now = cur.execute("SELECT column_name, data_type, column_default, is_nullable FROM duckdb_columns()"
                      " WHERE table_oid = ? ORDER BY column_index", [o["oid"]]).fetchall()
    for (name, type_, default, nullable), current in zip(o["columns"], now, strict=False):
        col = q(name)
        if current[0] != name:
            cur.execute(f"ALTER TABLE {qualified} RENAME COLUMN {q(current[0])} TO {col}")
            moves.renamed.add((o["schema"], o["name"]))
            moves.follow_rename(qualified, qualified, current[0], name)
        kept = o.get("type_column") == name and o.get("keep")
        if current[1] != type_:
            cur.execute(f"ALTER TABLE {qualified} ALTER COLUMN {col} TYPE {type_}"
                        f" USING {'NULL' if kept else f'CAST({col} AS {type_})'}")
        if kept:  # even when the type reads the same (VARCHAR(4) is VARCHAR), USING may have changed values
            cur.execute(f"UPDATE {qualified} SET {col} = k.{col} FROM {_keyed(cur, moves, cp_id, o, seq, name)} k"
                        f" WHERE {qualified}.rowid = k.__r")
            # Rows kept after the change hold the new type: mode 'all' takes these values for them.
            moves.retyped.setdefault((o["schema"], o["name"]), {})[name] = (o["keep"], seq)
        if current[2] != default:
            cur.execute(f"ALTER TABLE {qualified} ALTER COLUMN {col} "
                        + ("DROP DEFAULT" if default is None else f"SET DEFAULT {default}"))
        if current[3] != nullable and nullable:
            cur.execute(f"ALTER TABLE {qualified} ALTER COLUMN {col} DROP NOT NULL")
        elif current[3] != nullable:  # once the rows written since without it are undone
            moves.after_rows.append({"table": qualified, "column": name, "set": True})
    if o.get("keep"):
        moves.drop_later.append(o["keep"])  # once the rows are undone
