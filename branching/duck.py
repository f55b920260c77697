"""DuckDB checkpoints: the adapter the pipeline sees. `take` picks how a
statement is kept (duck_rows: rows; duck_images: rows of upserts, MERGE and
data-modifying CTEs; duck_drop: drops become renames; duck_schema: DROP SCHEMA; duck_alter:
definitions and columns); rollback is duck_rollback's, list and
purge read and reclaim what checkpoints kept in schema `sqlgate`."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import duckdb
import sqlglot
from sqlglot import exp

from branching import common
from branching.checkpoint import Checkpoint, CheckpointContext
from branching.duck_alter import drop_column_runner, keep_definition, keep_object
from branching.duck_candidates import cte_tables, has_dml_cte, merge, upsert
from branching.duck_catalog import catalog_of
from branching.duck_drop import drop_runner
from branching.duck_images import images_runner
from branching.duck_rollback import rollback
from branching.duck_rows import dml_runner, truncate_runner
from branching.duck_schema import drop_schema_runner
from branching.duck_sql import SETUP_SQL, Cursor, Take, q, unquote
from proxy.db_errors import database_error
from proxy.result import Result
from proxy.sql_filters import conditions
from proxy.statement import Part
from proxy.trace import new_id

_DML = (exp.Insert, exp.Update, exp.Delete, exp.Merge)
_DEFINITION_DETAILS = {"drop default", "set default", "drop not null", "rename column", "type", "add column",
                       "set not null"}


class DuckDBCheckpointer:
    def __init__(self, backend: Any, retention_days: float = common.DEFAULT_RETENTION.days) -> None:
        self.backend = backend
        self.retention_days = retention_days
        self.classify: Any = None  # set by the server: undoing a rollback classifies statements to run again

    async def setup(self) -> None:
        await self.backend.run_write(lambda c: c.execute(SETUP_SQL))

    # --- take -------------------------------------------------------------

    async def take(self, session: Any, part: Part, context: CheckpointContext) -> Checkpoint:
        targets = part.targets
        if not targets:
            raise common.unavailable(part, "the classifier named no target")
        cp_id = new_id("cp")
        tree = part.tree
        if tree is None:  # classification cache hits carry no tree (it belonged to other literals)
            try:
                tree = sqlglot.parse_one(part.sql, read="duckdb")
            except sqlglot.errors.SqlglotError as exc:
                raise common.unavailable(part, f"cannot parse it ({exc})") from None
        take = Take(session, part, cp_id, context, self.retention_days, catalog_of(self.backend))
        kind, run = _plan(take, tree)
        return Checkpoint(cp_id, tuple(t.name for t in targets), kind, run=run)

    def take_now(self, cur: Cursor, part: Part, context: CheckpointContext) -> str:
        """Checkpoint and run `part` on `cur`, in its open transaction, as `take` and the pipeline would
        (undoing a rollback runs statements again this way, on its worker thread); answers the checkpoint id."""
        inline = _Inline(cur, self.backend)
        checkpoint = asyncio.run(self.take(inline, part, context))

        async def as_sent() -> Result:
            await inline._run(lambda: cur.execute(part.sql))
            return Result(command_tag=part.command)

        if checkpoint.run is None:
            raise common.rollback_failed(f"{part.command} took no checkpoint when run again")
        try:
            asyncio.run(checkpoint.run(as_sent, None))
        except duckdb.Error as exc:
            raise database_error(exc) from exc
        return checkpoint.id

    # --- list / purge -----------------------------------------------------

    async def list(self, actor: str | None = None, branch: str | None = None, since: Any = None,
                   token_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        where, args = conditions("?", {"actor": actor, "branch": branch, "token_id": token_id},
                                 {"created_at": since}, always="expires_at > now()")

        def read(cur: Cursor) -> list[dict[str, Any]]:
            rows = cur.execute(
                "SELECT id, trace_id, actor, token_id, branch, kind, tables, objects, created_at, expires_at,"
                f" undone_by, undoes FROM sqlgate.checkpoints WHERE {where}"
                f" ORDER BY created_at DESC, id DESC LIMIT {int(limit)}", args).fetchall()
            sizes = dict(cur.execute(  # an estimate: rows x columns x 8 bytes
                "SELECT schema_name || '.' || table_name, estimated_size * column_count * 8 FROM duckdb_tables()"
                " WHERE database_name = current_database()").fetchall())
            now = datetime.now(UTC)
            out = []
            for r in rows:
                size = 0
                for o in json.loads(r[7]):
                    for kept in _kept(o):
                        size += int(sizes.get(kept.replace('"', ""), 0) or 0)
                    if o.get("kind") == "relation" and r[10] is None:
                        size += int(sizes.get(f"{o['schema']}.{o['trash']}", 0) or 0)
                created = r[8].astimezone(UTC)
                out.append({"id": r[0], "trace_id": r[1], "actor": r[2], "token_id": r[3], "branch": r[4],
                            "kind": r[5], "tables": json.loads(r[6]), "created_at": created.isoformat(),
                            "expires_at": r[9].astimezone(UTC).isoformat(), "undone_by": r[10],
                            "undoes": r[11], "size_bytes": size, "age_s": (now - created).total_seconds()})
            return out

        return await self.backend.run_read(read)  # type: ignore[no-any-return]

    async def get(self, cp_id: str) -> dict[str, Any] | None:
        rows = await self.backend.run_read(lambda c: c.execute(
            "SELECT token_id, actor FROM sqlgate.checkpoints WHERE id = ?", [cp_id]).fetchall())
        return {"token_id": rows[0][0], "actor": rows[0][1]} if rows else None

    async def purge(self) -> int:
        """Forget expired checkpoints and drop what they kept (schedule: at start, then hourly)."""
        catalog = catalog_of(self.backend)

        def purge(cur: Cursor) -> int:
            catalog.changed()  # it drops tables
            cur.execute("BEGIN TRANSACTION")
            try:
                rows = cur.execute("SELECT id, objects, undone_by FROM sqlgate.checkpoints"
                                   " WHERE expires_at <= now()").fetchall()
                for cp_id, objects, undone_by in rows:
                    for o in json.loads(objects):
                        for kept in _kept(o):
                            cur.execute(f"DROP TABLE IF EXISTS {kept}")
                        if o.get("kind") == "relation" and undone_by is None:
                            cur.execute(f"DROP TABLE IF EXISTS {q(o['schema'])}.{q(o['trash'])}")
                    cur.execute("DELETE FROM sqlgate.checkpoints WHERE id = ?", [cp_id])
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            finally:
                catalog.changed()
            return len(rows)

        return await self.backend.run_write(purge)  # type: ignore[no-any-return]

    # --- rollback ---------------------------------------------------------

    async def rollback(self, cp_id: str, mode: str = "all", dry_run: bool = False,
                       context: CheckpointContext | None = None, finish: Any = None) -> common.RollbackOutcome:
        """One transaction; `finish(outcome)` gives the traces that commit with it."""
        catalog = catalog_of(self.backend)

        def run(cur: Cursor) -> common.RollbackOutcome:
            # What it renames, creates or alters makes cached catalog facts stale as it does (rows alone
            # only create tables of fresh names in schema sqlgate), and again when its transaction ends.
            version = catalog.version()
            # setval is not transactional: a dry run puts back by hand the values it set.
            sequences = _sequence_values(cur) if dry_run else {}
            try:
                cur.execute("BEGIN TRANSACTION")
                try:
                    outcome = rollback(cur, self.retention_days, cp_id, mode, dry_run, context, catalog,
                                       self.classify, self.take_now)
                    if finish is not None and not dry_run:
                        self.backend.meta.write_traces(cur, finish(outcome))
                except BaseException:
                    cur.execute("ROLLBACK")
                    raise
                cur.execute("ROLLBACK" if dry_run else "COMMIT")
                if dry_run:
                    _set_back(cur, sequences)
                return outcome
            finally:
                if catalog.version() != version:
                    catalog.changed()

        try:
            return await self.backend.run_write(run)  # type: ignore[no-any-return]
        except duckdb.Error as exc:
            raise common.rollback_failed(str(exc).strip()) from exc


class _Inline:
    """A session stand-in for checkpoint runners driven on a cursor the caller already holds (its thread,
    its transaction): they run what they would hand to the session's thread right away."""

    def __init__(self, cur: Cursor, backend: Any) -> None:
        self._conn = cur
        self.backend = backend

    async def _run(self, fn: Any) -> Any:
        return fn()


def _kept(o: dict[str, Any]) -> list[str]:
    """The tables in schema sqlgate one checkpoint object keeps."""
    return [k for k in (o.get("old"), o.get("new"), o.get("appended"), o.get("keep"), o.get("map"),
                        *o.get("keeps", [])) if k]


def _sequence_values(cur: Cursor) -> dict[str, int]:
    return {f"{q(schema)}.{q(name)}": int(value) for schema, name, value in cur.execute(
        "SELECT schema_name, sequence_name, last_value FROM duckdb_sequences()"
        " WHERE database_name = current_database() AND last_value IS NOT NULL").fetchall()}


def _set_back(cur: Cursor, values: dict[str, int]) -> None:
    now = _sequence_values(cur)
    for name, value in values.items():
        if now.get(name) != value:
            cur.execute("SELECT setval(?, ?)", [name, value])


def _plan(take: Take, tree: exp.Expression) -> tuple[str, Any]:
    """(checkpoint kind, runner) for the statement, or checkpoint.unavailable."""
    part = take.part
    targets = part.targets
    actions = {t.action for t in targets}
    names = [t.name for t in targets]
    one = targets[0] if len(targets) == 1 else None
    if isinstance(tree, (exp.Query, *_DML)) and has_dml_cte(tree):
        return "rows", images_runner(take, lambda cur: cte_tables(targets))
    if one and isinstance(tree, exp.Merge):
        return "rows", images_runner(take, lambda cur: [merge(tree, one.name)])
    if one and one.action == "upsert" and isinstance(tree, exp.Insert):
        return "rows", images_runner(take, lambda cur: [upsert(cur, tree, one.name)])
    if actions <= {"delete", "update"} and one and isinstance(tree, (exp.Delete, exp.Update)):
        try:
            return "rows", dml_runner(take, names[0], tree)
        except (ValueError, sqlglot.errors.SqlglotError) as exc:
            raise common.unavailable(part, f"cannot select the rows it changes ({exc})") from None
    if actions == {"truncate"}:
        return "rows", truncate_runner(take, names)
    if one and one.action == "drop" and one.kind in ("table", "view"):
        if_exists = bool(isinstance(tree, exp.Drop) and tree.args.get("exists"))
        return one.kind, drop_runner(take, one.kind, names[0], if_exists)
    if one and one.action == "alter" and one.detail == "drop column" and one.column and one.kind == "table":
        return "column", drop_column_runner(take, names[0], unquote(one.column))
    if one and (one.kind == "table" and (one.action == "rename" or one.detail in _DEFINITION_DETAILS)
                or one.kind == "index" and one.action == "create"):  # an index: its table's definition
        column = unquote(one.column) if one.detail == "type" and one.column else None
        return "definition", take.keep_runner(lambda cur: keep_definition(take, cur, names[0], column))
    if one and ((one.action == "drop" and one.kind in ("index", "sequence"))
                or (one.kind == "view" and one.action == "replace")):
        return "definition", take.keep_runner(lambda cur: keep_object(take, cur, one.kind, names[0]))
    if one and one.kind == "schema" and one.action == "drop" and one.name.endswith(".*"):
        if_exists = bool(isinstance(tree, exp.Drop) and tree.args.get("exists"))
        return "schema", drop_schema_runner(take, unquote(one.name[:-2]), if_exists, one.detail == "cascade")
    kinds = ", ".join(sorted({t.kind for t in targets}))
    raise common.unavailable(part, f"{', '.join(sorted(actions))} of {kinds} on DuckDB")
