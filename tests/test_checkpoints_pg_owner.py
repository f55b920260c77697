"""A rollback writes rows back into an agent's table, and what that evaluates (a generated column,
a CHECK) may call the agent's own functions: they run as the table's owner, never with the rights of
sqlgate's login, so a rollback cannot read what the admin revoked from every agent."""

from __future__ import annotations

from tests.support.sqlgate_server import SqlgateServer
from tests.test_checkpoints import fresh, ok, rollback, rows


def plant_secret(pg: SqlgateServer, agent: str, p: str, arg: str = "int", result: str = "text") -> None:
    """A table the admin revokes from every sqlgate login, and the agent's functions {p}_steal() (reads
    it) and {p}_g(a) (reads it only where the caller may: 'nothing' otherwise)."""
    logins = [r["rolname"] for r in rows(pg, "SELECT rolname FROM pg_roles WHERE rolname LIKE 'sqlgate\\_%'")]
    ok(pg.sql(f"CREATE TABLE {p}_secret (v text); INSERT INTO {p}_secret VALUES ('TOP-SECRET')"))
    ok(pg.sql(f"REVOKE ALL ON {p}_secret FROM PUBLIC, " + ", ".join(logins)))
    assert pg.sql(f"SELECT * FROM {p}_secret", token=agent).status_code == 400
    for statement in (
        f"CREATE FUNCTION {p}_steal() RETURNS text LANGUAGE sql STABLE AS"
        f" $$ SELECT string_agg(v, ',') FROM public.{p}_secret $$",
        f"CREATE FUNCTION {p}_g(a {arg}) RETURNS {result} LANGUAGE sql IMMUTABLE AS $$ SELECT CASE WHEN"
        f" has_table_privilege('public.{p}_secret', 'SELECT') THEN public.{p}_steal() ELSE 'nothing' END $$",
    ):
        ok(pg.sql(statement, token=agent))


def test_a_row_rollback_runs_the_agents_functions_as_the_tables_owner(pg: SqlgateServer) -> None:
    agent = pg.token("write", "owner-agent")["token"]
    p = fresh("ow")
    plant_secret(pg, agent, p)
    for statement in (
        f"CREATE TABLE {p} (id int PRIMARY KEY, a int, x text GENERATED ALWAYS AS (public.{p}_g(a)) STORED)",
        f"INSERT INTO {p} (id, a) VALUES (1, 1), (2, 2)",
    ):
        ok(pg.sql(statement, token=agent))
    for mode in ("statement", "all"):
        answer = ok(pg.sql(f"DELETE FROM {p}", token=agent))
        ok(rollback(pg, answer["checkpoint"]["id"], token=agent, mode=mode))
        assert rows(pg, f"SELECT x FROM {p} ORDER BY id", token=agent) == [{"x": "nothing"}, {"x": "nothing"}]


def test_a_statement_run_again_by_undoing_a_rollback_runs_as_the_tables_owner(pg: SqlgateServer) -> None:
    """Undoing the rollback of an ALTER ... TYPE ... USING runs it again: its USING expression may call
    the agent's function, which must not get sqlgate's login's rights there either."""
    agent = pg.token("write", "owner-agent-2")["token"]
    p = fresh("ow")
    plant_secret(pg, agent, p, arg="text", result="varchar")
    for statement in (
        f"CREATE TABLE {p} (id int PRIMARY KEY, c text)",
        f"INSERT INTO {p} VALUES (1, 'x')",
    ):
        ok(pg.sql(statement, token=agent))
    answer = ok(pg.sql(f"ALTER TABLE {p} ALTER COLUMN c TYPE varchar USING public.{p}_g(c)", token=agent))
    assert rows(pg, f"SELECT c FROM {p}", token=agent) == [{"c": "nothing"}]
    undone = ok(rollback(pg, answer["checkpoint"]["id"], token=agent))
    ok(rollback(pg, undone["new_checkpoint"], token=agent))
    assert rows(pg, f"SELECT c FROM {p}", token=agent) == [{"c": "nothing"}]


def test_mode_all_never_undoes_another_tokens_checkpoints_for_an_agent(sqlgate: SqlgateServer) -> None:
    """An admin drops a column of personal data after an agent's UPDATE of the same table: the agent's
    mode-'all' rollback of its UPDATE would bring the column back, so it is refused, nothing changed."""
    agent = sqlgate.token("write", "owner-agent-3")["token"]
    p = fresh("ow")
    ok(sqlgate.sql(f"CREATE TABLE {p}_u (id int PRIMARY KEY, name text, ssn text)"))
    ok(sqlgate.sql(f"INSERT INTO {p}_u VALUES (1, 'a', '111'), (2, 'b', '222')"))
    mine = ok(sqlgate.sql(f"UPDATE {p}_u SET name = 'x' WHERE id = 1", token=agent))["checkpoint"]["id"]
    ok(sqlgate.sql(f"ALTER TABLE {p}_u DROP COLUMN ssn"))
    r = rollback(sqlgate, mine, token=agent)
    assert r.status_code == 403 and r.json()["reason"] == "branching.not_allowed", r.text
    assert rows(sqlgate, f"SELECT * FROM {p}_u ORDER BY id", token=agent) == [
        {"id": 1, "name": "x"}, {"id": 2, "name": "b"}]
    # An admin may: the column comes back with the agent's UPDATE undone.
    ok(rollback(sqlgate, mine))
    assert rows(sqlgate, f"SELECT * FROM {p}_u ORDER BY id") == [
        {"id": 1, "name": "a", "ssn": "111"}, {"id": 2, "name": "b", "ssn": "222"}]


def test_row_undo_of_an_agents_table_kept_aside_by_a_later_drop(pg: SqlgateServer) -> None:
    """Row undo runs as the table's owner; a table a later DROP kept aside sits in a private schema its
    owner cannot enter: the rollback lets it in for its own transaction only, and succeeds."""
    from tests.test_checkpoints import make_tables

    agent = pg.token("write", "owner-agent-4")["token"]
    p = fresh("ow")
    make_tables(pg, p, agent)
    deleted = ok(pg.sql(f"DELETE FROM {p}_c WHERE id < 4", token=agent))["checkpoint"]["id"]
    ok(pg.sql(f"DROP TABLE {p}_c", token=agent))
    undone = ok(rollback(pg, deleted, token=agent, mode="statement"))
    assert undone["rows_restored"] == 3
    aside = rows(pg, "SELECT count(*) AS n FROM pg_namespace n, pg_roles r WHERE n.nspname LIKE 'sqlgate\\_trash%'"
                     " AND r.rolname LIKE 'sqlgate\\_%\\_ddl' AND has_schema_privilege(r.oid, n.oid, 'USAGE')")
    assert aside == [{"n": "0"}], "the owner's way into the private schema must not outlive the rollback"
