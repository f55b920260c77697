"""Which row ids a row checkpoint can trust (DuckDB 2.0.1, vacuum off).

DuckDB appends after the last row of its last row group. A storage CHECKPOINT
drops row groups whose rows are all deleted without renumbering the others;
when the dropped ones are the trailing groups, the next row id falls back to
the end of the last group kept (0 for an emptied table) and new rows take ids
deleted rows had. Hence:
- the watermark is the highest *live* row id, not the slot count: every id
  above it was free at the checkpoint, so a row holding one later was added
  since, whatever DuckDB gave back in between;
- an id at or below it can be given again only once every row from that id up
  is deleted, the watermark's own row included, which a later checkpoint of
  this table then kept. Only then can a row added since pass for one that was
  there, and the live row count taken with the watermark tells: rows untouched
  since plus rows kept since must add up to it, or mode 'all' refuses (which
  rows were added cannot be told apart then).
Rows an open transaction appended have temporary ids from MAX_ROW_ID up until COMMIT renumbers them
after the table's last row, closing the gaps of those it deleted: they count in neither the watermark
nor the live rows, and a row checkpoint keeps a copy of them instead (mode 'all' puts it back)."""

from __future__ import annotations

from typing import Any

import duckdb

from proxy import errors

Cursor = duckdb.DuckDBPyConnection

MAX_ROW_ID = 36028797018960000  # DuckDB's first transaction-local row id (2.0.1)
_STEP = 2048  # the first window below the slot count (one vector), widened 16 times each step


def live_mark(cur: Cursor, ref: str, slots_mark: int) -> tuple[int, int, int]:
    """(highest committed live row id, -1 if none; committed live rows; rows this transaction appended)
    of table `ref` whose estimated_size is slots_mark + 1. Row ids are read by range, which DuckDB answers
    from row-group bounds: O(1) unless the table has a deleted tail, then O(that tail). Rows above
    slots_mark: a dropped group in the middle, or rows this transaction appended (one more read then).
    Any slots_mark gives the same answer (only the cost differs: rows above it are read)."""
    return live_mark_with(cur, ref, slots_mark)[0]


def live_mark_with(cur: Cursor, ref: str, slots_mark: int, extra: tuple[str, ...] = (),
                   args: tuple[Any, ...] = ()) -> tuple[tuple[int, int, int], tuple[Any, ...]]:
    """live_mark's answer, and the values of the `extra` expressions (their `?` bound to `args`) read in
    its first query."""
    lo = slots_mark - _STEP
    first = cur.execute(f"SELECT (SELECT max(rowid) FROM {ref} WHERE rowid > ?), (SELECT count(*) FROM {ref})"
                        + "".join(f", {e}" for e in extra), [lo, *args]).fetchone()
    high, live = first[0], first[1]  # type: ignore[index]
    appended = 0
    if high is not None and high >= MAX_ROW_ID:
        high, appended = cur.execute(
            f"SELECT (SELECT max(rowid) FROM {ref} WHERE rowid > ? AND rowid < {MAX_ROW_ID}),"
            f" (SELECT count(*) FROM {ref} WHERE rowid >= {MAX_ROW_ID})", [lo]).fetchone()  # type: ignore[misc]
        live -= appended
    step = _STEP
    while high is None and live and lo >= 0:
        step *= 16
        high = cur.execute(f"SELECT max(rowid) FROM {ref} WHERE rowid > ? AND rowid <= ?",
                           [lo - step, lo]).fetchone()[0]  # type: ignore[index]
        lo -= step
    return ((int(high) if high is not None else -1), int(live), int(appended)), tuple(first[2:])  # type: ignore[index]


def check_untouched(cur: Cursor, cp_id: str, table: str, first: dict[str, Any], remapped: bool,
                    qualified: str) -> None:
    """Mode 'all': refuse when a row id at or below the first piece's watermark may have gone to a row
    added since. Reads temp tables __sqlgate_olds (__k: ids kept since, in the first piece's space) and
    __sqlgate_live (__live, __k; without a rebuild only the rows above the mark or kept since)."""
    mark, then = int(first["watermark"]), first.get("live_rows")
    if then is None or not _count(cur, f"SELECT count(*) FROM __sqlgate_olds WHERE __k = {mark}"):
        return  # kept by an older sqlgate, or the watermark's row is untouched: no id below it was free
    kept = _count(cur, "SELECT count(DISTINCT __k) FROM __sqlgate_olds")
    if remapped:
        untouched = _count(cur, f"SELECT count(*) FROM __sqlgate_live WHERE __k <= {mark}"
                                " AND __k NOT IN (SELECT __k FROM __sqlgate_olds)")
    else:
        untouched = (_count(cur, f"SELECT count(*) FROM {qualified} WHERE rowid <= {mark}")
                     - _count(cur, f"SELECT count(*) FROM __sqlgate_live WHERE __k <= {mark}"))
    if untouched + kept != int(then):
        raise reused(cp_id, table)


def _count(cur: Cursor, query: str) -> int:
    row = cur.execute(query).fetchone()
    return int(row[0]) if row else 0


def reused(cp_id: str, table: str) -> errors.SqlgateError:
    return errors.SqlgateError(
        "branching.rollback_conflict", "40001",
        f"cannot roll back checkpoint {cp_id} on {table} in mode 'all': DuckDB gave row ids that were free"
        " when it was taken to rows added since, and they cannot be told from the rows that were there;"
        " nothing was changed",
        "DuckDB names rows by row id; a storage CHECKPOINT dropped the table's trailing row groups after all"
        " their rows were deleted, and new rows took ids below the checkpoint's watermark.",
        f'POST /rollback with {{"checkpoint": "<id>", "mode": "statement"}} for each later checkpoint of {table},'
        " latest first, then for this one (statement mode matches rows by value)",
        status=409)
