"""Undoing a PostgreSQL rollback that brought objects back (a dropped table, a
column, a default...): the statements it undid run again, oldest first, inside
the undo's transaction, each checkpointed as the pipeline would checkpoint it.
Row changes the rollback made are reversed by the ordinary row undo after this."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from branching import common, pg_take
from branching.checkpoint import CheckpointContext
from branching.pg_roles import as_role, table_owner
from proxy.statement import Part

# Checkpoint kinds whose undo brought objects back; 'rows' and 'rollback' are reversed by rows alone.
_OBJECT_KINDS = ("table", "view", "sequence", "schema", "column", "definition")


async def redo_statements(conn: Any, rollback_id: str, context: CheckpointContext | None,
                          retention_days: float, classify: Callable[[str], Part] | None) -> list[dict[str, Any]]:
    """Run again the destructive statements rollback `rollback_id` undid; returns a `redo` object for
    each (kept with the undo's own checkpoint, so undoing the undo undoes them: see with_redone)."""
    cur = await conn.execute(
        "SELECT c.id, c.kind, t.sql FROM sqlgate.checkpoints c LEFT JOIN sqlgate.traces t ON t.id = c.trace_id"
        " WHERE c.undone_by = %s AND c.kind = ANY(%s) ORDER BY c.mark", (rollback_id, list(_OBJECT_KINDS)))
    done = []
    for cp_id, kind, statement in await cur.fetchall():
        if statement is None:
            raise common.rollback_failed(
                f"checkpoint {cp_id} ({kind}) was undone by {rollback_id}, and its statement's trace is gone,"
                " so it cannot run again")
        if classify is None:
            raise common.rollback_failed("this server cannot classify statements to run them again")
        part = classify(statement)
        ctx = context or CheckpointContext("sqlgate", None, "main", None)
        checkpoint = await pg_take.take(SimpleNamespace(conn=conn), part, ctx, retention_days)
        if checkpoint.run is not None:  # a drop: sqlgate moves the object aside, no agent expression runs
            await checkpoint.run(None, None)
        else:  # an ALTER may evaluate the agent's expressions (USING, DEFAULT): as the table's owner
            owner = await _owner_of(conn, part.targets[0].name) if part.targets else None
            async with as_role(conn, owner):
                await conn.execute(part.sql)
        done.append({"kind": "redo", "checkpoint": checkpoint.id,
                     "statement": f"{statement} (again, checkpoint {checkpoint.id})"})
    return done


async def with_redone(conn: Any, later: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The checkpoints of statements run again by the undos in `later` and not undone since, latest first."""
    listed = {cp for cp, _ in later}
    ids = [o["checkpoint"] for _, objects in later for o in objects
           if o.get("kind") == "redo" and o["checkpoint"] not in listed]
    if not ids:
        return []
    cur = await conn.execute("SELECT id, objects FROM sqlgate.checkpoints WHERE id = ANY(%s) AND undone_by IS NULL"
                             " ORDER BY mark DESC FOR UPDATE", (ids,))
    return [(r[0], r[1]) for r in await cur.fetchall()]


async def _owner_of(conn: Any, name: str) -> str | None:
    row = await (await conn.execute("SELECT to_regclass(%s)::oid", (name,))).fetchone()
    return await table_owner(conn, int(row[0]), strict=False) if row and row[0] is not None else None
