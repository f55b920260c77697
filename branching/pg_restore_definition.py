"""Mode 'statement' of a definition change: only what that statement changed
(its checkpoint keeps it, read from the parse tree) is reverted; later
definition changes stay. Where a later change touched the same thing, or a
row written since cannot take the old type exactly, a conflict: nothing
changed."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from branching import common
from branching.pg_restore import check_name_free, plain_indexes, relname, triggers_off, triggers_on
from branching.pg_roles import as_owner, as_role, is_check, table_owner

_LISTED = 20  # rows named in a conflict, at most


async def undo_change(conn: Any, cp_id: str, o: dict[str, Any]) -> None:
    """Revert only what the statement changed (o['change'], from its parse tree), not the whole kept
    definition: later definition changes stay. Where a later change touched the same thing, a conflict,
    nothing changed. Several changes of one ALTER TABLE: each, the last first."""
    change = o.get("change") or {"what": "other"}
    for one in reversed(change["changes"]) if change["what"] == "several" else [change]:
        await _undo_one(conn, cp_id, o, one)
    if o.get("trash"):
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(o["trash"])))


async def _undo_one(conn: Any, cp_id: str, o: dict[str, Any], change: dict[str, Any]) -> None:
    relid = int(o["relid"])
    row = await (await conn.execute("SELECT relname FROM pg_class WHERE oid = %s", (relid,))).fetchone()
    if row is None:
        raise common.rollback_failed(f"table {o['schema']}.{o['name']} is gone")
    table = await relname(conn, relid)
    rel = sql.SQL(table)
    what, name = change["what"], str(change.get("name"))

    def conflict(why: str, **at: Any) -> Exception:
        return common.conflicts_error(cp_id, [{"table": table, **at, "conflict": why}])

    if what == "table":
        if row[0] != o["name"]:
            if row[0] != change["to"]:
                raise conflict("the table was renamed again since")
            await check_name_free(conn, cp_id, "statement", o)
            await conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(rel, sql.Identifier(o["name"])))
    elif what in ("constraint", "constraint_name"):
        cur = await conn.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s",
                                 (relid,))
        present = dict(await cur.fetchall())
        kept = next((c for c in o["constraints"] if c["name"] == name), None)
        if what == "constraint_name" and name not in present:
            if change["to"] not in present:
                raise conflict("the constraint was renamed again or dropped since", constraint=name)
            await conn.execute(sql.SQL("ALTER TABLE {} RENAME CONSTRAINT {} TO {}").format(
                rel, sql.Identifier(change["to"]), sql.Identifier(name)))
        elif what == "constraint" and kept is not None:
            if name in present and present[name] != kept["def"]:
                raise conflict("a constraint with this name was added since", constraint=name)
            if name not in present:
                async with as_owner(conn, relid, is_check(kept["def"])):  # a CHECK may call the agent's code
                    await conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                        rel, sql.Identifier(name), sql.SQL(kept["def"])))
    elif what in ("added_column", "added_constraint", "added_index"):
        await _undo_addition(conn, cp_id, o, what, change.get("name"), rel, conflict)
    elif what in ("default", "notnull", "notnull_set", "type", "column"):
        for column in change.get("names") or [name]:  # several only for SET/DROP DEFAULTs in one ALTER
            c = next((c for c in o["columns"] if c["name"] == column), None)
            if c is not None:
                await _undo_column_change(conn, cp_id, o, c, what, change, rel, conflict)
    else:
        raise conflict("sqlgate cannot undo this change of the definition alone")


async def _undo_column_change(conn: Any, cp_id: str, o: dict[str, Any], c: dict[str, Any], what: str,
                              change: dict[str, Any], rel: Any, conflict: Any) -> None:
    relid = int(o["relid"])
    cur = await conn.execute(
        "SELECT a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,"
        " (SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = a.attrelid AND adnum = a.attnum)"
        " FROM pg_attribute a WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped", (relid,))
    now = {r[0]: r[1:] for r in await cur.fetchall()}
    if c["attnum"] not in now:
        raise conflict("the column was dropped since", column=c["name"])
    name, type_, notnull, default = now[c["attnum"]]
    col = sql.Identifier(name)
    if what == "column" and name != c["name"]:
        if name != change["to"]:
            raise conflict("the column was renamed again since", column=c["name"])
        if c["name"] in {n for n, *_ in now.values()}:
            raise conflict("a column with this name was added since", column=c["name"])
        await conn.execute(sql.SQL("ALTER TABLE {} RENAME COLUMN {} TO {}").format(rel, col, sql.Identifier(c["name"])))
    elif what == "default" and default != c["default"]:
        after = await _kept_after(conn, o["cp"], relid, c["attnum"])
        if after is not None and default != after["default"]:
            raise conflict("its default was set again since", column=c["name"])
        if c["default"] is None:
            await conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP DEFAULT").format(rel, col))
        else:
            await conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}").format(
                rel, col, sql.SQL(c["default"])))
    elif what == "notnull" and c["notnull"] and not notnull:
        await conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL").format(rel, col))
    elif what == "notnull_set" and notnull and not c["notnull"]:
        await conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL").format(rel, col))
    elif what == "type":
        after = await _kept_after(conn, o["cp"], relid, c["attnum"])
        if after is not None and type_ != str(after["type"]):
            raise conflict("its type was changed again since", column=c["name"])
        names = {k["name"]: now.get(k["attnum"], (None,))[0] for k in o["columns"]}
        if any(names.get(k) is None for k in o["pk"]):
            raise conflict("a key column was dropped since", column=c["name"])
        await _undo_type(conn, cp_id, o, c, name, notnull, [(k, names[k]) for k in o["pk"]], rel, conflict)


async def _undo_addition(conn: Any, cp_id: str, o: dict[str, Any], what: str, name: str | None, rel: Any,
                         conflict: Any) -> None:
    """ADD COLUMN: the column goes, unless rows were written since (they may hold values in it: a
    conflict). ADD CONSTRAINT, CREATE INDEX: what it added goes (unnamed: what the table's next kept
    definition, or the table now, has and this one did not). IF NOT EXISTS that added nothing: nothing."""
    relid = int(o["relid"])
    if what == "added_column":
        if name is None or name in {c["name"] for c in o["columns"]}:
            return
        row = await (await conn.execute(
            "SELECT EXISTS (SELECT FROM pg_attribute WHERE attrelid = %s AND attname = %s AND attnum > 0"
            " AND NOT attisdropped), EXISTS (SELECT FROM sqlgate.changes WHERE tbl = %s"
            " AND seq > (SELECT mark FROM sqlgate.checkpoints WHERE id = %s)),"
            " EXISTS (SELECT FROM sqlgate.checkpoints WHERE %s = ANY(relids) AND undone_by IS NULL"
            " AND mark > (SELECT mark FROM sqlgate.checkpoints WHERE id = %s)"
            " AND id <> current_setting('sqlgate.checkpoint', true))",  # not this rollback's own
            (relid, name, relid, o["cp"], relid, o["cp"]))).fetchone()
        if not row[0]:
            raise conflict("the column was renamed or dropped since", column=name)
        if row[1]:
            raise conflict("rows were written since; they may hold values in the column", column=name)
        if row[2]:  # its DROP would take an index or constraint a later statement put on it, unrecorded
            raise conflict("the table was changed again since; undo that first", column=name)
        dropped = [sql.SQL("DROP COLUMN {}").format(sql.Identifier(name))]
    else:
        field = "constraints" if what == "added_constraint" else "indexes"
        kept = {k["name"] for k in o[field]}
        if field == "constraints":
            present = {r[0] for r in await (await conn.execute(
                "SELECT conname FROM pg_constraint WHERE conrelid = %s AND contype <> 'n'", (relid,))).fetchall()}
        else:
            present = set(await plain_indexes(conn, relid))
        if name:
            added = {name}
        else:
            after = await _definition_after(conn, o["cp"], relid)
            added = ({k["name"] for k in after[field]} if after else present) - kept
        gone = sorted((added & present) - kept)
        if field == "constraints":
            dropped = [sql.SQL("DROP CONSTRAINT {}").format(sql.Identifier(k)) for k in gone]
            dropped += await _nullable_again(conn, o, relid, gone)
        else:
            dropped = [sql.SQL("DROP INDEX {}").format(sql.Identifier(o["schema"], k)) for k in gone]
    if not dropped:
        return
    statement = (sql.SQL("ALTER TABLE {} {}").format(rel, sql.SQL(", ").join(dropped)) if what != "added_index"
                 else sql.SQL("; ").join(dropped))
    try:
        async with conn.transaction():  # a savepoint: a dependent made since is a conflict, not an abort
            await conn.execute(statement)
    except psycopg.errors.DependentObjectsStillExist as exc:
        raise conflict(f"something made since depends on it ({exc.diag.message_detail or exc})",
                       **({"column": name} if what == "added_column" else {})) from exc


async def _nullable_again(conn: Any, o: dict[str, Any], relid: int, constraints: list[str]) -> list[sql.Composed]:
    """ADD PRIMARY KEY made its columns NOT NULL (PostgreSQL keeps no trace of why): those nullable before
    it get DROP NOT NULL with the key's DROP, unless something since, not undone, asked for NOT NULL on them:
    a SET NOT NULL, or the undo of a DROP NOT NULL (a no-op then, under the key)."""
    nullable = [c["attnum"] for c in o["columns"] if not c["notnull"]]
    cur = await conn.execute(
        "SELECT a.attname FROM pg_constraint k JOIN pg_attribute a ON a.attrelid = k.conrelid"
        " AND a.attnum = ANY (k.conkey) WHERE k.conrelid = %(rel)s AND k.contype = 'p'"
        " AND k.conname = ANY (%(constraints)s) AND a.attnotnull AND a.attnum = ANY (%(nullable)s::int2[])"
        " AND NOT EXISTS (SELECT FROM sqlgate.checkpoints s LEFT JOIN sqlgate.checkpoints u ON u.id = s.undoes,"
        "     jsonb_array_elements(coalesce(u.objects, s.objects)) x, jsonb_array_elements(x->'columns') c"
        "   WHERE s.mark > (SELECT mark FROM sqlgate.checkpoints WHERE id = %(cp)s) AND s.undone_by IS NULL"
        "   AND x->>'kind' = 'definition' AND (x->>'relid')::oid = k.conrelid AND (c->>'attnum')::int2 = a.attnum"
        "   AND (x->'change'->>'what' = CASE WHEN u.id IS NULL THEN 'notnull_set' ELSE 'notnull' END"
        "        AND c->>'name' = x->'change'->>'name'"
        "        OR x->'change'->'changes' @> jsonb_build_array(jsonb_build_object('what',"
        "               CASE WHEN u.id IS NULL THEN 'notnull_set' ELSE 'notnull' END, 'name', c->>'name'))))",
        {"rel": relid, "constraints": constraints, "nullable": nullable, "cp": o["cp"]})
    return [sql.SQL("ALTER COLUMN {} DROP NOT NULL").format(sql.Identifier(r[0])) for r in await cur.fetchall()]


async def _definition_after(conn: Any, cp_id: str, relid: int) -> dict[str, Any] | None:
    """The table right after checkpoint `cp_id`'s statement, as its next definition checkpoint not undone
    kept it; None when no later one did: it is as it is now."""
    row = await (await conn.execute(
        "SELECT x FROM sqlgate.checkpoints k, jsonb_array_elements(k.objects) x"
        " WHERE k.mark > (SELECT mark FROM sqlgate.checkpoints WHERE id = %s) AND k.undone_by IS NULL"
        " AND x->>'kind' = 'definition'"
        " AND (x->>'relid')::oid = %s ORDER BY k.mark LIMIT 1", (cp_id, relid))).fetchone()
    return row[0] if row else None


async def _kept_after(conn: Any, cp_id: str, relid: int, attnum: int) -> dict[str, Any] | None:
    """The column right after checkpoint `cp_id`'s statement, as the table's next definition checkpoint
    kept it (type and default changes always take one); None when no later one did: it is as it is now."""
    after = await _definition_after(conn, cp_id, relid)
    return next((c for c in after["columns"] if c["attnum"] == attnum), None) if after else None


# True when `v` cast to type `t` and back is `v` again; a failing cast is false.
_FITS_SQL = """
CREATE OR REPLACE FUNCTION pg_temp.sqlgate_fits(v anyelement, t text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE same boolean;
BEGIN
    EXECUTE format('SELECT ($1::%s)::%s IS NOT DISTINCT FROM $1', t, pg_typeof(v)) INTO same USING v;
    RETURN same;
EXCEPTION WHEN others THEN RETURN false;
END $$"""


async def _undo_type(conn: Any, cp_id: str, o: dict[str, Any], c: dict[str, Any], name: str, notnull: bool,
                     keys: list[tuple[str, str]], rel: Any, conflict: Any) -> None:
    """The old type back. A row whose value of the column no later write changed gets its kept value
    (exact, whatever the ALTER's USING did); a row written since keeps its value, cast back: one that
    does not survive the cast exactly is a conflict. `keys`: (kept name, name now) of the primary key."""
    relid, old, col = int(o["relid"]), sql.SQL(c["type"]), sql.Identifier(name)

    def field(r: str, now: str, then: str) -> sql.Composable:  # a value in a captured row, by either name
        return sql.SQL("coalesce({r} -> {a}, {r} -> {b})").format(r=sql.SQL(r), a=sql.Literal(now), b=sql.Literal(then))

    mark = (await (await conn.execute("SELECT mark FROM sqlgate.checkpoints WHERE id = %s", (o["cp"],))).fetchone())[0]
    # Each key's first change since the statement: a 'D' holds the row as the statement left it.
    first = sql.SQL(
        "SELECT DISTINCT ON (key) key, op, val FROM (SELECT c.seq, c.op, jsonb_build_array({key}) AS key, {val} AS val"
        " FROM sqlgate.changes c CROSS JOIN LATERAL json_array_elements(c.rows) e(raw),"
        " LATERAL (SELECT e.raw::jsonb) j(r) WHERE c.tbl = {tbl} AND c.seq > {mark}) s ORDER BY key, seq"
    ).format(key=sql.SQL(", ").join(field("r", now, then) for then, now in keys),
             val=field("r", name, c["name"]), tbl=sql.Literal(relid), mark=sql.Literal(mark))
    key_now = sql.SQL(", ").join(sql.SQL("to_jsonb(t.{})").format(sql.Identifier(now)) for _, now in keys)
    await conn.execute("DROP TABLE IF EXISTS pg_temp.sqlgate_retype")
    await conn.execute(sql.SQL(
        "CREATE TEMP TABLE sqlgate_retype ON COMMIT DROP AS SELECT {keys}, t.{col} AS cur, k.{kcol} AS v,"
        " k.{k1} IS NOT NULL AND (f.op IS NULL OR (f.op = 'D' AND f.val = coalesce(to_jsonb(t.{col}), 'null')))"
        " AS keep FROM {rel} t LEFT JOIN {trash}.kept k ON {match} LEFT JOIN ({first}) f"
        " ON f.key = jsonb_build_array({key_now})"
    ).format(keys=sql.SQL(", ").join(sql.SQL("t.{} AS {}").format(sql.Identifier(now), sql.Identifier(f"k{i}"))
                                     for i, (_, now) in enumerate(keys, 1)),
             col=col, kcol=sql.Identifier(c["name"]), k1=sql.Identifier(keys[0][0]), rel=rel,
             trash=sql.Identifier(o["trash"]), first=first, key_now=key_now,
             match=sql.SQL(" AND ").join(sql.SQL("k.{} = t.{}").format(sql.Identifier(then), sql.Identifier(now))
                                         for then, now in keys)))
    await conn.execute(_FITS_SQL)
    owner = await table_owner(conn, relid)  # strictly: only who may ALTER the table ran the type change
    if owner:
        await conn.execute(sql.SQL("GRANT SELECT, UPDATE ON pg_temp.sqlgate_retype TO {}").format(sql.SQL(owner)))
    by_key = sql.SQL(" AND ").join(sql.SQL("t.{} = s.{}").format(sql.Identifier(now), sql.Identifier(f"k{i}"))
                                   for i, (_, now) in enumerate(keys, 1))
    # Casts (and what the ALTER re-checks) may run the agent's functions: as the table's owner.
    async with as_role(conn, owner):
        cur = await conn.execute(sql.SQL(
            "SELECT jsonb_build_object({fields}) FROM pg_temp.sqlgate_retype WHERE NOT keep"
            " AND NOT pg_temp.sqlgate_fits(cur, {old}) LIMIT {n}"
        ).format(fields=sql.SQL(", ").join(
            [sql.SQL("{}, k{}").format(sql.Literal(now), sql.SQL(str(i))) for i, (_, now) in enumerate(keys, 1)]
            + [sql.SQL("{}, cur").format(sql.Literal(name))]), old=sql.Literal(c["type"]), n=sql.Literal(_LISTED)))
        bad = [r[0] for r in await cur.fetchall()]
        if bad:
            raise common.conflicts_error(cp_id, [
                {"table": await relname(conn, relid), "column": c["name"], "row": r,
                 "conflict": f"written since the type change: its value does not fit {c['type']} exactly"}
                for r in bad])
        await conn.execute(sql.SQL("UPDATE pg_temp.sqlgate_retype SET v = cur::{} WHERE NOT keep").format(old))
        try:
            async with conn.transaction():
                if notnull:
                    await conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL").format(rel, col))
                await conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {} USING NULL").format(rel, col, old))
        except (psycopg.errors.IntegrityError, psycopg.errors.DuplicateObject):
            raise
        except psycopg.Error as exc:
            raise conflict(f"the old type cannot come back: {(exc.diag.message_primary or str(exc)).strip()}",
                           column=c["name"]) from exc
    capture = await triggers_off(conn, relid, rel)
    async with as_role(conn, owner):
        await conn.execute(sql.SQL("UPDATE {} t SET {} = s.v FROM pg_temp.sqlgate_retype s WHERE {}").format(
            rel, col, by_key))
    await triggers_on(conn, rel, capture)
    if notnull:
        await conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL").format(rel, col))

