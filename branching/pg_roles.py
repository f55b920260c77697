"""Acting as a table's owner inside a rollback: what a restore evaluates (generated columns, CHECKs,
defaults, domain checks, triggers, a type change's rewrite) may call an agent's own functions, which must
run with the rights of the table's owner, never with those of sqlgate's login."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from branching import common


async def table_owner(conn: Any, relid: int, strict: bool = True) -> str | None:
    """The table's owner, to act as; None when that is who runs the rollback already, or (not `strict`)
    when sqlgate's login cannot become it: an agent cannot then have put its functions on that table."""
    cur = await conn.execute(
        "SELECT c.relowner::regrole::text, c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user),"
        " pg_has_role(c.relowner, CASE WHEN current_setting('server_version_num')::int >= 160000 THEN 'SET'"
        " ELSE 'MEMBER' END) FROM pg_class c WHERE c.oid = %s", (relid,))
    owner, same, can = await cur.fetchone()
    if same:
        return None
    if not can:
        if not strict:
            return None
        raise common.rollback_failed(f"sqlgate cannot act as {owner}, the owner of the table, to restore it"
                                     " with the owner's rights; grant sqlgate's login that role")
    return str(owner)


class as_role:
    """SET LOCAL ROLE for the statements inside, back to the role before after them (an error aborts the
    transaction or savepoint, which sets it back too)."""

    def __init__(self, conn: Any, role: str | None) -> None:
        self.conn, self.role, self.previous = conn, role, None

    async def __aenter__(self) -> None:
        if self.role:
            self.previous = (await (await self.conn.execute("SELECT current_setting('role')")).fetchone())[0]
            await self.conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.SQL(self.role)))

    async def __aexit__(self, kind: Any, error: Any, tb: Any) -> None:
        if self.role and kind is None:
            await self.conn.execute("SELECT set_config('role', %s, true)", (self.previous,))


def is_check(definition: str) -> bool:
    """A CHECK: adding it validates every row as the current user. (PostgreSQL itself builds a key's or an
    exclusion's index as the table's owner, and runs a foreign key's check as the tables' owners.)"""
    return definition.lstrip().upper().startswith("CHECK")


class as_owner(as_role):
    """as_role as the owner of table `relid` when `needed`, looked up on entry and strictly: a rollback
    that cannot act as the owner fails rather than run the agent's code with sqlgate's rights. A table a
    later DROP kept aside sits in a private schema: its owner may enter it for this block only."""

    def __init__(self, conn: Any, relid: int, needed: bool = True) -> None:
        super().__init__(conn, None)
        self.relid, self.needed = relid, needed
        self.aside: sql.Identifier | None = None

    async def __aenter__(self) -> None:
        self.role = await table_owner(self.conn, self.relid) if self.needed else None
        if self.role:
            row = await (await self.conn.execute(
                "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %s"
                " AND NOT has_schema_privilege(c.relowner, n.oid, 'USAGE')", (self.relid,))).fetchone()
            if row:
                self.aside = sql.Identifier(row[0])
                await self.conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                    self.aside, sql.SQL(self.role)))
        await super().__aenter__()

    async def __aexit__(self, kind: Any, error: Any, tb: Any) -> None:
        await super().__aexit__(kind, error, tb)
        if self.aside is not None and kind is None:
            await self.conn.execute(sql.SQL("REVOKE USAGE ON SCHEMA {} FROM {}").format(
                self.aside, sql.SQL(str(self.role))))
