"""Rollback on DuckDB, rows: undo one statement's kept rows (mode
'statement', a multiset delta with conflicts) or everything since a
watermark (mode 'all'). Each answers what it did, itself undoable."""

from __future__ import annotations

from typing import Any

import duckdb

from branching import common
from branching.duck_catalog import Catalog
from branching.duck_moves import Moves, Space
from branching.duck_rebuild import stored_columns
from branching.duck_rowids import check_untouched
from branching.duck_sql import ROWID, Cursor, columns, count, live_marks, q, restore_sequences


def undo_statement(cur: Cursor, o: dict[str, Any], new_cp: str, n: int, outcome: common.RollbackOutcome,
                   conflicts: list[dict[str, Any]], moves: Moves | None = None) -> dict[str, Any]:
    qualified = f"{q(o['schema'])}.{q(o['name'])}"
    cols = columns(cur, o["schema"], o["name"])
    kept = columns(cur, "sqlgate", o["old"].split(".", 1)[1].strip('"'))
    if [c for c in kept if c != ROWID] != cols:
        conflicts.append({"table": f"{o['schema']}.{o['name']}", "conflict": "its columns changed since"})
        return {}
    collist = ", ".join(q(c) for c in cols)
    match = " AND ".join(f"x.{q(c)} IS NOT DISTINCT FROM g.{q(c)}" for c in cols)
    removed_old = f"sqlgate.{q(f'cpd_{new_cp}_{n}')}"
    added_new = f"sqlgate.{q(f'cpi_{new_cp}_{n}')}"
    now_mark, now_live = live_marks(cur, o["schema"], o["name"])
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
    outcome.rows_removed += count(cur, f"DELETE FROM {qualified} WHERE rowid IN (SELECT {ROWID} FROM {removed_old})")
    cur.execute(f"CREATE TABLE {added_new} AS SELECT {collist} FROM {o['old']}")
    try:
        restored = _insert(cur, o["schema"], o["name"], added_new)
        outcome.rows_restored += restored
        if restored and moves is not None:
            moves.reinserted.add((o["schema"], o["name"]))
    except duckdb.ConstraintException as exc:
        conflicts.append({"table": f"{o['schema']}.{o['name']}",
                          "conflict": f"a restored row collides with a later change: {str(exc).splitlines()[0]}"})
        raise common.conflicts_error(outcome.checkpoint, conflicts) from None
    return {"kind": "rows", "schema": o["schema"], "name": o["name"], "old": removed_old, "new": added_new,
            "watermark": now_mark, "live_rows": now_live}


def undo_all(cur: Cursor, schema: str, name: str, pieces: list[tuple[int, dict[str, Any]]], new_cp: str, n: int,
             outcome: common.RollbackOutcome, catalog: Catalog | None = None,
             moves: Moves | None = None) -> dict[str, Any]:
    """The table as it was at the first piece: rows present then and never touched since, plus the
    first kept version of every row a later statement removed or changed (row ids ≤ the watermark), or
    a 409 when ids at or below it may have gone to rows added since (duck_rowids). Rows the first
    piece's transaction had appended before it come back from the copy it kept: they were renumbered above
    the watermark at COMMIT, so they are removed with the rows added since.
    Row ids are mapped back into the first piece's space through every rebuild since (duck_moves);
    a piece kept before a DROP COLUMN this rollback undid takes that column's kept values."""
    moves = moves or Moves(new_cp)
    qualified = f"{q(schema)}.{q(name)}"
    table = f"{schema}.{name}"
    space = Space(cur, moves, outcome.checkpoint, schema, name, pieces[0][0])
    cols = columns(cur, schema, name)
    collist = ", ".join(q(c) for c in cols)
    mark = int(pieces[0][1]["watermark"])
    fills = moves.fills.get((schema, name), {})
    retypes = moves.retyped.get((schema, name), {})
    taken_away = moves.taken_away.get((schema, name), set())
    selects = []
    for i, (seq, p) in enumerate(pieces):
        have = [c for c in columns(cur, "sqlgate", p["old"].split(".", 1)[1].strip('"'))
                if c != ROWID and c not in taken_away]
        named = dict(zip(have, have, strict=True))
        if (schema, name) in moves.renamed and len(have) == len(cols) and have != cols:
            named = dict(zip(cols, have, strict=True))  # kept under names this rollback renamed back
            have = cols
        if [c for c in have if c not in cols] or [c for c in cols if c not in have and c not in fills]:
            why = "its columns changed since (a column was added or dropped without a checkpoint)"
            raise common.conflicts_error(outcome.checkpoint, [{"table": table, "conflict": why}])
        joins: list[str] = []
        values: list[str] = []
        for c in cols:
            retyped = retypes.get(c)
            if c in have and (retyped is None or seq <= retyped[1]):
                values.append(f"x.{q(named[c])} AS {q(c)}")
                continue
            # Dropped when this piece was kept (a DROP COLUMN this rollback undoes), or kept in the type a
            # type change this rollback undoes gave it: the values kept at that change.
            keep, keep_seq = retyped if c in have and retyped is not None else fills[c]
            alias = f"f{len(joins)}"
            joins.append(f" LEFT JOIN (SELECT s.__k, k.{q(c)} FROM ({space.kept(keep, keep_seq)}) s"
                         f" JOIN {keep} k ON k.{ROWID} = s.__live) {alias} ON {alias}.__k = y.__k")
            values.append(f"{alias}.{q(c)} AS {q(c)}")
        selects.append(f"SELECT {i} AS __o, y.__k, {', '.join(values)} FROM {p['old']} x"
                       f" JOIN ({space.kept(p['old'], seq)}) y ON y.__live = x.{ROWID}{''.join(joins)}"
                       f" WHERE y.__k <= {mark}")
    olds = " UNION ALL ".join(selects)
    restore = f"SELECT {collist} FROM __sqlgate_olds QUALIFY row_number() OVER (PARTITION BY __k ORDER BY __o) = 1"
    appended = pieces[0][1].get("appended")
    if appended:
        if set(columns(cur, "sqlgate", appended.split(".", 1)[1].strip('"'))) - taken_away != set(cols):
            why = "its columns changed since (a column was added or dropped without a checkpoint)"
            raise common.conflicts_error(outcome.checkpoint, [{"table": table, "conflict": why}])
        restore += f" UNION ALL SELECT {collist} FROM {appended}"
    removed_old = f"sqlgate.{q(f'cpd_{new_cp}_{n}')}"
    added_new = f"sqlgate.{q(f'cpi_{new_cp}_{n}')}"
    now_mark, now_live = live_marks(cur, schema, name)
    rebuilt_here = (schema, name) in moves.marks  # by this rollback: its count before that is not known
    now_mark = space.mark(now_mark)
    cur.execute(f"CREATE TEMP TABLE __sqlgate_olds AS {olds}")
    try:
        if space.remapped():
            cur.execute(f"CREATE TEMP TABLE __sqlgate_live AS {space.live()}")
            cur.execute(f"CREATE TEMP TABLE __sqlgate_before AS {space.before_rollback()}")
        else:  # no rebuild since: only the rows this undo removes, by their own row ids (no full copy)
            cur.execute(f"CREATE TEMP TABLE __sqlgate_live AS SELECT rowid AS __live, rowid AS __k FROM {qualified}"
                        f" WHERE rowid > {mark} OR rowid IN (SELECT __k FROM __sqlgate_olds)")
            cur.execute("CREATE TEMP TABLE __sqlgate_before AS SELECT * FROM __sqlgate_live")
        check_untouched(cur, outcome.checkpoint, table, pieces[0][1], space.remapped(), qualified)
        cur.execute(f"CREATE TABLE {removed_old} AS SELECT b.__k AS {ROWID}, t.* FROM {qualified} t"
                    " JOIN __sqlgate_live l ON l.__live = t.rowid JOIN __sqlgate_before b ON b.__live = t.rowid"
                    f" WHERE l.__k IS NULL OR l.__k > {mark} OR l.__k IN (SELECT __k FROM __sqlgate_olds)")
        outcome.rows_removed += count(
            cur, f"DELETE FROM {qualified} WHERE rowid IN (SELECT __live FROM __sqlgate_live WHERE __k IS NULL"
                 f" OR __k > {mark} OR __k IN (SELECT __k FROM __sqlgate_olds))")
        cur.execute(f"CREATE TABLE {added_new} AS {restore}")
        restored = _insert(cur, schema, name, added_new)
    finally:
        try:
            for temp in ("__sqlgate_olds", "__sqlgate_live", "__sqlgate_before"):
                cur.execute(f"DROP TABLE IF EXISTS temp.{temp}")
        except duckdb.Error:  # aborted by the error being raised, which says why; the whole rollback goes
            pass
    outcome.rows_restored += restored
    if restored:
        moves.reinserted.add((schema, name))
    sequences = pieces[0][1].get("sequences") or {}
    # Their values now go with this rollback's checkpoint: undoing it sets them back.
    now_values = _sequence_values(cur, list(sequences))
    restore_sequences(cur, sequences, pieces[0][1].get("fresh_sequences"), catalog)
    out = {"kind": "rows", "schema": schema, "name": name, "old": removed_old, "new": added_new,
           "watermark": now_mark, "sequences": now_values}
    if not rebuilt_here:
        out["live_rows"] = now_live
    return out


def _insert(cur: Cursor, schema: str, name: str, rows: str) -> int:
    """Rows put back from kept table `rows`, but their generated columns: DuckDB computes those."""
    stored = ", ".join(q(c) for c in stored_columns(cur, schema, name))
    return count(cur, f"INSERT INTO {q(schema)}.{q(name)} ({stored}) SELECT {stored} FROM {rows}")


def _sequence_values(cur: Cursor, names: list[str]) -> dict[str, int | None]:
    """The last values of sequences named 'schema.name' (None: never used)."""
    values: dict[str, int | None] = {}
    for name in names:
        schema, seq = name.split(".", 1)
        row = cur.execute("SELECT last_value FROM duckdb_sequences() WHERE schema_name = ? AND sequence_name = ?"
                          " AND database_name = current_database()", [schema, seq]).fetchone()
        if row is not None:
            values[name] = None if row[0] is None else int(row[0])
    return values
