"""One PostgreSQL rollback, inside the caller's transaction: which checkpoints it
undoes (mode 'all': every later one on the same relations; 'statement': just
this one), the kept objects put back (latest first), the row deltas reversed,
owned sequences reset, and the rollback recorded as a checkpoint of its own."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from psycopg import sql

from branching import common, pg_redo, pg_restore, pg_restore_column, pg_restore_definition
from branching.checkpoint import CheckpointContext
from branching.pg_rows import NOT_DONE, done_table, undo_rows
from proxy.statement import Part
from proxy.trace import new_id


async def rollback_in(conn: Any, cp_id: str, mode: str, dry_run: bool, context: CheckpointContext | None,
                      retention_days: float, classify: Callable[[str], Part] | None = None) -> common.RollbackOutcome:
    cur = await conn.execute(
        "SELECT id, trace_id, kind, tables, relids, mark, seqs, objects, undone_by, created_at"
        " FROM sqlgate.checkpoints WHERE id = %s AND expires_at > now() FOR UPDATE", (cp_id,))
    row = await cur.fetchone()
    if row is None:
        raise common.not_found(cp_id)
    _, trace_id, kind, tables, relids, mark, seqs, objects, undone_by, created_at = row
    if undone_by:
        raise common.already_undone(cp_id, undone_by)
    outcome = common.RollbackOutcome(cp_id, mode, dry_run, list(tables))
    relation_oids = set(relids) | {int(o["relid"]) for o in objects if "relid" in o}
    # A writer on these tables is waited for (then its committed changes are seen whole), or, past
    # lock_timeout, the rollback fails with nothing changed: never a delta read before a write lands.
    await conn.execute("SET LOCAL lock_timeout = '10s'")
    locked = await _lock_tables(conn, relation_oids, set())
    if mode == "all":
        later = await _later_checkpoints(conn, cp_id, mark, relation_oids)
        while not relation_oids <= locked:  # later checkpoints reach further: lock those too, look again
            locked = await _lock_tables(conn, relation_oids, locked)
            later = await _later_checkpoints(conn, cp_id, mark, relation_oids)
    else:
        later = [(cp_id, objects)]
    # An undone rollback ran statements again: undoing that undo undoes them too (they came after it).
    later = await pg_redo.with_redone(conn, later) + later
    # Crossing a later rollback that brought objects back would mean running their statements again
    # in the middle of this one: refused, with the order that works.
    await pg_redo.refuse_crossing(conn, cp_id, mark, [c for c, _ in later])
    new_cp = new_id("cp")
    ctx = context
    # This rollback is a checkpoint of its own: its changes are captured under it, so it can be undone.
    await conn.execute(
        "INSERT INTO sqlgate.checkpoints (id, trace_id, actor, token_id, branch, kind, tables, relids, mark,"
        " expires_at, undoes, xid) VALUES (%s, %s, %s, %s, %s, 'rollback', %s, %s, nextval('sqlgate.change_seq'),"
        " now() + make_interval(secs => %s), %s, txid_current())",
        (new_cp, ctx.trace_id if ctx else None, ctx.actor if ctx else "sqlgate", ctx.token_id if ctx else None,
         ctx.branch if ctx else "main", json.dumps(list(tables)), list(relids), float(retention_days) * 86400,
         cp_id))
    await conn.execute("SELECT set_config('sqlgate.checkpoint', %s, true)", (new_cp,))
    # The row changes undone (step 2; before a statement runs again, step 0); changes a step already undid
    # are listed in pg_temp.sqlgate_done and skipped (NOT_DONE).
    if mode == "all":
        filt, fargs = (f"tbl = ANY(%s::oid[]) AND seq > %s AND (cp IS DISTINCT FROM %s) AND {NOT_DONE}",
                       [sorted(relation_oids), mark, new_cp])
    else:
        filt, fargs = f"cp = %s AND {NOT_DONE}", [cp_id]
    await done_table(conn)
    # 0. Undoing a rollback: the statements whose objects it brought back run again (oldest first),
    # each with a checkpoint of its own, before its row changes are reversed; the rows it changed after
    # bringing a column back are undone before that column's DROP runs again (their shape has it).
    redone: list[dict[str, Any]] = []
    if kind == "rollback":  # a dry run too: its row step needs the shapes the statements give (all rolled back)
        redone = await pg_redo.redo_statements(conn, cp_id, context, retention_days, classify, partial(
            pg_redo.undo_rows_after, conn, new_cp, cp_id, filt, fargs, mode, outcome))
        outcome.objects_restored += [r["statement"] for r in redone]
        await conn.execute("SELECT set_config('sqlgate.checkpoint', %s, true)", (new_cp,))
    # 1. Objects kept aside come back (latest first); definitions kept of other tables wait for step 3.
    deferred: list[dict[str, Any]] = []
    own_definitions: list[dict[str, Any]] = []
    # Mode 'all' goes back in time: before a checkpoint's definition changes are undone, the rows written
    # after it (in the shape it gave: a column's name, its type) are undone; older rows then fit the old shape.
    rows_since = (partial(pg_redo.undo_rows_after, conn, new_cp, cp_id, filt, fargs, mode, outcome)
                  if mode == "all" else None)
    restored_objects = await _restore_objects(conn, cp_id, mode, later, outcome, deferred, own_definitions,
                                              rows_since)
    # 2. Row deltas: the multiset difference the undone changes made, reversed.
    cur = await conn.execute(f"SELECT DISTINCT tbl FROM sqlgate.changes WHERE {filt}", fargs)
    conflicts: list[dict[str, Any]] = []
    for (tbl,) in await cur.fetchall():
        await undo_rows(conn, tbl, filt, fargs, mode, outcome, conflicts)
    if conflicts:
        raise common.conflicts_error(cp_id, conflicts)
    # 2b. Mode 'statement': a table's own definitions (names, types, defaults, NOT NULL, constraints), once
    # the statement's rows are undone; it reverts only what the statement changed, keeping later ones.
    # (Mode 'all' restored them in step 1.)
    # A dropped index, a replaced view's definition come back here too, in the same (latest first) order:
    # after the rows (a unique index a later row broke), on the names the table had then.
    for o in own_definitions:
        async with pg_restore.definition_conflicts(cp_id, mode):
            if o["kind"] in ("index", "viewdef"):
                await pg_restore.restore_index_or_view(conn, cp_id, o)
            elif mode == "statement":
                await pg_restore_definition.undo_change(conn, cp_id, o)
            else:
                await pg_restore.restore_definition(conn, o)
    # 3. The foreign keys, checks, defaults and indexes CASCADE took from other tables, on their rows as
    # they now are: a later write that breaks one (mode 'statement' keeps it) is a conflict.
    await _reapply_definitions(conn, cp_id, mode, deferred)
    # 4. Sequences owned by the tables (mode all).
    if mode == "all":
        # Their values now go with this rollback's checkpoint: undoing it sets them back.
        await conn.execute(
            "UPDATE sqlgate.checkpoints SET seqs = (SELECT"
            " coalesce(jsonb_object_agg(k, pg_sequence_last_value(k::oid)), '{}')"
            " FROM jsonb_object_keys(%s::jsonb) k WHERE to_regclass(k::oid::regclass::text) IS NOT NULL)"
            " WHERE id = %s", (json.dumps(seqs or {}), new_cp))
        if not dry_run:  # setval is not transactional: a dry run's ROLLBACK would not take it back
            await _restore_sequences(conn, seqs or {})
    # 5. Bookkeeping: this rollback is a checkpoint of its own.
    undone = [c for c, _ in later]
    outcome.undone_checkpoints = undone
    cur = await conn.execute("SELECT trace_id FROM sqlgate.checkpoints WHERE id = ANY(%s)", (undone,))
    traces = {r[0] for r in await cur.fetchall() if r[0]}
    if mode == "all":
        # Later statements on any table whose changes were undone, by the names statements use for it.
        cur = await conn.execute(
            "SELECT array_agg(n) FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace,"
            " LATERAL (VALUES (quote_ident(c.relname)), (format('%%I.%%I', s.nspname, c.relname))) v(n)"
            " WHERE c.oid = ANY(%s::oid[])", (sorted(relation_oids),))
        names = sorted(set(tables) | set((await cur.fetchone())[0] or ()))
        cur = await conn.execute(
            "SELECT id FROM sqlgate.traces WHERE at > %s AND outcome = 'ok' AND tables ?| %s::text[]"
            " AND class IN ('write', 'destructive_dml', 'destructive_ddl', 'safe_ddl')",
            (created_at, names))
        traces |= {r[0] for r in await cur.fetchall()}
    traces.discard(trace_id)
    outcome.undone_traces = sorted(traces)
    rel_oids = sorted(set(relids) | {int(o["relid"]) for o in restored_objects if "relid" in o})
    # Marks only (what this rollback moved back); undoing it runs the statements again instead.
    new_objects = [{**o, "kind": "restored"} if o.get("kind") != "restored_at" else o
                   for o in restored_objects] + redone
    await conn.execute("UPDATE sqlgate.checkpoints SET relids = %s, objects = %s WHERE id = %s",
                       (rel_oids, json.dumps(new_objects), new_cp))
    await conn.execute("UPDATE sqlgate.checkpoints SET undone_by = %s WHERE id = ANY(%s)", (new_cp, undone))
    outcome.new_checkpoint = None if dry_run else new_cp
    return outcome


async def _lock_tables(conn: Any, oids: set[int], locked: set[int]) -> set[int]:
    """SHARE ROW EXCLUSIVE on the tables among `oids` not locked yet: writers (and other rollbacks) wait,
    readers do not. Always in OID order, so two rollbacks cannot deadlock on each other."""
    cur = await conn.execute(
        "SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid = ANY(%s::oid[]) AND c.relkind IN ('r', 'p') ORDER BY c.oid", (sorted(oids - locked),))
    names = [r[0] for r in await cur.fetchall()]
    if names:
        await conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(
            sql.SQL(", ").join(sql.SQL(n) for n in names)))
    return locked | oids


async def _later_checkpoints(conn: Any, cp_id: str, mark: int, relation_oids: set[int]) -> list[tuple[str, Any]]:
    """This checkpoint and every later one that shares a relation with it (transitively), latest first.
    `relation_oids` grows to cover them all."""
    cur = await conn.execute(
        "SELECT id, objects, relids FROM sqlgate.checkpoints WHERE mark >= %s AND undone_by IS NULL"
        " ORDER BY mark DESC FOR UPDATE", (mark,))
    later = []
    for other_id, other_objects, other_relids in await cur.fetchall():
        oids = set(other_relids) | {int(o["relid"]) for o in other_objects if "relid" in o}
        if other_id == cp_id or oids & relation_oids:
            later.append((other_id, other_objects))
            relation_oids |= oids
    return later


async def _restore_objects(conn: Any, cp_id: str, mode: str, later: list[tuple[str, Any]],
                           outcome: common.RollbackOutcome, deferred: list[dict[str, Any]],
                           own_definitions: list[dict[str, Any]],
                           rows_since: Callable[[int], Awaitable[None]] | None = None) -> list[dict[str, Any]]:
    """Put back what each checkpoint kept aside; returns the relations moved back (the new checkpoint's)
    and, per column brought back, where this rollback's changes then stood (`restored_at`).
    What CASCADE took from other tables (their foreign keys, checks, defaults, indexes) is appended to
    `deferred`: it is re-applied once their rows are back (step 3); a table's own kept definitions go to
    `own_definitions` (step 2b). With `rows_since` (mode 'all'), a checkpoint's own definitions come back
    here, latest first, each checkpoint's once the rows written after it are undone (`rows_since(mark)`):
    rows are always undone in the shape they were written in (a rename, a type), whatever the order of
    the statements."""
    restored: list[dict[str, Any]] = []
    for other_id, other_objects in later:
        if rows_since is not None and any(o.get("kind") in ("definition", "index", "viewdef") for o in other_objects):
            mark = (await (await conn.execute("SELECT mark FROM sqlgate.checkpoints WHERE id = %s",
                                              (other_id,))).fetchone())[0]
            await rows_since(int(mark))
        for o in reversed(other_objects):
            kind = o.get("kind")
            async with pg_restore.definition_conflicts(cp_id, mode):
                if kind == "relation":
                    await pg_restore.restore_relation(conn, cp_id, mode, o)
                    outcome.objects_restored.append(f"{o['schema']}.{o['name']}")
                    restored.append(o)
                elif kind == "definition" and rows_since is not None:
                    deferred.extend({"kind": "fk", **c} for c in o.get("dependents", []))
                    await pg_restore.restore_definition(conn, o)
                    # The rows this rollback changes from here on have the old shape: undoing it undoes
                    # them before the statement runs again (pg_redo).
                    seq = (await (await conn.execute("SELECT nextval('sqlgate.change_seq')")).fetchone())[0]
                    restored.append({"kind": "restored_at", "checkpoint": other_id, "seq": seq})
                    outcome.objects_restored.append(f"{o['schema']}.{o['name']}")
                elif kind in ("index", "viewdef") and rows_since is not None:
                    await pg_restore.restore_index_or_view(conn, cp_id, o)
                    outcome.objects_restored.append(f"{o['schema']}.{o['name']}")
                elif kind == "definition":
                    own_definitions.append({**o, "cp": other_id})  # step 2b, after the rows
                    # DROP CONSTRAINT ... CASCADE: the foreign keys it took (this table's too) come back
                    # in step 3, once the key is back and their rows are.
                    deferred.extend({"kind": "fk", **c} for c in o.get("dependents", []))
                    outcome.objects_restored.append(f"{o['schema']}.{o['name']}")
                elif kind in ("index", "viewdef"):
                    own_definitions.append(o)  # step 2b too, after the rows
                    outcome.objects_restored.append(f"{o['schema']}.{o['name']}")
                elif kind == "schema":
                    await pg_restore.restore_schema(conn, cp_id, mode, o)
                    outcome.objects_restored.append(f"{o['name']}.*")
                elif kind == "schema_deps":
                    deferred.append(o)
                elif kind == "column":
                    # Foreign keys of other tables on the column come back in step 3, after their rows.
                    own = [c for c in o.get("constraints", []) if int(c["relid"]) == int(o["relid"])]
                    deferred.extend({"kind": "fk", **c} for c in o.get("constraints", [])
                                    if int(c["relid"]) != int(o["relid"]))
                    await pg_restore_column.restore_column(conn, cp_id, mode, {**o, "constraints": own,
                                                                               "cp": other_id}, outcome)
                    # Rows this rollback changes from here on have the column: undoing it undoes them
                    # before the DROP runs again (pg_redo).
                    seq = (await (await conn.execute("SELECT nextval('sqlgate.change_seq')")).fetchone())[0]
                    restored.append({"kind": "restored_at", "checkpoint": other_id, "seq": seq})
                    outcome.objects_restored.append(
                        f"{await pg_restore.relname(conn, int(o['relid']))}.{o['column']}")
        deferred.extend(o for o in other_objects if o.get("kind") == "fk")
    return restored


async def _reapply_definitions(conn: Any, cp_id: str, mode: str, deferred: list[dict[str, Any]]) -> None:
    """Each kept definition of another table in a savepoint: every one that later writes break is listed
    (mode 'statement': a conflict; mode 'all': what they were not captured for), and nothing is changed."""
    problems: list[dict[str, Any]] = []
    for o in deferred:
        if o["kind"] == "schema_deps":
            await pg_restore.restore_schema_defaults(conn, o)
            for index in o["indexes"]:
                await pg_restore.reapply(conn, problems, partial(pg_restore.restore_index_or_view, conn, cp_id,
                                                                   {"kind": "index", **index}))
            for con in o["constraints"]:
                await pg_restore.reapply(conn, problems, partial(pg_restore.restore_foreign_key, conn, con))
        else:
            await pg_restore.reapply(conn, problems, partial(pg_restore.restore_foreign_key, conn, o))
    if problems:
        raise pg_restore.definitions_error(cp_id, mode, problems)


async def _restore_sequences(conn: Any, seqs: dict[str, Any]) -> None:
    for seq_oid, value in seqs.items():
        exists = await (await conn.execute("SELECT %s::oid::regclass::text FROM pg_class WHERE oid = %s::oid",
                                           (seq_oid, seq_oid))).fetchone()
        if exists:
            if value is None:
                await conn.execute(sql.SQL("ALTER SEQUENCE {} RESTART").format(sql.SQL(exists[0])))
            else:
                await conn.execute("SELECT setval(%s::oid::regclass, %s, true)", (seq_oid, value))
