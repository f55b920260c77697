"""PostgreSQL checkpoints: trigger-captured row deltas, and drops turned into moves."""

from __future__ import annotations

import json
import logging
from typing import Any

import psycopg
from psycopg import sql

from branching import common
from branching.checkpoint import Checkpoint, CheckpointContext
from branching.pg_sql import DEFINITION_SQL, DROP_COLUMN_SQL, GRANT_SQL, SETUP_SQL
from proxy.backends.base import BackendRole
from proxy.db_errors import database_error
from proxy.result import Result, result_from_pgresult
from proxy.sql_filters import conditions
from proxy.statement import Part
from proxy.trace import new_id, traces_json

log = logging.getLogger("sqlgate.branching")

_DML = {"delete", "update", "merge", "truncate", "insert"}
_NAME_TAKEN = "a relation with this name was created since"
_DEFINITION_DETAILS = {"drop default", "drop not null", "drop constraint", "rename column", "type"}
_TAKE_SQL = "SELECT sqlgate.cp_take(%s, %s, %s, %s, %s, %s, %s::text[], %s::text[]::regclass[], %s)"
_DROP_SQL = ("SELECT sqlgate.cp_drop(%s, %s::text[], ARRAY(SELECT to_regclass(n) FROM unnest(%s::text[]) n),"
             " %s, %s, %s)")
_TAKE_ROWS_SQL = ("SELECT sqlgate.cp_take(%s, %s, %s, %s, %s, %s, %s::text[], %s::text[]::regclass[], %s),"
                  " set_config('sqlgate.checkpoint', %s, true)")
# Every change to a captured table, one row per (statement, table, direction, row).
CHANGE_ROWS = ("(SELECT c.seq, c.cp, c.tbl, c.op, r.row FROM sqlgate.changes c"
               " CROSS JOIN LATERAL jsonb_array_elements(c.rows) AS r(row))")


# Later statements of the same transaction are not this checkpoint's: its id is
# forgotten right after the statement, in the same round trip.
_FORGET_SQL = "SELECT set_config('sqlgate.checkpoint', '', true)"


class PostgresCheckpointer:
    def __init__(self, backend: Any, retention_days: float = common.DEFAULT_RETENTION.days) -> None:
        self.backend = backend
        self.retention_days = retention_days
        self._superuser: bool | None = None

    @property
    def pool(self) -> Any:
        return self.backend.pools[BackendRole.OWNER]

    async def setup(self) -> None:
        roles = ", ".join(sql.Identifier(n).as_string() for n in self.backend.logins.names.values())
        async with self.pool.connection() as conn:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('sqlgate.setup'))")
                await conn.execute(SETUP_SQL)
                await conn.execute(GRANT_SQL.format(roles=roles))
                await conn.execute(DROP_COLUMN_SQL.replace("{roles}", roles))
                await conn.execute(DEFINITION_SQL.replace("{roles}", roles))
                # The owner acts on tables the ddl login creates (triggers, moves): be a member of it.
                ddl = self.backend.logins.names[BackendRole.DDL]
                try:
                    async with conn.transaction():
                        await conn.execute(sql.SQL("GRANT {} TO current_user").format(sql.Identifier(ddl)))
                except psycopg.Error as exc:
                    log.warning("could not make the owner a member of %s: %s", ddl, exc)

    # --- take -------------------------------------------------------------

    async def take(self, session: Any, part: Part, context: CheckpointContext) -> Checkpoint:
        targets = part.targets
        actions = {t.action for t in targets}
        if not targets:
            raise common.unavailable(part, "the classifier named no target")
        cp_id = new_id("cp")
        names = [t.name for t in targets]
        if actions <= _DML and all(t.kind == "table" for t in targets):
            take_args = (cp_id, context.trace_id, context.actor, context.token_id, context.branch, "rows", names,
                         names, float(self.retention_days), cp_id)

            async def run_dml(original: Any, params: Any) -> Result:
                # The checkpoint and the statement go to the server together (libpq pipeline): one round trip.
                conn = session.conn
                cur = psycopg.AsyncRawCursor(conn)
                try:
                    if not params:  # simple query protocol: all three statements in one message
                        take = sql.SQL(_TAKE_ROWS_SQL.replace("%s", "{}")).format(*map(sql.Literal, take_args))
                        # The newline ends a trailing -- comment of the agent's statement.
                        await cur.execute(take.as_string(conn) + ";\n" + part.sql + "\n;\n" + _FORGET_SQL)
                        cur.nextset()
                        return result_from_pgresult(cur.pgresult)
                    async with conn.pipeline() as pipeline:
                        await psycopg.AsyncCursor(conn).execute(_TAKE_ROWS_SQL, take_args)
                        await cur.execute(part.sql, params)
                        await psycopg.AsyncCursor(conn).execute(_FORGET_SQL)
                        await pipeline.sync()
                    return result_from_pgresult(cur.pgresult)
                except psycopg.Error as exc:
                    raise database_error(exc) from exc

            runner = run_dml
            return Checkpoint(cp_id, tuple(names), "rows", run=runner)
        kinds_dropped = {t.kind for t in targets}
        if actions == {"drop"} and len(kinds_dropped) == 1 and targets[0].kind in ("table", "view", "sequence"):
            kind = targets[0].kind
            cascade = any(t.detail == "cascade" for t in targets)
            if_exists = "if exists" in " ".join(part.sql.lower().split())
            command = part.command
            take_args = (cp_id, context.trace_id, context.actor, context.token_id, context.branch, kind, names, [],
                         float(self.retention_days))
            drop_args = (cp_id, names, names, kind, cascade, if_exists)

            async def run_drop(original: Any, params: Any) -> Result:
                # Instead of the DROP, the checkpoint and the move: one message, one round trip.
                conn = session.conn
                take = sql.SQL(_TAKE_SQL.replace("%s", "{}")).format(*map(sql.Literal, take_args))
                move = sql.SQL(_DROP_SQL.replace("%s", "{}")).format(*map(sql.Literal, drop_args))
                try:
                    await psycopg.AsyncRawCursor(conn).execute(take.as_string(conn) + "; " + move.as_string(conn))
                except psycopg.Error as exc:
                    raise database_error(exc) from exc
                return Result(command_tag=command)

            runner = run_drop
            return Checkpoint(cp_id, tuple(names), kind, run=runner)
        if (len(targets) == 1 and targets[0].action == "alter" and targets[0].detail == "drop column"
                and targets[0].column and targets[0].kind == "table"):
            if "cascade" in part.sql.lower():
                raise common.unavailable(part, "DROP COLUMN ... CASCADE (its dependent views would not come back)")
            column = targets[0].column
            if column.startswith('"'):
                column = column[1:-1].replace('""', '"')
            await self._take(session, cp_id, context, "column", names, [])
            try:
                await session.conn.execute("SELECT sqlgate.cp_keep_column(%s, %s::regclass, %s)",
                                           (cp_id, names[0], column))
            except psycopg.Error as exc:
                raise database_error(exc) from exc
            return Checkpoint(cp_id, tuple(names), "column")
        single = targets[0] if len(targets) == 1 else None
        if single is not None and single.kind == "table" and (
                single.action == "rename" or single.detail in _DEFINITION_DETAILS):
            await self._take(session, cp_id, context, "definition", names, [])
            type_column = single.column if single.detail == "type" else None
            if type_column and type_column.startswith('"'):
                type_column = type_column[1:-1].replace('""', '"')
            await self._call(session, "SELECT sqlgate.cp_keep_definition(%s, %s::regclass, %s)",
                             (cp_id, names[0], type_column))
            return Checkpoint(cp_id, tuple(names), "definition")
        if ((actions == {"drop"} and all(t.kind == "index" for t in targets))
                or (single is not None and single.kind == "view" and single.action == "replace")):
            await self._take(session, cp_id, context, "definition", names, [])
            for name in names:
                await self._call(session, "SELECT sqlgate.cp_keep_relation_def(%s, r) FROM to_regclass(%s) r"
                                          " WHERE r IS NOT NULL", (cp_id, name))
            return Checkpoint(cp_id, tuple(names), "definition")
        kinds = ", ".join(sorted({t.kind for t in targets}))
        raise common.unavailable(part, f"{', '.join(sorted(actions))} of {kinds}")

    @staticmethod
    async def _call(session: Any, query: str, args: tuple[Any, ...]) -> None:
        try:
            await session.conn.execute(query, args)
        except psycopg.Error as exc:
            raise database_error(exc) from exc

    async def _take(self, session: Any, cp_id: str, context: CheckpointContext, kind: str, names: list[str],
                    rels: list[str]) -> None:
        cur = psycopg.AsyncCursor(session.conn)
        try:
            await cur.execute(_TAKE_SQL, (cp_id, context.trace_id, context.actor, context.token_id, context.branch,
                                          kind, names, rels, float(self.retention_days)))
        except psycopg.Error as exc:
            raise database_error(exc) from exc

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
                               WHERE o->>'kind' = 'column' AND c.undone_by IS NULL), 0) AS size_bytes,
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
                            if o.get("kind") in ("relation", "column") or (o.get("kind") == "definition"
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
                outcome = await self._rollback(conn, cp_id, mode, dry_run, context)
                if dry_run or outcome is None:
                    await conn.execute("ROLLBACK")
                else:
                    if finish is not None:
                        traces = finish(outcome)
                        await conn.execute("SELECT sqlgate.record_traces(%s::jsonb)",
                                           (traces_json(traces),))
                    await conn.execute("COMMIT")
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

    async def _rollback(self, conn: Any, cp_id: str, mode: str, dry_run: bool,
                        context: CheckpointContext | None) -> common.RollbackOutcome:
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
        # Which checkpoints this rollback undoes (mode all: every later one on the same tables).
        if mode == "all":
            relation_oids = set(relids) | {int(o["relid"]) for o in objects if "relid" in o}
            cur = await conn.execute(
                "SELECT id, objects, relids FROM sqlgate.checkpoints WHERE mark >= %s AND undone_by IS NULL"
                " ORDER BY mark DESC FOR UPDATE", (mark,))
            later = []
            for other_id, other_objects, other_relids in await cur.fetchall():
                oids = set(other_relids) | {int(o["relid"]) for o in other_objects if "relid" in o}
                if other_id == cp_id or oids & relation_oids:
                    later.append((other_id, other_objects))
                    relation_oids |= oids
        else:
            later = [(cp_id, objects)]
        new_cp = new_id("cp")
        ctx = context
        # This rollback is a checkpoint of its own: its changes are captured under it, so it can be undone.
        await conn.execute(
            "INSERT INTO sqlgate.checkpoints (id, trace_id, actor, token_id, branch, kind, tables, relids, mark,"
            " expires_at, undoes, xid) VALUES (%s, %s, %s, %s, %s, 'rollback', %s, %s, nextval('sqlgate.change_seq'),"
            " now() + make_interval(secs => %s), %s, txid_current())",
            (new_cp, ctx.trace_id if ctx else None, ctx.actor if ctx else "sqlgate", ctx.token_id if ctx else None,
             ctx.branch if ctx else "main", json.dumps(list(tables)), list(relids), float(self.retention_days) * 86400,
             cp_id))
        await conn.execute("SELECT set_config('sqlgate.checkpoint', %s, true)", (new_cp,))
        await conn.execute("SET LOCAL lock_timeout = '10s'")
        # 1. Objects moved aside come back (latest first).
        restored_objects: list[dict[str, Any]] = []
        for _, other_objects in later:
            for o in reversed(other_objects):
                if o.get("kind") == "relation":
                    trash_rel = await (await conn.execute(
                        "SELECT format('%%I.%%I', n.nspname, c.relname), c.relkind FROM pg_class c"
                        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %s",
                        (int(o["relid"]),))).fetchone()
                    if trash_rel is None:
                        raise common.rollback_failed(f"the kept {o['schema']}.{o['name']} is gone")
                    clash = await (await conn.execute("SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))",
                                                      (o["schema"], o["name"]))).fetchone()
                    if clash and clash[0] is not None:
                        if mode == "statement":
                            raise common.conflicts_error(cp_id, [{
                                "table": f"{o['schema']}.{o['name']}",
                                "conflict": "a relation with this name was created since"}])
                        raise common.rollback_failed(f"{o['schema']}.{o['name']} exists again; drop it first")
                    verb = {"v": "VIEW", "S": "SEQUENCE"}.get(trash_rel[1], "TABLE")
                    await conn.execute(sql.SQL("ALTER {} {} SET SCHEMA {}").format(
                        sql.SQL(verb), sql.SQL(trash_rel[0]), sql.Identifier(o["schema"])))
                    await conn.execute(sql.SQL("DROP SCHEMA {}").format(sql.Identifier(o["trash"])))
                    outcome.objects_restored.append(f"{o['schema']}.{o['name']}")
                    restored_objects.append(o)
                elif o.get("kind") == "definition":
                    await self._restore_definition(conn, o)
                    outcome.objects_restored.append(f"{o['schema']}.{o['name']}")
                elif o.get("kind") in ("index", "viewdef"):
                    target = sql.SQL("{}.{}").format(sql.Identifier(o["schema"]), sql.Identifier(o["name"]))
                    if o["kind"] == "index":
                        clash = await (await conn.execute("SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))",
                                                          (o["schema"], o["name"]))).fetchone()
                        if clash and clash[0] is not None:
                            raise common.conflicts_error(cp_id, [{"index": o["name"], "conflict": _NAME_TAKEN}])
                        await conn.execute(o["def"])
                    else:
                        await self._restore_view(conn, target, o)
                    outcome.objects_restored.append(f"{o['schema']}.{o['name']}")
                elif o.get("kind") == "column":
                    await self._restore_column(conn, cp_id, mode, o)
                    outcome.objects_restored.append(f"{await self._relname(conn, int(o['relid']))}.{o['column']}")
            for o in other_objects:
                if o.get("kind") == "fk":
                    await conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                        sql.SQL(await self._relname(conn, int(o["relid"]))),
                        sql.Identifier(o["name"]), sql.SQL(o["def"])))
        # 2. Row deltas: the multiset difference the undone changes made, reversed.
        if mode == "all":
            rel_list = sorted(relation_oids)
            filt, fargs = "tbl = ANY(%s::oid[]) AND seq > %s AND (cp IS DISTINCT FROM %s)", [rel_list, mark, new_cp]
        else:
            filt, fargs = "cp = %s", [cp_id]
        cur = await conn.execute(f"SELECT DISTINCT tbl FROM sqlgate.changes WHERE {filt}", fargs)
        conflicts: list[dict[str, Any]] = []
        for (tbl,) in await cur.fetchall():
            await self._undo_rows(conn, tbl, filt, fargs, mode, outcome, conflicts)
        if conflicts:
            raise common.conflicts_error(cp_id, conflicts)
        # 3. Sequences owned by the tables (mode all).
        if mode == "all":
            for seq_oid, value in (seqs or {}).items():
                exists = await (await conn.execute("SELECT %s::oid::regclass::text FROM pg_class WHERE oid = %s::oid",
                                                   (seq_oid, seq_oid))).fetchone()
                if exists:
                    if value is None:
                        await conn.execute(sql.SQL("ALTER SEQUENCE {} RESTART").format(sql.SQL(exists[0])))
                    else:
                        await conn.execute("SELECT setval(%s::oid::regclass, %s, true)", (seq_oid, value))
        # 4. Bookkeeping: this rollback is a checkpoint of its own.
        undone = [c for c, _ in later]
        outcome.undone_checkpoints = undone
        cur = await conn.execute("SELECT trace_id FROM sqlgate.checkpoints WHERE id = ANY(%s)", (undone,))
        traces = {r[0] for r in await cur.fetchall() if r[0]}
        if mode == "all":
            cur = await conn.execute(
                "SELECT id FROM sqlgate.traces WHERE at > %s AND outcome = 'ok' AND tables ?| %s::text[]"
                " AND class IN ('write', 'destructive_dml', 'destructive_ddl', 'safe_ddl')",
                (created_at, list(tables)))
            traces |= {r[0] for r in await cur.fetchall()}
        traces.discard(trace_id)
        outcome.undone_traces = sorted(traces)
        rel_oids = sorted(set(relids) | {int(o["relid"]) for o in restored_objects})
        new_objects = [{"kind": "restored", **o} for o in restored_objects]
        await conn.execute("UPDATE sqlgate.checkpoints SET relids = %s, objects = %s WHERE id = %s",
                           (rel_oids, json.dumps(new_objects), new_cp))
        await conn.execute("UPDATE sqlgate.checkpoints SET undone_by = %s WHERE id = ANY(%s)", (new_cp, undone))
        outcome.new_checkpoint = None if dry_run else new_cp
        return outcome

    @staticmethod
    async def _restore_view(conn: Any, target: Any, o: dict[str, Any]) -> None:
        """CREATE OR REPLACE it back; when the replacement added columns, recreate it (with owner and grants)."""
        definition = sql.SQL(o["def"].rstrip().rstrip(";"))
        try:
            async with conn.transaction():
                await conn.execute(sql.SQL("CREATE OR REPLACE VIEW {} AS {}").format(target, definition))
            return
        except psycopg.errors.InvalidTableDefinition:
            pass
        await conn.execute(sql.SQL("DROP VIEW {}").format(target))  # RESTRICT: dependents make this fail clearly
        await conn.execute(sql.SQL("CREATE VIEW {} AS {}").format(target, definition))
        if o.get("owner"):
            await conn.execute(sql.SQL("ALTER VIEW {} OWNER TO {}").format(target, sql.SQL(o["owner"])))
        for grantee, privilege in o.get("grants", []):
            await conn.execute(sql.SQL("GRANT {} ON {} TO {}").format(sql.SQL(privilege), target, sql.SQL(grantee)))

    async def _restore_definition(self, conn: Any, o: dict[str, Any]) -> None:
        """Put back names, types, defaults, NOT NULL, constraints and indexes as they were (by OID and attnum)."""
        relid = int(o["relid"])
        row = await (await conn.execute("SELECT relname FROM pg_class WHERE oid = %s", (relid,))).fetchone()
        if row is None:
            raise common.rollback_failed(f"table {o['schema']}.{o['name']} is gone")
        if row[0] != o["name"]:
            await conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                sql.SQL(await self._relname(conn, relid)), sql.Identifier(o["name"])))
        rel = sql.SQL(await self._relname(conn, relid))
        cur = await conn.execute(
            "SELECT a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,"
            " (SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = a.attrelid AND adnum = a.attnum)"
            " FROM pg_attribute a WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped", (relid,))
        now = {r[0]: r[1:] for r in await cur.fetchall()}
        for c in o["columns"]:
            if c["attnum"] not in now:
                continue  # dropped since: that drop's own checkpoint brings it back
            name, type_, notnull, default = now[c["attnum"]]
            col = sql.Identifier(c["name"])
            if name != c["name"]:
                await conn.execute(sql.SQL("ALTER TABLE {} RENAME COLUMN {} TO {}").format(
                    rel, sql.Identifier(name), col))
            if type_ != c["type"]:
                await conn.execute(sql.SQL(
                    "ALTER TABLE {} ALTER COLUMN {} DROP DEFAULT, ALTER COLUMN {} DROP NOT NULL").format(rel, col, col))
                notnull, default = False, None
                kept = o.get("type_column") == c["name"] and o.get("trash")
                using = sql.SQL("NULL") if kept else sql.SQL("{}::{}").format(col, sql.SQL(c["type"]))
                await conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {} USING {}").format(
                    rel, col, sql.SQL(c["type"]), using))
                if kept:
                    match = sql.SQL(" AND ").join(sql.SQL("t.{c} = k.{c}").format(c=sql.Identifier(k)) for k in o["pk"])
                    await conn.execute(sql.SQL("UPDATE {} t SET {} = k.{} FROM {}.kept k WHERE {}").format(
                        rel, col, col, sql.Identifier(o["trash"]), match))
            if default != c["default"]:
                if c["default"] is None:
                    await conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP DEFAULT").format(rel, col))
                else:
                    await conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}").format(
                        rel, col, sql.SQL(c["default"])))
            if notnull != c["notnull"]:
                verb = sql.SQL("SET NOT NULL" if c["notnull"] else "DROP NOT NULL")
                await conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} {}").format(rel, col, verb))
        cur = await conn.execute("SELECT conname FROM pg_constraint WHERE conrelid = %s", (relid,))
        present = {r[0] for r in await cur.fetchall()}
        for con in o["constraints"]:
            if con["name"] not in present:
                await conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                    rel, sql.Identifier(con["name"]), sql.SQL(con["def"])))
        cur = await conn.execute("SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                                 " WHERE i.indrelid = %s", (relid,))
        present = {r[0] for r in await cur.fetchall()}
        for index in o["indexes"]:
            if index["name"] not in present:
                await conn.execute(index["def"])
        if o.get("trash"):
            await conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(o["trash"])))

    async def _restore_column(self, conn: Any, cp_id: str, mode: str, o: dict[str, Any]) -> None:
        rel = sql.SQL(await self._relname(conn, int(o["relid"])))
        col = sql.Identifier(o["column"])
        taken = await (await conn.execute(
            "SELECT 1 FROM pg_attribute WHERE attrelid = %s AND attname = %s AND NOT attisdropped",
            (int(o["relid"]), o["column"]))).fetchone()
        if taken:
            problem = [{"column": o["column"], "conflict": "a column with this name was added since"}]
            if mode == "statement":
                raise common.conflicts_error(cp_id, problem)
            raise common.rollback_failed(f"column {o['column']} exists again; drop it first")
        collate = sql.SQL(f" COLLATE {o['collation']}") if o.get("collation") else sql.SQL("")
        await conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} {}{}").format(rel, col, sql.SQL(o["type"]), collate))
        match = sql.SQL(" AND ").join(sql.SQL("t.{c} = k.{c}").format(c=sql.Identifier(c)) for c in o["pk"])
        await conn.execute(sql.SQL("UPDATE {} t SET {} = k.{} FROM {}.kept k WHERE {}").format(
            rel, col, col, sql.Identifier(o["trash"]), match))
        if o.get("default") is not None:
            await conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}").format(
                rel, col, sql.SQL(o["default"])))
        if o.get("notnull"):
            await conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL").format(rel, col))
        for c in o.get("constraints", []):
            await conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                sql.SQL(await self._relname(conn, int(c["relid"]))), sql.Identifier(c["name"]), sql.SQL(c["def"])))
        for index_def in o.get("indexes", []):
            await conn.execute(index_def)
        await conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(o["trash"])))

    @staticmethod
    async def _relname(conn: Any, oid: int) -> str:
        row = await (await conn.execute("SELECT %s::oid::regclass::text", (oid,))).fetchone()
        return str(row[0])

    async def _undo_rows(self, conn: Any, tbl: int, filt: str, fargs: list[Any], mode: str,
                         outcome: common.RollbackOutcome, conflicts: list[dict[str, Any]]) -> None:
        rel = await self._relname(conn, tbl)
        cur = await conn.execute(
            "SELECT a.attname, a.attgenerated <> '' FROM pg_attribute a WHERE a.attrelid = %s AND a.attnum > 0"
            " AND NOT a.attisdropped ORDER BY a.attnum", (tbl,))
        cols = await cur.fetchall()
        insertable = [c for c, generated in cols if not generated]
        cur = await conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
            " AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s AND i.indisprimary", (tbl,))
        pk = [r[0] for r in await cur.fetchall()]
        target = sql.SQL(rel)
        await conn.execute("CREATE TEMP TABLE IF NOT EXISTS sqlgate_delta (row jsonb, n bigint) ON COMMIT DROP")
        await conn.execute("TRUNCATE sqlgate_delta")
        await conn.execute(
            f"INSERT INTO sqlgate_delta SELECT row, sum(CASE op WHEN 'D' THEN 1 ELSE -1 END) FROM {CHANGE_ROWS} x"
            f" WHERE tbl = %s AND {filt} GROUP BY row HAVING sum(CASE op WHEN 'D' THEN 1 ELSE -1 END) <> 0",
            [tbl, *fargs])
        await conn.execute("ANALYZE sqlgate_delta")
        if pk:
            # A row the undo changes back keeps its key: UPDATE it in place, so foreign keys that point at it
            # (and ON DELETE CASCADE children) are never disturbed.
            key_a = sql.SQL(", ").join(sql.SQL("a.row -> {}").format(sql.Literal(c)) for c in pk)
            key_b = sql.SQL(", ").join(sql.SQL("b.row -> {}").format(sql.Literal(c)) for c in pk)
            await conn.execute("CREATE TEMP TABLE IF NOT EXISTS sqlgate_pairs (old jsonb, new jsonb) ON COMMIT DROP")
            await conn.execute("TRUNCATE sqlgate_pairs")
            await conn.execute(sql.SQL(
                "INSERT INTO sqlgate_pairs SELECT a.row, b.row FROM sqlgate_delta a JOIN sqlgate_delta b"
                " ON a.n = 1 AND b.n = -1 AND jsonb_build_array({}) = jsonb_build_array({})").format(key_a, key_b))
            settable = [c for c in insertable if c not in pk]
            pairs = (await (await conn.execute("SELECT count(*) FROM sqlgate_pairs")).fetchone())[0]
            if pairs and settable:
                pk_match = sql.SQL(" AND ").join(
                    sql.SQL("x.{c} = (s.n).{c}").format(c=sql.Identifier(c)) for c in pk)
                cur = await conn.execute(sql.SQL(
                    "UPDATE {t} x SET ({cols}) = ROW({vals}) FROM (SELECT jsonb_populate_record(NULL::{t}, p.new) AS n,"
                    " p.new AS nj, jsonb_populate_record(NULL::{t}, p.old) AS r FROM sqlgate_pairs p) s"
                    " WHERE {pk_match} AND to_jsonb(x) = s.nj"
                ).format(t=target, cols=sql.SQL(", ").join(sql.Identifier(c) for c in settable),
                         vals=sql.SQL(", ").join(sql.SQL("(s.r).{}").format(sql.Identifier(c)) for c in settable),
                         pk_match=pk_match))
                if cur.rowcount < pairs:
                    conflicts.append({"table": rel,
                                      "conflict": f"{pairs - cur.rowcount} row(s) changed since the checkpoint"})
                    return
                outcome.rows_restored += cur.rowcount
                outcome.rows_removed += cur.rowcount
                await conn.execute(
                    "DELETE FROM sqlgate_delta d WHERE (n = 1 AND row IN (SELECT old FROM sqlgate_pairs))"
                    " OR (n = -1 AND row IN (SELECT new FROM sqlgate_pairs))")
        # Rows to remove: -n instances of each row value.
        rec = sql.SQL("jsonb_populate_record(NULL::{}, d.row)").format(target)
        if pk:
            match = sql.SQL(" AND ").join(
                sql.SQL("x.{c} = (d.r).{c}").format(c=sql.Identifier(c)) for c in pk)
            match = sql.SQL("{} AND to_jsonb(x) = d.row").format(match)
        else:
            match = sql.SQL("to_jsonb(x) = d.row")
        found = sql.SQL(
            "SELECT x.ctid AS tid, d.row, -d.n AS want, row_number() OVER (PARTITION BY d.row ORDER BY x.ctid) AS k"
            " FROM (SELECT row, n, {rec} AS r FROM sqlgate_delta d WHERE n < 0) d JOIN {t} x ON {match}"
        ).format(rec=rec, t=target, match=match)
        cur = await conn.execute(sql.SQL(
            "SELECT d.row, -d.n, (SELECT count(*) FROM ({found}) f WHERE f.row = d.row)"
            " FROM sqlgate_delta d WHERE d.n < 0"
        ).format(found=found))
        for value, want, have in await cur.fetchall():
            if have < want:
                conflicts.append({"table": rel, "row": value, "conflict": "changed or deleted since the checkpoint"})
        if conflicts:
            return
        cur = await conn.execute(sql.SQL(
            "DELETE FROM {t} WHERE ctid = ANY (ARRAY(SELECT tid FROM ({found}) f WHERE k <= want))"
        ).format(t=target, found=found))
        outcome.rows_removed += cur.rowcount
        collist = sql.SQL(", ").join(sql.Identifier(c) for c in insertable)
        reclist = sql.SQL(", ").join(sql.SQL("(r).{}").format(sql.Identifier(c)) for c in insertable)
        try:
            async with conn.transaction():
                cur = await conn.execute(sql.SQL(
                    "INSERT INTO {t} ({cols}) OVERRIDING SYSTEM VALUE SELECT {vals} FROM"
                    " (SELECT jsonb_populate_record(NULL::{t}, d.row) AS r FROM sqlgate_delta d,"
                    " generate_series(1, d.n) WHERE d.n > 0) s"
                ).format(t=target, cols=collist, vals=reclist))
                outcome.rows_restored += cur.rowcount
        except psycopg.errors.IntegrityError as exc:
            if mode == "all":
                raise common.rollback_failed(str(exc).strip()) from exc
            conflicts.append({"table": rel, "conflict": f"a restored row collides with a later change: "
                                                        f"{exc.diag.message_detail or str(exc).strip()}"})
