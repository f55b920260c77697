"""SECURITY.md defence 1 on PostgreSQL: agent statements run on low-privilege
logins, never as the owner nor through SET ROLE, and sqlgate's schema is out
of their reach even if a statement got past the classifier."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from proxy.backends.postgres_setup import AGENT_ROLES, role_name
from tests.conftest import start_sqlgate
from tests.support.pgserver import PgServer
from tests.support.sqlgate_server import SqlgateServer

DB = "sqlgate_privileges"


@pytest.fixture(scope="module")
def server(pg_server: PgServer) -> Iterator[SqlgateServer]:
    s = start_sqlgate("postgres", pg_server, DB)
    yield s
    s.stop()


def agent_logins(pg_server: PgServer) -> dict[str, tuple[str, str]]:
    """Role name and password of each agent login, read as the superuser."""
    with psycopg.connect(pg_server.dsn(DB)) as conn:
        passwords = dict(conn.execute("SELECT key, value FROM sqlgate.settings").fetchall())
    return {role.value: (role_name(DB, role), passwords[f"password.{role.value}"]) for role in AGENT_ROLES}


def test_each_token_role_runs_as_its_own_login(server: SqlgateServer, pg_server: PgServer) -> None:
    logins = agent_logins(pg_server)
    for role in ("read", "write"):
        token = server.token(role)["token"]
        r = server.sql("SELECT current_user AS u, session_user AS s", token=token)
        assert r.json()["rows"] == [{"u": logins[role][0], "s": logins[role][0]}]  # a login, not SET ROLE


def test_agent_logins_are_unprivileged(pg_server: PgServer, server: SqlgateServer) -> None:
    logins = agent_logins(pg_server)
    with psycopg.connect(pg_server.dsn(DB)) as conn:
        for name, _ in logins.values():
            row = conn.execute(
                "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls FROM pg_roles"
                " WHERE rolname = %s", (name,)).fetchone()
            assert row == (False, False, False, False, False)
            member_of = [r[0] for r in conn.execute(
                "SELECT b.rolname FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid"
                " JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s", (name,))]
            assert member_of == []
            settings = conn.execute(
                "SELECT unnest(setconfig) FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole"
                " WHERE r.rolname = %s", (name,)).fetchall()
            assert {s[0].split("=")[0] for s in settings} >= {
                "statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout"}


def test_agent_logins_cannot_touch_sqlgate_schema_directly(pg_server: PgServer, server: SqlgateServer) -> None:
    """Even connected straight to PostgreSQL, past sqlgate's classifier."""
    for name, password in agent_logins(pg_server).values():
        with psycopg.connect(pg_server.dsn(DB, user=name, password=password), autocommit=True) as conn:
            for sql in ("SELECT * FROM sqlgate.tokens", "DELETE FROM sqlgate.traces",
                        "SELECT * FROM sqlgate.settings", "UPDATE sqlgate.tokens SET role = 'admin'"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(sql)


def test_write_login_cannot_create_or_own(pg_server: PgServer, server: SqlgateServer) -> None:
    logins = agent_logins(pg_server)
    name, password = logins["write"]
    with psycopg.connect(pg_server.dsn(DB, user=name, password=password), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE write_login_table (a int)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE SCHEMA write_login_schema")
    name, password = logins["read"]
    server.sql("CREATE TABLE readable (a int)")
    with psycopg.connect(pg_server.dsn(DB, user=name, password=password), autocommit=True) as conn:
        conn.execute("SELECT * FROM readable")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO readable VALUES (1)")


def test_tables_created_by_write_tokens_are_usable_by_every_agent_login(server: SqlgateServer) -> None:
    writer = server.token("write")["token"]
    reader = server.token("read")["token"]
    assert server.sql("CREATE TABLE shared_t (a int)", token=writer).status_code == 200
    assert server.sql("INSERT INTO shared_t VALUES (1)", token=writer).status_code == 200
    assert server.sql("SELECT a FROM shared_t", token=reader).json()["rows"] == [{"a": 1}]


def test_startup_options_never_reach_the_server(pg_server: PgServer) -> None:
    """A DSN whose options turn the safeguards off is stripped of them."""
    dsn = pg_server.create_database("sqlgate_options") + "?options=-c%20statement_timeout%3D0"
    s = SqlgateServer("postgres", dsn).start()
    try:
        writer = s.token("write")["token"]
        r = s.sql("SHOW statement_timeout", token=writer)
        assert r.status_code == 200 and r.json()["rows"] == [{"statement_timeout": "30s"}]
    finally:
        s.stop()


def test_start_says_what_to_grant_when_the_login_lacks_privileges(pg_server: PgServer) -> None:
    import subprocess
    import sys

    pg_server.create_database("sqlgate_weak")
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS weakling")
        conn.execute("CREATE ROLE weakling LOGIN PASSWORD 'weak'")
    out = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "serve", "--database", pg_server.dsn("sqlgate_weak", "weakling", "weak"),
         "--http", "127.0.0.1:0", "--data", str(pg_server.root / "weak-data")],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 2
    assert "ALTER ROLE weakling CREATEROLE;" in out.stderr
    assert "GRANT CREATE ON DATABASE sqlgate_weak TO weakling;" in out.stderr
    assert "Traceback" not in out.stderr


def test_revocation_through_one_proxy_reaches_another(pg_server: PgServer, server: SqlgateServer) -> None:
    """Two proxies over one database: a token revoked through one stops at once on the other."""
    import time

    other = SqlgateServer("postgres", pg_server.dsn(DB), admin_token=server.admin_token).start()
    try:
        created = server.token("read")
        assert other.sql("SELECT 1", token=created["token"]).status_code == 200  # now cached there
        with server.client() as c:
            assert c.delete(f"/tokens/{created['id']}").status_code == 200
        deadline = time.monotonic() + 2
        while other.sql("SELECT 1", token=created["token"]).status_code == 200:
            assert time.monotonic() < deadline, "the other proxy kept accepting a revoked token"
            time.sleep(0.05)
    finally:
        other.stop()
