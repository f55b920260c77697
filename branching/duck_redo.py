"""Undoing a DuckDB rollback that brought objects back (a dropped table or view,
a column, a definition): the statements it undid run again, oldest first, in
the undo's own transaction, each through the same checkpoint-taking code the
pipeline uses (so each gets a checkpoint of its own, kept as a `redo` object of
the undo's checkpoint: undoing the undo puts them back). A rollback puts its
objects back first and changes rows after, so its undo reverses those rows
first, in the shape the rollback left, then runs the statements again.

The statements run by name. DuckDB has no roles, so the guard is the name
itself: each rollback records, for every object checkpoint it undid, the
catalog numbers (oids) of what it brought back (`restored` objects); a statement
runs again only if each of its names still resolves to one of them, never to
another object that took the name since. DuckDB numbers catalog objects per
process: after a restart the numbers mean nothing, and the undo is refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import duckdb
import sqlglot
from sqlglot import exp

from branching import common
from branching.checkpoint import CheckpointContext
from branching.duck_moves import Key, Moves
from branching.duck_rebuild import indexes_aside, table_oid
from branching.duck_sql import Cursor, exists, q
from proxy import errors
from proxy.statement import Part
from proxy.trace import new_id

# Checkpoint kinds whose rollback brought objects back; 'rows' and 'rollback' are undone by rows alone.
OBJECT_KINDS = ("table", "view", "column", "definition", "schema")
# Object kinds that are marks only (nothing to restore, no relation named).
MARKS = ("rows", "moves", "restored", "redo", "statement", "touched", "notnull")
BOOT = new_id("boot")  # this process: oids compared only within it

_OIDS = ("SELECT table_oid FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = $1"
         " AND table_name = $2 UNION ALL SELECT view_oid FROM duckdb_views() WHERE database_name = current_database()"
         " AND schema_name = $1 AND view_name = $2 AND NOT internal UNION ALL SELECT index_oid FROM duckdb_indexes()"
         " WHERE database_name = current_database() AND schema_name = $1 AND index_name = $2 UNION ALL"
         " SELECT sequence_oid FROM duckdb_sequences() WHERE database_name = current_database() AND schema_name = $1"
         " AND sequence_name = $2")
_SCHEMA_OID = "SELECT oid FROM duckdb_schemas() WHERE database_name = current_database() AND schema_name = ?"

# (cursor, statement, context) -> the id of the checkpoint taken for it (duck.DuckDBCheckpointer.take_now).
RunAgain = Callable[[Cursor, Part, CheckpointContext], str]


def _oids(cur: Cursor, schema: str, name: str) -> list[int]:
    if name == "*":  # a schema
        return [int(r[0]) for r in cur.execute(_SCHEMA_OID, [schema]).fetchall()]
    return [int(r[0]) for r in cur.execute(_OIDS, [schema, name]).fetchall()]


def restored_marks(cur: Cursor, later: list[tuple[str, list[dict[str, Any]], str | None, int]]) -> list[dict[str, Any]]:
    """After a rollback put objects back: per object checkpoint it undid, the oids of what its objects
    name now. Its undo runs that checkpoint's statement again only on these."""
    marks = []
    for cp_id, objs, _, _ in later:
        names = {(o["schema"], o["name"]) for o in objs if o.get("kind") not in MARKS and "schema" in o}
        if names:
            oids = sorted({oid for s, n in names for oid in _oids(cur, s, n)})
            marks.append({"kind": "restored", "checkpoint": cp_id, "boot": BOOT, "oids": oids})
    return marks


def redo_statements(cur: Cursor, rollback_id: str, context: CheckpointContext | None,
                    classify: Callable[[str], Part] | None, run_again: RunAgain | None,
                    own_marks: list[dict[str, Any]], moves: Moves) -> list[dict[str, Any]]:
    """Run again the destructive statements rollback `rollback_id` undid, oldest first; answers a `redo`
    object for each. `own_marks`: what this undo itself put back before (a later checkpoint's objects in
    mode 'all'), which the statements may name too. `moves`: this undo's (tables it built again)."""
    row = cur.execute("SELECT objects FROM sqlgate.checkpoints WHERE id = ?", [rollback_id]).fetchone()
    objects = json.loads(row[0]) if row else []
    marks = {m["checkpoint"]: m for m in objects if m.get("kind") == "restored"}
    own = {oid for m in own_marks for oid in m["oids"]}
    done: list[dict[str, Any]] = []
    for cp_id, kind, kept, statement in _undone(cur, rollback_id):
        if not kept:
            continue  # it changed nothing (DROP ... IF EXISTS of nothing): nothing to do again
        if statement is None:
            raise common.rollback_failed(
                f"checkpoint {cp_id} ({kind}) was undone by {rollback_id}, and its statement's trace is gone,"
                " so it cannot run again")
        if classify is None or run_again is None:
            raise common.rollback_failed("this server cannot classify statements to run them again")
        part = classify(statement)
        mark = marks.get(cp_id)
        if mark is None or mark.get("boot") != BOOT:
            why = ("sqlgate restarted since that rollback, and DuckDB numbers its objects anew at each start, so"
                   " it cannot tell whether the names still name what the rollback brought back"
                   if mark is not None else "that rollback kept no record of what it brought back")
            raise common.redo_unavailable(rollback_id, [statement], why=why)
        retyped = [o for o in kept if o.get("type_column")]
        if retyped and _rows_changed(cur, objects, retyped[0]["schema"], retyped[0]["name"]):
            raise common.redo_unavailable(rollback_id, [statement], why=(
                "which would compute the column's values again from the ones that rollback put back, while rows"
                " were written to the table after the type change (the rollback undid them): their values in"
                " the new type were not kept"))
        schema = kept[0]["schema"]
        cur.execute(f"SET schema = {q(schema)}")  # its unqualified names, as they resolved when it ran
        try:
            allowed = set(mark["oids"]) | own
            if not _names_the_same_objects(cur, part, allowed | {moves.oid(oid) for oid in allowed}):
                raise common.redo_unavailable(rollback_id, [statement], why=(
                    "its names no longer name the objects this rollback brought back (renamed, dropped or"
                    f" replaced since), so running {statement!r} again could touch something else"))
            ctx = context or CheckpointContext("sqlgate", None, "main", None)  # type: ignore[arg-type]
            try:
                with _indexes_aside(cur, kind, part, kept[0]) as aside:
                    again = run_again(cur, part, ctx)
            except (errors.SqlgateError, duckdb.Error) as exc:
                # The transaction is aborted now (the whole undo rolls back): say why, not "aborted" below.
                message = exc.message if isinstance(exc, errors.SqlgateError) else str(exc).splitlines()[0]
                raise common.redo_unavailable(rollback_id, [statement], why=(
                    f"and running it again failed ({message}): what it names changed since")) from None
        finally:
            try:
                cur.execute("SET schema = 'main'")
            except duckdb.Error:  # aborted by the error being raised: the transaction is rolled back anyway
                pass
        row = cur.execute("SELECT objects FROM sqlgate.checkpoints WHERE id = ?", [again]).fetchone()
        if row is not None:
            taken = json.loads(row[0])
            for o in taken:  # it kept the definition with the indexes aside: they were there
                if o.get("kind") == "definition" and aside:
                    o["indexes"] = sorted({*o.get("indexes", []), *(index for index, _ in aside)})
            cur.execute("UPDATE sqlgate.checkpoints SET objects = ? WHERE id = ?",
                        [json.dumps([*taken, {"kind": "statement", "sql": statement}]), again])
        done.append({"kind": "redo", "checkpoint": again, "statement": f"{statement} (again, checkpoint {again})"})
    return done


def _indexes_aside(cur: Cursor, kind: str, part: Part, kept: dict[str, Any]) -> Any:
    """An ALTER TABLE runs again with its table's indexes aside (made since the rollback, or kept by it):
    DuckDB refuses most while the table has one."""
    if kind != "definition" or part.command != "ALTER TABLE" or not exists(cur, kept["schema"], kept["name"]):
        return nullcontext([])
    return indexes_aside(cur, table_oid(cur, kept["schema"], kept["name"]))


def _undone(cur: Cursor, rollback_id: str) -> list[tuple[str, str, list[dict[str, Any]], str | None]]:
    """(id, kind, objects kept, statement) of the object checkpoints rollback `rollback_id` undid, oldest
    first. A statement run again by an undo keeps its text: that checkpoint's trace is the undo's call."""
    out = []
    for cp_id, kind, cp_objects, traced in cur.execute(
            "SELECT c.id, c.kind, c.objects, t.sql FROM sqlgate.checkpoints c"
            " LEFT JOIN sqlgate.traces t ON t.id = c.trace_id"
            f" WHERE c.undone_by = ? AND c.kind IN ({', '.join(['?'] * len(OBJECT_KINDS))}) ORDER BY c.seq",
            [rollback_id, *OBJECT_KINDS]).fetchall():
        objs = json.loads(cp_objects)
        statement = next((o["sql"] for o in objs if o.get("kind") == "statement"), traced)
        out.append((cp_id, kind, [o for o in objs if o.get("kind") not in MARKS], statement))
    return out


def to_rebuild(cur: Cursor, rollback_id: str, moves: Moves) -> list[Key]:
    """The tables this undo put rows back into (deleted, inserted again) on which a statement it runs again
    makes a unique index (or sets one aside and makes it again). DuckDB checks a unique index made in a
    transaction against the rows that transaction deleted too, at COMMIT ("duplicate key"): each is built
    again first, its rows then only inserted, before any statement runs again (their checkpoints then name
    its rows and oid as they are after that)."""
    found: list[Key] = []
    for _, kind, kept, statement in _undone(cur, rollback_id):
        key = (kept[0]["schema"], kept[0]["name"]) if kept else None
        if (kind == "definition" and statement and key in moves.reinserted and key not in found
                and exists(cur, *key) and _unique(cur, statement, key)):
            found.append(key)
    return found


def _unique(cur: Cursor, statement: str, key: Key) -> bool:
    """Whether running `statement` again makes a unique index on table `key`: it creates one, or it is an
    ALTER TABLE, which sets the table's indexes aside (_indexes_aside) and makes them again."""
    try:
        tree = sqlglot.parse_one(statement, read="duckdb")
    except sqlglot.errors.SqlglotError:
        return False
    if isinstance(tree, exp.Create):
        return bool(tree.args.get("unique"))
    return isinstance(tree, exp.Alter) and bool(cur.execute(
        "SELECT count(*) FROM duckdb_indexes() WHERE table_oid = ? AND is_unique",
        [table_oid(cur, *key)]).fetchone()[0])  # type: ignore[index]


def _rows_changed(cur: Cursor, objects: list[dict[str, Any]], schema: str, name: str) -> bool:
    """Whether the rollback (these are its objects) changed any row of the table."""
    for o in objects:
        if o.get("kind") == "rows" and (o["schema"], o["name"]) == (schema, name):
            for kept in (o.get("old"), o.get("new")):
                if kept and cur.execute(f"SELECT count(*) FROM {kept}").fetchone()[0]:  # type: ignore[index]
                    return True
    return False


def _names_the_same_objects(cur: Cursor, part: Part, allowed: set[int]) -> bool:
    """Each object the statement names resolves (on the current schema) to one of `allowed`."""
    if not part.targets:
        return False
    current = str(cur.execute("SELECT current_schema()").fetchone()[0])  # type: ignore[index]
    for target in part.targets:
        if target.kind == "schema":
            found = _oids(cur, target.name.removesuffix(".*").strip('"'), "*")
        else:
            table = exp.to_table(target.name, dialect="duckdb")
            found = _oids(cur, table.db or current, table.name)
        if not found or not set(found) <= allowed:
            return False
    return True


def redo_ids(objects: list[dict[str, Any]]) -> list[str]:
    """The checkpoints of statements an undo (these are its objects) ran again."""
    return [o["checkpoint"] for o in objects if o.get("kind") == "redo"]
