"""Mode 'statement' of a row undo on PostgreSQL: where each captured column is now. Kept rows go back by
column name, so a column renamed since (and not back) would take its values nowhere, or into the column
that took its name: found here, following the renames since the capture and the rollbacks that undid some."""

from __future__ import annotations

from typing import Any

# Renames of a table's columns, each with when it took effect: a rename's checkpoint, and the rollback that
# undid it (the other way round; a rollback that undid several, latest first); and the columns DROP COLUMN
# took (still in effect; no new name): their values are kept by that DROP's checkpoint.
_RENAMES = """
WITH r AS (SELECT c.id, c.mark, c.undone_by, x->'change'->>'name' AS old, x->'change'->>'to' AS new
           FROM sqlgate.checkpoints c CROSS JOIN LATERAL jsonb_array_elements(c.objects) x
           WHERE c.kind = 'definition' AND (c.mark > %(since)s OR c.undone_by IS NOT NULL)
             AND x->>'kind' = 'definition' AND (x->>'relid')::oid = %(tbl)s AND x->'change'->>'what' = 'column')
SELECT mark, 0, id, NULL, old, new FROM r WHERE mark > %(since)s
UNION ALL
SELECT u.mark, -r.mark, u.id, r.id, r.new, r.old FROM r JOIN sqlgate.checkpoints u ON u.id = r.undone_by
WHERE u.mark > %(since)s
UNION ALL
SELECT c.mark, 0, c.id, NULL, x->>'column', NULL FROM sqlgate.checkpoints c
CROSS JOIN LATERAL jsonb_array_elements(c.objects) x
WHERE c.kind = 'column' AND c.mark > %(since)s AND c.undone_by IS NULL AND x->>'kind' = 'column'
  AND (x->>'relid')::oid = %(tbl)s
ORDER BY 1, 2"""


async def columns_now(conn: Any, tbl: int, rel: str, present: frozenset[str],
                       captures: list[tuple[frozenset[str], int]]) -> tuple[list[dict[str, Any]], frozenset[str]]:
    """Mode 'statement': where each captured column is now, following the renames since its capture (and
    the rollbacks that undid some). A column elsewhere than under its captured name is a conflict that
    names the renames to undo first: put back by name, its values would go nowhere, or into the column
    that took its name. Returns (conflicts, the captured columns dropped since: their values are kept by
    that DROP's checkpoint, and the rows go back without them)."""
    cur = await conn.execute(_RENAMES, {"tbl": tbl, "since": min(s for _, s in captures)})
    events = await cur.fetchall()
    conflicts: dict[str, dict[str, Any]] = {}
    lost: set[str] = set()
    for shape, since in captures:
        for column in sorted(shape - set(conflicts) - lost):
            now, path = _follow(column, since, events)
            if now == column and now in present:
                continue
            if now not in present and any(at > since and new is None and old == now
                                          for at, _, _, _, old, new in events):
                lost.add(column)
            else:
                conflicts[column] = {"table": rel, "column": column, "conflict": _moved(column, now, path, present)}
    return list(conflicts.values()), frozenset(lost)


def _follow(column: str, since: int, events: list[tuple[Any, ...]]) -> tuple[str, list[str]]:
    """The name `column` (as captured at `since`) has now, and the checkpoints of the renames that took it
    there that are still in effect, oldest first (a rollback that undid the latest one cancels it)."""
    path: list[str] = []
    for at, _, source, undoes, old, new in events:
        if at > since and new is not None and old == column:
            column = new
            if undoes is not None and path and path[-1] == undoes:
                path.pop()
            else:
                path.append(source)
    return column, path


def _moved(column: str, now: str, path: list[str], present: frozenset[str]) -> str:
    """What to do about a captured column that is elsewhere now."""
    if now not in present:  # renamed or dropped where sqlgate did not see it: it does not guess
        where = f"renamed since to {now}, " if now != column else ""
        return (f"the rows to put back have column {column}, {where}which the table no longer has, and no DROP"
                f" COLUMN since (kept by sqlgate) explains it (a change made outside sqlgate?): put back without it,"
                f" its values would be lost. Give the table that column back (its name, or add it back), then"
                f" undo this checkpoint; or roll back with mode 'all'")
    steps = ", then with ".join(f"{{\"checkpoint\": \"{cp}\", \"mode\": \"statement\"}}" for cp in reversed(path))
    return (f"the rows to put back have column {column}, renamed since to {now} (checkpoint"
            f"{'s' if len(path) > 1 else ''} {', '.join(reversed(path))})"
            + (f", and {column} now names another column" if column in present else "")
            + f": undo {'that rename' if len(path) == 1 else 'those renames, latest first'} (POST /rollback with"
              f" {steps}), then this checkpoint; or roll back with mode 'all'")
