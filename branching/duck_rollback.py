"""Rollback on DuckDB, the whole of one: which checkpoints it undoes (mode
'all': this one and every later one on the tables it touched), objects
first (latest first), then rows, then (undoing a rollback) the statements
that rollback undid, run again (duck_redo), then the traces it undid and its
own checkpoint, all in the caller's transaction."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import duckdb

from branching import common
from branching.checkpoint import CheckpointContext
from branching.duck_catalog import Catalog
from branching.duck_moves import Moves
from branching.duck_rebuild import indexes_aside, rebuild, table_oid
from branching.duck_redo import MARKS, OBJECT_KINDS, RunAgain, redo_ids, redo_statements, restored_marks, to_rebuild
from branching.duck_restore import restore_object
from branching.duck_sql import Cursor, q, record, split
from branching.duck_undo import undo_all, undo_statement
from proxy import errors
from proxy.statement import Part
from proxy.trace import new_id

Pieces = list[tuple[str, list[dict[str, Any]], str | None, int]]  # (checkpoint id, objects, trace id, seq)


def _keys(objs: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(o["schema"], o["name"]) for o in objs if "schema" in o}


def rollback(cur: Cursor, retention_days: float, cp_id: str, mode: str, dry_run: bool,
             context: CheckpointContext | None, catalog: Catalog,
             classify: Callable[[str], Part] | None = None,
             run_again: RunAgain | None = None) -> common.RollbackOutcome:
    row = cur.execute("SELECT id, trace_id, kind, tables, objects, seq, undone_by, created_at"
                      " FROM sqlgate.checkpoints WHERE id = ? AND expires_at > now()", [cp_id]).fetchone()
    if row is None:
        raise common.not_found(cp_id)
    _, trace_id, kind, tables, objects, seq, undone_by, created_at = row
    if undone_by:
        raise common.already_undone(cp_id, undone_by)
    tables = json.loads(tables)
    objects = json.loads(objects)
    outcome = common.RollbackOutcome(cp_id, mode, dry_run, list(tables))
    later = _later(cur, cp_id, objects, trace_id, int(seq), mode)
    touched = set().union(*(_keys(objs) for _, objs, _, _ in later))
    for other_id, _, _, _ in later:  # crossing a rollback that brought back what was dropped before
        if other_id != cp_id:       # this checkpoint would need that statement run again in its middle
            _refuse_crossing(cur, cp_id, other_id, int(seq))
    new_cp = new_id("cp")
    # Numbered now: the statements an undo runs again (step 3) come after it.
    new_seq = catalog.next_seq(cur)
    moves = Moves(new_cp)
    # 1. Relations renamed aside come back; dropped views are created again (latest first).
    for _, objs, _, piece_seq in later:
        for o in reversed(objs):
            if o["kind"] in MARKS:
                continue
            catalog.changed()
            try:
                restored = restore_object(cur, cp_id, mode, o, moves, piece_seq)
            except REFUSED as exc:
                raise refused(cp_id, f"{o.get('schema')}.{o.get('name')}", exc) from None
            if restored is not None:
                outcome.objects_restored.append(restored)
    # What each undone object checkpoint names now: undoing this rollback runs its statement on these only.
    marks = restored_marks(cur, later)
    # Undoing a rollback: the NOT NULL it set after its rows is dropped before they are reversed (and what
    # it dropped before them is set again after).
    not_null = _reverse_not_null(cur, objects, moves) if kind == "rollback" else []
    # 2. Rows (row ids mapped back through every rebuild since, this rollback's too).
    new_objects = _undo_rows(cur, objects, later, touched, mode, new_cp, outcome, catalog, moves, int(seq))
    # 2b. NOT NULL comes back once the rows written without it are undone (mode 'statement' keeps them).
    for change in moves.after_rows:
        try:
            _not_null(cur, change)
        except duckdb.ConstraintException:
            raise common.conflicts_error(cp_id, [{"table": change["table"], "column": change["column"],
                                                  "conflict": "rows written since hold NULL in it"}]) from None
        except REFUSED as exc:
            raise refused(cp_id, change["table"], exc) from None
        not_null.append({"kind": "notnull", "when": "after", **change})
    # Undoing a rollback: a table whose rows went back gets a unique index again in step 3: built again first.
    for schema, name in to_rebuild(cur, cp_id, moves) if kind == "rollback" else []:
        try:
            rebuild(cur, moves, schema, name, "t.*")
        except REFUSED as exc:
            raise refused(cp_id, f"{schema}.{name}", exc) from None
    new_objects += moves.objects(cur)
    # 3. Undoing a rollback: the statements whose objects it brought back run again (oldest first), each
    # with a checkpoint of its own, once its rows are reversed (it changed them after bringing them back).
    redone: list[dict[str, Any]] = []
    if kind == "rollback":  # a dry run too: it checks they can
        catalog.changed()
        redone = redo_statements(cur, cp_id, context, classify, run_again, marks, moves)
        outcome.objects_restored += [r["statement"] for r in redone]
    undone = [c for c, _, _, _ in later]
    outcome.undone_checkpoints = undone
    outcome.undone_traces = _undone_traces(cur, later, tables, touched, mode, created_at, trace_id)
    record(cur, retention_days, new_cp, context, "rollback", list(tables), new_objects + marks + not_null + redone,
           new_seq, undoes=cp_id)
    cur.execute(f"UPDATE sqlgate.checkpoints SET undone_by = ? WHERE id IN ({', '.join(['?'] * len(undone))})",
                [new_cp, *undone])
    outcome.new_checkpoint = None if dry_run else new_cp
    return outcome


def _not_null(cur: Cursor, change: dict[str, Any]) -> None:
    with indexes_aside(cur, table_oid(cur, *split(cur, change["table"]))):
        cur.execute(f"ALTER TABLE {change['table']} ALTER COLUMN {q(change['column'])}"
                    f" {'SET' if change['set'] else 'DROP'} NOT NULL")


# What DuckDB may still refuse in putting a definition back (an index a change makes again that the rows
# no longer fit or whose column is renamed, a column an index was on, a table a foreign key references).
REFUSED = (duckdb.ConstraintException, duckdb.DependencyException, duckdb.CatalogException, duckdb.BinderException,
           duckdb.TransactionException)


def refused(cp_id: str, table: str, exc: duckdb.Error) -> errors.SqlgateError:
    why = str(exc).strip().splitlines()[0]
    error = errors.SqlgateError(
        "branching.rollback_conflict", "40001",
        f"cannot roll back checkpoint {cp_id}: DuckDB refused to put {table} back ({why}); nothing was changed",
        "DuckDB alters no table while it has an index: the rollback sets the table's indexes aside around each"
        " change and makes them again after; it refuses whole when DuckDB still refuses (an index the rows"
        " no longer fit or that names a renamed column, a table a foreign key references).",
        f"drop the index (or change the rows) named above, then POST /rollback with {{\"checkpoint\": \"{cp_id}\"}}"
        ' again; or undo the later statements one at a time ("mode": "statement", latest first)', status=409)
    error.extra["conflicts"] = [{"table": table, "conflict": why}]
    return error


def _reverse_not_null(cur: Cursor, objects: list[dict[str, Any]], moves: Moves) -> list[dict[str, Any]]:
    """The NOT NULL changes rollback `objects` made after its rows, undone now (before its rows are
    reversed); those it made before its rows are queued to be undone after (moves.after_rows)."""
    done = []
    for o in reversed(objects):
        if o.get("kind") != "notnull":
            continue
        change = {"table": o["table"], "column": o["column"], "set": not o["set"]}
        if o["when"] == "after":
            _not_null(cur, change)
            done.append({"kind": "notnull", "when": "before", **change})
        else:
            moves.after_rows.append(change)
    return done


def _later(cur: Cursor, cp_id: str, objects: list[dict[str, Any]], trace_id: str | None, seq: int,
           mode: str) -> Pieces:
    """What the rollback undoes, latest first. Mode 'all': this checkpoint and every later one that shares
    a table with it (transitively); 'statement': this one. Either way with the checkpoints of statements
    an undo among them ran again (undoing that undo undoes them: they came after it)."""
    if mode != "all":
        pieces: Pieces = [(cp_id, objects, trace_id, seq)]
        ids = redo_ids(objects)
        if ids:
            marks = ", ".join(["?"] * len(ids))
            for other_id, other_objects, other_trace, other_seq in cur.execute(
                    f"SELECT id, objects, trace_id, seq FROM sqlgate.checkpoints WHERE id IN ({marks})"
                    " AND undone_by IS NULL", ids).fetchall():
                pieces.append((other_id, json.loads(other_objects), other_trace, int(other_seq)))
        return sorted(pieces, key=lambda p: -p[3])
    candidates = [(other_id, json.loads(other_objects), other_trace, int(other_seq))
                  for other_id, other_objects, other_trace, other_seq in cur.execute(
                      "SELECT id, objects, trace_id, seq FROM sqlgate.checkpoints WHERE seq >= ? AND undone_by IS NULL"
                      " ORDER BY seq DESC", [seq]).fetchall()]
    included = {cp_id}
    touched = _keys(objects)
    redone = set(redo_ids(objects))
    # A statement an undo ran again goes with that undo (which then is crossed: _refuse_crossing).
    undo_of = {child: other_id for other_id, objs, _, _ in candidates for child in redo_ids(objs)}
    grown = True
    while grown:
        grown = False
        for other_id, objs, _, _ in candidates:
            if other_id not in included and (other_id in redone or _keys(objs) & touched
                                             or any(undo_of.get(i) == other_id for i in included)):
                included.add(other_id)
                touched |= _keys(objs)
                redone |= set(redo_ids(objs))
                grown = True
    pieces = [p for p in candidates if p[0] in included]
    _refuse_renamed(cp_id, pieces, [p for p in candidates if p[0] not in included])
    return pieces


def _refuse_renamed(cp_id: str, pieces: Pieces, others: Pieces) -> None:
    """A checkpoint names a table as it was named then: a later one of a table that a RENAME TO among
    `pieces` renamed is not among them. Going back past it is exact when the older kept definition puts
    back whole what it changed (a column's default, NOT NULL or name); else it would lose what it kept
    (rows, an index the restore takes away): refused, with the order that works."""
    renamed = {(o["schema"], o["change"]["to"]) for _, objs, _, _ in pieces for o in objs
               if (o.get("change") or {}).get("what") == "table"}
    after = [other_id for other_id, objs, _, _ in others if _keys(objs) & renamed and any(
        not o.get("marker") and (o.get("change") or {}).get("what") not in _PUT_BACK_WHOLE for o in objs)]
    if after:
        tables = ", ".join(sorted(f"{s}.{n}" for s, n in renamed))
        raise errors.SqlgateError(
            "branching.rollback_conflict", "40001",
            f"cannot roll back checkpoint {cp_id} in mode 'all': it renames {tables} back, and later checkpoints"
            f" of that table under its new name ({', '.join(after)}) would stay; nothing was changed",
            "A checkpoint names a table as it was named when it was taken.",
            f'POST /rollback with "mode": "statement" for each of {", ".join(after)}, latest first, then roll back'
            f" {cp_id} again", status=409)


_PUT_BACK_WHOLE = ("default", "notnull", "notnull_set", "column", "table")


def _refuse_crossing(cur: Cursor, cp_id: str, rollback_id: str, before_seq: int) -> None:
    """A later rollback brought back what a statement older than `cp_id` dropped or changed: going back to
    before `cp_id` means running that statement again in the middle of this rollback, refused with the
    order that works (as on PostgreSQL). What newer statements dropped, going back undoes anyway."""
    again = cur.execute(
        "SELECT coalesce(t.sql, c.id) FROM sqlgate.checkpoints c LEFT JOIN sqlgate.traces t ON t.id = c.trace_id"
        f" WHERE c.undone_by = ? AND c.kind IN ({', '.join(['?'] * len(OBJECT_KINDS))}) AND c.seq < ?"
        " ORDER BY c.seq", [rollback_id, *OBJECT_KINDS, before_seq]).fetchall()
    if again:
        raise common.redo_unavailable(rollback_id, [r[0] for r in again], why=(
            f"which rolling back {cp_id} in mode 'all' would have to do in its middle: undo rollback"
            f" {rollback_id} first, then roll back {cp_id}"))
    # An undo of a rollback that brought objects back ran their statements again: undoing that undo puts
    # them back, and going further back than that rollback would then mean running them once more.
    again = cur.execute(
        "SELECT coalesce(t.sql, c.id) FROM sqlgate.checkpoints r JOIN sqlgate.checkpoints c ON c.undone_by = r.id"
        " LEFT JOIN sqlgate.traces t ON t.id = c.trace_id WHERE r.undone_by = ? AND r.kind = 'rollback'"
        f" AND c.kind IN ({', '.join(['?'] * len(OBJECT_KINDS))}) ORDER BY c.seq",
        [rollback_id, *OBJECT_KINDS]).fetchall()
    if again:
        raise common.redo_unavailable(rollback_id, [r[0] for r in again], why=(
            f"which rolling back {cp_id} in mode 'all' would have to do in its middle, after undoing"
            f" {rollback_id} (an undo that ran them again); roll back the checkpoints after {cp_id} one at a"
            " time in mode 'statement', latest first"))


def _undo_rows(cur: Cursor, objects: list[dict[str, Any]], later: Pieces, touched: set[tuple[str, str]], mode: str,
               new_cp: str, outcome: common.RollbackOutcome, catalog: Catalog, moves: Moves,
               seq: int) -> list[dict[str, Any]]:
    conflicts: list[dict[str, Any]] = []
    new_objects: list[dict[str, Any]] = []
    n = 0
    if mode == "statement":
        for o in objects:
            if o["kind"] == "rows" and o.get("marker"):  # a watermark only: no rows, but the table is touched
                new_objects.append({"kind": "touched", "schema": o["schema"], "name": o["name"]})
            elif o["kind"] == "rows":
                new_objects.append(undo_statement(cur, o, new_cp, n, outcome, conflicts, moves))
                n += 1
    else:
        for schema, name in sorted(touched):
            pieces = [(s, o) for _, objs, _, s in reversed(later) for o in objs
                      if o["kind"] == "rows" and (o["schema"], o["name"]) == (schema, name)]
            if pieces:
                new_objects.append(undo_all(cur, schema, name, pieces, new_cp, n, outcome, catalog, moves))
                n += 1
    if conflicts:
        raise common.conflicts_error(outcome.checkpoint, conflicts)
    return new_objects


def _undone_traces(cur: Cursor, later: Pieces, tables: list[str], touched: set[tuple[str, str]], mode: str,
                   created_at: Any, trace_id: str | None) -> list[str]:
    """The later statements this rollback undid (mode 'all': every successful write since, on those tables)."""
    traces = {t for _, _, t, _ in later if t}
    if mode == "all":
        names = set(tables) | {f"{s}.{n_}" for s, n_ in touched} | {n_ for _, n_ in touched}
        for tid, ttables in cur.execute(
                "SELECT id, tables FROM sqlgate.traces WHERE \"at\" > ? AND outcome = 'ok'"
                " AND class IN ('write', 'destructive_dml', 'destructive_ddl', 'safe_ddl')",
                [created_at]).fetchall():
            if set(json.loads(ttables)) & names:
                traces.add(tid)
    traces.discard(trace_id)
    return sorted(traces)
