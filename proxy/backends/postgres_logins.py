"""A write token's wire session spans two PostgreSQL logins (DML on write, DDL
on ddl), yet must behave as one direct connection. Two helpers keep it so:
`carry_settings` copies what the client SET from one login's connection to
the other's, and `why_not_movable` says whether an open transaction may move
from the write login to the ddl login without losing anything.

Both run on the agent's own connections, under a search_path the agent
chose: every name is schema-qualified, operators included, so that a view or
operator the agent created cannot stand in for the catalog's."""

from __future__ import annotations

import logging
import re
from typing import Any

import psycopg

from policy.dangerous import SAFEGUARD_SETTINGS

log = logging.getLogger("sqlgate.wire")

# Never copied: the safeguards sit on the login roles (and SETting them is refused), and the
# transaction_* settings can only be set before a transaction's first query.
_NOT_COPIED = SAFEGUARD_SETTINGS | {"transaction_isolation", "transaction_deferrable", "transaction_read_only"}

# Custom settings (app.tenant...) are hidden from pg_settings: they are read by name.
_SETTINGS = """
SELECT s.name, pg_catalog.current_setting(s.name), s.reset_val FROM pg_catalog.pg_settings s
 WHERE s.source OPERATOR(pg_catalog.=) 'session'
UNION ALL
SELECT c.name, pg_catalog.current_setting(c.name, true), '' FROM pg_catalog.unnest(%s::pg_catalog.text[]) AS c(name)
 WHERE pg_catalog.current_setting(c.name, true) IS NOT NULL"""

_CUSTOM_NAME = re.compile(r"""(?ix) ^\s* (?:SET|RESET) \s+ (?:SESSION\s+)? "?([a-z_][\w$]*\.[\w$.]+)"? """)
_SET_CONFIG = re.compile(r"""(?i) set_config \s* \( \s* '([a-z_][\w$]*\.[\w$.]+)' """, re.X)


def custom_names(sql: str) -> set[str]:
    """The custom settings (names with a dot) a SET, RESET or set_config() names."""
    names = {m.group(1).lower() for m in _SET_CONFIG.finditer(sql)}
    match = _CUSTOM_NAME.match(sql)
    if match:
        names.add(match.group(1).lower())
    return names


async def _settings(conn: Any, custom: set[str]) -> dict[str, tuple[str, str]]:
    cur = await conn.execute(_SETTINGS, (sorted(custom),), prepare=False)
    return {name: (value, reset) for name, value, reset in await cur.fetchall() if name not in _NOT_COPIED}


async def carry_settings(source: Any, target: Any, custom: set[str]) -> None:
    """Make `target`'s session settings those of `source`: set what differs, reset what
    `source` does not have. Each setting is applied alone: one that cannot be set
    (it is logged) must not keep the others from following."""
    wanted = await _settings(source, custom)
    have = await _settings(target, custom)
    changes = [(name, value) for name, (value, _) in wanted.items() if have.get(name, (None,))[0] != value]
    changes += [(name, reset) for name, (_, reset) in have.items() if name not in wanted]
    for name, value in changes:
        try:
            await target.execute("SELECT pg_catalog.set_config(%s, %s, false)", (name, value), prepare=False)
        except psycopg.Error as exc:
            log.warning("wire session: setting %s could not follow to the other login: %s", name, exc)


# What would be lost if the transaction rolled back on the write login and began again on the
# ddl login: a snapshot (an isolation level above READ COMMITTED), a write (an xid), a lock other
# than the plain reads' (LOCK TABLE, FOR UPDATE, advisory locks), a cursor, temporary tables.
_WHY_NOT_MOVABLE = """
SELECT CASE
  WHEN pg_catalog.current_setting('transaction_isolation')
       OPERATOR(pg_catalog.<>) ALL (ARRAY['read committed', 'read uncommitted'])
    THEN 'its isolation level (' OPERATOR(pg_catalog.||) pg_catalog.current_setting('transaction_isolation')
         OPERATOR(pg_catalog.||) ') holds a snapshot'
  WHEN EXISTS (SELECT FROM pg_catalog.pg_locks l
                WHERE l.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()
                  AND l.locktype OPERATOR(pg_catalog.<>) 'virtualxid'
                  AND NOT (l.locktype OPERATOR(pg_catalog.=) 'relation'
                           AND l.mode OPERATOR(pg_catalog.=) 'AccessShareLock'))
    THEN 'it holds locks (LOCK TABLE, FOR UPDATE, an advisory lock) or has written'
  WHEN pg_catalog.pg_current_xact_id_if_assigned() IS NOT NULL THEN 'it has written'
  WHEN EXISTS (SELECT FROM pg_catalog.pg_cursors) THEN 'it has open cursors'
  WHEN EXISTS (SELECT FROM pg_catalog.pg_class c
                WHERE c.relnamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema())
    THEN 'the session has temporary tables, which live on the write login'
END"""


async def why_not_movable(conn: Any) -> str | None:
    cur = await conn.execute(_WHY_NOT_MOVABLE, prepare=False)
    row = await cur.fetchone()
    return row[0] if row else None
