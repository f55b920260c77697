"""Undoing a PostgreSQL rollback that brought objects back (a dropped table, a
column, a default...): the statements it undid run again, oldest first, inside
the undo's transaction, each checkpointed as the pipeline would checkpoint it.
Row changes the rollback made are reversed by the ordinary row undo after this."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import psycopg

from branching import common, pg_take
from branching.checkpoint import CheckpointContext
from branching.pg_roles import as_role, table_owner
from branching.pg_rows import done_table, undo_rows
from proxy import errors
from proxy.statement import Part

# Checkpoint kinds whose undo brought objects back; 'rows' and 'rollback' are reversed by rows alone.
_OBJECT_KINDS = ("table", "view", "sequence", "schema", "column", "definition")


async def redo_statements(conn: Any, rollback_id: str, context: CheckpointContext | None,
                          retention_days: float, classify: Callable[[str], Part] | None,
                          rows_after: Callable[[int], Awaitable[None]] | None = None) -> list[dict[str, Any]]:
    """Run again the destructive statements rollback `rollback_id` undid; returns a `redo` object for
    each (kept with the undo's own checkpoint, so undoing the undo undoes them: see with_redone).
    The rollback changed rows in the shape each restore left (a column back): before a statement runs
    again, `rows_after(seq)` undoes the rows changed after the rollback restored what it dropped."""
    objects = (await (await conn.execute("SELECT objects FROM sqlgate.checkpoints WHERE id = %s",
                                         (rollback_id,))).fetchone())[0]
    restored_at = {o["checkpoint"]: int(o["seq"]) for o in objects if o.get("kind") == "restored_at"}
    cur = await conn.execute(
        # A statement run again by an undo is kept with its checkpoint: that one's trace is the undo's.
        "SELECT c.id, c.kind, coalesce((SELECT o->>'sql' FROM jsonb_array_elements(c.objects) o"
        " WHERE o->>'kind' = 'statement' LIMIT 1), t.sql) FROM sqlgate.checkpoints c"
        " LEFT JOIN sqlgate.traces t ON t.id = c.trace_id"
        " WHERE c.undone_by = %s AND c.kind = ANY(%s) ORDER BY c.mark", (rollback_id, list(_OBJECT_KINDS)))
    done = []
    for cp_id, kind, statement in await cur.fetchall():
        if rows_after is not None and cp_id in restored_at:
            await rows_after(restored_at[cp_id])
        if statement is None:
            raise common.rollback_failed(
                f"checkpoint {cp_id} ({kind}) was undone by {rollback_id}, and its statement's trace is gone,"
                " so it cannot run again")
        if classify is None:
            raise common.rollback_failed("this server cannot classify statements to run them again")
        part = classify(statement)
        async with _search_path(conn, _STATEMENT_PATH):
            if not await _names_the_same_objects(conn, cp_id, part):
                raise common.redo_unavailable(rollback_id, [statement], why=(
                    f"its names no longer name the objects this rollback brought back (renamed or replaced"
                    f" since), so running {statement!r} again could touch something else"))
            ctx = context or CheckpointContext("sqlgate", None, "main", None)
            try:
                checkpoint = await pg_take.take(SimpleNamespace(conn=conn), part, ctx, retention_days)
                if checkpoint.run is not None:  # a drop: sqlgate moves the object aside, no agent expression runs
                    await checkpoint.run(None, None)
                else:  # an ALTER may evaluate the agent's expressions (USING, DEFAULT): as the table's owner
                    owner = await _owner_of(conn, part.targets[0].name) if part.targets else None
                    async with as_role(conn, owner):
                        await conn.execute(part.sql)
            except (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled):
                raise
            except (psycopg.Error, errors.SqlgateError) as exc:
                # It no longer applies as sent (a later change renamed or dropped what it names): a
                # conflict, and the whole undo changes nothing. The database's own error only.
                if isinstance(exc, errors.SqlgateError) and (exc.reason != "sql.error" or exc.sqlstate in (
                        "55P03", "57014")):
                    raise
                why = exc.message if isinstance(exc, errors.SqlgateError) else str(exc)
                raise common.redo_unavailable(rollback_id, [statement], why=(
                    f"and it fails now ({why.strip()})")) from exc
        await conn.execute("UPDATE sqlgate.checkpoints SET objects = objects || jsonb_build_array("
                           "jsonb_build_object('kind', 'statement', 'sql', %s::text)) WHERE id = %s",
                           (statement, checkpoint.id))
        done.append({"kind": "redo", "checkpoint": checkpoint.id,
                     "statement": f"{statement} (again, checkpoint {checkpoint.id})"})
    return done


@contextlib.asynccontextmanager
async def _search_path(conn: Any, path: str) -> AsyncIterator[None]:
    """`path` for this block of the transaction, then the path it had."""
    before = (await (await conn.execute("SELECT pg_catalog.current_setting('search_path')")).fetchone())[0]
    await conn.execute("SELECT pg_catalog.set_config('search_path', %s, true)", (path,))
    yield
    # Not after an error: the transaction (or savepoint) is aborted, and its abort sets the path back;
    # a statement here would only hide that error behind "current transaction is aborted".
    await conn.execute("SELECT pg_catalog.set_config('search_path', %s, true)", (before,))


# A statement run again resolves its names on the owner's default path, as sqlgate ran them before it
# pinned its own connections to the catalog alone; sqlgate's own SQL in between is qualified.
_STATEMENT_PATH = '"$user", public'


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
    """Strictly: a statement sqlgate cannot run as the owner (who ran it first) is not run as sqlgate."""
    row = await (await conn.execute("SELECT to_regclass(%s)::oid", (name,))).fetchone()
    if row is None or row[0] is None:
        raise common.rollback_failed(f"{name} is gone, so its statement cannot run again")
    return await table_owner(conn, int(row[0]))


async def _names_the_same_objects(conn: Any, cp_id: str, part: Part) -> bool:
    """The statement runs again by name, on sqlgate's login: each name must still resolve to what the
    checkpoint kept (the relation by OID; an index or view by its definition; a schema by its owner),
    or an agent could rename its object and have another one of the same name dropped in its place."""
    relids, objects = await (await conn.execute(
        "SELECT relids, objects FROM sqlgate.checkpoints WHERE id = %s", (cp_id,))).fetchone()
    by_def = {(o["schema"], o["name"]): o["def"] for o in objects if o.get("kind") in ("index", "viewdef")}
    schemas = {o["name"]: o.get("owner") for o in objects if o.get("kind") == "schema"}
    oids = {int(r) for r in relids} | {int(o["relid"]) for o in objects
                                       if "relid" in o and o.get("kind") not in ("index", "viewdef")}
    for target in part.targets:
        if target.kind == "schema":
            name = target.name.removesuffix(".*").strip('"')
            row = await (await conn.execute("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = %s",
                                            (name,))).fetchone()
            if row is None or name not in schemas or row[0] != schemas[name]:
                return False
            continue
        row = await (await conn.execute(
            "SELECT c.oid, n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.oid = to_regclass(%s)", (target.name,))).fetchone()
        if row is None:
            return False
        oid, schema, name = row
        definition = await _definition(conn, oid)
        if (schema, name) in by_def:
            if definition != by_def[(schema, name)]:
                return False
        elif int(oid) not in oids:
            return False
    return True


async def _definition(conn: Any, oid: int) -> str | None:
    """An index's or view's definition as sqlgate kept it: with the search path its functions run with
    (pg_get_viewdef qualifies the names that path does not reach)."""
    async with _search_path(conn, "pg_catalog, pg_temp"):
        row = await (await conn.execute(
            "SELECT CASE relkind WHEN 'i' THEN pg_get_indexdef(oid) WHEN 'v' THEN pg_get_viewdef(oid) END"
            " FROM pg_class WHERE oid = %s", (oid,))).fetchone()
    return row[0] if row else None


async def refuse_crossing(conn: Any, cp_id: str, mark: int, later: list[str]) -> None:
    """A later rollback brought back what a statement older than `cp_id` dropped: going back to before
    `cp_id` means dropping it again in the middle of this rollback. (What newer statements dropped, going
    back undoes anyway.)"""
    cur = await conn.execute(
        "SELECT r.id, coalesce(t.sql, c.id) FROM sqlgate.checkpoints r JOIN sqlgate.checkpoints c ON c.undone_by = r.id"
        " LEFT JOIN sqlgate.traces t ON t.id = c.trace_id WHERE r.id = ANY(%s) AND r.id <> %s AND r.kind = 'rollback'"
        " AND c.kind = ANY(%s) AND c.mark < %s ORDER BY c.mark", (later, cp_id, list(_OBJECT_KINDS), mark))
    found = await cur.fetchall()
    if found:
        raise common.redo_unavailable(found[0][0], [r[1] for r in found], why=(
            f"which rolling back {cp_id} in mode 'all' would have to do in its middle: undo rollback"
            f" {found[0][0]} first, then roll back {cp_id}"))


async def undo_rows_after(conn: Any, new_cp: str, cp_id: str, filt: str, fargs: list[Any], mode: str,
                          outcome: common.RollbackOutcome, seq: int) -> None:
    """Undo the changes `filt` selects past `seq` (in the table's shape now), filed under the undo
    `new_cp`, and list them as done (pg_temp.sqlgate_done) so later steps skip them."""
    await done_table(conn)
    await conn.execute("SELECT set_config('sqlgate.checkpoint', %s, true)", (new_cp,))
    after, args = f"{filt} AND seq > %s", [*fargs, seq]
    tables = [r[0] for r in await (await conn.execute(
        f"SELECT DISTINCT tbl FROM sqlgate.changes WHERE {after}", args)).fetchall()]
    conflicts: list[dict[str, Any]] = []
    for tbl in tables:
        await undo_rows(conn, tbl, after, args, mode, outcome, conflicts)
    if conflicts:
        raise common.conflicts_error(cp_id, conflicts)
    for tbl in tables:
        await conn.execute("INSERT INTO pg_temp.sqlgate_done VALUES (%s, %s)", (tbl, seq))
