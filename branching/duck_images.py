"""DuckDB row checkpoints by before and after images, for statements whose
changed rows cannot be selected exactly beforehand (upserts, MERGE,
data-modifying CTEs). Before: keep every row the statement could touch (a
superset named by `Candidates`). After: the rows now at those row ids or
appended since; rows identical at the same row id were not changed and are
dropped from both sides, leaving the exact delta (old rows D, new rows I)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb
import sqlglot

from branching import common
from branching.duck_rows import rows_object
from branching.duck_sql import ROWID, Cursor, Take, columns, exists, q, split
from proxy.backends.duckdb_params import adapt_params
from proxy.db_errors import database_error
from proxy.result import Result


@dataclass(frozen=True)
class Candidates:
    """The rows of one table a statement may change: `sql` selects their row ids (None: every row;
    '': none, it only appends) with the statement parameters at `params` (0-based, in order)."""

    table: str
    sql: str | None
    params: tuple[int, ...] = field(default=())

    def where(self) -> str:
        if self.sql is None:
            return ""
        return " WHERE false" if self.sql == "" else f" WHERE rowid IN ({self.sql})"

    def args(self, args: list[Any]) -> list[Any] | None:
        return [args[i] for i in self.params] if self.params else None


def images_runner(take: Take, plan: Callable[[Cursor], list[Candidates]]) -> Any:
    """Runs the statement between keeping the before images of `plan`'s rows and reducing them to the delta."""
    session = take.session
    tables: list[Candidates] = []

    async def run(original: Any, params: Any) -> Result:
        def before(cur: Cursor) -> list[dict[str, Any]]:
            args = adapt_params(take.part.sql, params, cur, session.backend.catalog_version) if params else []
            try:
                tables[:] = plan(cur)
            except (ValueError, sqlglot.errors.SqlglotError) as exc:
                raise common.unavailable(take.part, f"cannot select the rows it may change ({exc})") from None
            objects = []
            for i, c in enumerate(tables):
                schema, table = split(cur, c.table)
                if not exists(cur, schema, table):
                    continue  # the statement itself reports the missing table
                qualified = f"{q(schema)}.{q(table)}"
                obj = rows_object(cur, take.catalog, schema, table, take.kept("cpd", i))
                # Rows this transaction appended earlier sit above the watermark (DuckDB numbers them
                # apart until commit): the highest row id now is where this statement's appends start.
                row = cur.execute(f"SELECT max(rowid) FROM {qualified} WHERE rowid > {obj['watermark']}").fetchone()
                obj["appended_after"] = int(row[0]) if row and row[0] is not None else obj["watermark"]
                try:
                    cur.execute(f"CREATE TABLE {obj['old']} AS SELECT rowid AS {ROWID}, * FROM {qualified}"
                                f"{c.where()}", c.args(args))
                except duckdb.Error as exc:  # e.g. VALUES (DEFAULT, ..) cannot be read as a query
                    raise common.unavailable(take.part, "cannot select the rows it may change"
                                                        f" ({str(exc).splitlines()[0]})") from None
                objects.append(obj)
            return objects

        def after(cur: Cursor, objects: list[dict[str, Any]]) -> None:
            for i, obj in enumerate(objects):
                obj["new"] = take.kept("cpi", i)
                keep_delta(cur, obj, take.kept("cpa", i))
                del obj["appended_after"]
            take.record(cur, "rows", [c.table for c in tables], objects)

        try:
            objects = await session._run(lambda: before(session._conn))
            result = await original()
            await session._run(lambda: after(session._conn, objects))
        except duckdb.Error as exc:
            raise database_error(exc) from exc
        return result  # type: ignore[no-any-return]

    return run


def keep_delta(cur: Cursor, obj: dict[str, Any], scratch: str) -> None:
    """Reduce obj['old'] (before images) to the rows the statement removed or changed, and fill
    obj['new'] with the rows it wrote, through a scratch table of after images."""
    qualified = f"{q(obj['schema'])}.{q(obj['name'])}"
    cols = columns(cur, obj["schema"], obj["name"])
    collist = ", ".join(q(c) for c in cols)
    old, new = obj["old"], obj["new"]
    same = " AND ".join([f"o.{ROWID} = a.{ROWID}", *(f"o.{q(c)} IS NOT DISTINCT FROM a.{q(c)}" for c in cols)])
    cur.execute(f"CREATE TABLE {scratch} AS SELECT rowid AS {ROWID}, * FROM {qualified}"
                f" WHERE rowid > {obj['appended_after']} OR rowid IN (SELECT {ROWID} FROM {old})")
    cur.execute(f"CREATE TABLE {new} AS SELECT {collist} FROM {scratch} a"
                f" WHERE NOT EXISTS (SELECT 1 FROM {old} o WHERE {same})")
    cur.execute(f"DELETE FROM {old} WHERE {ROWID} IN (SELECT o.{ROWID} FROM {old} o JOIN {scratch} a ON {same})")
    cur.execute(f"DROP TABLE {scratch}")
