"""Roles, refusals, metadata protection and token life-cycle through HTTP,
on both backends."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.support.sqlgate_server import SqlgateServer


def table_name() -> str:
    return "p_" + uuid.uuid4().hex[:10]


def test_missing_and_bad_tokens_are_401_with_next_step(sqlgate: SqlgateServer) -> None:
    r = httpx.post(sqlgate.url + "/sql", json={"query": "SELECT 1"})
    assert r.status_code == 401 and r.json()["reason"] == "auth.missing" and "Bearer" in r.json()["next"]
    r = sqlgate.sql("SELECT 1", token="sqlgate_not_a_real_token")
    assert r.status_code == 401 and r.json()["reason"] == "auth.invalid"


def test_connection_string_password_authenticates_and_names_the_actor(sqlgate: SqlgateServer) -> None:
    token = sqlgate.token("read", name="reader")["token"]
    conn = f"postgresql://agent%2D7:{token}@127.0.0.1/main?sslmode=require&application_name=x"
    r = httpx.post(sqlgate.url + "/sql", json={"query": "SELECT 1 AS one"}, headers={"Neon-Connection-String": conn})
    assert r.status_code == 200, r.text
    trace_id = r.json()["trace_id"]
    with sqlgate.client() as c:
        traces = c.get("/traces", params={"actor": "agent-7"}).json()["traces"]
    assert trace_id in [t["id"] for t in traces]


def test_bad_connection_string_scheme(sqlgate: SqlgateServer) -> None:
    r = httpx.post(sqlgate.url + "/sql", json={"query": "SELECT 1"},
                   headers={"Neon-Connection-String": "mysql://a:b@h/db"})
    assert r.status_code == 400 and "incorrect scheme" in r.json()["message"]


@pytest.mark.parametrize("sql", [
    "INSERT INTO {t} VALUES (1)",
    "CREATE TABLE {t}_x (a int)",
    "SELECT nextval('{t}_seq')",
])
def test_read_token_is_refused_writes(sqlgate: SqlgateServer, sql: str) -> None:
    t = table_name()
    sqlgate.sql(f"CREATE TABLE {t} (a int); CREATE SEQUENCE {t}_seq")
    token = sqlgate.token("read")["token"]
    r = sqlgate.sql(sql.format(t=t), token=token)
    assert r.status_code == 403, r.text
    body = r.json()
    assert body["code"] == "42501" and body["reason"] == "policy.denied"
    assert body["hint"] and "write token" in body["next"]
    assert sqlgate.sql(f"SELECT count(*)::int AS n FROM {t}").json()["rows"] == [{"n": 0}]


def test_read_token_can_read(sqlgate: SqlgateServer) -> None:
    t = table_name()
    sqlgate.sql(f"CREATE TABLE {t} (a int); INSERT INTO {t} VALUES (5)")
    token = sqlgate.token("read")["token"]
    r = sqlgate.sql(f"SELECT a FROM {t}", token=token)
    assert r.status_code == 200 and r.json()["rows"] == [{"a": 5}]


@pytest.mark.parametrize("sql", [
    "DO $$ BEGIN END $$", "SET statement_timeout = 0", "SELECT pg_read_file('/etc/passwd')",
    "SELECT 1; SET ROLE NONE", "SELECT set_config('role', 'postgres', false)",
])
def test_dangerous_statements_are_refused_to_write_tokens(sqlgate: SqlgateServer, sql: str) -> None:
    """PostgreSQL's spelling. DuckDB refuses each too, or fails it (it has no set_config: 42883, as
    PostgreSQL answers an unknown function)."""
    token = sqlgate.token("write")["token"]
    r = sqlgate.sql(sql, token=token)
    refusals = {("policy.denied", "42501"), ("sql.unparseable", "42601")}
    if sqlgate.backend == "duckdb":
        refusals.add(("sql.error", "42883"))
    assert (r.json()["reason"], r.json()["code"]) in refusals, r.text


def test_dangerous_duckdb_statements_are_refused(sqlgate: SqlgateServer) -> None:
    if sqlgate.backend != "duckdb":
        return  # PostgreSQL's list runs above; this list is DuckDB's dialect
    token = sqlgate.token("write")["token"]
    for sql in ("SELECT * FROM read_text('/etc/hostname')", "SET memory_limit = '1GB'", "INSTALL httpfs",
                "COPY (SELECT 1) TO '/tmp/sqlgate-leak.csv'"):
        r = sqlgate.sql(sql, token=token)
        assert r.status_code == 403 and r.json()["reason"] == "policy.denied", (sql, r.text)


def test_sqlgate_metadata_is_out_of_reach_for_non_admin(sqlgate: SqlgateServer) -> None:
    token = sqlgate.token("write")["token"]
    for sql in ("SELECT * FROM sqlgate.tokens", "DELETE FROM sqlgate.traces", 'SELECT sql FROM "sqlgate"."traces"'):
        r = sqlgate.sql(sql, token=token)
        assert r.status_code == 403 and r.json()["reason"] == "policy.metadata", (sql, r.text)


def test_write_token_writes(sqlgate: SqlgateServer) -> None:
    token = sqlgate.token("write")["token"]
    t = table_name()
    r = sqlgate.sql(f"CREATE TABLE {t} (a int); INSERT INTO {t} VALUES (1)", token=token)
    assert r.status_code == 200, r.text
    assert sqlgate.sql(f"SELECT a FROM {t}", token=token).json()["rows"] == [{"a": 1}]


def test_new_tokens_default_to_read_and_expire(sqlgate: SqlgateServer) -> None:
    with sqlgate.client() as c:
        created = c.post("/tokens", json={}).json()
    assert created["role"] == "read" and created["expires_at"] is not None
    assert created["token"].startswith("sqlgate_")


def test_token_cannot_create_a_stronger_or_longer_lived_token(sqlgate: SqlgateServer) -> None:
    writer = sqlgate.token("write", expires_in=600)["token"]
    with sqlgate.client(writer) as c:
        assert c.post("/tokens", json={"role": "admin"}).status_code == 403
        assert c.post("/tokens", json={"role": "read", "expires_in": 7200}).status_code == 403
        child = c.post("/tokens", json={"role": "read", "expires_in": 60})
        assert child.status_code == 201 and child.json()["role"] == "read"
        # It may revoke what it created, but not others' tokens.
        assert c.delete(f"/tokens/{child.json()['id']}").status_code == 200
        other = sqlgate.token("read")
        assert c.delete(f"/tokens/{other['id']}").status_code == 403


def test_revocation_takes_effect_on_the_next_request(sqlgate: SqlgateServer) -> None:
    created = sqlgate.token("write")
    assert sqlgate.sql("SELECT 1", token=created["token"]).status_code == 200
    with sqlgate.client() as c:
        r = c.delete(f"/tokens/{created['id']}")
        assert r.status_code == 200 and r.json()["revoked_at"]
        assert c.delete("/tokens/tok_nope").status_code == 404
    r = sqlgate.sql("SELECT 1", token=created["token"])
    assert r.status_code == 401 and r.json()["reason"] == "auth.invalid"


def test_expired_token_is_refused(sqlgate: SqlgateServer) -> None:
    import time

    created = sqlgate.token("read", expires_in=1)
    time.sleep(1.2)
    assert sqlgate.sql("SELECT 1", token=created["token"]).status_code == 401


def test_token_list_is_admin_wide_and_never_shows_secrets(sqlgate: SqlgateServer) -> None:
    created = sqlgate.token("read", name="listed")
    with sqlgate.client() as c:
        tokens = c.get("/tokens").json()["tokens"]
    ours = [t for t in tokens if t["id"] == created["id"]]
    assert ours and ours[0]["name"] == "listed"
    assert all("token" not in t and "secret_hash" not in t for t in tokens)
    with sqlgate.client(created["token"]) as c:
        assert [t["id"] for t in c.get("/tokens").json()["tokens"]] == [created["id"]]


def test_sqlgate_is_reachable_from_sql(sqlgate: SqlgateServer) -> None:
    created = sqlgate.token("read", name="sql-only")
    r = sqlgate.sql("SELECT sqlgate.whoami()", token=created["token"])
    assert r.status_code == 200, r.text
    [row] = r.json()["rows"]
    assert row["role"] == "read" and row["token_id"] == created["id"] and row["branch"] == "main"
    first = sqlgate.sql("SELECT 40 + 2 AS n", token=created["token"]).json()["trace_id"]
    r = sqlgate.sql('SELECT * FROM "sqlgate".traces LIMIT 50', token=created["token"])
    assert r.status_code == 200, r.text
    ids = [t["id"] for t in r.json()["rows"]]
    assert first in ids
    assert {t["actor"] for t in r.json()["rows"]} == {"sql-only"}  # only its own statements
    r = sqlgate.sql("SELECT * FROM sqlgate.tokens", token=created["token"])
    assert r.status_code == 403 and r.json()["reason"] == "policy.metadata"
    # Anything else naming sqlgate's schema is still refused.
    r = sqlgate.sql("SELECT * FROM sqlgate.traces WHERE actor = 'x'", token=created["token"])
    assert r.status_code == 403


@pytest.mark.parametrize("setup, probe, leaked", [
    ("SELECT set_config('search_path', 'leak_schema, public', false)", "SHOW search_path",
     [{"search_path": "leak_schema, public"}]),
    ("SELECT 1 AS id INTO TEMP leak_temp", "SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 'leak_temp'",
     None),
])
def test_session_state_never_reaches_another_token(sqlgate: SqlgateServer, setup: str, probe: str,
                                                   leaked: object) -> None:
    """One token's SET or temp table must not be seen by the next request on a pooled connection."""
    if sqlgate.backend != "postgres":
        return  # DuckDB gives every request its own connection
    first, second = sqlgate.token("write")["token"], sqlgate.token("write")["token"]
    assert sqlgate.sql(setup, token=first).status_code == 200
    for _ in range(12):  # more than the pool holds: every pooled connection is probed
        r = sqlgate.sql(probe, token=second)
        assert r.status_code == 200, r.text
        if leaked is not None:
            assert r.json()["rows"] != leaked
        else:
            assert r.json()["rows"] == [{"n": 0}]
