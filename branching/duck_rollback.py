"""Rollback on DuckDB, the whole of one: which checkpoints it undoes (mode
'all': this one and every later one on the tables it touched), objects
first (latest first), then rows, then the traces it undid and its own
checkpoint, all in the caller's transaction."""

from __future__ import annotations

import json
from typing import Any

from branching import common
from branching.checkpoint import CheckpointContext
from branching.duck_catalog import Catalog
from branching.duck_moves import Moves
from branching.duck_restore import restore_object
from branching.duck_sql import Cursor, record
from branching.duck_undo import undo_all, undo_statement
from proxy.trace import new_id

Pieces = list[tuple[str, list[dict[str, Any]], str | None, int]]  # (checkpoint id, objects, trace id, seq)


def _keys(objs: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(o["schema"], o["name"]) for o in objs if "schema" in o}


def rollback(cur: Cursor, retention_days: float, cp_id: str, mode: str, dry_run: bool,
             context: CheckpointContext | None, catalog: Catalog) -> common.RollbackOutcome:
    row = cur.execute("SELECT id, trace_id, kind, tables, objects, seq, undone_by, created_at"
                      " FROM sqlgate.checkpoints WHERE id = ? AND expires_at > now()", [cp_id]).fetchone()
    if row is None:
        raise common.not_found(cp_id)
    _, trace_id, kind, tables, objects, seq, undone_by, created_at = row
    if undone_by:
        raise common.already_undone(cp_id, undone_by)
    tables = json.loads(tables)
    objects = json.loads(objects)
    if kind == "rollback":
        _refuse_redo(cur, cp_id)
    outcome = common.RollbackOutcome(cp_id, mode, dry_run, list(tables))
    touched = _keys(objects)
    later: Pieces = []
    if mode == "all":
        for other_id, other_objects, other_trace, other_seq in cur.execute(
                "SELECT id, objects, trace_id, seq FROM sqlgate.checkpoints WHERE seq >= ? AND undone_by IS NULL"
                " ORDER BY seq DESC", [seq]).fetchall():
            objs = json.loads(other_objects)
            if other_id == cp_id or _keys(objs) & touched:
                later.append((other_id, objs, other_trace, int(other_seq)))
                touched |= _keys(objs)
        for other_id, _, _, _ in later:  # crossing a rollback that brought back what was dropped before
            if other_id != cp_id:       # this checkpoint would need that statement run again in its middle
                _refuse_redo(cur, other_id, before_seq=int(seq))
    else:
        later = [(cp_id, objects, trace_id, int(seq))]
    new_cp = new_id("cp")
    moves = Moves(new_cp)
    # 1. Relations renamed aside come back; dropped views are created again (latest first).
    for _, objs, _, piece_seq in later:
        for o in reversed(objs):
            if o["kind"] not in ("rows", "moves"):
                catalog.changed()
            restored = restore_object(cur, cp_id, mode, o, moves, piece_seq)
            if restored is not None:
                outcome.objects_restored.append(restored)
    # 2. Rows (row ids mapped back through every rebuild since, this rollback's too).
    new_objects = _undo_rows(cur, objects, later, touched, mode, new_cp, outcome, catalog, moves, int(seq))
    new_objects += moves.objects(cur)
    undone = [c for c, _, _, _ in later]
    outcome.undone_checkpoints = undone
    outcome.undone_traces = _undone_traces(cur, later, tables, touched, mode, created_at, trace_id)
    record(cur, retention_days, new_cp, context, "rollback", list(tables), new_objects, catalog.next_seq(cur),
           undoes=cp_id)
    cur.execute(f"UPDATE sqlgate.checkpoints SET undone_by = ? WHERE id IN ({', '.join(['?'] * len(undone))})",
                [new_cp, *undone])
    outcome.new_checkpoint = None if dry_run else new_cp
    return outcome


def _refuse_redo(cur: Cursor, rollback_id: str, before_seq: int | None = None) -> None:
    """A rollback that brought objects back is undone by running their statements again (as on
    PostgreSQL); DuckDB's rollback cannot yet, so it says so rather than undo only the rows.
    `before_seq`: only statements older than that checkpoint count (what a mode-'all' rollback to it
    crosses; newer ones it undoes anyway)."""
    again = cur.execute(
        "SELECT coalesce(t.sql, c.id) FROM sqlgate.checkpoints c LEFT JOIN sqlgate.traces t ON t.id = c.trace_id"
        " WHERE c.undone_by = ? AND c.kind NOT IN ('rows', 'rollback') AND c.seq < coalesce(?, c.seq + 1)"
        " ORDER BY c.seq", [rollback_id, before_seq]).fetchall()
    if again:
        raise common.redo_unavailable(rollback_id, [r[0] for r in again])


def _undo_rows(cur: Cursor, objects: list[dict[str, Any]], later: Pieces, touched: set[tuple[str, str]], mode: str,
               new_cp: str, outcome: common.RollbackOutcome, catalog: Catalog, moves: Moves,
               seq: int) -> list[dict[str, Any]]:
    conflicts: list[dict[str, Any]] = []
    new_objects: list[dict[str, Any]] = []
    n = 0
    if mode == "statement":
        for o in objects:
            if o["kind"] == "rows":
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
