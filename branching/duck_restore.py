"""Rollback on DuckDB, objects: bring back what a checkpoint kept of
relations and definitions (tables renamed aside or copied, views, columns,
index / sequence / view definitions, a table's column definitions).

DuckDB alters no table while it has an index (a key's aside): each change
puts the indexes aside and makes them again after it (`indexes_aside`). What
it will not do even then, in the transaction that dropped the index (change
a type, drop a column the index was on), or after an UPDATE (make an index,
set NOT NULL), is done by building the table again (`rebuild`)."""

from __future__ import annotations

import json
from typing import Any

from branching import common
from branching.duck_moves import Moves, Space, rebuilt_oid
from branching.duck_rebuild import column_defs, drop_columns, indexes_aside, rebuild, table_indexes, table_of
from branching.duck_schema import copy_back, restore_schema
from branching.duck_sql import NAME_TAKEN, ROWID, Cursor, columns, count, exists, q, relation_exists


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
        if mode == "statement":
            check_rows_kept_by_id(cur, cp_id, o, moves, seq, o["column"])
        restore_column(cur, cp_id, o, moves, seq)
        return f"{here}.{o['column']}"
    elif kind == "definition":
        restore_definition(cur, o, moves, cp_id, seq, mode)
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


def check_rows_kept_by_id(cur: Cursor, cp_id: str, o: dict[str, Any], moves: Moves, seq: int, column: str,
                          retyped: tuple[str, str] | None = None) -> None:
    """Mode 'statement' puts a column's kept values back by row id, keeping the rows written since. When
    rows whose values were kept are gone while rows without a kept value are there, DuckDB may have given
    rows new ids (an UPDATE of an indexed column deletes and re-inserts them): which value is whose is not
    known, so a conflict, never values lost. (Rows the checkpoint's own transaction appended are matched by
    value, not id: not counted.) `retyped` (old type, new type): a type change, whose undo casts the values
    of rows without a kept one back; only kept values that cast would not give back exactly count."""
    table = f"{o['schema']}.{o['name']}"
    if not relation_exists(cur, o["schema"], o["name"]):  # renamed since: its row ids are followed by name
        raise common.conflicts_error(cp_id, [{"table": table, "column": column, "conflict":
                                              "the table was renamed or dropped since: undo that first"}])
    if o.get("appended"):
        return
    live = Space(cur, moves, cp_id, o["schema"], o["name"], seq).live()
    lossy = ""
    if retyped is not None:
        kept = f"k.{q(o['type_column'])}"
        lossy = f" AND TRY_CAST(TRY_CAST({kept} AS {retyped[1]}) AS {retyped[0]}) IS DISTINCT FROM {kept}"
    [(gone, unkept)] = cur.execute(
        f"WITH s AS ({live}) SELECT"
        f" (SELECT count(*) FROM {o['keep']} k WHERE NOT EXISTS (SELECT 1 FROM s WHERE s.__k = k.{ROWID}){lossy}),"
        f" (SELECT count(*) FROM s WHERE s.__k IS NULL"
        f"  OR NOT EXISTS (SELECT 1 FROM {o['keep']} k WHERE k.{ROWID} = s.__k))").fetchall()
    if gone and unkept:
        raise common.conflicts_error(cp_id, [{
            "table": table, "column": column,
            "conflict": f"{gone} row(s) it kept values of are gone and {unkept} row(s) without one are there: rows"
                        " were deleted and added since, or got new row ids (DuckDB re-inserts the rows an UPDATE"
                        " of an indexed column changes), so which value is whose is not known"}])


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
    (DuckDB cannot add a column between others)."""
    schema, name, column = o["schema"], o["name"], o["column"]
    if columns(cur, schema, name) != [c for c in o["columns"] if c != column]:
        raise common.conflicts_error(cp_id, [{"table": f"{schema}.{name}", "conflict": "its columns changed since"}])
    # A row added since has no kept value: it gets the column's default, as ADD COLUMN would give it.
    value = (f"k.{q(column)}" if o.get("default") is None
             else f"CASE WHEN k.__r IS NULL THEN {o['default']} ELSE k.{q(column)} END AS {q(column)}")
    select = ", ".join(value if c == column else f"t.{q(c)}" for c in o["columns"])
    # Those kept at the drop that are not there now too (mode 'all' took a later DROP INDEX back already).
    rebuild(cur, moves, schema, name, select, f" LEFT JOIN {_keyed(cur, moves, cp_id, o, seq, column)} k"
            " ON t.rowid = k.__r", o["table_sql"], indexes=o.get("indexes", []))


def _retype(cur: Cursor, moves: Moves, schema: str, name: str, column: str, type_: str, keyed: str | None,
            kept: str) -> None:
    """Column `column` back to `type_`: rows with a kept value (`keyed`: __r, `kept`) take it, the others
    their value cast. The table is built again: ALTER ... USING cannot read kept values; an UPDATE after it
    stops DuckDB from making an index or setting NOT NULL in the same transaction (and the NULLs it would
    start from break a NOT NULL); and DuckDB will not change the type of a column an index is on, even one
    dropped in the same transaction."""
    col = q(column)
    value = f"CAST(t.{col} AS {type_})"
    if keyed is not None:
        value = f"CASE WHEN k.__r IS NULL THEN TRY_CAST(t.{col} AS {type_}) ELSE k.{q(kept)} END"
    select = ", ".join(f"{value} AS {col}" if c == column else f"t.{q(c)}" for c in columns(cur, schema, name))
    join = f" LEFT JOIN {keyed} k ON t.rowid = k.__r" if keyed is not None else ""
    rebuild(cur, moves, schema, name, select, join, types={column: type_})


def restore_definition(cur: Cursor, o: dict[str, Any], moves: Moves, cp_id: str, seq: int,
                       mode: str = "all") -> None:
    oid = rebuilt_oid(cur, moves, o["oid"], seq)  # a DROP COLUMN undone since rebuilt it: a new oid
    row = table_of(cur, oid)
    if row is None:
        raise common.rollback_failed(f"table {o['schema']}.{o['name']} is gone")
    if mode == "statement" and (o.get("change") or {}).get("what", "other") != "other":  # else: as kept, whole
        _undo_change(cur, o, moves, cp_id, seq, oid, row)
        return
    qualified = f"{q(o['schema'])}.{q(o['name'])}"
    if row[1] != o["name"]:
        with indexes_aside(cur, oid):
            cur.execute(f"ALTER TABLE {q(row[0])}.{q(row[1])} RENAME TO {q(o['name'])}")
        moves.follow_rename(f"{q(row[0])}.{q(row[1])}", qualified)
    now = column_defs(cur, oid)
    # Before the changes below: an index made since is then not made again around them.
    _take_away_additions(cur, o, oid, now, moves)
    with indexes_aside(cur, moves.oid(oid), moves):
        for (name, type_, default, nullable), current in zip(o["columns"], now, strict=False):
            col = q(name)
            if current[0] != name:
                cur.execute(f"ALTER TABLE {qualified} RENAME COLUMN {q(current[0])} TO {col}")
                moves.renamed.add((o["schema"], o["name"]))
                moves.follow_rename(qualified, qualified, current[0], name)
            kept = o.get("type_column") == name and o.get("keep")
            # Kept values even when the type reads the same (VARCHAR(4) is VARCHAR): USING may have changed them.
            if current[1] != type_ or kept:
                keyed = _keyed(cur, moves, cp_id, o, seq, name) if kept else None
                _retype(cur, moves, o["schema"], o["name"], name, type_, keyed, name)
            if kept:  # rows kept after the change hold the new type: mode 'all' takes these values for them
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


def _take_away_additions(cur: Cursor, o: dict[str, Any], oid: int, now: list[tuple[Any, ...]],
                         moves: Moves) -> None:
    """What the table gained after its definition was kept: indexes (CREATE INDEX), then columns (ADD
    COLUMN appends them; one whose name the kept definition has stays). Definitions kept before additions
    took checkpoints (an older sqlgate) leave the table's additions alone: nobody recorded them."""
    if not o.get("additions"):
        return
    for index, _ in table_indexes(cur, oid):
        if index not in o["indexes"]:
            cur.execute(f"DROP INDEX {q(o['schema'])}.{q(index)}")
            moves.unindexed.add(oid)
    kept = {c[0] for c in o["columns"]}
    gone = [name for name, *_ in now[len(o["columns"]):] if name not in kept]
    # An index dropped above may have been on one of them: DuckDB would refuse to drop it then.
    drop_columns(cur, moves, oid, gone, rebuild_anyway=oid in moves.unindexed)
    moves.taken_away.setdefault((o["schema"], o["name"]), set()).update(gone)


def _undo_change(cur: Cursor, o: dict[str, Any], moves: Moves, cp_id: str, seq: int, oid: int,
                 row: tuple[Any, ...]) -> None:
    """Mode 'statement': only what the statement changed (o['change'], from its parse tree) is reverted,
    not the whole kept definition (later changes stay). Where a later change touched the same thing, a
    conflict: nothing changed."""
    change = o["change"]
    what = change["what"]
    table = f"{o['schema']}.{o['name']}"
    now_qualified = f"{q(row[0])}.{q(row[1])}"

    def conflict(why: str, **at: Any) -> Exception:
        return common.conflicts_error(cp_id, [{"table": table, **at, "conflict": why}])

    if what == "table":
        if row[1] != o["name"]:
            if row[1] != change["to"]:
                raise conflict("the table was renamed again since")
            if relation_exists(cur, o["schema"], o["name"]):
                raise conflict(NAME_TAKEN)
            with indexes_aside(cur, oid, moves):
                cur.execute(f"ALTER TABLE {now_qualified} RENAME TO {q(o['name'])}")
            moves.follow_rename(now_qualified, f"{q(o['schema'])}.{q(o['name'])}")
        return
    if what in ("added_column", "added_index"):
        _undo_addition(cur, o, moves, seq, what, change.get("name"), oid, now_qualified, conflict)
        return
    kept = next((c for c in o["columns"] if c[0] == change.get("name")), None)
    if kept is None:
        raise conflict("sqlgate cannot undo this change of the definition alone")
    now = {c[0]: c for c in column_defs(cur, oid)}
    name = _name_since(cur, o, seq, change["to"] if what == "column" else kept[0])
    if name not in now:
        raise conflict("the column was renamed again or dropped since", column=kept[0])
    col = q(name)
    _, type_, default, nullable = now[name]
    if what == "column":
        if kept[0] in now:
            raise conflict("a column with this name was added since", column=kept[0])
        with indexes_aside(cur, oid, moves):
            cur.execute(f"ALTER TABLE {now_qualified} RENAME COLUMN {col} TO {q(kept[0])}")
        moves.follow_rename(now_qualified, now_qualified, name, kept[0])
    elif what == "default" and default != kept[2]:
        if default != _right_after(cur, o, seq, name, 2, default):
            raise conflict("its default was set again since", column=name)
        cur.execute(f"ALTER TABLE {now_qualified} ALTER COLUMN {col} "
                    + ("DROP DEFAULT" if kept[2] is None else f"SET DEFAULT {kept[2]}"))
    elif what == "notnull" and not kept[3] and nullable:  # once the rows written since are checked
        moves.after_rows.append({"table": now_qualified, "column": name, "set": True})
    elif what == "notnull_set" and kept[3] and not nullable:
        with indexes_aside(cur, oid, moves):
            cur.execute(f"ALTER TABLE {now_qualified} ALTER COLUMN {col} DROP NOT NULL")
    elif what == "type":
        _undo_type(cur, o, moves, cp_id, seq, row, name, kept[1], type_, conflict)
    if o.get("keep"):
        moves.drop_later.append(o["keep"])


def _undo_addition(cur: Cursor, o: dict[str, Any], moves: Moves, seq: int, what: str, name: str | None,
                   oid: int, qualified: str, conflict: Any) -> None:
    """CREATE INDEX: the index goes. ADD COLUMN: the column goes, unless rows were written since (rows
    added after the statement, or changed by a later UPDATE: they may hold values in it) or a later
    checkpoint kept the table with it (a DELETE, a change of definition): a conflict.
    IF NOT EXISTS that added nothing: nothing."""
    if name is None:
        raise conflict("sqlgate cannot undo this change of the definition alone")
    if what == "added_index":
        if name not in o.get("indexes", []) and name in {i for i, _ in table_indexes(cur, oid)}:
            cur.execute(f"DROP INDEX {q(o['schema'])}.{q(name)}")
        return
    if name in {c[0] for c in o["columns"]}:
        return
    if name not in {c[0] for c in column_defs(cur, oid)}:
        raise conflict("the column was renamed or dropped since", column=name)
    mine = [(at, x) for (at, objects) in cur.execute(
                "SELECT seq, objects FROM sqlgate.checkpoints WHERE seq >= ? AND undone_by IS NULL", [seq]).fetchall()
            for x in json.loads(objects) if (x.get("schema"), x.get("name")) == (o["schema"], o["name"])]
    marker = next((x for at, x in mine if at == seq and x.get("marker")), None)
    appended = marker is not None and cur.execute(
        f"SELECT 1 FROM {qualified} WHERE rowid > ? LIMIT 1", [marker["watermark"]]).fetchone()
    later = [x for at, x in mine if at > seq]
    if appended or any(x.get("new") and count(cur, f"SELECT count(*) FROM {x['new']}") for x in later):
        raise conflict("rows were written since; they may hold values in the column", column=name)
    if later:  # a DELETE or change of definition since: what it kept has the column
        raise conflict("the table was changed again since; undo that first", column=name)
    drop_columns(cur, moves, oid, [name])


def _later_definitions(cur: Cursor, o: dict[str, Any], seq: int) -> list[dict[str, Any]]:
    """The definitions of the same table kept by later checkpoints not undone, oldest first."""
    return [x for (objects,) in cur.execute(
                "SELECT objects FROM sqlgate.checkpoints WHERE seq > ? AND undone_by IS NULL"
                " AND kind = 'definition' ORDER BY seq", [seq]).fetchall()
            for x in json.loads(objects)
            if x.get("kind") == "definition" and (x["schema"], x["name"]) == (o["schema"], o["name"])]


def _right_after(cur: Cursor, o: dict[str, Any], seq: int, name: str, field: int, now: Any) -> Any:
    """Field `field` (1 type, 2 default) of column `name` right after the statement: as the table's next
    definition checkpoint kept it (type and default changes always take one), else as it is `now`."""
    following = _later_definitions(cur, o, seq)[:1]
    return next((c[field] for c in following[0]["columns"] if c[0] == name), now) if following else now


def _name_since(cur: Cursor, o: dict[str, Any], seq: int, name: str) -> str:
    """What column `name` of the table is called now, after the later column renames not undone."""
    for x in _later_definitions(cur, o, seq):
        change = x.get("change") or {}
        if change.get("what") == "column" and change.get("name") == name:
            name = change["to"]
    return name


def _undo_type(cur: Cursor, o: dict[str, Any], moves: Moves, cp_id: str, seq: int, row: tuple[str, str],
               name: str, old_type: str, type_: str, conflict: Any) -> None:
    """The old type back: rows kept at the change get their kept values; rows written since (new row ids)
    their values cast back, which must give them exactly (else a conflict)."""
    if _right_after(cur, o, seq, name, 1, type_) != type_:
        raise conflict("its type was changed again since", column=name)
    if o.get("keep"):
        check_rows_kept_by_id(cur, cp_id, o, moves, seq, name, (old_type, type_))
    col = q(name)
    qualified = f"{q(row[0])}.{q(row[1])}"
    keyed = _keyed(cur, moves, cp_id, o, seq, o["type_column"]) if o.get("keep") else None
    others = f"{qualified}.rowid NOT IN (SELECT __r FROM {keyed})" if keyed else "true"
    [(bad,)] = cur.execute(
        f"SELECT count(*) FROM {qualified} WHERE {others} AND {col} IS NOT NULL AND"
        f" TRY_CAST(TRY_CAST({col} AS {old_type}) AS {type_}) IS DISTINCT FROM {col}").fetchall()
    if bad:
        raise conflict(f"{bad} row(s) written since the type change hold a value that does not fit {old_type}"
                       " exactly", column=name)
    _retype(cur, moves, row[0], row[1], name, old_type, keyed, o.get("type_column", name))
