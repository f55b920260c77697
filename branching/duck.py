"""DuckDB checkpoints: the rows a statement will destroy, selected first with
its own FROM/WHERE into tables in schema `sqlgate`; drops become renames."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import sqlglot
from sqlglot import exp

from branching import common
from branching.checkpoint import Checkpoint, CheckpointContext
from proxy import errors
from proxy.db_errors import database_error
from proxy.result import Result
from proxy.sql_filters import conditions
from proxy.statement import Part
from proxy.trace import new_id

SETUP_SQL = """
CREATE SCHEMA IF NOT EXISTS sqlgate;
CREATE TABLE IF NOT EXISTS sqlgate.checkpoints (
    id VARCHAR PRIMARY KEY, trace_id VARCHAR, actor VARCHAR NOT NULL, token_id VARCHAR, branch VARCHAR NOT NULL,
    kind VARCHAR NOT NULL, tables VARCHAR NOT NULL, objects VARCHAR NOT NULL, seq BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL, expires_at TIMESTAMPTZ NOT NULL, undone_by VARCHAR, undoes VARCHAR);
CREATE SEQUENCE IF NOT EXISTS sqlgate.checkpoint_seq;
"""

ROWID = "__sqlgate_rowid"
_NAME_TAKEN = "a relation with this name was created since"
_DEFINITION_DETAILS = {"drop default", "drop not null", "rename column", "type"}


def _count(cur: duckdb.DuckDBPyConnection, statement: str) -> int:
    row = cur.execute(statement).fetchone()
    return int(row[0]) if row else 0


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _split(cur: duckdb.DuckDBPyConnection, name: str) -> tuple[str, str]:
    table = exp.to_table(name, dialect="duckdb")
    schema = table.db or cur.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
    return schema, table.name


def _exists(cur: duckdb.DuckDBPyConnection, schema: str, name: str, views: bool = False) -> bool:
    source = "duckdb_views()" if views else "duckdb_tables()"
    column = "view_name" if views else "table_name"
    row = cur.execute(f"SELECT count(*) FROM {source} WHERE schema_name = ? AND {column} = ?"
                      " AND database_name = current_database()", [schema, name]).fetchone()
    return bool(row and row[0])


def _columns(cur: duckdb.DuckDBPyConnection, schema: str, name: str) -> list[str]:
    rows = cur.execute("SELECT column_name FROM duckdb_columns() WHERE schema_name = ? AND table_name = ?"
                       " AND database_name = current_database() ORDER BY column_index", [schema, name]).fetchall()
    return [r[0] for r in rows]


def _rowid_select(tree: exp.Expression) -> str:
    """SELECT the target's rowids with the statement's own FROM/USING/WHERE."""
    target = tree.this
    if not isinstance(target, exp.Table):
        raise ValueError("target is not a table")
    ref = target.alias_or_name
    select = exp.select(exp.column("rowid", table=ref, quoted=True)).from_(target.copy())
    extra = tree.args.get("using") or tree.args.get("tables") or []
    from_ = tree.args.get("from") or tree.args.get("from_")
    if from_ is not None:
        extra = [*extra, from_.this, *[j.this for j in (tree.args.get("joins") or [])]]
        for join in from_.args.get("joins") or []:
            extra.append(join)
    for other in extra:
        if isinstance(other, exp.Join):
            select = select.join(other.copy())
        else:
            select = select.join(other.copy(), join_type="cross")
    where = tree.args.get("where")
    if where is not None:
        select = select.where(where.this.copy())
    with_ = tree.args.get("with") or tree.args.get("with_")
    if with_ is not None:
        select.set("with", with_.copy())
    return select.sql(dialect="duckdb")


class DuckDBCheckpointer:
    def __init__(self, backend: Any, retention_days: float = common.DEFAULT_RETENTION.days) -> None:
        self.backend = backend
        self.retention_days = retention_days

    async def setup(self) -> None:
        await self.backend.run_write(lambda c: c.execute(SETUP_SQL))

    # --- take -------------------------------------------------------------

    async def take(self, session: Any, part: Part, context: CheckpointContext) -> Checkpoint:
        targets = part.targets
        actions = {t.action for t in targets}
        if not targets:
            raise common.unavailable(part, "the classifier named no target")
        cp_id = new_id("cp")
        names = [t.name for t in targets]
        tree = part.tree
        if tree is None:  # classification cache hits carry no tree (it belonged to other literals)
            try:
                tree = sqlglot.parse_one(part.sql, read="duckdb")
            except sqlglot.errors.SqlglotError as exc:
                raise common.unavailable(part, f"cannot parse it ({exc})") from None
        kind: str
        if actions <= {"delete", "update"} and len(targets) == 1 and isinstance(tree, (exp.Delete, exp.Update)):
            kind = "rows"
            try:
                run = self._dml_runner(session, cp_id, context, names[0], tree, part)
            except (ValueError, sqlglot.errors.SqlglotError) as exc:
                raise common.unavailable(part, f"cannot select the rows it changes ({exc})") from None
        elif actions == {"truncate"}:
            kind = "rows"
            run = self._truncate_runner(session, cp_id, context, names, part)
        elif actions == {"drop"} and len(targets) == 1 and targets[0].kind in ("table", "view"):
            kind = targets[0].kind
            if_exists = bool(isinstance(tree, exp.Drop) and tree.args.get("exists"))
            run = self._drop_runner(session, cp_id, context, targets[0].kind, names[0], if_exists, part)
        elif (len(targets) == 1 and targets[0].action == "alter" and targets[0].detail == "drop column"
              and targets[0].column and targets[0].kind == "table"):
            kind = "column"
            column = targets[0].column
            if column.startswith('"'):
                column = column[1:-1].replace('""', '"')
            run = self._drop_column_runner(session, cp_id, context, names[0], column, part)
        elif len(targets) == 1 and targets[0].kind == "table" and (
                targets[0].action == "rename" or targets[0].detail in _DEFINITION_DETAILS):
            kind = "definition"
            column = targets[0].column if targets[0].detail == "type" else None
            if column and column.startswith('"'):
                column = column[1:-1].replace('""', '"')
            run = self._keep_runner(session, lambda cur: self._keep_definition(cur, cp_id, context, names[0], column))
        elif (actions == {"drop"} and len(targets) == 1 and targets[0].kind in ("index", "sequence")) or (
                len(targets) == 1 and targets[0].kind == "view" and targets[0].action == "replace"):
            kind = "definition"
            target = targets[0]
            run = self._keep_runner(session, lambda cur: self._keep_object(cur, cp_id, context, target.kind, names[0]))
        else:
            kinds = ", ".join(sorted({t.kind for t in targets}))
            raise common.unavailable(part, f"{', '.join(sorted(actions))} of {kinds} on DuckDB")
        return Checkpoint(cp_id, tuple(names), kind, run=run)

    def _record(self, cur: duckdb.DuckDBPyConnection, cp_id: str, context: CheckpointContext | None, kind: str,
                tables: list[str], objects: list[dict[str, Any]], undoes: str | None = None) -> None:
        now = datetime.now(UTC)
        cur.execute(
            "INSERT INTO sqlgate.checkpoints VALUES (?, ?, ?, ?, ?, ?, ?, ?, nextval('sqlgate.checkpoint_seq'), ?, ?,"
            " NULL, ?)",
            [cp_id, context.trace_id if context else None, context.actor if context else "sqlgate",
             context.token_id if context else None, context.branch if context else "main", kind, json.dumps(tables),
             json.dumps(objects), now, now + timedelta(days=self.retention_days), undoes])

    @staticmethod
    def _watermark(cur: duckdb.DuckDBPyConnection, schema: str, table: str) -> int:
        """The highest row id a row of the table has now: rows appended later get higher ones. DuckDB's
        estimated_size counts row slots (deleted ones too), so this is O(1), not a scan."""
        row = cur.execute("SELECT estimated_size FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?"
                          " AND database_name = current_database()", [schema, table]).fetchone()
        return int(row[0]) - 1 if row and row[0] is not None else -1

    def _dml_runner(self, session: Any, cp_id: str, context: CheckpointContext, name: str, tree: exp.Expression,
                    part: Part) -> Any:
        is_update = isinstance(tree, exp.Update)
        own_with = tree.args.get("with") is not None or tree.args.get("with_") is not None
        own_returning = tree.args.get("returning") is not None
        rowids = _rowid_select(tree) if (is_update or own_returning) else None
        verb = "UPDATE" if is_update else "DELETE"

        async def run(original: Any, params: Any) -> Result:
            # Run here, not in take(): the rows are kept by SQL that needs the statement's parameters.
            args = list(params) if params else None

            def capture() -> Result | None:
                cur = session._conn
                schema, table = _split(cur, name)
                qualified = f"{q(schema)}.{q(table)}"
                old = f"sqlgate.{q('cpd_' + cp_id + '_0')}"
                obj: dict[str, Any] = {"kind": "rows", "schema": schema, "name": table, "old": old, "new": None,
                                       "watermark": self._watermark(cur, schema, table)}
                result: Result | None = None
                if rowids is None and not own_with:
                    # DELETE: one pass, the statement's own RETURNING feeds the kept rows.
                    count = cur.execute(f"CREATE TABLE {old} AS WITH __sqlgate_d AS ({part.sql}\n"
                                        f"RETURNING rowid AS {ROWID}, *) SELECT * FROM __sqlgate_d", args).fetchone()
                    result = Result(command_tag=f"DELETE {count[0] if count else 0}")
                else:
                    if rowids is None:
                        raise common.unavailable(part, "DELETE with its own WITH clause on DuckDB")
                    cur.execute(f"CREATE TABLE {old} AS SELECT rowid AS {ROWID}, * FROM {qualified}"
                                f" WHERE rowid IN ({rowids})", args)
                if is_update:
                    if own_with:
                        raise common.unavailable(part, "UPDATE with its own WITH clause on DuckDB")
                    new = f"sqlgate.{q('cpi_' + cp_id + '_0')}"
                    count = cur.execute(f"CREATE TABLE {new} AS WITH __sqlgate_u AS ({part.sql}\nRETURNING *)"
                                        " SELECT * FROM __sqlgate_u", args).fetchone()
                    obj["new"] = new
                    result = Result(command_tag=f"UPDATE {count[0] if count else 0}")
                self._record(cur, cp_id, context, "rows", [name], [obj])
                return result

            try:
                result = await session._run(capture)
            except duckdb.Error as exc:
                raise database_error(exc) from exc
            return result if result is not None else await original()

        if is_update and own_returning:
            raise common.unavailable(part, f"{verb} ... RETURNING on DuckDB")
        return run

    def _truncate_runner(self, session: Any, cp_id: str, context: CheckpointContext, names: list[str],
                         part: Part) -> Any:
        def capture(cur: duckdb.DuckDBPyConnection) -> None:
            objects = []
            for i, name in enumerate(names):
                schema, table = _split(cur, name)
                qualified = f"{q(schema)}.{q(table)}"
                old = f"sqlgate.{q(f'cpd_{cp_id}_{i}')}"
                watermark = self._watermark(cur, schema, table)
                cur.execute(f"CREATE TABLE {old} AS SELECT rowid AS {ROWID}, * FROM {qualified}")
                objects.append({"kind": "rows", "schema": schema, "name": table, "old": old, "new": None,
                                "watermark": watermark})
            self._record(cur, cp_id, context, "rows", names, objects)

        return self._keep_runner(session, capture)

    @staticmethod
    def _keep_runner(session: Any, keep: Any) -> Any:
        async def run(original: Any, params: Any) -> Result:
            try:
                await session._run(lambda: keep(session._conn))
            except duckdb.Error as exc:
                raise database_error(exc) from exc
            return await original()

        return run

    def _keep_definition(self, cur: duckdb.DuckDBPyConnection, cp_id: str, context: CheckpointContext, name: str,
                         type_column: str | None) -> None:
        schema, table = _split(cur, name)
        row = cur.execute("SELECT table_oid FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?"
                          " AND database_name = current_database()", [schema, table]).fetchone()
        if row is None:
            return  # the statement itself reports the missing table
        columns = cur.execute(
            "SELECT column_name, data_type, column_default, is_nullable FROM duckdb_columns()"
            " WHERE table_oid = ? ORDER BY column_index", [row[0]]).fetchall()
        obj: dict[str, Any] = {"kind": "definition", "schema": schema, "name": table, "oid": row[0],
                               "columns": [list(c) for c in columns]}
        if type_column is not None:
            keep = f"sqlgate.{q('typ_' + cp_id)}"
            cur.execute(f"CREATE TABLE {keep} AS SELECT rowid AS {ROWID}, {q(type_column)} FROM {q(schema)}.{q(table)}")
            obj.update(keep=keep, type_column=type_column)
        self._record(cur, cp_id, context, "definition", [name], [obj])

    def _keep_object(self, cur: duckdb.DuckDBPyConnection, cp_id: str, context: CheckpointContext, kind: str,
                     name: str) -> None:
        schema, obj_name = _split(cur, name)
        source, column = {"index": ("duckdb_indexes()", "index_name"),
                          "sequence": ("duckdb_sequences()", "sequence_name"),
                          "view": ("duckdb_views()", "view_name")}[kind]
        row = cur.execute(f"SELECT sql FROM {source} WHERE schema_name = ? AND {column} = ?"
                          " AND database_name = current_database()", [schema, obj_name]).fetchone()
        objects = [] if row is None else [{"kind": f"{kind}def", "schema": schema, "name": obj_name, "sql": row[0]}]
        self._record(cur, cp_id, context, "definition", [name], objects)

    def _restore_definition(self, cur: duckdb.DuckDBPyConnection, o: dict[str, Any]) -> None:
        row = cur.execute("SELECT schema_name, table_name FROM duckdb_tables() WHERE table_oid = ?",
                          [o["oid"]]).fetchone()
        if row is None:
            raise common.rollback_failed(f"table {o['schema']}.{o['name']} is gone")
        if row[1] != o["name"]:
            cur.execute(f"ALTER TABLE {q(row[0])}.{q(row[1])} RENAME TO {q(o['name'])}")
        qualified = f"{q(o['schema'])}.{q(o['name'])}"
        now = cur.execute("SELECT column_name, data_type, column_default, is_nullable FROM duckdb_columns()"
                          " WHERE table_oid = ? ORDER BY column_index", [o["oid"]]).fetchall()
        for (name, type_, default, nullable), current in zip(o["columns"], now, strict=False):
            col = q(name)
            if current[0] != name:
                cur.execute(f"ALTER TABLE {qualified} RENAME COLUMN {q(current[0])} TO {col}")
            kept = o.get("type_column") == name and o.get("keep")
            if current[1] != type_:
                cur.execute(f"ALTER TABLE {qualified} ALTER COLUMN {col} TYPE {type_}"
                            f" USING {'NULL' if kept else f'CAST({col} AS {type_})'}")
            if kept:  # even when the type reads the same (VARCHAR(4) is VARCHAR), USING may have changed values
                cur.execute(f"UPDATE {qualified} SET {col} = k.{col} FROM {o['keep']} k"
                            f" WHERE {qualified}.rowid = k.{ROWID}")
            if current[2] != default:
                cur.execute(f"ALTER TABLE {qualified} ALTER COLUMN {col} "
                            + ("DROP DEFAULT" if default is None else f"SET DEFAULT {default}"))
            if current[3] != nullable:
                cur.execute(f"ALTER TABLE {qualified} ALTER COLUMN {col} {'DROP' if nullable else 'SET'} NOT NULL")
        if o.get("keep"):
            cur.execute(f"DROP TABLE {o['keep']}")

    def _drop_column_runner(self, session: Any, cp_id: str, context: CheckpointContext, name: str, column: str,
                            part: Part) -> Any:
        def keep(cur: duckdb.DuckDBPyConnection) -> None:
            schema, table = _split(cur, name)
            cols = cur.execute(
                "SELECT column_name, data_type, column_default, is_nullable FROM duckdb_columns()"
                " WHERE schema_name = ? AND table_name = ? AND database_name = current_database()"
                " ORDER BY column_index", [schema, table]).fetchall()
            found = [c for c in cols if c[0] == column]
            if not found:
                return  # the statement itself reports the missing column
            if cols[-1][0] != column:
                raise common.unavailable(part, f'"{column}" is not the last column of {name}; DuckDB cannot put'
                                               " a column back between others, so the drop could not be undone")
            constrained = cur.execute(
                "SELECT count(*) FROM duckdb_constraints() WHERE schema_name = ? AND table_name = ?"
                " AND constraint_type NOT IN ('NOT NULL') AND list_contains(constraint_column_names, ?)",
                [schema, table, column]).fetchone()
            if constrained and constrained[0]:
                raise common.unavailable(part, f'"{column}" is part of a constraint DuckDB cannot add back')
            kept = f"sqlgate.{q('col_' + cp_id)}"
            cur.execute(f"CREATE TABLE {kept} AS SELECT rowid AS {ROWID}, {q(column)} FROM {q(schema)}.{q(table)}")
            _, data_type, default, nullable = found[0]
            self._record(cur, cp_id, context, "column", [name], [{
                "kind": "column", "schema": schema, "name": table, "column": column, "type": data_type,
                "default": default, "notnull": not nullable, "keep": kept}])

        return self._keep_runner(session, keep)

    def _drop_runner(self, session: Any, cp_id: str, context: CheckpointContext, kind: str, name: str,
                     if_exists: bool, part: Part) -> Any:
        command = part.command

        async def run(original: Any, params: Any) -> Result:
            def move() -> None:
                cur = session._conn
                schema, table = _split(cur, name)
                if not _exists(cur, schema, table, views=kind == "view"):
                    if if_exists:
                        self._record(cur, cp_id, context, kind, [name], [])
                        return
                    word = "View" if kind == "view" else "Table"
                    raise errors.SqlgateError(
                        "sql.error", "42P01", f"Catalog Error: {word} with name {table} does not exist!", "",
                        "fix the statement and send it again; nothing from this request was committed")
                qualified = f"{q(schema)}.{q(table)}"
                if kind == "view":
                    view_sql = cur.execute(
                        "SELECT sql FROM duckdb_views() WHERE schema_name = ? AND view_name = ?"
                        " AND database_name = current_database()", [schema, table]).fetchone()[0]  # type: ignore[index]
                    cur.execute(f"DROP VIEW {qualified}")
                    self._record(cur, cp_id, context, "view", [name],
                                 [{"kind": "view", "schema": schema, "name": table, "sql": view_sql}])
                    return
                # One catalog read: who references it, whether it references others, its indexes.
                referencing, outgoing, index_rows = cur.execute(
                    "SELECT (SELECT list(table_name) FROM duckdb_constraints() WHERE constraint_type = 'FOREIGN KEY'"
                    "        AND referenced_table = $2 AND schema_name = $1 AND table_name <> $2),"
                    " (SELECT count(*) FROM duckdb_constraints() WHERE constraint_type = 'FOREIGN KEY'"
                    "        AND schema_name = $1 AND table_name = $2 AND database_name = current_database()),"
                    " (SELECT list([index_name, sql]) FROM duckdb_indexes() WHERE schema_name = $1"
                    "        AND table_name = $2 AND database_name = current_database())",
                    [schema, table]).fetchone()  # type: ignore[misc]
                if referencing:
                    raise errors.SqlgateError(
                        "sql.error", "2BP01",
                        "Could not drop the table because this table is main key table of the table"
                        f" \"{referencing[0]}\"",
                        "", "drop the referencing table first")
                indexes = [tuple(r) for r in index_rows or []]
                if outgoing:
                    # DuckDB cannot rename a table whose foreign keys would then hold its parent: keep a copy
                    # and its definition (cost: the table's rows; DuckDB has no cheaper way).
                    table_sql = cur.execute(
                        "SELECT sql FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?"
                        " AND database_name = current_database()", [schema, table]).fetchone()[0]  # type: ignore[index]
                    keep = f"sqlgate.{q('keep_' + cp_id + '_0')}"
                    cur.execute(f"CREATE TABLE {keep} AS SELECT * FROM {qualified}")
                    cur.execute(f"DROP TABLE {qualified}")
                    self._record(cur, cp_id, context, "table", [name], [{
                        "kind": "copy", "schema": schema, "name": table, "keep": keep, "sql": table_sql,
                        "indexes": [s for _, s in indexes]}])
                    return
                for index_name, _ in indexes:
                    cur.execute(f"DROP INDEX {q(schema)}.{q(index_name)}")
                trash = f"__sqlgate_{cp_id}_0"
                cur.execute(f"ALTER TABLE {qualified} RENAME TO {q(trash)}")
                self._record(cur, cp_id, context, "table", [name], [{
                    "kind": "relation", "schema": schema, "name": table, "trash": trash,
                    "indexes": [s for _, s in indexes]}])

            try:
                await session._run(move)
            except duckdb.Error as exc:
                raise database_error(exc) from exc
            return Result(command_tag=command)

        return run

    # --- list / purge -----------------------------------------------------

    async def list(self, actor: str | None = None, branch: str | None = None, since: Any = None,
                   token_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        where, args = conditions("?", {"actor": actor, "branch": branch, "token_id": token_id},
                                 {"created_at": since}, always="expires_at > now()")

        def read(cur: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
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
                    for key in ("old", "new", "keep"):
                        if o.get(key):
                            size += int(sizes.get(o[key].replace('"', ""), 0) or 0)
                    if o.get("kind") == "relation" and r[10] is None:
                        size += int(sizes.get(f"{o['schema']}.{o['trash']}", 0) or 0)
                created = r[8].astimezone(UTC)
                out.append({"id": r[0], "trace_id": r[1], "actor": r[2], "token_id": r[3], "branch": r[4],
                            "kind": r[5], "tables": json.loads(r[6]), "created_at": created.isoformat(),
                            "expires_at": r[9].astimezone(UTC).isoformat(), "undone_by": r[10],
                            "undoes": r[11], "size_bytes": size, "age_s": (now - created).total_seconds()})
            return out

        return await self.backend.run_read(read)

    async def get(self, cp_id: str) -> dict[str, Any] | None:
        rows = await self.backend.run_read(lambda c: c.execute(
            "SELECT token_id, actor FROM sqlgate.checkpoints WHERE id = ?", [cp_id]).fetchall())
        return {"token_id": rows[0][0], "actor": rows[0][1]} if rows else None

    async def purge(self) -> int:
        """Forget expired checkpoints and drop what they kept (schedule: at start, then hourly)."""
        def purge(cur: duckdb.DuckDBPyConnection) -> int:
            cur.execute("BEGIN TRANSACTION")
            try:
                rows = cur.execute("SELECT id, objects, undone_by FROM sqlgate.checkpoints"
                                   " WHERE expires_at <= now()").fetchall()
                for cp_id, objects, undone_by in rows:
                    for o in json.loads(objects):
                        for key in ("old", "new", "keep"):
                            if o.get(key):
                                cur.execute(f"DROP TABLE IF EXISTS {o[key]}")
                        if o.get("kind") == "relation" and undone_by is None:
                            cur.execute(f"DROP TABLE IF EXISTS {q(o['schema'])}.{q(o['trash'])}")
                    cur.execute("DELETE FROM sqlgate.checkpoints WHERE id = ?", [cp_id])
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            return len(rows)

        return await self.backend.run_write(purge)

    # --- rollback ---------------------------------------------------------

    async def rollback(self, cp_id: str, mode: str = "all", dry_run: bool = False,
                       context: CheckpointContext | None = None, finish: Any = None) -> common.RollbackOutcome:
        """One transaction; `finish(outcome)` gives the traces that commit with it."""
        def run(cur: duckdb.DuckDBPyConnection) -> common.RollbackOutcome:
            cur.execute("BEGIN TRANSACTION")
            try:
                outcome = self._rollback(cur, cp_id, mode, dry_run, context)
                if finish is not None and not dry_run:
                    self.backend.meta.write_traces(cur, finish(outcome))
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("ROLLBACK" if dry_run else "COMMIT")
            return outcome

        try:
            return await self.backend.run_write(run)
        except duckdb.Error as exc:
            raise common.rollback_failed(str(exc).strip()) from exc

    def _rollback(self, cur: duckdb.DuckDBPyConnection, cp_id: str, mode: str, dry_run: bool,
                  context: CheckpointContext | None) -> common.RollbackOutcome:
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

        def keys(objs: list[dict[str, Any]]) -> set[tuple[str, str]]:
            return {(o["schema"], o["name"]) for o in objs if "schema" in o}

        touched = keys(objects)
        later: list[tuple[str, list[dict[str, Any]], str | None]] = []
        if mode == "all":
            for other_id, other_objects, other_trace in cur.execute(
                    "SELECT id, objects, trace_id FROM sqlgate.checkpoints WHERE seq >= ? AND undone_by IS NULL"
                    " ORDER BY seq DESC", [seq]).fetchall():
                objs = json.loads(other_objects)
                if other_id == cp_id or keys(objs) & touched:
                    later.append((other_id, objs, other_trace))
                    touched |= keys(objs)
        else:
            later = [(cp_id, objects, trace_id)]
        new_cp = new_id("cp")
        new_objects: list[dict[str, Any]] = []
        # 1. Relations renamed aside come back; dropped views are created again (latest first).
        for _, objs, _ in later:
            for o in reversed(objs):
                if o["kind"] == "relation":
                    if _exists(cur, o["schema"], o["name"]) or _exists(cur, o["schema"], o["name"], views=True):
                        problem = [{"table": f"{o['schema']}.{o['name']}", "conflict": _NAME_TAKEN}]
                        if mode == "statement":
                            raise common.conflicts_error(cp_id, problem)
                        raise common.rollback_failed(f"{o['schema']}.{o['name']} exists again; drop it first")
                    cur.execute(f"ALTER TABLE {q(o['schema'])}.{q(o['trash'])} RENAME TO {q(o['name'])}")
                    for index_sql in o.get("indexes", []):
                        cur.execute(index_sql)
                    outcome.objects_restored.append(f"{o['schema']}.{o['name']}")
                elif o["kind"] == "copy":
                    if _exists(cur, o["schema"], o["name"]) or _exists(cur, o["schema"], o["name"], views=True):
                        raise common.conflicts_error(cp_id, [{"table": f"{o['schema']}.{o['name']}",
                                                              "conflict": _NAME_TAKEN}])
                    cur.execute(f"SET schema = {q(o['schema'])}")
                    cur.execute(o["sql"])
                    cur.execute(f"INSERT INTO {q(o['schema'])}.{q(o['name'])} SELECT * FROM {o['keep']}")
                    for index_sql in o.get("indexes", []):
                        cur.execute(index_sql)
                    cur.execute(f"DROP TABLE {o['keep']}")
                    outcome.objects_restored.append(f"{o['schema']}.{o['name']}")
                elif o["kind"] == "column":
                    qualified = f"{q(o['schema'])}.{q(o['name'])}"
                    if o["column"] in _columns(cur, o["schema"], o["name"]):
                        raise common.conflicts_error(cp_id, [{"column": o["column"],
                                                              "conflict": "a column with this name was added since"}])
                    default = f" DEFAULT {o['default']}" if o.get("default") is not None else ""
                    cur.execute(f"ALTER TABLE {qualified} ADD COLUMN {q(o['column'])} {o['type']}{default}")
                    cur.execute(f"UPDATE {qualified} SET {q(o['column'])} = k.{q(o['column'])} FROM {o['keep']} k"
                                f" WHERE {qualified}.rowid = k.{ROWID}")
                    if o.get("notnull"):
                        cur.execute(f"ALTER TABLE {qualified} ALTER COLUMN {q(o['column'])} SET NOT NULL")
                    cur.execute(f"DROP TABLE {o['keep']}")
                    outcome.objects_restored.append(f"{o['schema']}.{o['name']}.{o['column']}")
                elif o["kind"] == "definition":
                    self._restore_definition(cur, o)
                    outcome.objects_restored.append(f"{o['schema']}.{o['name']}")
                elif o["kind"] in ("indexdef", "sequencedef", "viewdef"):
                    cur.execute(f"SET schema = {q(o['schema'])}")
                    statement = o["sql"]
                    if o["kind"] == "viewdef":
                        statement = statement.replace("CREATE VIEW", "CREATE OR REPLACE VIEW", 1)
                    elif (_exists(cur, o["schema"], o["name"]) or cur.execute(
                            "SELECT count(*) FROM duckdb_indexes() WHERE schema_name = ? AND index_name = ?",
                            [o["schema"], o["name"]]).fetchone()[0]):  # type: ignore[index]
                        raise common.conflicts_error(cp_id, [{"object": o["name"], "conflict": _NAME_TAKEN}])
                    cur.execute(statement)
                    outcome.objects_restored.append(f"{o['schema']}.{o['name']}")
                elif o["kind"] == "view":
                    if _exists(cur, o["schema"], o["name"], views=True) or _exists(cur, o["schema"], o["name"]):
                        raise common.conflicts_error(cp_id, [{"view": f"{o['schema']}.{o['name']}",
                                                              "conflict": _NAME_TAKEN}])
                    cur.execute(f"SET schema = {q(o['schema'])}")
                    cur.execute(o["sql"])
                    outcome.objects_restored.append(f"{o['schema']}.{o['name']}")
        # 2. Rows.
        conflicts: list[dict[str, Any]] = []
        n = 0
        if mode == "statement":
            for o in objects:
                if o["kind"] == "rows":
                    new_objects.append(self._undo_statement(cur, o, new_cp, n, outcome, conflicts))
                    n += 1
        else:
            for schema, name in sorted(touched):
                pieces = [o for _, objs, _ in reversed(later) for o in objs
                          if o["kind"] == "rows" and (o["schema"], o["name"]) == (schema, name)]
                if pieces:
                    new_objects.append(self._undo_all(cur, schema, name, pieces, new_cp, n, outcome))
                    n += 1
        if conflicts:
            raise common.conflicts_error(cp_id, conflicts)
        undone = [c for c, _, _ in later]
        outcome.undone_checkpoints = undone
        traces = {t for _, _, t in later if t}
        if mode == "all":
            names = {t for t in tables} | {f"{s}.{n_}" for s, n_ in touched} | {n_ for _, n_ in touched}
            for tid, ttables in cur.execute(
                    "SELECT id, tables FROM sqlgate.traces WHERE \"at\" > ? AND outcome = 'ok'"
                    " AND class IN ('write', 'destructive_dml', 'destructive_ddl', 'safe_ddl')",
                    [created_at]).fetchall():
                if set(json.loads(ttables)) & names:
                    traces.add(tid)
        traces.discard(trace_id)
        outcome.undone_traces = sorted(traces)
        self._record(cur, new_cp, context, "rollback", list(tables), new_objects, undoes=cp_id)
        cur.execute(f"UPDATE sqlgate.checkpoints SET undone_by = ? WHERE id IN ({', '.join(['?'] * len(undone))})",
                    [new_cp, *undone])
        outcome.new_checkpoint = None if dry_run else new_cp
        return outcome

    def _undo_statement(self, cur: duckdb.DuckDBPyConnection, o: dict[str, Any], new_cp: str, n: int,
                        outcome: common.RollbackOutcome, conflicts: list[dict[str, Any]]) -> dict[str, Any]:
        qualified = f"{q(o['schema'])}.{q(o['name'])}"
        cols = _columns(cur, o["schema"], o["name"])
        kept = _columns(cur, "sqlgate", o["old"].split(".", 1)[1].strip('"'))
        if [c for c in kept if c != ROWID] != cols:
            conflicts.append({"table": f"{o['schema']}.{o['name']}", "conflict": "its columns changed since"})
            return {}
        collist = ", ".join(q(c) for c in cols)
        match = " AND ".join(f"x.{q(c)} IS NOT DISTINCT FROM g.{q(c)}" for c in cols)
        removed_old = f"sqlgate.{q(f'cpd_{new_cp}_{n}')}"
        added_new = f"sqlgate.{q(f'cpi_{new_cp}_{n}')}"
        watermark = self._watermark(cur, o["schema"], o["name"])
        victims = "SELECT NULL::BIGINT AS rid WHERE false"
        if o.get("new"):
            groups = f"(SELECT {collist}, count(*) AS __n FROM {o['new']} GROUP BY ALL)"
            missing = cur.execute(
                f"SELECT {collist}, __n FROM {groups} g WHERE __n > (SELECT count(*) FROM {qualified} x WHERE {match})"
            ).fetchall()
            for m in missing[:100]:
                conflicts.append({"table": f"{o['schema']}.{o['name']}", "row": [str(v) for v in m[:-1]],
                                  "conflict": "changed or deleted since the checkpoint"})
            if missing:
                return {}
            partition = ", ".join("x." + q(c) for c in cols)
            victims = (f"SELECT rid FROM (SELECT x.rowid AS rid, g.__n,"
                       f" row_number() OVER (PARTITION BY {partition}) AS k"
                       f" FROM {qualified} x JOIN {groups} g ON {match}) WHERE k <= __n")
        cur.execute(f"CREATE TABLE {removed_old} AS SELECT rowid AS {ROWID}, * FROM {qualified}"
                    f" WHERE rowid IN ({victims})")
        outcome.rows_removed += _count(
            cur, f"DELETE FROM {qualified} WHERE rowid IN (SELECT {ROWID} FROM {removed_old})")
        cur.execute(f"CREATE TABLE {added_new} AS SELECT {collist} FROM {o['old']}")
        try:
            outcome.rows_restored += _count(
                cur, f"INSERT INTO {qualified} ({collist}) SELECT {collist} FROM {added_new}")
        except duckdb.ConstraintException as exc:
            conflicts.append({"table": f"{o['schema']}.{o['name']}",
                              "conflict": f"a restored row collides with a later change: {str(exc).splitlines()[0]}"})
            raise common.conflicts_error(outcome.checkpoint, conflicts) from None
        return {"kind": "rows", "schema": o["schema"], "name": o["name"], "old": removed_old, "new": added_new,
                "watermark": watermark}

    def _undo_all(self, cur: duckdb.DuckDBPyConnection, schema: str, name: str, pieces: list[dict[str, Any]],
                  new_cp: str, n: int, outcome: common.RollbackOutcome) -> dict[str, Any]:
        """The table as it was at the first piece: rows present then and never touched since, plus the
        first kept version of every row a later statement removed or changed (row ids ≤ the watermark)."""
        qualified = f"{q(schema)}.{q(name)}"
        cols = _columns(cur, schema, name)
        collist = ", ".join(q(c) for c in cols)
        watermark = int(pieces[0]["watermark"])
        olds = " UNION ALL ".join(
            f"SELECT {i} AS __o, {ROWID}, {collist} FROM {p['old']} WHERE {ROWID} <= {watermark}"
            for i, p in enumerate(pieces))
        removed_old = f"sqlgate.{q(f'cpd_{new_cp}_{n}')}"
        added_new = f"sqlgate.{q(f'cpi_{new_cp}_{n}')}"
        now_mark = self._watermark(cur, schema, name)
        cur.execute(f"CREATE TABLE {removed_old} AS SELECT rowid AS {ROWID}, * FROM {qualified}"
                    f" WHERE rowid > {watermark} OR rowid IN (SELECT {ROWID} FROM ({olds}))")
        outcome.rows_removed += _count(
            cur, f"DELETE FROM {qualified} WHERE rowid IN (SELECT {ROWID} FROM {removed_old})")
        cur.execute(f"CREATE TABLE {added_new} AS SELECT {collist} FROM ({olds})"
                    f" QUALIFY row_number() OVER (PARTITION BY {ROWID} ORDER BY __o) = 1")
        outcome.rows_restored += _count(
            cur, f"INSERT INTO {qualified} ({collist}) SELECT {collist} FROM {added_new}")
        return {"kind": "rows", "schema": schema, "name": name, "old": removed_old, "new": added_new,
                "watermark": now_mark}
