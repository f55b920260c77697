"""DuckDB checkpoints for changes of definition: a table's columns (RENAME,
DROP DEFAULT / NOT NULL, ALTER TYPE with its old values), an index, sequence
or view definition, and DROP COLUMN (the column's values only)."""

from __future__ import annotations

from typing import Any

import sqlglot
from sqlglot import exp

from branching.duck_rows import rows_object
from branching.duck_sql import ROWID, Cursor, Take, q, split


def keep_definition(take: Take, cur: Cursor, name: str, type_column: str | None) -> None:
    schema, table = split(cur, name)
    row = cur.execute("SELECT table_oid FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?"
                      " AND database_name = current_database()", [schema, table]).fetchone()
    if row is None:
        return  # the statement itself reports the missing table
    cols = cur.execute(
        "SELECT column_name, data_type, column_default, is_nullable FROM duckdb_columns()"
        " WHERE table_oid = ? ORDER BY column_index", [row[0]]).fetchall()
    indexes = cur.execute("SELECT list(index_name ORDER BY index_name) FROM duckdb_indexes() WHERE table_oid = ?",
                          [row[0]]).fetchone()
    obj: dict[str, Any] = {"kind": "definition", "schema": schema, "name": table, "oid": row[0],
                           "columns": [list(c) for c in cols], "indexes": (indexes[0] if indexes else None) or [],
                           "additions": True,  # a restore may take away what the table gained after it
                           "change": definition_change(take.part.sql, cols)}
    if type_column is not None:
        keep = f"sqlgate.{q('typ_' + take.cp_id)}"
        cur.execute(f"CREATE TABLE {keep} AS SELECT rowid AS {ROWID}, {q(type_column)} FROM {q(schema)}.{q(table)}")
        obj.update(keep=keep, type_column=type_column)
    marker = _marker(take, cur, schema, table)
    if type_column is not None and marker.get("appended"):  # their old values by value (duck_restore._keyed)
        obj.update(appended=marker["appended"], watermark=marker["watermark"])
    take.record(cur, "definition", [name], [obj, marker])


def definition_change(text: str, cols: list[Any]) -> dict[str, Any]:
    """What one definition change changes (mode 'statement' undoes only that), from its parse tree:
    {"what": default | notnull | type | column | table | added_column | notnull_set | added_index | other,
    "name": the column (or index) as named before (as the catalog spells it; an added one as the statement
    does), "to": a rename's new name}."""
    try:
        tree = sqlglot.parse_one(text, read="duckdb")
    except sqlglot.errors.SqlglotError:
        return {"what": "other"}
    if isinstance(tree, exp.Create) and str(tree.args.get("kind") or "").upper() == "INDEX":
        index = tree.this
        return {"what": "added_index", "name": index.name if isinstance(index, exp.Index) else None}
    actions = tree.args.get("actions") if isinstance(tree, exp.Alter) else None
    if not actions or len(actions) != 1:
        return {"what": "other"}
    action = actions[0]

    def column(node: Any) -> str | None:
        ident = node.this if isinstance(node, exp.Column) else node
        if not isinstance(ident, exp.Identifier):
            return None
        name = str(ident.this)
        names = [str(c[0]) for c in cols]
        if name in names or ident.args.get("quoted"):
            return name
        return next((n for n in names if n.lower() == name.lower()), name)  # unquoted: any case

    to = [o for o in tree.args.get("options") or [] if isinstance(o, exp.ToTableProperty)]
    if isinstance(action, exp.AlterRename) and to:  # RENAME a TO b (no COLUMN): a column, as DuckDB reads it
        return {"what": "column", "name": column(action.this.this), "to": column(to[0].this.this)}
    if isinstance(action, exp.AlterRename):
        return {"what": "table", "to": action.this.name}
    if isinstance(action, exp.RenameColumn):
        return {"what": "column", "name": column(action.this), "to": column(action.args.get("to"))}
    if isinstance(action, exp.ColumnDef):  # ADD COLUMN: as the statement names it
        ident = action.this
        return {"what": "added_column", "name": str(ident.this) if isinstance(ident, exp.Identifier) else None}
    if isinstance(action, exp.AlterColumn):
        name = column(action.this)
        if action.args.get("allow_null") is False:
            return {"what": "notnull_set", "name": name}
        if action.args.get("dtype") is not None:
            return {"what": "type", "name": name}
        if action.args.get("drop") and action.args.get("allow_null"):
            return {"what": "notnull", "name": name}
        if action.args.get("drop") or action.args.get("default") is not None:  # DROP / SET DEFAULT
            return {"what": "default", "name": name}
    return {"what": "other"}


def _marker(take: Take, cur: Cursor, schema: str, table: str) -> dict[str, Any]:
    """No rows, but the table's watermark: mode 'all' then also removes the rows added since under the
    changed definition (and sets the sequences back), as it does for row checkpoints."""
    marker = {**rows_object(cur, take.catalog, schema, table, take.kept("cpd")), "marker": True}
    cur.execute(f"CREATE TABLE {marker['old']} AS SELECT rowid AS {ROWID}, * FROM {q(schema)}.{q(table)} LIMIT 0")
    return marker


def keep_object(take: Take, cur: Cursor, kind: str, name: str) -> None:
    schema, obj_name = split(cur, name)
    source, column = {"index": ("duckdb_indexes()", "index_name"),
                      "sequence": ("duckdb_sequences()", "sequence_name"),
                      "view": ("duckdb_views()", "view_name")}[kind]
    value = ", last_value" if kind == "sequence" else ", NULL"  # the sequence's DDL names its next value only
    table = ", table_name" if kind == "index" else ", NULL"
    row = cur.execute(f"SELECT sql{value}{table} FROM {source} WHERE schema_name = ? AND {column} = ?"
                      " AND database_name = current_database()", [schema, obj_name]).fetchone()
    objects = [] if row is None else [{"kind": f"{kind}def", "schema": schema, "name": obj_name, "sql": row[0],
                                       "last_value": row[1]}]
    if row is not None and row[2] is not None:  # an index: mode 'all' undoes the rows written to its table since
        objects.append(_marker(take, cur, schema, row[2]))
    take.record(cur, "definition", [name], objects)


def drop_column_runner(take: Take, name: str, column: str) -> Any:
    """Keeps the column's values by row id. A last column without constraints (NOT NULL included) is added
    back in place; any other is put back by rebuilding the table from its kept definition (DuckDB cannot add a column
    between others), so its definition and index definitions are kept too."""

    def keep(cur: Cursor) -> None:
        schema, table = split(cur, name)
        cols = cur.execute(
            "SELECT column_name, data_type, column_default, is_nullable FROM duckdb_columns()"
            " WHERE schema_name = ? AND table_name = ? AND database_name = current_database()"
            " ORDER BY column_index", [schema, table]).fetchall()
        found = [c for c in cols if c[0] == column]
        if not found:
            return  # the statement itself reports the missing column
        table_sql, indexes, constrained = cur.execute(
            "SELECT (SELECT sql FROM duckdb_tables() WHERE schema_name = $1 AND table_name = $2"
            "        AND database_name = current_database()),"
            " (SELECT list(sql) FROM duckdb_indexes() WHERE schema_name = $1 AND table_name = $2"
            "        AND database_name = current_database()),"
            " (SELECT count(*) FROM duckdb_constraints() WHERE schema_name = $1 AND table_name = $2"
            "        AND database_name = current_database() AND constraint_type NOT IN ('NOT NULL')"
            "        AND list_contains(constraint_column_names, $3))", [schema, table, column]).fetchone()  # type: ignore[misc]
        kept = f"sqlgate.{q('col_' + take.cp_id)}"
        cur.execute(f"CREATE TABLE {kept} AS SELECT rowid AS {ROWID}, {q(column)} FROM {q(schema)}.{q(table)}")
        _, data_type, default, nullable = found[0]
        obj = {"kind": "column", "schema": schema, "name": table, "column": column, "type": data_type,
               "default": default, "notnull": not nullable, "keep": kept}
        # NOT NULL too: put back in place, the column would take its values by UPDATE, and DuckDB refuses
        # SET NOT NULL on a table with updates outstanding in the transaction.
        if cols[-1][0] != column or constrained or not nullable:
            obj.update(rebuild=True, table_sql=table_sql, indexes=[i for i in indexes or [] if i],
                       columns=[c[0] for c in cols])
        marker = _marker(take, cur, schema, table)
        if marker.get("appended"):  # rows of this transaction: their values by value (duck_restore._keyed)
            obj.update(appended=marker["appended"], watermark=marker["watermark"])
        take.record(cur, "column", [name], [obj, marker])

    return take.keep_runner(keep)
