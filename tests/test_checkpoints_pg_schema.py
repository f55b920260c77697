"""DROP SCHEMA on PostgreSQL, with and without CASCADE: the schema is renamed
aside (O(1)) and what CASCADE drops outside it (views over it, foreign keys,
defaults and indexes of other tables) is kept; rollback brings all of it back
exactly. The snapshot here covers a whole schema: columns, constraints,
indexes, views, sequences, functions, types, triggers, owners and grants."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.support.pgserver import PgServer
from tests.support.sqlgate_server import SqlgateServer
from tests.test_checkpoints import checkpoints, fresh, num, ok, rollback, rows


@pytest.fixture(scope="module")
def agent(pg: SqlgateServer) -> str:
    return pg.token("write", "pg-schema-agent")["token"]  # type: ignore[no-any-return]


# Relations of schema {s} and relations of public named {p}*; `where` filters pg_class c / namespace n.
_IN = "((n.nspname = '{s}') OR (n.nspname = 'public' AND c.relname LIKE '{p}%'))"
_SCHEMA = """
SELECT 'nsp' AS k, nspname AS t, nspowner::regrole::text || ' ' || coalesce(
       (SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(nspacl) a), '') AS v
FROM pg_namespace WHERE nspname = '{s}'
UNION ALL
SELECT 'rel', n.nspname || '.' || c.relname, c.relkind::text || ' ' || c.relowner::regrole::text || ' ' || coalesce(
       (SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(c.relacl) a), '')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {w}
UNION ALL
SELECT 'col', n.nspname || '.' || c.relname, a.attnum || ':' || a.attname || ':' || format_type(a.atttypid, a.atttypmod)
       || ':' || a.attnotnull || ':' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE {w} AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'con', n.nspname || '.' || c.relname, co.conname || ' ' || pg_get_constraintdef(co.oid)
FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {w}
UNION ALL
SELECT 'idx', schemaname || '.' || tablename, indexdef FROM pg_indexes
WHERE schemaname = '{s}' OR (schemaname = 'public' AND tablename LIKE '{p}%')
UNION ALL
SELECT 'view', schemaname || '.' || viewname, definition FROM pg_views
WHERE schemaname = '{s}' OR (schemaname = 'public' AND viewname LIKE '{p}%')
UNION ALL
SELECT 'seq', schemaname || '.' || sequencename, coalesce(last_value::text, 'null') FROM pg_sequences
WHERE schemaname = '{s}' OR (schemaname = 'public' AND sequencename LIKE '{p}%')
UNION ALL
SELECT 'trg', n.nspname || '.' || c.relname, t.tgname || ' ' || t.tgenabled::text || ' ' || pg_get_triggerdef(t.oid)
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE {w} AND NOT t.tgisinternal
  -- sqlgate's capture triggers on tables outside the schema: installed when a checkpoint covers them
  AND NOT (n.nspname = 'public' AND t.tgname LIKE 'sqlgate_capture_%')
UNION ALL
SELECT 'fn', p.proname, pg_get_functiondef(p.oid) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = '{s}'
UNION ALL
SELECT 'type', t.typname, t.typtype::text || coalesce((SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder)
                                                 FROM pg_enum WHERE enumtypid = t.oid), '')
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = '{s}'
"""


def schema_snapshot(server: SqlgateServer, s: str, p: str) -> dict[str, Any]:
    """The catalogs of schema `s` and of public's `p`* objects, plus a checksum of every table and view."""
    query = _SCHEMA.format(s=s, p=p, w=_IN.format(s=s, p=p))
    schema = sorted((r["k"], r["t"], r["v"]) for r in rows(server, query))
    data: dict[str, Any] = {}
    for k, name, v in schema:
        if k == "rel" and v[0] in "rv":
            digest = "md5(coalesce(string_agg(md5(x::text), ',' ORDER BY md5(x::text)), ''))"
            [row] = rows(server, f"SELECT count(*) AS n, {digest} AS h FROM {name} x")
            data[name] = (int(row["n"]), row["h"])
    return {"schema": schema, "data": data}


def make_schema(server: SqlgateServer, s: str, p: str, token: str) -> None:
    """A schema with most kinds of object, and objects outside it that depend on it."""
    for statement in (
        f"CREATE SCHEMA {s}",
        f"CREATE TYPE {s}.mood AS ENUM ('sad', 'ok', 'happy')",
        f"CREATE FUNCTION {s}.twice(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 * 2'",
        f"CREATE TABLE {s}.t (id serial PRIMARY KEY, name text NOT NULL DEFAULT 'anon', mood {s}.mood,"
        f" qty int CHECK (qty >= 0), UNIQUE (name, qty))",
        f"CREATE INDEX t_twice ON {s}.t ({s}.twice(qty))",
        f"CREATE TABLE {s}.c (id int PRIMARY KEY, t_id int REFERENCES {s}.t (id) ON DELETE CASCADE, note text)",
        f"CREATE SEQUENCE {s}.tickets START 100",
        f"CREATE VIEW {s}.v AS SELECT id, name FROM {s}.t WHERE qty > 10",
        f"INSERT INTO {s}.t (name, mood, qty) SELECT 'n' || i, (ARRAY['sad','ok','happy'])[1 + i % 3]::{s}.mood, i"
        f" FROM generate_series(1, 30) g(i)",
        f"INSERT INTO {s}.c SELECT i, i, 'note ' || i FROM generate_series(1, 12) g(i)",
        f"SELECT nextval('{s}.tickets'), nextval('{s}.tickets')",
        # Outside the schema, depending on it:
        f"CREATE VIEW {p}_ov AS SELECT t.id, t.name, c.note FROM {s}.t JOIN {s}.c ON c.t_id = t.id",
        f"CREATE VIEW {p}_ov2 AS SELECT count(*) AS n FROM {p}_ov",
        f"CREATE TABLE {p}_o (id int PRIMARY KEY, t_id int REFERENCES {s}.t (id),"
        f" ticket int DEFAULT nextval('{s}.tickets'), score int DEFAULT {s}.twice(21) CHECK ({s}.twice(score) < 1000))",
        f"CREATE INDEX {p}_o_twice ON {p}_o ({s}.twice(id))",
        f"INSERT INTO {p}_o (id, t_id) SELECT i, i FROM generate_series(1, 5) g(i)",
    ):
        ok(server.sql(statement, token=token))


def test_drop_empty_schema_then_rollback(pg: SqlgateServer, agent: str) -> None:
    p = fresh("sch")
    s = f"{p}_s"
    ok(pg.sql(f"CREATE SCHEMA {s}", token=agent))
    before = schema_snapshot(pg, s, p)
    answer = ok(pg.sql(f"DROP SCHEMA {s}", token=agent))
    assert answer["checkpoint"]["tables"] == [f"{s}.*"]
    assert num(pg, f"SELECT count(*) AS n FROM pg_namespace WHERE nspname = '{s}'") == 0
    undone = ok(rollback(pg, answer["checkpoint"]["id"], token=agent))
    assert undone["objects_restored"] == [f"{s}.*"]
    assert schema_snapshot(pg, s, p) == before


def test_drop_schema_without_cascade_is_refused_as_postgres_does(pg: SqlgateServer, agent: str) -> None:
    p = fresh("sch")
    s = f"{p}_s"
    make_schema(pg, s, p, agent)
    before = schema_snapshot(pg, s, p)
    known = {c["id"] for c in checkpoints(pg)}
    r = pg.sql(f"DROP SCHEMA {s}", token=agent)
    assert r.status_code == 400 and r.json()["code"] == "2BP01", r.text
    assert "CASCADE" in r.json()["hint"]
    missing = pg.sql(f"DROP SCHEMA {p}_nowhere", token=agent)
    assert missing.status_code == 400 and missing.json()["code"] == "3F000", missing.text
    assert schema_snapshot(pg, s, p) == before
    assert {c["id"] for c in checkpoints(pg)} == known
    ok(pg.sql(f"DROP SCHEMA IF EXISTS {p}_nowhere", token=agent))


@pytest.mark.parametrize("mode", ["all", "statement"])
def test_drop_schema_cascade_then_rollback_restores_everything(pg: SqlgateServer, agent: str, mode: str) -> None:
    p = fresh("sch")
    s = f"{p}_s"
    make_schema(pg, s, p, agent)
    ok(pg.sql(f"GRANT USAGE ON SCHEMA {s} TO PUBLIC"))  # admin: grants are dangerous for agents
    ok(pg.sql(f"DELETE FROM {s}.c WHERE id > 10", token=agent))  # its capture triggers must survive too
    ok(pg.sql(f"CREATE TABLE {p}_other (a int)", token=agent))
    before = schema_snapshot(pg, s, p)
    answer = ok(pg.sql(f"DROP SCHEMA {s} CASCADE", token=agent))
    gone = schema_snapshot(pg, s, p)
    assert not any(k == "nsp" for k, _, _ in gone["schema"])
    # What CASCADE drops outside the schema is gone as PostgreSQL would have it.
    assert not any(t in (f"public.{p}_ov", f"public.{p}_ov2") for k, t, _ in gone["schema"] if k == "rel")
    assert not any(k == "con" and ("FOREIGN KEY" in v or "CHECK" in v) for k, _, v in gone["schema"])
    assert not any(k == "idx" and f"{p}_o_twice" in v for k, _, v in gone["schema"])
    assert [v for k, t, v in gone["schema"] if k == "col" and t == f"public.{p}_o"] == [
        "1:id:integer:true:", "2:t_id:integer:false:", "3:ticket:integer:false:", "4:score:integer:false:"]
    assert pg.sql(f"SELECT 1 FROM {s}.t", token=agent).status_code == 400
    later = ok(pg.sql(f"INSERT INTO {p}_other VALUES (1)", token=agent))
    undone = ok(rollback(pg, answer["checkpoint"]["id"], token=agent, mode=mode))
    assert set(undone["objects_restored"]) >= {f"{s}.*", f"public.{p}_ov", f"public.{p}_ov2"}
    # A later write elsewhere stays in both modes.
    assert num(pg, f"SELECT count(*) AS n FROM {p}_other") == 1
    assert later["trace_id"] not in undone["undone_traces"]
    after = schema_snapshot(pg, s, p)
    del after["data"][f"public.{p}_other"], before["data"][f"public.{p}_other"]
    assert after == before
    # The schema works as before: its sequence goes on where it was, triggers still capture.
    assert num(pg, f"SELECT nextval('{s}.tickets') AS n") == 107
    cp = ok(pg.sql(f"DELETE FROM {s}.c WHERE id = 1", token=agent))["checkpoint"]["id"]
    ok(rollback(pg, cp, token=agent))
    assert num(pg, f"SELECT count(*) AS n FROM {s}.c") == 10


def test_rollback_of_an_earlier_change_brings_the_schema_back_first(pg: SqlgateServer, agent: str) -> None:
    """Mode all from a DELETE inside the schema undoes the later DROP SCHEMA too, then the DELETE."""
    p = fresh("sch")
    s = f"{p}_s"
    make_schema(pg, s, p, agent)
    ok(pg.sql(f"DELETE FROM {s}.c WHERE false", token=agent))  # sqlgate's capture triggers are in place before
    before = schema_snapshot(pg, s, p)
    first = ok(pg.sql(f"DELETE FROM {s}.c WHERE id <= 4", token=agent))["checkpoint"]["id"]
    dropped = ok(pg.sql(f"DROP SCHEMA {s} CASCADE", token=agent))["checkpoint"]["id"]
    undone = ok(rollback(pg, first, token=agent))
    assert set(undone["undone_checkpoints"]) == {first, dropped}
    assert schema_snapshot(pg, s, p) == before


def test_statement_mode_conflicts_when_the_name_is_taken_again(pg: SqlgateServer, agent: str) -> None:
    p = fresh("sch")
    s = f"{p}_s"
    make_schema(pg, s, p, agent)
    cp = ok(pg.sql(f"DROP SCHEMA {s} CASCADE", token=agent))["checkpoint"]["id"]
    ok(pg.sql(f"CREATE SCHEMA {s}", token=agent))
    ok(pg.sql(f"CREATE TABLE {s}.newer (a int)", token=agent))
    before = schema_snapshot(pg, s, p)
    r = rollback(pg, cp, token=agent, mode="statement")
    assert r.status_code == 409 and r.json()["reason"] == "branching.rollback_conflict", r.text
    assert r.json()["conflicts"][0]["schema"] == s
    assert schema_snapshot(pg, s, p) == before
    dropped_again = ok(pg.sql(f"DROP SCHEMA {s} CASCADE", token=agent))["checkpoint"]["id"]
    ok(rollback(pg, cp, token=agent, mode="statement"))  # the name is free again: it comes back
    assert num(pg, f"SELECT count(*) AS n FROM {s}.t") == 30
    assert dropped_again != cp


def test_drop_schema_cascade_that_cannot_be_undone_is_refused(pg: SqlgateServer, agent: str) -> None:
    """A column of another table whose type lives in the schema would be dropped: refused, nothing changes."""
    p = fresh("sch")
    s = f"{p}_s"
    make_schema(pg, s, p, agent)
    ok(pg.sql(f"CREATE TABLE {p}_typed (id int, m {s}.mood)", token=agent))
    before = schema_snapshot(pg, s, p)
    r = pg.sql(f"DROP SCHEMA {s} CASCADE", token=agent)
    assert r.status_code in (400, 403) and r.json()["code"] == "0A000", r.text
    assert f"column m of table public.{p}_typed" in r.json()["message"] and r.json()["hint"], r.text
    assert schema_snapshot(pg, s, p) == before


def test_kept_schema_is_listed_with_its_size_and_hidden_from_agents(pg: SqlgateServer, agent: str) -> None:
    p = fresh("sch")
    s = f"{p}_s"
    make_schema(pg, s, p, agent)
    ok(pg.sql(f"GRANT USAGE ON SCHEMA {s} TO PUBLIC"))
    cp = ok(pg.sql(f"DROP SCHEMA {s} CASCADE", token=agent))["checkpoint"]["id"]
    [item] = [c for c in checkpoints(pg) if c["id"] == cp]
    assert item["kind"] == "schema" and item["size_bytes"] > 0
    [kept] = rows(pg, f"SELECT nspname, nspacl::text AS acl FROM pg_namespace WHERE nspname LIKE 'sqlgate_trash_{cp}%'"
                      " AND EXISTS (SELECT 1 FROM pg_class WHERE relnamespace = pg_namespace.oid AND relname = 't')")
    r = pg.sql(f"SELECT count(*) FROM {kept['nspname']}.t", token=agent)
    # The agent can no longer reach (nor change) what the checkpoint keeps.
    assert r.status_code == 400 and r.json()["code"] == "42501", r.text



def test_every_kind_of_object_inside_the_schema_comes_back(pg: SqlgateServer, agent: str) -> None:
    """Objects wholly inside the schema never block the drop: triggers, domains, materialized views,
    partitions, composite types, row-level security policies, statistics."""
    p = fresh("sch")
    s = f"{p}_s"
    make_schema(pg, s, p, agent)
    for statement in (  # admin: triggers and row-level security are admin-only
        f"CREATE FUNCTION {s}.stamp() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN NEW.note := upper(NEW.note);"
        f" RETURN NEW; END'",
        f"CREATE TRIGGER stamp BEFORE INSERT ON {s}.c FOR EACH ROW EXECUTE FUNCTION {s}.stamp()",
        f"CREATE POLICY mine ON {s}.t USING (qty > 0)",
    ):
        ok(pg.sql(statement))
    for statement in (
        f"CREATE DOMAIN {s}.positive AS int CHECK (VALUE > 0)",
        f"CREATE TYPE {s}.pair AS (a int, b {s}.positive)",
        f"CREATE TABLE {s}.parts (id int, at date, p {s}.pair) PARTITION BY RANGE (at)",
        f"CREATE TABLE {s}.parts_2024 PARTITION OF {s}.parts FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
        f"INSERT INTO {s}.parts VALUES (1, '2024-05-01', ROW(1, 2))",
        f"CREATE MATERIALIZED VIEW {s}.mv AS SELECT mood, count(*) AS n FROM {s}.t GROUP BY mood",
        f"CREATE STATISTICS {s}.st ON name, qty FROM {s}.t",
    ):
        ok(pg.sql(statement, token=agent))
    ok(pg.sql(f"DELETE FROM {s}.c WHERE false", token=agent))  # sqlgate's capture triggers are in place before
    before = schema_snapshot(pg, s, p)
    answer = ok(pg.sql(f"DROP SCHEMA {s} CASCADE", token=agent))
    ok(rollback(pg, answer["checkpoint"]["id"], token=agent))
    assert schema_snapshot(pg, s, p) == before
    ok(pg.sql(f"INSERT INTO {s}.c VALUES (99, 1, 'quiet')", token=agent))
    assert rows(pg, f"SELECT note FROM {s}.c WHERE id = 99") == [{"note": "QUIET"}]
    assert rows(pg, f"SELECT polname FROM pg_policy WHERE polrelid = '{s}.t'::regclass") == [{"polname": "mine"}]


def test_grants_to_a_mixed_case_role_come_back(pg: SqlgateServer, agent: str, pg_server: PgServer) -> None:
    """A replaced view that gained columns is recreated on rollback, with its grants: a grantee whose
    name needs quotes must come back as itself, not quoted twice."""
    p = fresh("gr")
    assert pg.database is not None
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'Viewer Mixed'").fetchone():
            conn.execute('CREATE ROLE "Viewer Mixed"')
    ok(pg.sql(f"CREATE TABLE {p}_t (id int)", token=agent))
    ok(pg.sql(f"CREATE VIEW {p}_v AS SELECT id FROM {p}_t", token=agent))
    with psycopg.connect(pg.database, autocommit=True) as conn:
        conn.execute(f'GRANT SELECT ON {p}_v TO "Viewer Mixed"')
    answer = ok(pg.sql(f"CREATE OR REPLACE VIEW {p}_v AS SELECT id, 1 AS extra FROM {p}_t", token=agent))
    ok(rollback(pg, answer["checkpoint"]["id"], token=agent))
    with psycopg.connect(pg.database, autocommit=True) as conn:
        granted = conn.execute(f"SELECT has_table_privilege('Viewer Mixed', '{p}_v', 'SELECT')").fetchone()
        columns = conn.execute(f"SELECT count(*) FROM information_schema.columns WHERE table_name = '{p}_v'").fetchone()
    assert granted == (True,) and columns == (1,)
