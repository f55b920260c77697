"""A rollback on PostgreSQL runs on sqlgate's owner login, which can read sqlgate.tokens and the agent
logins' passwords. Whatever a restore evaluates of an agent's code (a CHECK re-validated, a domain's
default or check, a row trigger, an ALTER COLUMN TYPE's rewrite) must run as the restored table's owner.

Each test plants {p}_probe(x): a SECURITY INVOKER function that logs current_user and, where the caller
may, how many rows sqlgate.tokens has. It is wired into one restore path, the destructive statement is
rolled back (both modes where they differ), and what the rollback logged must never be sqlgate's login's."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.support.sqlgate_server import SqlgateServer
from tests.test_checkpoints import fresh, ok, rollback, rows

MODES = ("statement", "all")


@pytest.fixture(scope="module")
def agent(pg: SqlgateServer) -> str:
    return pg.token("write", "restore-rights-agent")["token"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def owner_login(pg: SqlgateServer) -> str:
    """The login sqlgate runs its own SQL (and rollbacks) on."""
    with psycopg.connect(str(pg.database)) as conn:
        return str(conn.execute("SELECT current_user").fetchone()[0])  # type: ignore[index]


def plant_probe(pg: SqlgateServer, agent: str, p: str, schema: str = "public") -> None:
    """{p}_log (n, who, stolen) and {schema}.{p}_probe(anyelement): logs who calls it, and the tokens
    table's size when that caller can read it (a copy of the table would be as easy); returns true."""
    ok(pg.sql(f"CREATE TABLE public.{p}_log (n serial PRIMARY KEY, who text, stolen bigint)", token=agent))
    ok(pg.sql(f"""CREATE FUNCTION {schema}.{p}_probe(x anyelement) RETURNS boolean LANGUAGE plpgsql AS $$
        DECLARE stolen bigint;
        BEGIN
            BEGIN
                -- named in pieces: the classifier would refuse the function otherwise, not the rollback
                stolen := (xpath('//n/text()', query_to_xml(
                    format('SELECT count(*) AS n FROM %I.%I', 'sqlgate', 'tokens'), false, false, '')))[1]::text;
            EXCEPTION WHEN insufficient_privilege THEN stolen := NULL;
            END;
            INSERT INTO public.{p}_log (who, stolen) VALUES (current_user, stolen);
            RETURN true;
        END $$""", token=agent))


def logged_since(pg: SqlgateServer, p: str, n: int) -> list[dict[str, Any]]:
    return rows(pg, f"SELECT who, stolen FROM public.{p}_log WHERE n > {n} ORDER BY n")


def last_log(pg: SqlgateServer, p: str) -> int:
    return int(rows(pg, f"SELECT coalesce(max(n), 0) AS n FROM public.{p}_log")[0]["n"])


def rolled_back_unprivileged(pg: SqlgateServer, agent: str, p: str, cp: str, mode: str, owner_login: str,
                             must_run: bool = True) -> dict[str, Any]:
    """Roll `cp` back; what the probe logged meanwhile ran as someone other than sqlgate's login and read
    no secret. `must_run`: the probe did run (the path under test evaluated it)."""
    before = last_log(pg, p)
    answer = ok(rollback(pg, cp, token=agent, mode=mode))
    logged = logged_since(pg, p, before)
    assert not must_run or logged, "the restore path under test no longer evaluates the probe"
    assert all(e["who"] != owner_login for e in logged), f"mode {mode}: agent code ran as {owner_login}: {logged}"
    assert all(e["stolen"] is None for e in logged), f"mode {mode}: agent code read sqlgate.tokens: {logged}"
    return answer


def constraints(pg: SqlgateServer, table: str) -> list[dict[str, Any]]:
    return rows(pg, f"SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint"
                    f" WHERE conrelid = '{table}'::regclass ORDER BY conname")


@pytest.mark.parametrize("mode", MODES)
def test_drop_constraint_check_is_revalidated_as_the_tables_owner(
        pg: SqlgateServer, agent: str, owner_login: str, mode: str) -> None:
    """ALTER TABLE ... DROP CONSTRAINT of a CHECK: the rollback adds it back, which validates it on every row."""
    p = fresh("rr")
    plant_probe(pg, agent, p)
    for statement in (
        f"CREATE TABLE {p} (id int PRIMARY KEY, a int, CONSTRAINT {p}_chk CHECK (public.{p}_probe(a)))",
        f"INSERT INTO {p} VALUES (1, 1), (2, 2)",
    ):
        ok(pg.sql(statement, token=agent))
    before = constraints(pg, p)
    cp = ok(pg.sql(f"ALTER TABLE {p} DROP CONSTRAINT {p}_chk", token=agent))["checkpoint"]["id"]
    rolled_back_unprivileged(pg, agent, p, cp, mode, owner_login)
    assert constraints(pg, p) == before


@pytest.mark.parametrize("mode", MODES)
def test_alter_column_type_undo_rewrites_as_the_tables_owner(
        pg: SqlgateServer, agent: str, owner_login: str, mode: str) -> None:
    """Undoing ALTER COLUMN TYPE puts the old type back: the rewrite evaluates the domain's check and
    re-validates the CHECKs on the column."""
    p = fresh("rr")
    plant_probe(pg, agent, p)
    for statement in (
        f"CREATE DOMAIN {p}_d AS text CHECK (public.{p}_probe(VALUE))",
        f"CREATE TABLE {p} (id int PRIMARY KEY, c {p}_d CONSTRAINT {p}_chk CHECK (public.{p}_probe(c)))",
        f"INSERT INTO {p} VALUES (1, 'x'), (2, 'y')",
    ):
        ok(pg.sql(statement, token=agent))
    cp = ok(pg.sql(f"ALTER TABLE {p} ALTER COLUMN c TYPE text", token=agent))["checkpoint"]["id"]
    rolled_back_unprivileged(pg, agent, p, cp, mode, owner_login)
    assert rows(pg, f"SELECT id, c, pg_typeof(c)::text AS t FROM {p} ORDER BY id") == [
        {"id": 1, "c": "x", "t": f"{p}_d"}, {"id": 2, "c": "y", "t": f"{p}_d"}]


@pytest.mark.parametrize("mode", MODES)
def test_drop_schema_cascade_check_of_another_table_is_readded_as_its_owner(
        pg: SqlgateServer, agent: str, owner_login: str, mode: str) -> None:
    """DROP SCHEMA ... CASCADE takes a CHECK of a table outside the schema that calls a function inside it;
    the rollback re-adds that CHECK (validating it) once the schema is back."""
    p = fresh("rr")
    ok(pg.sql(f"CREATE SCHEMA {p}_s", token=agent))
    plant_probe(pg, agent, p, schema=f"{p}_s")
    for statement in (
        f"CREATE TABLE public.{p} (id int PRIMARY KEY, a int, CONSTRAINT {p}_chk CHECK ({p}_s.{p}_probe(a)))",
        f"INSERT INTO public.{p} VALUES (1, 1), (2, 2)",
    ):
        ok(pg.sql(statement, token=agent))
    before = constraints(pg, f"public.{p}")
    cp = ok(pg.sql(f"DROP SCHEMA {p}_s CASCADE", token=agent))["checkpoint"]["id"]
    assert constraints(pg, f"public.{p}") == [c for c in before if c["conname"] != f"{p}_chk"]
    rolled_back_unprivileged(pg, agent, p, cp, mode, owner_login)
    assert constraints(pg, f"public.{p}") == before


@pytest.mark.parametrize("mode", MODES)
def test_drop_middle_column_restore_runs_as_the_tables_owner(
        pg: SqlgateServer, agent: str, owner_login: str, mode: str) -> None:
    """DROP COLUMN (not the last): its CHECK comes back, a later domain column is re-created and every
    value copied back; the table's ENABLE ALWAYS row trigger (an admin's, calling the agent's function)."""
    p = fresh("rr")
    plant_probe(pg, agent, p)
    for statement in (
        f"CREATE DOMAIN {p}_d AS int CHECK (public.{p}_probe(VALUE))",
        f"CREATE TABLE {p} (id int PRIMARY KEY, a int CONSTRAINT {p}_chk CHECK (public.{p}_probe(a)), b {p}_d)",
        f"INSERT INTO {p} VALUES (1, 1, 10), (2, 2, 20)",
    ):
        ok(pg.sql(statement, token=agent))
    always_trigger(pg, agent, p)
    cp = ok(pg.sql(f"ALTER TABLE {p} DROP COLUMN a", token=agent))["checkpoint"]["id"]
    rolled_back_unprivileged(pg, agent, p, cp, mode, owner_login)
    assert rows(pg, f"SELECT * FROM {p} ORDER BY id") == [{"id": 1, "a": 1, "b": 10}, {"id": 2, "a": 2, "b": 20}]


def always_trigger(pg: SqlgateServer, agent: str, p: str) -> None:
    """An AFTER UPDATE row trigger the admin puts on the agent's table, running the agent's probe; ENABLE
    ALWAYS, so a rollback's replica role does not silence it."""
    ok(pg.sql(f"CREATE FUNCTION {p}_trg() RETURNS trigger LANGUAGE plpgsql AS"
              f" $$ BEGIN PERFORM public.{p}_probe(1); RETURN NEW; END $$", token=agent))
    ok(pg.sql(f"CREATE TRIGGER {p}_t AFTER UPDATE ON {p} FOR EACH ROW EXECUTE FUNCTION {p}_trg()"))
    ok(pg.sql(f"ALTER TABLE {p} ENABLE ALWAYS TRIGGER {p}_t"))


def as_first_format(pg: SqlgateServer, cp: str) -> None:
    """Turn DROP COLUMN checkpoint `cp` (of the last column, on a table with a primary key) into sqlgate's
    first format, as an older sqlgate left it: restored by pg_restore_column_last."""
    with psycopg.connect(str(pg.database), autocommit=True) as conn:
        objects = conn.execute("SELECT objects FROM sqlgate.checkpoints WHERE id = %s", (cp,)).fetchone()[0]  # type: ignore[index]
        o = next(o for o in objects if o.get("kind") == "column")
        assert o["key"] and not o["views"] and not o["triggers"], o
        spec = o["spec"]
        for i, k in enumerate(o["key"], 1):
            conn.execute(f'ALTER TABLE "{o["trash"]}".kept RENAME COLUMN k{i} TO "{k}"')
        conn.execute(f'ALTER TABLE "{o["trash"]}".kept RENAME COLUMN v TO "{o["column"]}"')
        old = {"kind": "column", "relid": o["relid"], "column": o["column"], "trash": o["trash"],
               "type": spec["type"], "collation": spec["collation"], "default": spec["default"],
               "notnull": spec["notnull"], "pk": o["key"],
               "constraints": [{"relid": c["relid"], "name": c["name"], "def": c["def"]} for c in o["constraints"]],
               "indexes": [i["def"] for i in o["indexes"]]}
        conn.execute("UPDATE sqlgate.checkpoints SET objects = %s WHERE id = %s",
                     (json.dumps([old if x is o else x for x in objects]), cp))


@pytest.mark.parametrize("mode", MODES)
def test_drop_last_column_first_format_restore_runs_as_the_tables_owner(
        pg: SqlgateServer, agent: str, owner_login: str, mode: str) -> None:
    """A first-format DROP COLUMN checkpoint: ADD COLUMN fills a domain's volatile default and checks it,
    the values' UPDATE re-checks the table's CHECKs and fires its row triggers, its own CHECK is re-added."""
    p = fresh("rr")
    plant_probe(pg, agent, p)
    for statement in (
        f"CREATE DOMAIN {p}_d AS int DEFAULT (CASE WHEN public.{p}_probe(0) THEN 7 END)"
        f" CHECK (public.{p}_probe(VALUE))",
        f"CREATE TABLE {p} (id int PRIMARY KEY, b int CHECK (public.{p}_probe(b)),"
        f" a {p}_d CONSTRAINT {p}_chk CHECK (public.{p}_probe(a)))",
        f"INSERT INTO {p} VALUES (1, 1, 10), (2, 2, 20)",
    ):
        ok(pg.sql(statement, token=agent))
    always_trigger(pg, agent, p)
    before = constraints(pg, p)
    cp = ok(pg.sql(f"ALTER TABLE {p} DROP COLUMN a", token=agent))["checkpoint"]["id"]
    as_first_format(pg, cp)
    rolled_back_unprivileged(pg, agent, p, cp, mode, owner_login)
    assert rows(pg, f"SELECT * FROM {p} ORDER BY id") == [{"id": 1, "b": 1, "a": 10}, {"id": 2, "b": 2, "a": 20}]
    assert constraints(pg, p) == before


@pytest.mark.parametrize("mode", MODES)
def test_undoing_a_rollback_runs_the_statement_again_as_the_tables_owner(
        pg: SqlgateServer, agent: str, owner_login: str, mode: str) -> None:
    """Undoing the rollback of ALTER COLUMN TYPE (in either mode) runs the statement again: its USING, and
    the CHECK its rewrite re-validates, run as the table's owner (who ran it first), not as sqlgate's login."""
    p = fresh("rr")
    plant_probe(pg, agent, p)
    for statement in (
        f"CREATE TABLE {p} (id int PRIMARY KEY, c text CONSTRAINT {p}_chk CHECK (public.{p}_probe(c)))",
        f"INSERT INTO {p} VALUES (1, 'x')",
    ):
        ok(pg.sql(statement, token=agent))
    cp = ok(pg.sql(f"ALTER TABLE {p} ALTER COLUMN c TYPE varchar(5)"
                   f" USING CASE WHEN public.{p}_probe(c) THEN c END", token=agent))["checkpoint"]["id"]
    undone = rolled_back_unprivileged(pg, agent, p, cp, "statement", owner_login)
    rolled_back_unprivileged(pg, agent, p, undone["new_checkpoint"], mode, owner_login)
    assert rows(pg, f"SELECT c, pg_typeof(c)::text AS t FROM {p}") == [{"c": "x", "t": "character varying"}]


@pytest.mark.parametrize("mode", MODES)
def test_index_builds_run_as_the_tables_owner(pg: SqlgateServer, agent: str, mode: str) -> None:
    """PostgreSQL builds an index as its table's owner: a rollback that re-creates an expression index (DROP
    INDEX; DROP SCHEMA ... CASCADE of its function's schema) needs no SET ROLE. The index's function refuses
    to run where it could read sqlgate.tokens, so a build as sqlgate's login would fail the rollback."""
    p = fresh("rr")
    ok(pg.sql(f"CREATE SCHEMA {p}_s", token=agent))
    for statement in (
        f"CREATE FUNCTION {p}_s.{p}_f(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN"
        f" IF has_table_privilege(format('%I.%I', 'sqlgate', 'tokens'), 'SELECT') THEN"
        f" RAISE EXCEPTION 'built with sqlgate''s rights'; END IF; RETURN x; END $$",
        f"CREATE TABLE {p} (id int PRIMARY KEY, a int)",
        f"INSERT INTO {p} VALUES (1, 1), (2, 2)",
        f"CREATE INDEX {p}_i ON {p} ({p}_s.{p}_f(a))",
    ):
        ok(pg.sql(statement, token=agent))
    for statement in (f"DROP INDEX {p}_i", f"DROP SCHEMA {p}_s CASCADE"):
        cp = ok(pg.sql(statement, token=agent))["checkpoint"]["id"]
        ok(rollback(pg, cp, token=agent, mode=mode))
        assert rows(pg, f"SELECT count(*) AS n FROM pg_indexes WHERE indexname = '{p}_i'") == [{"n": "1"}]


def test_a_check_readded_to_a_table_a_later_drop_kept_aside(pg: SqlgateServer, agent: str, owner_login: str) -> None:
    """Mode 'statement' re-adds a dropped CHECK to a table a later DROP TABLE moved into a private schema:
    its owner may enter that schema for the restore only."""
    p = fresh("rr")
    plant_probe(pg, agent, p)
    for statement in (
        f"CREATE TABLE {p} (id int PRIMARY KEY, a int, CONSTRAINT {p}_chk CHECK (public.{p}_probe(a)))",
        f"INSERT INTO {p} VALUES (1, 1)",
    ):
        ok(pg.sql(statement, token=agent))
    before = constraints(pg, p)
    cp = ok(pg.sql(f"ALTER TABLE {p} DROP CONSTRAINT {p}_chk", token=agent))["checkpoint"]["id"]
    dropped = ok(pg.sql(f"DROP TABLE {p}", token=agent))["checkpoint"]["id"]
    rolled_back_unprivileged(pg, agent, p, cp, "statement", owner_login)
    aside = rows(pg, "SELECT count(*) AS n FROM pg_namespace n, pg_roles r WHERE n.nspname LIKE 'sqlgate\\_trash%'"
                     " AND r.rolname LIKE 'sqlgate\\_%\\_ddl' AND has_schema_privilege(r.oid, n.oid, 'USAGE')")
    assert aside == [{"n": "0"}], "the owner's way into the private schema must not outlive the rollback"
    ok(rollback(pg, dropped, token=agent, mode="statement"))
    assert constraints(pg, p) == before
