"""Taking a PostgreSQL checkpoint, inside the statement's transaction: which kind
of record a statement needs (row deltas, a move aside, a kept column, a kept
definition), and, for DML and drops, the one-round-trip runner that replaces
the plain execution of the statement."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from pglast import parser as pgparser
from psycopg import sql

from branching import common
from branching.checkpoint import Checkpoint, CheckpointContext
from proxy.backends.pg_simple import direct as _direct
from proxy.backends.pg_simple import pipelined, simple_query
from proxy.db_errors import database_error
from proxy.result import Result, result_from_pgresult
from proxy.statement import Part, StatementClass
from proxy.trace import new_id

# 'upsert': INSERT ... ON CONFLICT DO UPDATE; the capture triggers record its inserts and updates alike.
_DML = {"delete", "update", "merge", "truncate", "insert", "upsert"}
# A table's kept definition (names, types, defaults, NOT NULL, constraints, indexes) is what these need.
_DEFINITION_DETAILS = {"drop default", "set default", "drop not null", "drop constraint", "rename column", "type",
                       "add column", "set not null", "add constraint"}
# Those of them one definition checkpoint also keeps when an ALTER TABLE does several (no values to keep).
_KEPT_TOGETHER = _DEFINITION_DETAILS - {"rename column", "type"}
# These run on the agent's connection, under its search_path: built-in names are qualified.
_TAKE_SQL = ("SELECT sqlgate.cp_take(%s, %s, %s, %s, %s, %s, %s::pg_catalog.text[],"
             " %s::pg_catalog.text[]::pg_catalog.regclass[], %s)")
_DROP_SQL = ("SELECT sqlgate.cp_drop(%s, %s::pg_catalog.text[], ARRAY(SELECT pg_catalog.to_regclass(n)"
             " FROM pg_catalog.unnest(%s::pg_catalog.text[]) n), %s, %s, %s)")
_DROP_SCHEMA_SQL = "SELECT sqlgate.cp_drop_schema(%s, %s::pg_catalog.text[], %s, %s)"
_TAKE_ROWS_SQL = ("SELECT sqlgate.cp_take(%s, %s, %s, %s, %s, %s, %s::pg_catalog.text[],"
                  " %s::pg_catalog.text[]::pg_catalog.regclass[], %s),"
                  " pg_catalog.set_config('sqlgate.checkpoint', %s, true)")
# Later statements of the same transaction are not this checkpoint's: its id is
# forgotten right after the statement, in the same round trip.
_FORGET_SQL = "SELECT pg_catalog.set_config('sqlgate.checkpoint', '', true)"


async def take(session: Any, part: Part, context: CheckpointContext, retention_days: float) -> Checkpoint:
    """Record what `part` will destroy; refuse (checkpoint.unavailable) what cannot be undone exactly."""
    targets = part.targets
    actions = {t.action for t in targets}
    if not targets:
        raise common.unavailable(part, "the classifier named no target")
    cp_id = new_id("cp")
    names = [t.name for t in targets]
    base = (cp_id, context.trace_id, context.actor, context.token_id, context.branch)
    days = float(retention_days)
    if actions <= _DML and all(t.kind == "table" for t in targets):
        runner = _rows_runner(session, part, (*base, "rows", names, names, days, cp_id))
        return Checkpoint(cp_id, tuple(names), "rows", run=runner)
    kinds = {t.kind for t in targets}
    if actions == {"drop"} and len(kinds) == 1 and targets[0].kind in ("table", "view", "sequence"):
        kind = targets[0].kind
        cascade = any(t.detail == "cascade" for t in targets)
        if_exists = "if exists" in " ".join(part.sql.lower().split())
        runner = _drop_runner(session, part.command, (*base, kind, names, [], days),
                              (cp_id, names, names, kind, cascade, if_exists), _DROP_SQL)
        return Checkpoint(cp_id, tuple(names), kind, run=runner)
    if actions == {"drop"} and kinds == {"schema"}:
        schemas = [_unquoted(t.name.removesuffix(".*")) for t in targets]
        cascade = any(t.detail == "cascade" for t in targets)
        if_exists = "if exists" in " ".join(part.sql.lower().split())
        runner = _drop_runner(session, part.command, (*base, "schema", names, [], days),
                              (cp_id, schemas, cascade, if_exists), _DROP_SCHEMA_SQL)
        return Checkpoint(cp_id, tuple(names), "schema", run=runner)
    single = targets[0] if len(targets) == 1 else None
    if (single is not None and single.action == "alter" and single.detail == "drop column" and single.column
            and single.kind == "table"):
        cascade, missing_ok = _drop_column_behavior(part.sql)
        await _record(session, (*base, "column", names, names, days))
        # DROP COLUMN IF EXISTS of a missing column drops nothing: nothing to keep.
        await _call(session, "SELECT sqlgate.cp_keep_column(%s, %s::pg_catalog.regclass, %s, %s) WHERE NOT %s"
                             " OR EXISTS (SELECT FROM pg_catalog.pg_attribute WHERE attrelid"
                             " OPERATOR(pg_catalog.=) %s::pg_catalog.regclass AND attname OPERATOR(pg_catalog.=) %s"
                             " AND attnum OPERATOR(pg_catalog.>) 0 AND NOT attisdropped)",
                    (cp_id, names[0], _unquoted(single.column), cascade, missing_ok, names[0],
                     _unquoted(single.column)))
        return Checkpoint(cp_id, tuple(names), "column")
    index_created = single is not None and single.kind == "index" and single.action == "create"
    if (single is not None and single.kind == "table" and (
            single.action == "rename" or single.detail in _DEFINITION_DETAILS)) or _alters_of_one_table(part) \
            or index_created:
        if part.klass is StatementClass.SAFE_DDL and not await _plain_table(session, names[0]):
            # An addition to a partitioned, inherited or temporary table, a materialized view...: it
            # destroys nothing, and the pipeline runs it unrecorded (capture triggers are for plain tables;
            # a column dropped from a parent goes from its children, whose rows are not captured).
            raise common.unavailable(part, "additions are recorded for plain tables only")
        # The table is captured from here on: mode 'all' undoes the rows written under the new definition.
        await _record(session, (*base, "definition", names, names, days))
        type_column = _unquoted(single.column) if single and single.detail == "type" and single.column else None
        change = ({"what": "added_index", "name": single.detail or None} if index_created
                  else _definition_change(part.sql))
        # Kept since additions take checkpoints: a restore of it may take away what the table gained after
        # it (an older definition's restore leaves additions nobody recorded alone).
        change["additions"] = True
        await _call(session, "SELECT sqlgate.cp_keep_definition(%s, %s::pg_catalog.regclass, %s, %s::pg_catalog.jsonb)",
                    (cp_id, names[0], type_column, json.dumps(change)))
        return Checkpoint(cp_id, tuple(names), "definition")
    if ((actions == {"drop"} and all(t.kind == "index" for t in targets))
            or (single is not None and single.kind == "view" and single.action == "replace")):
        # The indexed tables (a view: the tables it reads, through other views) are captured from here
        # on: mode 'all' undoes their later rows too, before the index comes back.
        captured = await _read_tables(session, names)
        await _record(session, (*base, "definition", names, captured, days))
        for name in names:
            await _call(session, "SELECT sqlgate.cp_keep_relation_def(%s, r) FROM pg_catalog.to_regclass(%s) r"
                                 " WHERE r IS NOT NULL", (cp_id, name))
        return Checkpoint(cp_id, tuple(names), "definition")
    raise common.unavailable(part, f"{', '.join(sorted(actions))} of {', '.join(sorted(kinds))}")


# Plain tables an index is on or a view reads (at any depth through views) that the caller may write (as
# a DML checkpoint would: a table it may only read is not its to revert); sqlgate's own are not captured.
# It runs on the agent's connection, under its search_path: every name is qualified.
_READ_TABLES_SQL = """
WITH RECURSIVE src(oid) AS (
    SELECT pg_catalog.to_regclass(n)::pg_catalog.oid FROM pg_catalog.unnest(%s::pg_catalog.text[]) n
    UNION
    SELECT d.refobjid FROM src JOIN pg_catalog.pg_rewrite w ON w.ev_class OPERATOR(pg_catalog.=) src.oid
    JOIN pg_catalog.pg_depend d ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass
        AND d.objid OPERATOR(pg_catalog.=) w.oid
        AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
        AND d.refobjid OPERATOR(pg_catalog.<>) src.oid
)
SELECT coalesce(pg_catalog.array_agg(DISTINCT t.oid::pg_catalog.regclass::pg_catalog.text), '{}')
FROM src
LEFT JOIN pg_catalog.pg_index i ON i.indexrelid OPERATOR(pg_catalog.=) src.oid
JOIN pg_catalog.pg_class t ON t.oid OPERATOR(pg_catalog.=) coalesce(i.indrelid, src.oid)
JOIN pg_catalog.pg_namespace s ON s.oid OPERATOR(pg_catalog.=) t.relnamespace
WHERE t.relkind OPERATOR(pg_catalog.=) 'r' AND pg_catalog.has_table_privilege(t.oid, 'INSERT, UPDATE, DELETE')
    AND s.nspname OPERATOR(pg_catalog.<>) 'sqlgate' AND s.nspname OPERATOR(pg_catalog.!~~) 'sqlgate\\_trash\\_%%'"""


async def _read_tables(session: Any, names: list[str]) -> list[str]:
    try:
        row = await (await session.conn.execute(_READ_TABLES_SQL, (names,))).fetchone()
    except psycopg.Error as exc:
        raise database_error(exc) from exc
    return list(row[0]) if row else []


async def _plain_table(session: Any, name: str) -> bool:
    try:
        row = await (await session.conn.execute(
            "SELECT relkind OPERATOR(pg_catalog.=) 'r' AND relpersistence OPERATOR(pg_catalog.<>) 't'"
            " AND NOT relhassubclass AND NOT EXISTS (SELECT FROM pg_catalog.pg_inherits"
            " WHERE inhrelid OPERATOR(pg_catalog.=) c.oid) FROM pg_catalog.pg_class c"
            " WHERE oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(%s)", (name,))).fetchone()
    except psycopg.Error as exc:
        raise database_error(exc) from exc
    return bool(row and row[0])


def _alters_of_one_table(part: Part) -> bool:
    """Several actions of one ALTER TABLE (ALTER a SET DEFAULT .., ADD COLUMN ..): one definition checkpoint
    keeps them all when each is one it keeps, or none destroys anything (SET STATISTICS beside ADD COLUMN)."""
    targets = part.targets
    return (len({t.name for t in targets}) == 1 and targets[0].kind == "table"
            and all(t.action == "alter" for t in targets)
            and (part.klass is StatementClass.SAFE_DDL or all(t.detail in _KEPT_TOGETHER for t in targets)))


def _drop_column_behavior(text: str) -> tuple[bool, bool]:
    """CASCADE and IF EXISTS of the statement's one DROP COLUMN, from PostgreSQL's own parse tree."""
    stmts = json.loads(pgparser.parse_sql_json(text)).get("stmts") or [{}]
    cmds = ((stmts[0].get("stmt") or {}).get("AlterTableStmt") or {}).get("cmds") or ()
    for c in cmds:
        cmd = c.get("AlterTableCmd") or {}
        if cmd.get("subtype") == "AT_DropColumn":
            return cmd.get("behavior") == "DROP_CASCADE", bool(cmd.get("missing_ok"))
    return False, False


_CHANGES = {"AT_ColumnDefault": "default", "AT_DropNotNull": "notnull", "AT_DropConstraint": "constraint",
            "AT_AlterColumnType": "type", "AT_AddColumn": "added_column", "AT_SetNotNull": "notnull_set",
            "AT_AddConstraint": "added_constraint"}
_RENAMES = {"OBJECT_COLUMN": "column", "OBJECT_TABLE": "table", "OBJECT_TABCONSTRAINT": "constraint_name"}


def _definition_change(text: str) -> dict[str, Any]:
    """What one definition change changes (mode 'statement' undoes only that), from PostgreSQL's parse
    tree: {"what": default | notnull | constraint | type | column | table | constraint_name | added_column |
    notnull_set | added_constraint | several | other, "name": the column or constraint as named before (an
    added one: as named by the statement), "to": a rename's new name, "changes": several's, each {what, name},
    "cascades": the constraints it drops with CASCADE}."""
    stmts = json.loads(pgparser.parse_sql_json(text)).get("stmts") or [{}]
    stmt = stmts[0].get("stmt") or {}
    if "RenameStmt" in stmt:
        r = stmt["RenameStmt"]
        return {"what": _RENAMES.get(str(r.get("renameType")), "other"), "name": r.get("subname"),
                "to": r.get("newname")}
    cmds: list[dict[str, Any]] = (stmt.get("AlterTableStmt") or {}).get("cmds") or []
    subtypes = [(c.get("AlterTableCmd") or {}).get("subtype") for c in cmds]
    if len(cmds) > 1 and all(_CHANGES.get(str(st)) == "default" for st in subtypes):  # several SET/DROP DEFAULTs
        names = [c["AlterTableCmd"].get("name") for c in cmds]
        return {"what": "default", "name": names[0], "names": names}
    # DROP CONSTRAINT ... CASCADE (any of the commands): what it takes from other tables is kept too.
    cascades = [c["AlterTableCmd"].get("name") for c in cmds
                if (c.get("AlterTableCmd") or {}).get("subtype") == "AT_DropConstraint"
                and c["AlterTableCmd"].get("behavior") == "DROP_CASCADE"]
    extra = {"cascades": cascades} if cascades else {}
    changes = [_one_change(c.get("AlterTableCmd") or {}) for c in cmds]
    if len(changes) == 1:
        return {**changes[0], **extra}
    # Several changes mode 'statement' undoes one by one, last first (a type change keeps values: alone only).
    if changes and all(c["what"] not in ("type", "other") for c in changes):
        return {"what": "several", "name": None, "changes": changes, **extra}
    return {"what": "other", "name": None, **extra}


def _one_change(cmd: dict[str, Any]) -> dict[str, Any]:
    """What one command of an ALTER TABLE changes, and the column or constraint it names."""
    what = _CHANGES.get(str(cmd.get("subtype")), "other")
    name = cmd.get("name")
    if what == "added_column":
        name = ((cmd.get("def") or {}).get("ColumnDef") or {}).get("colname")
    elif what == "added_constraint":  # None when PostgreSQL names it: found by comparing the kept definitions
        name = ((cmd.get("def") or {}).get("Constraint") or {}).get("conname")
    return {"what": what, "name": name}


def _unquoted(column: str) -> str:
    """Targets name columns in quote_ident form; the catalog functions want the bare name."""
    return column[1:-1].replace('""', '"') if column.startswith('"') else column


def _rows_runner(session: Any, part: Part, take_args: tuple[Any, ...]) -> Any:
    async def run_dml(original: Any, params: Any) -> Result:
        # The checkpoint and the statement go to the server together (libpq pipeline): one round trip.
        conn = session.conn
        try:
            if not params:  # simple query protocol: all three statements in one message
                record = _TAKE_ROWS_SQL % tuple(_literals(conn, take_args))
                # The newline ends a trailing -- comment of the agent's statement.
                results = await simple_query(conn, record + ";\n" + part.sql + "\n;\n" + _FORGET_SQL)
                return result_from_pgresult(results[1] if len(results) > 1 else results[0])
            if _direct(conn, params):  # the same three in one round trip, without psycopg's pipeline machinery
                record = _TAKE_ROWS_SQL % tuple(_literals(conn, take_args))
                return result_from_pgresult((await pipelined(conn, [(record, None), (part.sql, params),
                                                                    (_FORGET_SQL, None)]))[1])
            cur = psycopg.AsyncRawCursor(conn)
            async with conn.pipeline() as pipeline:
                await psycopg.AsyncCursor(conn).execute(_TAKE_ROWS_SQL, take_args)
                await cur.execute(part.sql, params)
                await psycopg.AsyncCursor(conn).execute(_FORGET_SQL)
                await pipeline.sync()
            return result_from_pgresult(cur.pgresult)
        except psycopg.Error as exc:
            raise database_error(exc) from exc

    return run_dml


def _literals(conn: Any, values: tuple[Any, ...]) -> list[str]:
    """SQL literals of the checkpoint's arguments (str, None, float, lists of str): plain ASCII as is, anything
    else quoted by libpq for this connection's settings; a fraction of what psycopg's sql.Literal composition
    costs, on every DML."""
    esc = None
    out = []
    for v in values:
        if v is None:
            out.append("NULL")
            continue
        if isinstance(v, list | tuple):  # a text[] literal: every element double-quoted
            v = "{" + ",".join('"' + x.replace("\\", "\\\\").replace('"', '\\"') + '"' for x in v) + "}"
        elif not isinstance(v, str):
            v = repr(float(v))
        # ASCII without quote, backslash or NUL (ids, most names) reads the same in every client encoding
        # and with standard_conforming_strings either way: quoted as is, without a call into libpq.
        if v.isascii() and "'" not in v and "\\" not in v and "\0" not in v:
            out.append("'" + v + "'")
            continue
        if esc is None:
            esc = psycopg.pq.Escaping(conn.pgconn)
        encoding = conn.info.encoding
        out.append(esc.escape_literal(v.encode(encoding)).decode(encoding))
    return out


def _drop_runner(session: Any, command: str, take_args: tuple[Any, ...], drop_args: tuple[Any, ...],
                 drop_sql: str) -> Any:
    async def run_drop(original: Any, params: Any) -> Result:
        # Instead of the DROP, the checkpoint and the move: one message, one round trip.
        conn = session.conn
        record = sql.SQL(_TAKE_SQL.replace("%s", "{}")).format(*map(sql.Literal, take_args))
        move = sql.SQL(drop_sql.replace("%s", "{}")).format(*map(sql.Literal, drop_args))
        try:
            await psycopg.AsyncRawCursor(conn).execute(record.as_string(conn) + "; " + move.as_string(conn))
        except psycopg.Error as exc:
            raise database_error(exc) from exc
        return Result(command_tag=command)

    return run_drop


async def _call(session: Any, query: str, args: tuple[Any, ...]) -> None:
    try:
        await session.conn.execute(query, args)
    except psycopg.Error as exc:
        raise database_error(exc) from exc


async def _record(session: Any, take_args: tuple[Any, ...]) -> None:
    await _call(session, _TAKE_SQL, take_args)

