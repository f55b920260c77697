"""Undoing ALTER TABLE ... DROP COLUMN on PostgreSQL, inside the rollback's transaction.

The table keeps its OID (triggers, grants, foreign keys from elsewhere, other
checkpoints stay valid). PostgreSQL can only add a column at the end, so the
column is added back and every column after it is re-created after it: the old
ones are renamed aside, new ones added with the same definition, all values
(the dropped column's by key from the checkpoint, the others from the aside
columns) set in ONE UPDATE, views that use them re-pointed with CREATE OR REPLACE
(same OID), owned sequences re-owned, the aside columns dropped; indexes,
constraints (foreign keys both ways) and triggers on those columns are kept as
definitions around it. What the DROP took with it (indexes, constraints,
triggers, views: kept by sqlgate.cp_keep_column, sequences: moved aside) comes
back after. sqlgate's capture triggers are off during the copy: it is not a change
of rows, and another rollback must not see it as one; the table's own triggers are
off for the copy's UPDATEs too (then back in their states). What evaluates the
agent's expressions (ADD COLUMN: generated columns, domains; the UPDATE: checks,
generated columns; checks re-added) runs as the table's owner (SET LOCAL ROLE),
never with sqlgate's rights. Without a primary key the rows' positions (ctid) are
first set aside in a column of their own, which no rewrite changes (a stored
generated column re-added rewrites the table); other checkpoints matched by
position on the table follow their rows through it."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from branching import common
from branching.pg_restore import identities, recreated, relname, triggers_off, triggers_on
from branching.pg_restore_column_last import restore_last_column
from branching.pg_roles import as_role, table_owner
from branching.pg_rows import NOT_DONE, done_table, undo_rows

_LISTED = 20  # conflicting rows named in a conflict, at most


async def restore_column(conn: Any, cp_id: str, mode: str, o: dict[str, Any],
                         outcome: common.RollbackOutcome) -> None:
    if "spec" not in o:
        await restore_last_column(conn, cp_id, mode, o)
        return
    relid = int(o["relid"])
    if not await _one(conn, "SELECT 1 FROM pg_class WHERE oid = %s", (relid,)):
        raise common.rollback_failed(f"the table of column {o['column']} is gone")
    rel = sql.SQL(await relname(conn, relid))
    new_cp = await _one(conn, "SELECT current_setting('sqlgate.checkpoint', true)", ())
    problems = await _row_problems(conn, mode, o, relid, new_cp)
    if not problems and (mode == "all" or o.get("cp", cp_id) != cp_id):
        await _undo_later_rows(conn, cp_id, mode, o, relid, new_cp, outcome)
    problems += await _name_problems(conn, o, relid)
    if not problems:
        problems = await _uncovered_rows(conn, o, rel)
    if problems:
        if mode == "statement" or "table" in problems[0]:  # rows: the same in mode 'all'
            raise common.conflicts_error(cp_id, problems)
        raise common.rollback_failed("; ".join(f"{p.get('column') or p.get('view')}: {p['conflict']}"
                                               for p in problems[:3]))
    # The columns after it then: by the attnums they had (a column this rollback brought back before has a
    # new one, at the end, though it was before this one).
    ident = await identities(conn, relid)
    attnums = sorted(n for n, was in ident.items() if was > int(o["attnum"]))
    later = [await _one(conn, "SELECT sqlgate.column_spec(%s, %s::int2)", (relid, n)) for n in attnums]
    deps = await _one(conn, "SELECT sqlgate.column_deps(%s, %s::int2[], false)", (relid, attnums))
    forward = await _one(conn, "SELECT sqlgate.column_forward_refs(%s, %s::int2)", (relid, int(o["attnum"])))
    if deps["refused"] or forward:
        what = deps["refused"][0] if deps["refused"] else f"generated column {forward} uses a later column"
        raise common.rollback_failed(f"{what}: the columns after {o['column']} cannot be re-created; change it first")
    capture = await _capture_off(conn, relid, rel)
    await _drop_dependents(conn, rel, deps)
    owner = await table_owner(conn, relid)
    # Without a primary key the kept values are matched by row position (ctid), which the rollback's own
    # UPDATEs and any rewrite (a stored generated column, a domain with constraints, re-added) change:
    # each row's position now is set aside first, in a column no rewrite changes.
    stable = f"sqlgate_{cp_id[-12:]}_ctid" if o["kept"] and o["key"] is None else None
    if stable:
        await conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} pg_catalog.tid").format(rel, sql.Identifier(stable)))
        triggers = await triggers_off(conn, relid, rel)
        async with as_role(conn, owner):
            await conn.execute(sql.SQL("UPDATE {} SET {} = ctid").format(rel, sql.Identifier(stable)))
        await triggers_on(conn, rel, triggers)
    aside = {c["name"]: f"sqlgate_{cp_id[-12:]}_{c['attnum']}" for c in later}
    for c in later:
        await conn.execute(sql.SQL("ALTER TABLE {} RENAME COLUMN {} TO {}").format(
            rel, sql.Identifier(c["name"]), sql.Identifier(aside[c["name"]])))
    if o["kept"] and owner:  # the UPDATE runs as the table's owner: it reads the kept values
        await conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(o["trash"]), sql.SQL(owner)))
        await conn.execute(sql.SQL("GRANT SELECT ON {}.kept TO {}").format(sql.Identifier(o["trash"]), sql.SQL(owner)))
    columns = [o["spec"], *later]
    # What evaluates the agent's expressions (generated columns, checks, domains, the table's triggers
    # are off) runs with the rights of the table's owner, not sqlgate's.
    async with as_role(conn, owner):
        await conn.execute(sql.SQL("ALTER TABLE {} {}").format(rel, sql.SQL(", ").join(
            sql.SQL("ADD COLUMN {}").format(_column_def(c)) for c in columns)))
    await recreated(conn, relid, [(o["spec"]["name"], int(o["attnum"]))]
                    + [(c["name"], ident[int(c["attnum"])]) for c in later])
    triggers = await triggers_off(conn, relid, rel)
    async with as_role(conn, owner):
        await _copy(conn, o, rel, later, aside, stable)
    await triggers_on(conn, rel, triggers)
    for view in deps["views"]:  # same OID, now over the new columns
        await conn.execute(sql.SQL("CREATE OR REPLACE VIEW {}.{}{} AS {}").format(
            sql.Identifier(view["schema"]), sql.Identifier(view["name"]), _with(view["options"]),
            sql.SQL(view["def"].rstrip().rstrip(";"))))
    for seq in deps["sequences"]:
        await conn.execute(sql.SQL("ALTER SEQUENCE {}.{} OWNED BY {}.{}").format(
            sql.Identifier(seq["schema"]), sql.Identifier(seq["name"]), rel, sql.Identifier(seq["column"])))
    if later:  # generated ones first: they use the others
        order = sorted(later, key=lambda c: c["generated"] is None)
        await conn.execute(sql.SQL("ALTER TABLE {} {}").format(rel, sql.SQL(", ").join(
            sql.SQL("DROP COLUMN {}").format(sql.Identifier(aside[c["name"]])) for c in order)))
    for seq in o["sequences"]:
        await conn.execute(sql.SQL("ALTER SEQUENCE {}.{} SET SCHEMA {}").format(
            sql.Identifier(o["trash"]), sql.Identifier(seq["name"]), sql.Identifier(seq["schema"])))
        await conn.execute(sql.SQL("ALTER SEQUENCE {}.{} OWNED BY {}.{}").format(
            sql.Identifier(seq["schema"]), sql.Identifier(seq["name"]), rel, sql.Identifier(seq["column"])))
    # Mode 'all' puts sequences back to the checkpoint's values; an identity's sequence is new: by its old OID.
    values = await _one(conn, "SELECT seqs FROM sqlgate.checkpoints WHERE id = %s", (cp_id,)) if mode == "all" else {}
    await _column_attributes(conn, rel, columns, values or {})
    await _recreate_dependents(conn, rel, {
        "indexes": o["indexes"] + deps["indexes"], "constraints": _ordered(o["constraints"] + deps["constraints"]),
        "triggers": o["triggers"] + deps["triggers"]}, relid, owner)
    await _recreate_views(conn, o["views"])
    await _capture_on(conn, rel, capture)
    if stable:
        # Other checkpoints keyed by row position on this table follow their rows to where they are now.
        moved = await _follow_rows(conn, o, relid, rel, stable)
        await conn.execute(sql.SQL("ALTER TABLE {} DROP COLUMN {}").format(rel, sql.Identifier(stable)))
        await _follow_rewrite(conn, relid, moved)
    await conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(o["trash"])))


async def _one(conn: Any, query: str, args: Any) -> Any:
    row = await (await conn.execute(query, args)).fetchone()
    return row[0] if row else None


def _ordered(constraints: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keys before the checks and foreign keys that may use them."""
    return sorted(constraints, key=lambda c: {"f": 2, "c": 1}.get(c["type"], 0))


async def _row_problems(conn: Any, mode: str, o: dict[str, Any], relid: int, new_cp: str) -> list[dict[str, Any]]:
    """Keyed by row position (no primary key): a later write that moved or removed rows makes it unsafe."""
    if o["key"] is not None or not o["kept"]:
        return []
    table = await relname(conn, relid)
    # As stored now: a rollback in this transaction that moved its rows along (_follow_rows) updated it.
    known = await _one(conn, "SELECT x->>'relfilenode' FROM sqlgate.checkpoints c, jsonb_array_elements(c.objects) x"
                             " WHERE x->>'kind' = 'column' AND x->>'trash' = %s LIMIT 1", (o["trash"],))
    if await _one(conn, "SELECT relfilenode::text FROM pg_class WHERE oid = %s", (relid,)) != str(
            known or o["relfilenode"]):
        return [{"table": table, "conflict": "the table was rewritten since the column was dropped (TRUNCATE,"
                                             " VACUUM FULL, CLUSTER, a type change): its rows can no longer be"
                                             " matched with the kept values (it has no primary key)"}]
    ops = "('D')" if mode == "all" else "('D', 'I')"
    n = await _one(conn, f"SELECT count(*) FROM sqlgate.changes WHERE tbl = %s AND seq > %s AND op IN {ops}"
                         " AND cp IS DISTINCT FROM %s", (relid, int(o["mark"]), new_cp))
    if n:
        return [{"table": table, "conflict": f"{n} later statement(s) changed its rows; without a primary key the"
                                             " kept values are matched by row position, which those changes moved"}]
    return []


async def _undo_later_rows(conn: Any, cp_id: str, mode: str, o: dict[str, Any], relid: int, new_cp: str,
                           outcome: common.RollbackOutcome) -> None:
    """Mode 'all': the rows written after the DROP have the table's shape without the column, so they are
    undone now, before it comes back; listed in sqlgate_done, so later steps do not undo them again. They
    stay filed under their own checkpoints: only the undo's own changes are this rollback's. Mode
    'statement' on a rollback that ran the DROP again (o["cp"]): the rows that rollback changed after it."""
    await done_table(conn)
    if mode == "all":
        filt, fargs = f"seq > %s AND cp IS DISTINCT FROM %s AND {NOT_DONE}", [int(o["mark"]), new_cp]
    else:
        filt, fargs = f"seq > %s AND cp = %s AND {NOT_DONE}", [int(o["mark"]), cp_id]
    if await _one(conn, f"SELECT 1 FROM sqlgate.changes WHERE tbl = %s AND {filt} LIMIT 1", [relid, *fargs]):
        conflicts: list[dict[str, Any]] = []
        await undo_rows(conn, relid, filt, fargs, mode, outcome, conflicts)
        if conflicts:
            raise common.conflicts_error(cp_id, conflicts)
    await conn.execute("INSERT INTO pg_temp.sqlgate_done VALUES (%s, %s)", (relid, int(o["mark"])))


async def _name_problems(conn: Any, o: dict[str, Any], relid: int) -> list[dict[str, Any]]:
    problems = []
    if await _one(conn, "SELECT 1 FROM pg_attribute WHERE attrelid = %s AND attname = %s AND NOT attisdropped",
                  (relid, o["column"])):
        problems.append({"column": o["column"], "conflict": "a column with this name was added since"})
    for v in o["views"]:
        if await _one(conn, "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))", (v["schema"], v["name"])):
            problems.append({"view": f"{v['schema']}.{v['name']}", "conflict": "a relation with this name was"
                                                                              " created since"})
    return problems


async def _uncovered_rows(conn: Any, o: dict[str, Any], rel: Any) -> list[dict[str, Any]]:
    """Rows the kept values do not cover: added since, or given a new key since; either way their value of
    the column is unknown."""
    if not o["kept"]:
        return []
    keys = ["ctid"] if o["key"] is None else o["key"]
    match = sql.SQL(" AND ").join(sql.SQL("k.{} = t.{}").format(sql.Identifier(f"k{i}"), sql.Identifier(c))
                                  for i, c in enumerate(keys, 1))
    key = sql.SQL(", ").join(sql.SQL("{}, t.{}::text").format(sql.Literal(c), sql.Identifier(c)) for c in keys)
    rekeyed, by = _rekeyed(o, rel)
    cur = await conn.execute(sql.SQL(
        "{}SELECT jsonb_build_object({}), {} FROM {} t WHERE NOT EXISTS (SELECT 1 FROM {}.kept k WHERE {}) LIMIT {}"
    ).format(rekeyed, key, by, rel, sql.Identifier(o["trash"]), match, sql.Literal(_LISTED)))
    table = str(await relname(conn, int(o["relid"])))
    return [{"table": table, "row": row, "conflict": (
                f"its key was changed since {o['column']} was dropped (by the statement of checkpoint {cp}): the"
                f" values of {o['column']} are kept by the keys rows had then" if cp else
                f"added since {o['column']} was dropped: its value there is unknown")}
            for row, cp in await cur.fetchall()]


def _rekeyed(o: dict[str, Any], rel: Any) -> tuple[sql.Composable, sql.Composable]:
    """(WITH clause, expression of row t): the checkpoint of the latest statement since the DROP that wrote
    row t's key and took rows away from keys that have kept values, i.e. changed keys; else NULL. Without
    a key (rows matched by position) none."""
    if o["key"] is None:
        return sql.SQL(""), sql.SQL("NULL")
    since = sql.SQL("SELECT c.seq, c.cp, json_populate_record(NULL::{}, x) AS r FROM sqlgate.changes c,"
                    " json_array_elements(c.rows) x WHERE c.tbl = {} AND c.seq > {} AND c.cp IS NOT NULL AND c.op = "
                    ).format(rel, sql.Literal(int(o["relid"])), sql.Literal(int(o["mark"])))
    kept = sql.SQL(" AND ").join(sql.SQL("k.{} = (d.r).{}").format(sql.Identifier(f"k{n}"), sql.Identifier(c))
                                 for n, c in enumerate(o["key"], 1))
    same = sql.SQL(" AND ").join(sql.SQL("(i.r).{c} = t.{c}").format(c=sql.Identifier(c)) for c in o["key"])
    return (sql.SQL("WITH rekeyed AS MATERIALIZED ({since}'I' AND c.cp IN (SELECT d.cp FROM ({since}'D') d"
                    " JOIN {trash}.kept k ON {kept})) ").format(since=since, trash=sql.Identifier(o["trash"]),
                                                               kept=kept),
            sql.SQL("(SELECT i.cp FROM rekeyed i WHERE {} ORDER BY i.seq DESC LIMIT 1)").format(same))


async def _capture_off(conn: Any, relid: int, rel: Any) -> list[str]:
    cur = await conn.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = %s AND tgname LIKE 'sqlgate\\_capture\\_%%'"
                             " AND tgenabled <> 'D'", (relid,))
    names = [r[0] for r in await cur.fetchall()]
    for name in names:
        await conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(rel, sql.Identifier(name)))
    return names


async def _capture_on(conn: Any, rel: Any, names: list[str]) -> None:
    for name in names:
        await conn.execute(sql.SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(rel, sql.Identifier(name)))


async def _drop_dependents(conn: Any, rel: Any, deps: dict[str, Any]) -> None:
    for t in deps["triggers"]:
        await conn.execute(sql.SQL("DROP TRIGGER {} ON {}").format(sql.Identifier(t["name"]), rel))
    for c in reversed(_ordered(deps["constraints"])):  # foreign keys before the keys they use
        await conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
            sql.SQL(await relname(conn, int(c["relid"]))), sql.Identifier(c["name"])))
    for i in deps["indexes"]:
        await conn.execute(sql.SQL("DROP INDEX {}.{}").format(sql.Identifier(i["schema"]), sql.Identifier(i["name"])))


def _column_def(c: dict[str, Any]) -> sql.Composable:
    collate = sql.SQL(" COLLATE {}").format(sql.SQL(c["collation"])) if c["collation"] else sql.SQL("")
    generated = (sql.SQL(" GENERATED ALWAYS AS ({}) STORED").format(sql.SQL(c["generated"]))
                 if c["generated"] else sql.SQL(""))
    return sql.SQL("{} {}{}{}").format(sql.Identifier(c["name"]), sql.SQL(c["type"]), collate, generated)


async def _copy(conn: Any, o: dict[str, Any], rel: Any, later: list[dict[str, Any]], aside: dict[str, str],
                stable: str | None) -> None:
    """One UPDATE: the dropped column's values by key (a key column among the later ones: by its aside
    copy; no key: by the row position set aside), every later column's from its aside copy."""
    sets = [sql.SQL("{} = t.{}").format(sql.Identifier(c["name"]), sql.Identifier(aside[c["name"]]))
            for c in later if not c["generated"]]
    if not o["kept"]:
        if sets:
            await conn.execute(sql.SQL("UPDATE {} t SET {}").format(rel, sql.SQL(", ").join(sets)))
        return
    keys: list[str] = [str(stable)] if o["key"] is None else [aside.get(c, c) for c in o["key"]]
    match = sql.SQL(" AND ").join([sql.SQL("k.{} = t.{}").format(sql.Identifier(f"k{i}"), sql.Identifier(c))
                                   for i, c in enumerate(keys, 1)])
    sets.insert(0, sql.SQL("{} = k.v").format(sql.Identifier(o["column"])))
    await conn.execute(sql.SQL("UPDATE {} t SET {} FROM {}.kept k WHERE {}").format(
        rel, sql.SQL(", ").join(sets), sql.Identifier(o["trash"]), match))


async def _follow_rows(conn: Any, o: dict[str, Any], relid: int, rel: Any, stable: str) -> list[str]:
    """The kept rows of the other checkpoints keyed by row position on this table: from each row's
    position before the rollback (set aside in `stable`) to its position now."""
    others = [r[0] for r in await (await conn.execute(
        "SELECT x->>'trash' FROM sqlgate.checkpoints c, jsonb_array_elements(c.objects) x WHERE c.undone_by IS NULL"
        " AND x->>'kind' = 'column' AND (x->>'relid')::oid = %s AND x->'key' = 'null' AND x->>'trash' <> %s"
        " AND to_regclass(format('%%I.kept', x->>'trash')) IS NOT NULL", (relid, o["trash"]))).fetchall()]
    for trash in others:
        await conn.execute(sql.SQL("UPDATE {}.kept k SET k1 = t.ctid FROM {} t WHERE k.k1 = t.{}").format(
            sql.Identifier(trash), rel, sql.Identifier(stable)))
    return others


async def _follow_rewrite(conn: Any, relid: int, others: list[str]) -> None:
    """The checkpoints whose kept rows were moved along know the table's new file (a rewrite here is no
    rewrite for them)."""
    if others:
        await conn.execute(
            "UPDATE sqlgate.checkpoints c SET objects = (SELECT jsonb_agg(CASE WHEN x->>'trash' = ANY (%s)"
            " THEN jsonb_set(x, '{relfilenode}', to_jsonb(r.relfilenode)) ELSE x END ORDER BY n)"
            " FROM jsonb_array_elements(c.objects) WITH ORDINALITY e(x, n), pg_class r WHERE r.oid = %s)"
            " WHERE EXISTS (SELECT 1 FROM jsonb_array_elements(c.objects) y WHERE y->>'trash' = ANY (%s))",
            (others, relid, others))


def _with(options: list[str] | None) -> sql.Composable:
    return sql.SQL(" WITH ({})").format(sql.SQL(", ").join(map(sql.SQL, options))) if options else sql.SQL("")


async def _column_attributes(conn: Any, rel: Any, columns: list[dict[str, Any]], values: dict[str, Any]) -> None:
    """Defaults, NOT NULL, statistics, storage, compression, options (one ALTER: one scan), identity,
    comments and column privileges."""
    alter = []
    for c in columns:
        col = sql.Identifier(c["name"])
        if c["default"] is not None:
            alter.append(sql.SQL("ALTER COLUMN {} SET DEFAULT {}").format(col, sql.SQL(c["default"])))
        if c["notnull"]:
            alter.append(sql.SQL("ALTER COLUMN {} SET NOT NULL").format(col))
        if c["statistics"] is not None:
            alter.append(sql.SQL("ALTER COLUMN {} SET STATISTICS {}").format(col, sql.Literal(c["statistics"])))
        if c["storage"]:
            alter.append(sql.SQL("ALTER COLUMN {} SET STORAGE {}").format(col, sql.SQL(c["storage"])))
        if c["compression"]:
            alter.append(sql.SQL("ALTER COLUMN {} SET COMPRESSION {}").format(col, sql.SQL(c["compression"])))
        if c["options"]:
            options = sql.SQL(", ").join(map(sql.SQL, c["options"]))
            alter.append(sql.SQL("ALTER COLUMN {} SET ({})").format(col, options))
    if alter:
        await conn.execute(sql.SQL("ALTER TABLE {} {}").format(rel, sql.SQL(", ").join(alter)))
    for c in columns:
        col = sql.Identifier(c["name"])
        if c["identity"]:
            s = c["identity_seq"]
            await conn.execute(sql.SQL(
                "ALTER TABLE {} ALTER COLUMN {} ADD GENERATED {} AS IDENTITY (SEQUENCE NAME {} START WITH {}"
                " INCREMENT BY {} MINVALUE {} MAXVALUE {} CACHE {} {})").format(
                rel, col, sql.SQL(c["identity"]), sql.SQL(s["name"]), *(sql.Literal(int(s[k])) for k in (
                    "start", "increment", "min", "max", "cache")), sql.SQL("CYCLE" if s["cycle"] else "NO CYCLE")))
            last = values.get(str(s["relid"]), s["last"])
            if last is not None:
                await conn.execute("SELECT setval(%s::regclass, %s, true)", (s["name"], int(last)))
            # A new sequence: checkpoints that keep the old one's value (mode 'all') now name this one.
            await conn.execute(
                "UPDATE sqlgate.checkpoints SET seqs = (seqs - %s) || jsonb_build_object(%s::regclass::oid::text,"
                " seqs -> %s) WHERE seqs ? %s", (str(s["relid"]), s["name"], str(s["relid"]), str(s["relid"])))
        if c["comment"] is not None:
            await conn.execute(sql.SQL("COMMENT ON COLUMN {}.{} IS {}").format(rel, col, sql.Literal(c["comment"])))
        for grantee, privilege, grantable in c["acl"]:
            await conn.execute(sql.SQL("GRANT {} ({}) ON {} TO {}{}").format(
                sql.SQL(privilege), col, rel, sql.SQL(grantee), sql.SQL(" WITH GRANT OPTION" if grantable else "")))


async def _recreate_dependents(conn: Any, rel: Any, kept: dict[str, Any], relid: int, owner: str | None) -> None:
    """Indexes (PostgreSQL builds them as the table's owner), constraints (a check on this table validated
    as its owner; foreign keys are checked as the tables' owners), triggers."""
    for i in kept["indexes"]:
        await conn.execute(i["def"])
        if i["comment"] is not None:
            await conn.execute(sql.SQL("COMMENT ON INDEX {}.{} IS {}").format(
                sql.Identifier(i["schema"]), sql.Identifier(i["name"]), sql.Literal(i["comment"])))
    for c in kept["constraints"]:
        table = sql.SQL(await relname(conn, int(c["relid"])))
        async with as_role(conn, owner if c["type"] == "c" and int(c["relid"]) == relid else None):
            await conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                table, sql.Identifier(c["name"]), sql.SQL(c["def"])))
        if c["comment"] is not None:
            await conn.execute(sql.SQL("COMMENT ON CONSTRAINT {} ON {} IS {}").format(
                sql.Identifier(c["name"]), table, sql.Literal(c["comment"])))
    for i in kept["indexes"]:
        name = sql.Identifier(i["name"])
        if i["clustered"]:
            await conn.execute(sql.SQL("ALTER TABLE {} CLUSTER ON {}").format(rel, name))
        if i["replident"]:
            await conn.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY USING INDEX {}").format(rel, name))
    for t in kept["triggers"]:
        await conn.execute(t["def"])
        name = sql.Identifier(t["name"])
        state = {"D": "DISABLE TRIGGER", "R": "ENABLE REPLICA TRIGGER", "A": "ENABLE ALWAYS TRIGGER"}.get(t["enabled"])
        if state:
            await conn.execute(sql.SQL("ALTER TABLE {} {} {}").format(rel, sql.SQL(state), name))
        if t["comment"] is not None:
            await conn.execute(sql.SQL("COMMENT ON TRIGGER {} ON {} IS {}").format(
                name, rel, sql.Literal(t["comment"])))


async def _recreate_views(conn: Any, views: list[dict[str, Any]]) -> None:
    """Views DROP COLUMN ... CASCADE dropped, each after the views it is built on."""
    pending = {int(v["relid"]): v for v in views}
    while pending:
        ready = [oid for oid, v in pending.items() if not {int(x) for x in v["after"]} & pending.keys()]
        if not ready:
            raise common.rollback_failed("the kept views depend on each other in a cycle")
        for oid in sorted(ready):
            v = pending.pop(oid)
            target = sql.SQL("{}.{}").format(sql.Identifier(v["schema"]), sql.Identifier(v["name"]))
            await conn.execute(sql.SQL("CREATE VIEW {}{} AS {}").format(
                target, _with(v["options"]), sql.SQL(v["def"].rstrip().rstrip(";"))))
            await conn.execute(sql.SQL("ALTER VIEW {} OWNER TO {}").format(target, sql.SQL(v["owner"])))
            for grantee, privilege, grantable in v["acl"]:
                await conn.execute(sql.SQL("GRANT {} ON {} TO {}{}").format(
                    sql.SQL(privilege), target, sql.SQL(grantee), sql.SQL(" WITH GRANT OPTION" if grantable else "")))
            if v["comment"] is not None:
                await conn.execute(sql.SQL("COMMENT ON VIEW {} IS {}").format(target, sql.Literal(v["comment"])))
            for c in v["columns"] or []:
                col = sql.Identifier(c["name"])
                if c["default"] is not None:
                    await conn.execute(sql.SQL("ALTER VIEW {} ALTER COLUMN {} SET DEFAULT {}").format(
                        target, col, sql.SQL(c["default"])))
                if c["comment"] is not None:
                    await conn.execute(sql.SQL("COMMENT ON COLUMN {}.{} IS {}").format(
                        target, col, sql.Literal(c["comment"])))
                for grantee, privilege, grantable in c["acl"]:
                    await conn.execute(sql.SQL("GRANT {} ({}) ON {} TO {}{}").format(
                        sql.SQL(privilege), col, target, sql.SQL(grantee),
                        sql.SQL(" WITH GRANT OPTION" if grantable else "")))
