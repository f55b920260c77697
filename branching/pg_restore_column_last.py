"""Undoing a DROP COLUMN kept in sqlgate's first format (the last column of a table with a primary key):
add it back, its values by key, its default, NOT NULL, constraints and indexes. What evaluates the agent's
code (ADD COLUMN: a domain's default and checks; the UPDATE: the table's CHECKs; a CHECK re-added) runs as
the table's owner; the UPDATE puts values back, so it fires no trigger (sqlgate's capture neither)."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from branching import common
from branching.pg_restore import let_read_kept, relname, triggers_off, triggers_on
from branching.pg_roles import as_owner, as_role, is_check, table_owner


async def restore_last_column(conn: Any, cp_id: str, mode: str, o: dict[str, Any]) -> None:
    """A checkpoint taken before any column could be dropped (last column, primary key): its format."""
    relid = int(o["relid"])
    rel = sql.SQL(await relname(conn, relid))
    col = sql.Identifier(o["column"])
    if await (await conn.execute("SELECT 1 FROM pg_attribute WHERE attrelid = %s AND attname = %s"
                                 " AND NOT attisdropped", (relid, o["column"]))).fetchone():
        if mode == "statement":
            raise common.conflicts_error(cp_id, [{"column": o["column"],
                                                  "conflict": "a column with this name was added since"}])
        raise common.rollback_failed(f"column {o['column']} exists again; drop it first")
    owner = await table_owner(conn, relid)
    trash = sql.Identifier(o["trash"])
    await let_read_kept(conn, o["trash"], owner)
    collate = sql.SQL(f" COLLATE {o['collation']}") if o.get("collation") else sql.SQL("")
    async with as_role(conn, owner):
        await conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} {}{}").format(rel, col, sql.SQL(o["type"]), collate))
    match = sql.SQL(" AND ").join(sql.SQL("t.{c} = k.{c}").format(c=sql.Identifier(c)) for c in o["pk"])
    triggers = await triggers_off(conn, relid, rel)
    async with as_role(conn, owner):
        await conn.execute(sql.SQL("UPDATE {} t SET {} = k.{} FROM {}.kept k WHERE {}").format(
            rel, col, col, trash, match))
    await triggers_on(conn, rel, triggers)
    if o.get("default") is not None:
        await conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}").format(
            rel, col, sql.SQL(o["default"])))
    if o.get("notnull"):
        await conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL").format(rel, col))
    for c in o.get("constraints", []):
        async with as_owner(conn, int(c["relid"]), is_check(c["def"])):
            await conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                sql.SQL(await relname(conn, int(c["relid"]))), sql.Identifier(c["name"]), sql.SQL(c["def"])))
    for index_def in o.get("indexes", []):
        await conn.execute(index_def)  # PostgreSQL builds an index as its table's owner
    await conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(trash))
