"""Putting back what a PostgreSQL checkpoint kept aside: relations moved into a
private schema, dropped foreign keys, indexes, view and table definitions (a
dropped column: pg_restore_column). Each function acts inside the rollback's
transaction and raises a clear error when the object cannot come back."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg
from psycopg import sql

from branching import common
from branching.pg_roles import as_owner, as_role, is_check, table_owner

_NAME_TAKEN = "a relation with this name was created since"


async def restore_relation(conn: Any, cp_id: str, mode: str, o: dict[str, Any]) -> None:
    """A table, view or sequence a DROP moved aside goes back where it was (O(1): SET SCHEMA)."""
    trash_rel = await (await conn.execute(
        "SELECT format('%%I.%%I', n.nspname, c.relname), c.relkind FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %s", (int(o["relid"]),))).fetchone()
    if trash_rel is None:
        raise common.rollback_failed(f"the kept {o['schema']}.{o['name']} is gone")
    await check_name_free(conn, cp_id, mode, o)
    verb = {"v": "VIEW", "S": "SEQUENCE"}.get(trash_rel[1], "TABLE")
    await conn.execute(sql.SQL("ALTER {} {} SET SCHEMA {}").format(
        sql.SQL(verb), sql.SQL(trash_rel[0]), sql.Identifier(o["schema"])))
    await conn.execute(sql.SQL("DROP SCHEMA {}").format(sql.Identifier(o["trash"])))


async def check_name_free(conn: Any, cp_id: str, mode: str, o: dict[str, Any]) -> None:
    clash = await (await conn.execute("SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))",
                                      (o["schema"], o["name"]))).fetchone()
    if clash and clash[0] is not None:
        if mode == "statement":
            raise common.conflicts_error(cp_id, [{"table": f"{o['schema']}.{o['name']}", "conflict": _NAME_TAKEN}])
        raise common.rollback_failed(f"{o['schema']}.{o['name']} exists again; drop it first")


async def restore_schema(conn: Any, cp_id: str, mode: str, o: dict[str, Any]) -> None:
    """A schema DROP SCHEMA renamed aside gets its name, owner and grants back (O(1))."""
    taken = await (await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (o["name"],))).fetchone()
    if taken:
        if mode == "statement":
            problem = {"schema": o["name"], "conflict": "a schema with this name was created since"}
            raise common.conflicts_error(cp_id, [problem])
        raise common.rollback_failed(f"schema {o['name']} exists again; drop it first")
    kept = await (await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (o["trash"],))).fetchone()
    if not kept:
        raise common.rollback_failed(f"the kept schema {o['name']} is gone")
    name = sql.Identifier(o["name"])
    await conn.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(sql.Identifier(o["trash"]), name))
    await conn.execute(sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(name, sql.SQL(o["owner"])))
    for grantee, privilege, grantable in o["acl"]:
        option = sql.SQL(" WITH GRANT OPTION" if grantable else "")
        await conn.execute(sql.SQL("GRANT {} ON SCHEMA {} TO {}{}").format(
            sql.SQL(privilege), name, sql.SQL(grantee), option))


async def restore_schema_defaults(conn: Any, o: dict[str, Any]) -> None:
    """The defaults DROP SCHEMA ... CASCADE took from other tables (its indexes and constraints: reapply)."""
    for d in o["defaults"]:
        await conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}").format(
            sql.SQL(await relname(conn, int(d["relid"]))), sql.Identifier(d["column"]), sql.SQL(d["def"])))


async def reapply(conn: Any, problems: list[dict[str, Any]], step: Callable[[], Awaitable[None]]) -> None:
    """One kept definition, in a savepoint: when rows written since break it, it is listed in `problems`."""
    try:
        async with conn.transaction():
            await step()
    except (psycopg.errors.IntegrityError, psycopg.errors.DuplicateObject) as exc:
        problems.append(_broken(exc))


@contextlib.asynccontextmanager
async def definition_conflicts(cp_id: str, mode: str) -> AsyncIterator[None]:
    """A kept definition that rows written since break, while an object comes back: a conflict (mode
    'statement') or a failure that names it (mode 'all'), never a bare database error."""
    try:
        yield
    except (psycopg.errors.IntegrityError, psycopg.errors.DuplicateObject,
            psycopg.errors.DependentObjectsStillExist) as exc:
        raise definitions_error(cp_id, mode, [_broken(exc)]) from exc


def definitions_error(cp_id: str, mode: str, problems: list[dict[str, Any]]) -> Exception:
    if mode == "statement":
        return common.conflicts_error(cp_id, problems)
    return common.definitions_broken(cp_id, problems)


def _broken(exc: psycopg.Error) -> dict[str, Any]:
    d = exc.diag
    table = f"{d.schema_name}.{d.table_name}" if d.schema_name and d.table_name else d.table_name
    name = d.constraint_name or (f"NOT NULL on {d.column_name}" if d.column_name else None)
    if isinstance(exc, psycopg.errors.DuplicateObject):
        why = f"a constraint or index with this name was added since ({(d.message_primary or str(exc)).strip()})"
    elif isinstance(exc, psycopg.errors.DependentObjectsStillExist):  # what was added since has dependents
        why = f"something made since depends on it: {(d.message_detail or d.message_primary or str(exc)).strip()}"
    else:
        why = f"rows written since break it: {(d.message_detail or d.message_primary or str(exc)).strip()}"
    return {"table": table, "constraint": name, "conflict": why, "sqlstate": d.sqlstate or exc.sqlstate}

async def restore_index_or_view(conn: Any, cp_id: str, o: dict[str, Any]) -> None:
    """DROP INDEX: re-create it; CREATE OR REPLACE VIEW: the old definition back."""
    target = sql.SQL("{}.{}").format(sql.Identifier(o["schema"]), sql.Identifier(o["name"]))
    if o["kind"] == "index":
        clash = await (await conn.execute("SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))",
                                          (o["schema"], o["name"]))).fetchone()
        if clash and clash[0] is not None:
            raise common.conflicts_error(cp_id, [{"index": o["name"], "conflict": _NAME_TAKEN}])
        await conn.execute(o["def"])
    else:
        await restore_view(conn, target, o)


async def restore_foreign_key(conn: Any, o: dict[str, Any]) -> None:
    """A foreign key (or check constraint) of another table that DROP ... CASCADE removed. A check is
    validated as that table's owner: it may call the agent's functions (in the schema it dropped, say)."""
    table = sql.SQL(await relname(conn, int(o["relid"])))
    async with as_owner(conn, int(o["relid"]), is_check(o["def"])):
        await conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
            table, sql.Identifier(o["name"]), sql.SQL(o["def"])))
    if o.get("comment") is not None:
        await conn.execute(sql.SQL("COMMENT ON CONSTRAINT {} ON {} IS {}").format(
            sql.Identifier(o["name"]), table, sql.Literal(o["comment"])))


async def restore_view(conn: Any, target: Any, o: dict[str, Any]) -> None:
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


async def restore_definition(conn: Any, o: dict[str, Any]) -> None:
    """Put back names, types, defaults, NOT NULL, constraints and indexes as they were (by OID and attnum)."""
    relid = int(o["relid"])
    row = await (await conn.execute("SELECT relname FROM pg_class WHERE oid = %s", (relid,))).fetchone()
    if row is None:
        raise common.rollback_failed(f"table {o['schema']}.{o['name']} is gone")
    if row[0] != o["name"]:
        await conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(
            sql.SQL(await relname(conn, relid)), sql.Identifier(o["name"])))
    rel = sql.SQL(await relname(conn, relid))
    cur = await conn.execute(
        "SELECT a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,"
        " (SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = a.attrelid AND adnum = a.attnum)"
        " FROM pg_attribute a WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped", (relid,))
    ident = await identities(conn, relid)
    now = {ident[r[0]]: r[1:] for r in await cur.fetchall()}
    # NOT NULL is set or dropped once the additions are gone: a key added since holds its columns NOT NULL.
    nullability: list[sql.Composable] = []
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
            # The rewrite evaluates casts, domain checks and the CHECKs on the column: as the owner.
            async with as_owner(conn, relid):
                await conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {} USING {}").format(
                    rel, col, sql.SQL(c["type"]), using))
            if kept:
                await _put_back_values(conn, relid, rel, col, o)
        if default != c["default"]:
            if c["default"] is None:
                await conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP DEFAULT").format(rel, col))
            else:
                await conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}").format(
                    rel, col, sql.SQL(c["default"])))
        if notnull != c["notnull"]:
            nullability.append(sql.SQL("ALTER COLUMN {} {}").format(
                col, sql.SQL("SET NOT NULL" if c["notnull"] else "DROP NOT NULL")))
    if (o.get("change") or {}).get("additions"):
        await _take_away_additions(conn, relid, rel, o)
    if nullability:
        await conn.execute(sql.SQL("ALTER TABLE {} {}").format(rel, sql.SQL(", ").join(nullability)))
    cur = await conn.execute("SELECT conname FROM pg_constraint WHERE conrelid = %s", (relid,))
    present = {r[0] for r in await cur.fetchall()}
    # Foreign keys a DROP CONSTRAINT ... CASCADE took are re-applied after the rows (pg_rollback step 3).
    present |= {c["name"] for c in o.get("dependents", []) if int(c["relid"]) == relid}
    for con in o["constraints"]:
        if con["name"] not in present:
            async with as_owner(conn, relid, is_check(con["def"])):
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


async def _take_away_additions(conn: Any, relid: int, rel: Any, o: dict[str, Any]) -> None:
    """What the table gained after its definition was kept: columns (ADD COLUMN; one whose name the kept
    definition has is the same column re-created, and stays), constraints of a name it did not keep (one of
    a kept name stays, whatever its text now: a foreign key's changes with what it references), indexes not
    of a constraint. RESTRICT: something made since that depends on them is a failure that names it, not a
    silent CASCADE."""
    kept_names = {c["name"] for c in o["columns"]}
    cur = await conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0"
                             " AND NOT attisdropped AND attnum <> ALL(%s::int2[])",
                             (relid, [c["attnum"] for c in o["columns"]]))
    columns = [sql.SQL("DROP COLUMN {}").format(sql.Identifier(r[0])) for r in await cur.fetchall()
               if r[0] not in kept_names]
    kept = {c["name"] for c in o["constraints"]} | {c["name"] for c in o.get("dependents", [])
                                                    if int(c["relid"]) == relid}
    cur = await conn.execute("SELECT conname FROM pg_constraint WHERE conrelid = %s AND contype <> 'n'"
                             " ORDER BY contype <> 'f'", (relid,))  # foreign keys first: they may use a key
    # Constraints before columns: a constraint on a column added since goes with it, and would be missing.
    actions = [sql.SQL("DROP CONSTRAINT {}").format(sql.Identifier(name)) for (name,) in await cur.fetchall()
               if name not in kept] + columns
    if actions:
        await conn.execute(sql.SQL("ALTER TABLE {} {}").format(rel, sql.SQL(", ").join(actions)))
    kept_indexes = {i["name"] for i in o["indexes"]}
    for name in await plain_indexes(conn, relid):
        if name not in kept_indexes:
            await conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(o["schema"], name)))


async def plain_indexes(conn: Any, relid: int) -> list[str]:
    """The table's indexes that no constraint owns (a key's, a unique constraint's), as kept definitions
    list them: what CREATE INDEX adds."""
    cur = await conn.execute(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s"
        " AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = i.indexrelid)", (relid,))
    return [r[0] for r in await cur.fetchall()]


_ATTNUMS = "CREATE TEMP TABLE IF NOT EXISTS sqlgate_attnums (rel oid, at int2, was int2) ON COMMIT DROP"


async def identities(conn: Any, relid: int) -> dict[int, int]:
    """Each live column's attnum now -> the attnum it had before this rollback re-created it (a column
    brought back, the columns after it re-created behind it: new attnums). Kept definitions and dropped
    columns name columns by the attnum they had then."""
    await conn.execute(_ATTNUMS)
    cur = await conn.execute(
        "SELECT a.attnum, coalesce(m.was, a.attnum) FROM pg_attribute a LEFT JOIN pg_temp.sqlgate_attnums m"
        " ON m.rel = a.attrelid AND m.at = a.attnum WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped",
        (relid,))
    return {int(r[0]): int(r[1]) for r in await cur.fetchall()}


async def recreated(conn: Any, relid: int, columns: list[tuple[str, int]]) -> None:
    """Columns (name, attnum they had) this rollback just added again: their new attnums map to the old."""
    await conn.execute(_ATTNUMS)
    await conn.execute(
        "INSERT INTO pg_temp.sqlgate_attnums SELECT a.attrelid, a.attnum, c.was FROM pg_attribute a"
        " JOIN unnest(%s::name[], %s::int2[]) c(name, was) ON a.attname = c.name"
        " WHERE a.attrelid = %s AND NOT a.attisdropped",
        ([n for n, _ in columns], [w for _, w in columns], relid))


async def let_read_kept(conn: Any, trash: str, owner: str | None) -> None:
    """The table's owner (None: sqlgate's login, who may already) reads the values kept in `trash`.kept:
    the restore's UPDATE runs as the owner."""
    if owner:
        await conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {t} TO {o}; GRANT SELECT ON {t}.kept TO {o}").format(
            t=sql.Identifier(trash), o=sql.SQL(owner)))


async def relname(conn: Any, oid: int) -> str:
    row = await (await conn.execute("SELECT %s::oid::regclass::text", (oid,))).fetchone()
    return str(row[0])


async def _put_back_values(conn: Any, relid: int, rel: Any, col: Any, o: dict[str, Any]) -> None:
    """The kept values of a column whose type changed, by key. Not captured: putting the type back is
    the definition's undo, and undoing this rollback runs the ALTER again rather than reverse these
    rows. As the table's owner: its CHECKs may call the agent's functions."""
    match = sql.SQL(" AND ").join(sql.SQL("t.{c} = k.{c}").format(c=sql.Identifier(k)) for k in o["pk"])
    capture = [r[0] for r in await (await conn.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = %s AND tgname LIKE 'sqlgate\\_capture\\_%%'"
        " AND tgenabled <> 'D'", (relid,))).fetchall()]
    for name in capture:
        await conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(rel, sql.Identifier(name)))
    owner = await table_owner(conn, relid)  # strictly: only who may ALTER the table ran the type change
    await let_read_kept(conn, o["trash"], owner)
    async with as_role(conn, owner):
        await conn.execute(sql.SQL("UPDATE {} t SET {} = k.{} FROM {}.kept k WHERE {}").format(
            rel, col, col, sql.Identifier(o["trash"]), match))
    for name in capture:
        await conn.execute(sql.SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(rel, sql.Identifier(name)))


async def triggers_off(conn: Any, relid: int, rel: Any) -> list[tuple[str, str]]:
    """A restore that puts rows or values back as they were fires no trigger (sqlgate's capture
    included: undoing the rollback redoes the statement instead): each enabled one is disabled,
    its state kept for triggers_on."""
    cur = await conn.execute("SELECT tgname, tgenabled::text FROM pg_trigger WHERE tgrelid = %s AND NOT tgisinternal"
                             " AND tgenabled <> 'D' ORDER BY tgname", (relid,))
    states = [(r[0], r[1]) for r in await cur.fetchall()]
    for name, _ in states:
        await conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(rel, sql.Identifier(name)))
    return states


async def triggers_on(conn: Any, rel: Any, states: list[tuple[str, str]]) -> None:
    for name, state in states:
        enable = {"A": "ENABLE ALWAYS TRIGGER", "R": "ENABLE REPLICA TRIGGER"}.get(state, "ENABLE TRIGGER")
        await conn.execute(sql.SQL("ALTER TABLE {} {} {}").format(rel, sql.SQL(enable), sql.Identifier(name)))
