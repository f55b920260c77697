"""First-start and every-start set-up of a PostgreSQL database for sqlgate.

Creates sqlgate's schema (owned by the login sqlgate was given) and the
low-privilege login roles agent statements run as (SECURITY.md, defence 1):
read has SELECT only, write has DML only, ddl owns what it creates and is
used only for DDL the classifier understood. None can touch `sqlgate.*`
except through the SECURITY DEFINER function that records traces.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

import psycopg
from psycopg import sql

from proxy.backends.base import BackendRole

AGENT_ROLES = (BackendRole.READ, BackendRole.WRITE, BackendRole.DDL)

SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS sqlgate;
REVOKE ALL ON SCHEMA sqlgate FROM PUBLIC;
CREATE TABLE IF NOT EXISTS sqlgate.settings (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS sqlgate.tokens (
    id text PRIMARY KEY, name text NOT NULL, role text NOT NULL, secret_hash text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL, expires_at timestamptz, revoked_at timestamptz, created_by text);
ALTER TABLE sqlgate.tokens ADD COLUMN IF NOT EXISTS scram text;  -- SCRAM-SHA-256 verifier (policy/identity.py)
CREATE TABLE IF NOT EXISTS sqlgate.traces (
    id text PRIMARY KEY, at timestamptz NOT NULL, request_id text NOT NULL, actor text NOT NULL,
    token_id text, branch text NOT NULL, front_door text NOT NULL, sql text NOT NULL, params jsonb,
    class text NOT NULL, tables jsonb NOT NULL, command text, rows bigint, duration_ms double precision,
    cost double precision, checkpoint_id text, outcome text NOT NULL, error_code text, error_message text);
CREATE INDEX IF NOT EXISTS traces_at ON sqlgate.traces (at);
CREATE OR REPLACE FUNCTION sqlgate.record_traces(batch jsonb) RETURNS void
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ INSERT INTO sqlgate.traces SELECT * FROM jsonb_populate_recordset(NULL::sqlgate.traces, batch) $$;
REVOKE ALL ON FUNCTION sqlgate.record_traces(jsonb) FROM PUBLIC;
"""


class SetupError(Exception):
    """The given login cannot set sqlgate up; the message says what to grant."""


@dataclass(frozen=True)
class AgentLogins:
    """Role name and password of each agent login."""

    names: dict[BackendRole, str]
    passwords: dict[BackendRole, str]


def role_name(database: str, role: BackendRole) -> str:
    """Roles are cluster-wide, so each database gets its own (63-byte limit)."""
    base = re.sub(r"[^a-z0-9_]", "_", database.lower())[:40]
    return f"sqlgate_{base}_{role.value}"


def check_privileges(conn: psycopg.Connection) -> None:
    user, db = conn.execute("SELECT current_user, current_database()").fetchone()  # type: ignore[misc]
    row = conn.execute(
        "SELECT rolsuper, rolcreaterole, has_database_privilege(current_database(), 'CREATE')"
        " FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    assert row is not None
    superuser, createrole, can_create = row
    missing = []
    if not (superuser or createrole):
        missing.append(f"ALTER ROLE {user} CREATEROLE;")
    if not (superuser or can_create):
        missing.append(f"GRANT CREATE ON DATABASE {db} TO {user};")
    if missing:
        raise SetupError(
            f"the login {user!r} cannot set sqlgate up in database {db!r}.\n"
            "Run these as a superuser, then start sqlgate again:\n  " + "\n  ".join(missing)
        )


# sqlgate's own connections as the owner search the catalog alone: an agent may create in public, and an
# overload there that matches a call's argument types exactly would beat the built-in (CVE-2018-1058).
INTERNAL_OPTIONS = "-c search_path=pg_catalog,pg_temp"


def set_up(dsn: str, statement_timeout: str, idle_timeout: str) -> AgentLogins:
    """Idempotent: safe on every start, and by several proxies at once."""
    with psycopg.connect(dsn, autocommit=True, options=INTERNAL_OPTIONS) as conn:
        check_privileges(conn)
        with conn.transaction():
            # Serialise concurrent first starts of several proxies.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('sqlgate.setup'))")
            conn.execute(SCHEMA_SQL)
            logins = _ensure_roles(conn, statement_timeout, idle_timeout)
            _grant(conn, logins)
        return logins


def _ensure_roles(conn: psycopg.Connection, statement_timeout: str, idle_timeout: str) -> AgentLogins:
    db = conn.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
    names, passwords = {}, {}
    for role in AGENT_ROLES:
        name = role_name(db, role)
        key = f"password.{role.value}"
        row = conn.execute("SELECT value FROM sqlgate.settings WHERE key = %s", (key,)).fetchone()
        password = row[0] if row else secrets.token_urlsafe(24)
        if not row:
            conn.execute("INSERT INTO sqlgate.settings VALUES (%s, %s)", (key, password))
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
        ident = sql.Identifier(name)
        if not exists:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOINHERIT").format(ident))
        conn.execute(
            sql.SQL(
                "ALTER ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD {}"
            ).format(ident, sql.Literal(password))
        )
        # Safeguards live on the role, so no statement the agent sends can skip them
        # (changing them is classified dangerous, and startup options are refused).
        for setting, value in (
            ("statement_timeout", statement_timeout),
            ("lock_timeout", statement_timeout),
            ("idle_in_transaction_session_timeout", idle_timeout),
        ):
            conn.execute(
                sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} = {}").format(
                    ident, sql.Identifier(db), sql.Identifier(setting), sql.Literal(value)
                )
            )
        names[role], passwords[role] = name, password
    return AgentLogins(names, passwords)


def _grant(conn: psycopg.Connection, logins: AgentLogins) -> None:
    db = conn.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
    owner = conn.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]
    read, write, ddl = (sql.Identifier(logins.names[r]) for r in AGENT_ROLES)
    run = conn.execute
    run(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(db), ddl))
    run(sql.SQL("GRANT USAGE ON SCHEMA sqlgate TO {}, {}, {}").format(read, write, ddl))
    run(sql.SQL("GRANT EXECUTE ON FUNCTION sqlgate.record_traces(jsonb) TO {}, {}, {}").format(read, write, ddl))
    # What the ddl login or the owner creates is readable and writable by the agent logins.
    for grantor in (ddl, sql.Identifier(owner)):
        run(sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} GRANT SELECT ON TABLES TO {}").format(grantor, read))
        run(sql.SQL(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON TABLES TO {}, {}"
        ).format(grantor, write, ddl))
        run(sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} GRANT SELECT ON SEQUENCES TO {}").format(grantor, read))
        run(sql.SQL(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {}, {}"
        ).format(grantor, write, ddl))
        run(sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} GRANT USAGE ON SCHEMAS TO {}, {}")
            .format(grantor, read, write))
    # Existing application schemas: everything but PostgreSQL's own and sqlgate's.
    schemas = [r[0] for r in run(
        "SELECT nspname FROM pg_namespace WHERE nspname NOT IN ('sqlgate', 'information_schema')"
        " AND nspname NOT LIKE 'pg\\_%'"
    ).fetchall()]
    for name in schemas:
        s = sql.Identifier(name)
        run(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}, {}, {}").format(s, read, write, ddl))
        run(sql.SQL("GRANT CREATE ON SCHEMA {} TO {}").format(s, ddl))
        run(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(s, read))
        run(sql.SQL(
            "GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA {} TO {}, {}"
        ).format(s, write, ddl))
        run(sql.SQL("GRANT SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(s, read))
        run(sql.SQL("GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {} TO {}, {}").format(s, write, ddl))
    # Default privileges granted on the owner would otherwise reach sqlgate's own
    # objects; take back anything an agent login holds there but the trace function.
    for role in (read, write, ddl):
        run(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA sqlgate FROM {}").format(role))
        run(sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA sqlgate FROM {}").format(role))
