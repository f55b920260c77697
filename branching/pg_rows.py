"""Undoing row changes on PostgreSQL: the multiset delta of the captured rows
(removed D, added I) is reversed on one table. A D/I pair with the same primary
key becomes an UPDATE in place, so rows pointing at it stay put; a row that is
no longer as the undo expects is a conflict, and nothing is applied. Rows are
compared on the columns they were captured with (a column added since is no
change); in mode 'statement' a captured column the table now has under another
name is a conflict, never values put back into the wrong column or dropped."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from branching import common
from branching.pg_restore import relname
from branching.pg_roles import as_role, table_owner
from branching.pg_rows_renames import columns_now

# Every change to a captured table, one row per (statement, table, direction, row): `row` as jsonb, to
# group and compare by value; `raw` as captured, to restore from (jsonb would rewrite a json column's text).
CHANGE_ROWS = ("(SELECT c.seq, c.cp, c.tbl, c.op, r.raw::jsonb AS row, r.raw FROM sqlgate.changes c"
               " CROSS JOIN LATERAL json_array_elements(c.rows) AS r(raw))")


# Mode 'all': changes a step already undid (a DROP COLUMN's restore undoes the rows written since, in the
# table's shape then) are skipped by later steps; they stay filed under their own checkpoints.
NOT_DONE = "NOT EXISTS (SELECT 1 FROM pg_temp.sqlgate_done WHERE done_tbl = tbl AND seq > done_after)"


async def done_table(conn: Any) -> None:
    await conn.execute("CREATE TEMP TABLE IF NOT EXISTS sqlgate_done (done_tbl oid, done_after bigint)"
                       " ON COMMIT DROP")


_LISTED = 20  # rows named in a conflict, at most

# The rows to remove, by value: a table row is matched as jsonb, whatever text a json column had.
_REMOVED = sql.SQL("SELECT row, sum(n) AS n FROM sqlgate_delta WHERE n < 0 GROUP BY row")


@dataclass(frozen=True)
class _Captured:
    """The rows to undo as they were captured, against the table now."""
    shapes: list[frozenset[str]]  # the column sets they were captured with
    absent: set[frozenset[str]]  # per shape, the table's columns it lacks: added since
    lost: frozenset[str]  # captured columns whose values cannot go back (renamed, then dropped, since)
    last: int  # the last change undone: later ones are the agent's, since

    @property
    def added(self) -> frozenset[str]:
        return frozenset().union(*self.absent)

    def seen(self, captured: sql.Composable) -> sql.Composable:
        """Table row x as jsonb, with only the columns `captured` (a captured row) has: a column added since
        is no change of the row. No column added since (the common case): the whole row, as ever."""
        if not self.added:
            return sql.SQL("to_jsonb(x.*)")
        if len(self.absent) == 1:  # one literal: a join on it can still hash
            return sql.SQL("(to_jsonb(x.*) - {}::text[])").format(sql.Literal(sorted(self.added)))
        return sql.SQL("(to_jsonb(x.*) - ARRAY(SELECT k FROM unnest({}::text[]) k WHERE NOT {} ? k))").format(
            sql.Literal(sorted(self.added)), captured)


async def undo_rows(conn: Any, tbl: int, filt: str, fargs: list[Any], mode: str,
                    outcome: common.RollbackOutcome, conflicts: list[dict[str, Any]]) -> None:
    """Reverse the net delta of the changes `filt` selects on table `tbl`; conflicts are appended, not raised."""
    rel = await relname(conn, tbl)
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
    await conn.execute("CREATE TEMP TABLE IF NOT EXISTS sqlgate_delta (row jsonb, raw json, n bigint) ON COMMIT DROP")
    await conn.execute("TRUNCATE sqlgate_delta")
    await conn.execute(
        f"INSERT INTO sqlgate_delta SELECT row, (array_agg(raw))[1], sum(CASE op WHEN 'D' THEN 1 ELSE -1 END)"
        f" FROM {CHANGE_ROWS} x"
        # By value and text: a json column whose text alone changed is put back as it was.
        f" WHERE tbl = %s AND {filt} GROUP BY row, raw::text HAVING sum(CASE op WHEN 'D' THEN 1 ELSE -1 END) <> 0",
        [tbl, *fargs])
    await conn.execute("ANALYZE sqlgate_delta")
    # The column sets the rows were captured with (one per capture: a statement sees one shape of the
    # table), each with its first and last change.
    cur = await conn.execute(f"SELECT ARRAY(SELECT json_object_keys(rows -> 0)), min(seq), max(seq)"
                             f" FROM sqlgate.changes WHERE tbl = %s AND {filt} GROUP BY 1", [tbl, *fargs])
    captures = [(frozenset(keys), int(first), int(last)) for keys, first, last in await cur.fetchall()]
    if not captures:
        return
    names = frozenset(c for c, _ in cols)
    lost: frozenset[str] = frozenset()
    if mode == "statement":  # mode 'all' undid the later definition changes first: the names are as captured
        found, lost = await columns_now(conn, tbl, rel, names, [(k, s) for k, s, _ in captures])
        if found:
            conflicts += found
            return
    cap = _Captured([k for k, _, _ in captures], {names - k for k, _, _ in captures}, lost,
                    max(last for _, _, last in captures))
    await conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS sqlgate_pairs (old jsonb, new jsonb, old_raw json) ON COMMIT DROP")
    owner = await table_owner(conn, tbl, strict=False)
    aside = None
    if owner:
        await conn.execute(sql.SQL("GRANT SELECT, INSERT, DELETE, TRUNCATE ON sqlgate_delta, sqlgate_pairs TO {}")
                           .format(sql.SQL(owner)))
        # A table kept aside by a later DROP sits in a private schema its owner cannot enter: for this
        # transaction only (GRANT and REVOKE are transactional, both happen before it commits).
        aside = (await (await conn.execute(
            "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %s"
            " AND NOT has_schema_privilege(%s, n.oid, 'USAGE')", (tbl, owner))).fetchone())
        if aside:
            await conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(aside[0]),
                                                                                 sql.SQL(owner)))
    # What the undo writes may run the agent's own functions (generated columns, CHECKs, domain checks,
    # ENABLE ALWAYS triggers): as the table's owner, never as sqlgate's login.
    async with as_role(conn, owner):
        await _apply(conn, tbl, rel, target, insertable, pk, mode, outcome, conflicts, cap)
    if owner and aside:
        await conn.execute(sql.SQL("REVOKE USAGE ON SCHEMA {} FROM {}").format(sql.Identifier(aside[0]),
                                                                                sql.SQL(owner)))


async def _apply(conn: Any, tbl: int, rel: str, target: sql.Composable, insertable: list[str], pk: list[str],
                 mode: str, outcome: common.RollbackOutcome, conflicts: list[dict[str, Any]], cap: _Captured) -> None:
    if pk:
        # A row the undo changes back keeps its key: UPDATE it in place, so foreign keys that point at it
        # (and ON DELETE CASCADE children) are never disturbed.
        key_a = sql.SQL(", ").join(sql.SQL("a.row -> {}").format(sql.Literal(c)) for c in pk)
        key_b = sql.SQL(", ").join(sql.SQL("b.row -> {}").format(sql.Literal(c)) for c in pk)
        await conn.execute("TRUNCATE sqlgate_pairs")
        await conn.execute(sql.SQL(
            "INSERT INTO sqlgate_pairs SELECT a.row, b.row, a.raw FROM sqlgate_delta a JOIN sqlgate_delta b"
            " ON a.n = 1 AND b.n = -1 AND jsonb_build_array({}) = jsonb_build_array({})").format(key_a, key_b))
        # A column added since keeps its value (the statement did not write it; a later one may have).
        settable = {c: _old_value(c, cap) for c in insertable
                    if c not in pk and c not in cap.lost and any(c in s for s in cap.shapes)}
        pairs = (await (await conn.execute("SELECT count(*) FROM sqlgate_pairs")).fetchone())[0]
        if pairs and settable:
            pk_match = sql.SQL(" AND ").join(
                sql.SQL("x.{c} = (s.n).{c}").format(c=sql.Identifier(c)) for c in pk)
            cur = await conn.execute(sql.SQL(
                "UPDATE {t} x SET ({cols}) = ROW({vals}) FROM (SELECT jsonb_populate_record(NULL::{t}, p.new) AS n,"
                " p.new AS nj, p.old AS oj, json_populate_record(NULL::{t}, p.old_raw) AS r FROM sqlgate_pairs p) s"
                " WHERE {pk_match} AND {seen} = s.nj"
            ).format(t=target, cols=sql.SQL(", ").join(sql.Identifier(c) for c in settable),
                     vals=sql.SQL(", ").join(settable.values()), pk_match=pk_match, seen=cap.seen(sql.SQL("s.nj"))))
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
    match: sql.Composable = sql.SQL("{} = d.row").format(cap.seen(sql.SQL("d.row")))
    if pk:
        match = sql.SQL(" AND ").join([
            *(sql.SQL("x.{c} = (d.r).{c}").format(c=sql.Identifier(c)) for c in pk), match])
    found = sql.SQL(
        "SELECT x.ctid AS tid, d.row, -d.n AS want, row_number() OVER (PARTITION BY d.row ORDER BY x.ctid) AS k"
        " FROM (SELECT row, n, {rec} AS r FROM ({removed}) d) d JOIN {t} x ON {match}"
    ).format(rec=rec, removed=_REMOVED, t=target, match=match)
    cur = await conn.execute(sql.SQL(
        "SELECT d.row, -d.n, (SELECT count(*) FROM ({found}) f WHERE f.row = d.row) FROM ({removed}) d"
    ).format(found=found, removed=_REMOVED))
    for value, want, have in await cur.fetchall():
        if have < want:
            conflicts.append({"table": rel, "row": value, "conflict": "changed or deleted since the checkpoint"})
    if mode == "statement" and cap.added and not conflicts:
        conflicts += await _written_since(conn, tbl, rel, target, found, cap)
    if conflicts:
        return
    cur = await conn.execute(sql.SQL(
        "DELETE FROM {t} WHERE ctid = ANY (ARRAY(SELECT tid FROM ({found}) f WHERE k <= want))"
    ).format(t=target, found=found))
    outcome.rows_removed += cur.rowcount
    try:
        async with conn.transaction():
            await _insert_kept(conn, target, insertable, cap, outcome)
    except psycopg.errors.IntegrityError as exc:
        if mode == "all":
            raise common.rollback_failed(str(exc).strip()) from exc
        conflicts.append({"table": rel, "conflict": f"a restored row collides with a later change: "
                                                    f"{exc.diag.message_detail or str(exc).strip()}"})


def _old_value(column: str, cap: _Captured) -> sql.Composable:
    """What an in-place undo sets `column` to: the old value; where rows were captured without it (added
    since), the value it has."""
    old = sql.SQL("(s.r).{}").format(sql.Identifier(column))
    if all(column in s for s in cap.shapes):
        return old
    return sql.SQL("CASE WHEN s.oj ? {} THEN {} ELSE x.{} END").format(sql.Literal(column), old,
                                                                       sql.Identifier(column))


async def _written_since(conn: Any, tbl: int, rel: str, target: sql.Composable, found: sql.Composable,
                         cap: _Captured) -> list[dict[str, Any]]:
    """Rows the undo takes away (put back whole: no key, or a key the statement changed) whose columns added
    since hold what a later statement wrote, net of what was undone since: the undo would lose it."""
    cur = await conn.execute(sql.SQL(
        "WITH later AS MATERIALIZED (SELECT row, (array_agg(cp ORDER BY seq DESC))[1] AS cp FROM {changes} x"
        " WHERE tbl = {tbl} AND seq > {last} AND cp IS DISTINCT FROM current_setting('sqlgate.checkpoint', true)"
        " GROUP BY row HAVING sum(CASE op WHEN 'I' THEN 1 ELSE -1 END) > 0)"
        " SELECT f.row, l.cp FROM ({found}) f JOIN {t} x ON x.ctid = f.tid JOIN later l ON l.row = to_jsonb(x.*)"
        " WHERE f.k <= f.want LIMIT {n}"
    ).format(changes=sql.SQL(CHANGE_ROWS), tbl=sql.Literal(tbl), last=sql.Literal(cap.last), found=found,
             t=target, n=sql.Literal(_LISTED)))
    added = ", ".join(sorted(cap.added))
    return [{"table": rel, "row": row, "column": added, "conflict": (
                f"{added} (added since the checkpoint) holds a value written since "
                + (f"by checkpoint {cp}: undo that one first (POST /rollback with {{\"checkpoint\": \"{cp}\","
                   f" \"mode\": \"statement\"}}), then this checkpoint" if cp else
                   "by a statement without a checkpoint: set it back first")
                + "; or roll back with mode 'all'. The undo puts this row back whole (the table has no primary"
                  " key, or the statement changed its key) and would lose that value")}
            for row, cp in await cur.fetchall()]


async def _insert_kept(conn: Any, target: sql.Composable, insertable: list[str], cap: _Captured,
                       outcome: common.RollbackOutcome) -> None:
    """The rows to put back, n instances of each. Each lists only the columns it was captured with: a column
    added since takes its default, as ADD COLUMN gave the other rows (a kept NULL stays NULL)."""
    present = {frozenset(c for c in insertable if c in shape) for shape in cap.shapes}
    for cols in sorted(present, key=sorted):
        # Several shapes: each INSERT takes the rows with exactly its columns (one shape: all of them).
        absent = [c for c in insertable if c not in cols]
        only = (sql.SQL(" AND d.row ?& {} AND NOT d.row ?| {}").format(sql.Literal(sorted(cols)), sql.Literal(absent))
                if len(present) > 1 else sql.SQL(""))
        names = [c for c in insertable if c in cols and c not in cap.lost]
        cur = await conn.execute(sql.SQL(
            "INSERT INTO {t} ({cols}) OVERRIDING SYSTEM VALUE SELECT {vals} FROM"
            " (SELECT json_populate_record(NULL::{t}, d.raw) AS r FROM sqlgate_delta d,"
            " generate_series(1, d.n) WHERE d.n > 0{only}) s"
        ).format(t=target, cols=sql.SQL(", ").join(sql.Identifier(c) for c in names),
                 vals=sql.SQL(", ").join(sql.SQL("(r).{}").format(sql.Identifier(c)) for c in names), only=only))
        outcome.rows_restored += cur.rowcount
