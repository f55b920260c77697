"""Rollback on DuckDB, rows: undo one statement's kept rows (mode
'statement', a multiset delta with conflicts) or everything since a
watermark (mode 'all'). Each answers what it did, itself undoable."""

from __future__ import annotations

from typing import Any

import duckdb

from branching import common
from branching.duck_catalog import Catalog
from branching.duck_sql import ROWID, Cursor, columns, count, q, restore_sequences, watermark


def undo_statement(cur: Cursor, o: dict[str, Any], new_cp: str, n: int, outcome: common.RollbackOutcome,
                   conflicts: list[dict[str, Any]]) -> dict[str, Any]:
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
    now_mark = watermark(cur, o["schema"], o["name"])
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
        outcome.rows_restored += count(cur, f"INSERT INTO {qualified} ({collist}) SELECT {collist} FROM {added_new}")
    except duckdb.ConstraintException as exc:
        conflicts.append({"table": f"{o['schema']}.{o['name']}",
                          "conflict": f"a restored row collides with a later change: {str(exc).splitlines()[0]}"})
        raise common.conflicts_error(outcome.checkpoint, conflicts) from None
    return {"kind": "rows", "schema": o["schema"], "name": o["name"], "old": removed_old, "new": added_new,
            "watermark": now_mark}


def undo_all(cur: Cursor, schema: str, name: str, pieces: list[dict[str, Any]], new_cp: str, n: int,
             outcome: common.RollbackOutcome, catalog: Catalog | None = None) -> dict[str, Any]:
    """The table as it was at the first piece: rows present then and never touched since, plus the
    first kept version of every row a later statement removed or changed (row ids ≤ the watermark)."""
    qualified = f"{q(schema)}.{q(name)}"
    cols = columns(cur, schema, name)
    collist = ", ".join(q(c) for c in cols)
    mark = int(pieces[0]["watermark"])
    olds = " UNION ALL ".join(
        f"SELECT {i} AS __o, {ROWID}, {collist} FROM {p['old']} WHERE {ROWID} <= {mark}"
        for i, p in enumerate(pieces))
    removed_old = f"sqlgate.{q(f'cpd_{new_cp}_{n}')}"
    added_new = f"sqlgate.{q(f'cpi_{new_cp}_{n}')}"
    now_mark = watermark(cur, schema, name)
    cur.execute(f"CREATE TABLE {removed_old} AS SELECT rowid AS {ROWID}, * FROM {qualified}"
                f" WHERE rowid > {mark} OR rowid IN (SELECT {ROWID} FROM ({olds}))")
    outcome.rows_removed += count(cur, f"DELETE FROM {qualified} WHERE rowid IN (SELECT {ROWID} FROM {removed_old})")
    cur.execute(f"CREATE TABLE {added_new} AS SELECT {collist} FROM ({olds})"
                f" QUALIFY row_number() OVER (PARTITION BY {ROWID} ORDER BY __o) = 1")
    outcome.rows_restored += count(cur, f"INSERT INTO {qualified} ({collist}) SELECT {collist} FROM {added_new}")
    restore_sequences(cur, pieces[0].get("sequences") or {}, pieces[0].get("fresh_sequences"), catalog)
    return {"kind": "rows", "schema": schema, "name": name, "old": removed_old, "new": added_new,
            "watermark": now_mark}
