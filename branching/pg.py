"""The PostgreSQL checkpoint adapter: installs sqlgate's functions and triggers,
and lists, purges and rolls back checkpoints. Taking one is pg_take's job; a
rollback's steps are pg_rollback's (with pg_restore and pg_rows)."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg import sql

from branching import common, pg_take
from branching.checkpoint import Checkpoint, CheckpointContext
from branching.pg_rollback import rollback_in
from branching.pg_sql import DEFINITION_SQL, GRANT_SQL, SETUP_SQL
from branching.pg_sql_column import DROP_COLUMN_SQL
from branching.pg_sql_schema import SCHEMA_SQL
from proxy.backends.base import BackendRole
from proxy.sql_filters import conditions
from proxy.statement import Part
from proxy.trace import traces_json

log = logging.getLogger("sqlgate.branching")

class PostgresCheckpointer:
    def __init__(self, backend: Any, retention_days: float = common.DEFAULT_RETENTION.days) -> None:
        self.backend = backend
        self.retention_days = retention_days
        self._superuser: bool | None = None
        # The first part of a statement as the pipeline classifies it (set by the server: branching does
        # not import policy); undoing a rollback uses it to run statements again.
        self.classify: Any = None

    @property
    def pool(self) -> Any:
        return self.backend.internal  # the owner, with the catalog alone on its search_path

    async def setup(self) -> None:
        roles = ", ".join(sql.Identifier(n).as_string() for n in self.backend.logins.names.values())
        async with self.pool.connection() as conn:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('sqlgate.setup'))")
                await conn.execute(SETUP_SQL)
                await conn.execute(GRANT_SQL.format(roles=roles))
                await conn.execute(DROP_COLUMN_SQL.replace("{roles}", roles))
                await conn.execute(DEFINITION_SQL.replace("{roles}", roles))
                await conn.execute(SCHEMA_SQL.replace("{roles}", roles))
                # The owner acts on tables the ddl login creates (triggers, moves): be a member of it.
                ddl = self.backend.logins.names[BackendRole.DDL]
                try:
                    async with conn.transaction():
                        await conn.execute(sql.SQL("GRANT {} TO current_user").format(sql.Identifier(ddl)))
                except psycopg.Error as exc:
                    log.warning("could not make the owner a member of %s: %s", ddl, exc)

    # --- take -------------------------------------------------------------
    async def take(self, session: Any, part: Part, context: CheckpointContext) -> Checkpoint:
        return await pg_take.take(session, part, context, self.retention_days)

    # --- list / purge -----------------------------------------------------

    async def list(self, actor: str | None = None, branch: str | None = None, since: Any = None,
                   token_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        where, args = conditions("%s", {"c.actor": actor, "c.branch": branch, "c.token_id": token_id},
                                 {"c.created_at": since}, always="c.expires_at > now()")
        query = f"""
            SELECT c.id, c.trace_id, c.actor, c.token_id, c.branch, c.kind, c.tables, c.created_at, c.expires_at,
                   c.undone_by, c.undoes,
                   coalesce((SELECT sum(pg_column_size(x.rows)) FROM sqlgate.changes x WHERE x.cp = c.id), 0)
                   + coalesce((SELECT sum(pg_total_relation_size((o->>'relid')::oid))
                               FROM jsonb_array_elements(c.objects) o
                               WHERE o->>'kind' = 'relation' AND c.undone_by IS NULL), 0)
                   + coalesce((SELECT sum(pg_total_relation_size(to_regclass(format('%%I.kept', o->>'trash'))))
                               FROM jsonb_array_elements(c.objects) o
                               WHERE o->>'kind' = 'column' AND c.undone_by IS NULL), 0)
                   + coalesce((SELECT sum(pg_total_relation_size(k.oid)) FROM jsonb_array_elements(c.objects) o
                               JOIN pg_namespace n ON n.nspname = o->>'trash' JOIN pg_class k ON k.relnamespace = n.oid
                               WHERE o->>'kind' = 'schema' AND k.relkind IN ('r', 'm', 'S')
                               AND c.undone_by IS NULL), 0) AS size_bytes,
                   extract(epoch FROM now() - c.created_at) AS age_s
            FROM sqlgate.checkpoints c WHERE {where}
            ORDER BY c.created_at DESC, c.id DESC LIMIT %s"""
        async with self.pool.connection() as conn:
            cur = await conn.execute(query, (*args, limit))
            rows = await cur.fetchall()
        return [{
            "id": r[0], "trace_id": r[1], "actor": r[2], "token_id": r[3], "branch": r[4], "kind": r[5],
            "tables": r[6], "created_at": r[7].isoformat(), "expires_at": r[8].isoformat(), "undone_by": r[9],
            "undoes": r[10], "size_bytes": int(r[11]), "age_s": float(r[12]),
        } for r in rows]

    async def get(self, cp_id: str) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT token_id, actor FROM sqlgate.checkpoints WHERE id = %s", (cp_id,))
            row = await cur.fetchone()
        return {"token_id": row[0], "actor": row[1]} if row else None

    async def purge(self) -> int:
        """Forget expired checkpoints and reclaim their space (schedule: at start, then hourly)."""
        async with self.pool.connection() as conn:
            async with conn.transaction():
                cur = await conn.execute(
                    "DELETE FROM sqlgate.checkpoints WHERE expires_at <= now() RETURNING id, objects, undone_by")
                expired = await cur.fetchall()
                for cp_id, objects, undone_by in expired:
                    await conn.execute("DELETE FROM sqlgate.changes WHERE cp = %s", (cp_id,))
                    if undone_by is None:
                        for o in objects:
                            if o.get("kind") in ("relation", "column", "schema") or (o.get("kind") == "definition"
                                                                          and o.get("trash")):
                                await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                                    sql.Identifier(o["trash"])))
                # Changes older than every live checkpoint are no longer needed, nor the triggers of
                # tables no live checkpoint covers.
                await conn.execute(
                    "DELETE FROM sqlgate.changes WHERE seq < coalesce((SELECT min(mark) FROM sqlgate.checkpoints),"
                    " 9223372036854775807) AND (cp IS NULL OR cp NOT IN (SELECT id FROM sqlgate.checkpoints))")
                cur = await conn.execute(
                    "SELECT DISTINCT tgrelid::regclass::text FROM pg_trigger WHERE tgname = 'sqlgate_capture_d'"
                    " AND NOT tgrelid = ANY (SELECT unnest(relids) FROM sqlgate.checkpoints)")
                for (rel,) in await cur.fetchall():
                    for t in ("d", "i", "u", "t"):
                        await conn.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
                            sql.Identifier(f"sqlgate_capture_{t}"), sql.SQL(rel)))
        return len(expired)

    # --- rollback ---------------------------------------------------------

    async def rollback(self, cp_id: str, mode: str = "all", dry_run: bool = False,
                       context: CheckpointContext | None = None, finish: Any = None) -> common.RollbackOutcome:
        """One transaction as the owner; `finish(outcome)` gives the traces that commit with it."""
        async with self.pool.connection() as conn:
            try:
                await conn.execute("BEGIN")
                if await self._may_replay(conn):
                    # Put rows back exactly, as logical replication does: foreign-key actions
                    # (ON UPDATE CASCADE...) would otherwise fire again during the undo.
                    # sqlgate's capture triggers are ENABLE ALWAYS, so they still record it.
                    await conn.execute("SET LOCAL session_replication_role = replica")
                outcome = await rollback_in(conn, cp_id, mode, dry_run, context, self.retention_days,
                                            self.classify)
                if dry_run or outcome is None:
                    await conn.execute("ROLLBACK")
                else:
                    if finish is not None:
                        traces = finish(outcome)
                        await conn.execute("SELECT sqlgate.record_traces(%s::jsonb)",
                                           (traces_json(traces),))
                    await conn.execute("COMMIT")
            except psycopg.errors.LockNotAvailable as exc:
                await conn.execute("ROLLBACK")
                raise common.rollback_busy(cp_id, str(exc).strip()) from exc
            except psycopg.Error as exc:
                await conn.execute("ROLLBACK")
                raise common.rollback_failed(str(exc).strip()) from exc
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
        return outcome

    async def _may_replay(self, conn: Any) -> bool:
        """session_replication_role needs a superuser owner; others undo with FK actions on."""
        if self._superuser is None:
            row = await (await conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).fetchone()
            self._superuser = bool(row and row[0])
        return self._superuser

