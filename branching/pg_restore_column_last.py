"""Undoing a DROP COLUMN kept in sqlgate's first format (the last column of a table with a primary key):
add it back, its values by key, its default, NOT NULL, constraints and indexes."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from branching import common
from branching.pg_restore import relname


async def restore_last_column(conn: Any, cp_id: str, mode: str, o: dict[str, Any]) -> None:
    """A checkpoint taken before any column could be dropped (last column, primary key): its format."""
    rel = sql.SQL(await relname(conn, int(o["relid"])))
    col = sql.Identifier(o["column"])
    if await (await conn.execute("SELECT 1 FROM pg_attribute WHERE attrelid = %s AND attname = %s"
                                 " AND NOT attisdropped", (int(o["relid"]), o["column"]))).fetchone():
        if mode == "statement":
            raise common.conflicts_error(cp_id, [{"column": o["column"],
                                                  "conflict": "a column with this name was added since"}])
        raise common.rollback_failed(f"column {o['column']} exists again; drop it first")
    collate = sql.SQL(f" COLLATE {o['collation']}") if o.get("collation") else sql.SQL("")
    await conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} {}{}").format(rel, col, sql.SQL(o["type"]), collate))
    match = sql.SQL(" AND ").join(sql.SQL("t.{c} = k.{c}").format(c=sql.Identifier(c)) for c in o["pk"])
    await conn.execute(sql.SQL("UPDATE {} t SET {} = k.{} FROM {}.kept k WHERE {}").format(
        rel, col, col, sql.Identifier(o["trash"]), match))
    if o.get("default") is not None:
        await conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}").format(
            rel, col, sql.SQL(o["default"])))
    if o.get("notnull"):
        await conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL").format(rel, col))
    for c in o.get("constraints", []):
        await conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
            sql.SQL(await relname(conn, int(c["relid"]))), sql.Identifier(c["name"]), sql.SQL(c["def"])))
    for index_def in o.get("indexes", []):
        await conn.execute(index_def)
    await conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(o["trash"])))

