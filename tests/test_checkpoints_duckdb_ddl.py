"""DuckDB checkpoints of definitions DuckDB cannot take back in place: DROP
SCHEMA (with and without CASCADE), DROP COLUMN of any column, and sequences'
values under rollback mode 'all'. Through the real `sqlgate serve` on a DuckDB
file: snapshot the catalogs and every table's rows, destroy, roll back, compare."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest

from tests.support.sqlgate_server import SqlgateServer
from tests.support.wire import PSQL
from tests.test_checkpoints import destroy_and_restore, fresh, num, ok, rollback, rows, snapshot

_SCHEMA = """
SELECT 'col' AS k, table_name AS t, column_index || ':' || column_name || ':' || data_type || ':' || is_nullable
       || ':' || coalesce(column_default, '') AS v FROM duckdb_columns() WHERE schema_name = '{s}'
UNION ALL SELECT 'con', table_name, constraint_type || ' ' || constraint_text FROM duckdb_constraints()
          WHERE schema_name = '{s}'
UNION ALL SELECT 'idx', table_name, sql FROM duckdb_indexes() WHERE schema_name = '{s}'
UNION ALL SELECT 'view', view_name, sql FROM duckdb_views() WHERE schema_name = '{s}'
UNION ALL SELECT 'rel', table_name, 'table' FROM duckdb_tables() WHERE schema_name = '{s}'
UNION ALL SELECT 'seq', sequence_name, sql || ':' || coalesce(last_value::VARCHAR, 'null') FROM duckdb_sequences()
          WHERE schema_name = '{s}'
UNION ALL SELECT 'schema', schema_name, '' FROM duckdb_schemas() WHERE schema_name = '{s}'
"""


@pytest.fixture(scope="module")
def agent(duck: SqlgateServer) -> str:
    return duck.token("write", "duck-ddl-agent")["token"]  # type: ignore[no-any-return]


def schema_snapshot(server: SqlgateServer, schema: str) -> dict[str, Any]:
    catalog = sorted((r["k"], r["t"], r["v"]) for r in rows(server, _SCHEMA.format(s=schema)))
    data = {}
    for _, table, _ in (c for c in catalog if c[0] == "rel"):
        digest = "md5(coalesce(string_agg(md5(x::VARCHAR), ',' ORDER BY md5(x::VARCHAR)), ''))"
        [row] = rows(server, f"SELECT count(*) AS n, {digest} AS h FROM {schema}.{table} x")
        data[table] = (int(row["n"]), row["h"])
    for _, view, _ in (c for c in catalog if c[0] == "view"):
        data[view] = num(server, f"SELECT count(*) AS n FROM {schema}.{view}")
    return {"catalog": catalog, "data": data}


def make_schema(server: SqlgateServer, s: str, token: str) -> None:
    for statement in (
        f"CREATE SCHEMA {s}",
        f"CREATE SEQUENCE {s}.ids START 100",
        f"CREATE TABLE {s}.parent (id INTEGER PRIMARY KEY DEFAULT nextval('{s}.ids'), name VARCHAR NOT NULL"
        f" DEFAULT 'anon', qty INTEGER CHECK (qty >= 0), tags VARCHAR[], UNIQUE (name, qty))",
        f"CREATE INDEX parent_qty ON {s}.parent (qty)",
        f"CREATE TABLE {s}.child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES {s}.parent (id), note VARCHAR)",
        f"INSERT INTO {s}.parent (name, qty, tags) SELECT 'n' || i, i, ['a' || i] FROM range(1, 31) r(i)",
        f"INSERT INTO {s}.child SELECT i, 100 + i, 'note ' || i FROM range(0, 10) r(i)",
        f"CREATE VIEW {s}.big AS SELECT id, name FROM {s}.parent WHERE qty > 20",
    ):
        ok(server.sql(statement, token=token))


# --- DROP SCHEMA ------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["all", "statement"])
def test_drop_schema_cascade_then_rollback_restores_everything(duck: SqlgateServer, agent: str, mode: str) -> None:
    s = fresh("sch")
    make_schema(duck, s, agent)
    before = schema_snapshot(duck, s)
    answer = ok(duck.sql(f"DROP SCHEMA {s} CASCADE", token=agent))
    assert answer["checkpoint"]["tables"] == [f"{s}.*"]
    assert schema_snapshot(duck, s) == {"catalog": [], "data": {}}
    undone = ok(rollback(duck, answer["checkpoint"]["id"], token=agent, mode=mode))
    assert f"{s}.*" in undone["objects_restored"]
    assert schema_snapshot(duck, s) == before
    # The sequence goes on from where it was, and the keys still hold.
    assert num(duck, f"SELECT nextval('{s}.ids') AS n") == 130
    refused = duck.sql(f"INSERT INTO {s}.child VALUES (99, 12345, 'orphan')", token=agent)
    assert refused.status_code == 400, refused.text


def test_drop_empty_schema_then_rollback(duck: SqlgateServer, agent: str) -> None:
    s = fresh("sch")
    ok(duck.sql(f"CREATE SCHEMA {s}", token=agent))
    answer = ok(duck.sql(f"DROP SCHEMA {s}", token=agent))
    assert schema_snapshot(duck, s)["catalog"] == []
    ok(rollback(duck, answer["checkpoint"]["id"], token=agent))
    assert schema_snapshot(duck, s)["catalog"] == [("schema", s, "")]


def test_drop_schema_refusals_change_nothing(duck: SqlgateServer, agent: str) -> None:
    s = fresh("sch")
    make_schema(duck, s, agent)
    before = schema_snapshot(duck, s)
    r = duck.sql(f"DROP SCHEMA {s}", token=agent)  # not empty, no CASCADE: DuckDB's own refusal
    assert r.status_code == 400 and r.json()["reason"] == "sql.error", r.text
    missing = duck.sql(f"DROP SCHEMA {s}_nowhere CASCADE", token=agent)
    assert missing.status_code == 400 and "does not exist" in missing.json()["message"], missing.text
    ok(duck.sql(f"DROP SCHEMA IF EXISTS {s}_nowhere CASCADE", token=agent))
    ok(duck.sql(f"CREATE MACRO {s}.twice(a) AS a * 2", token=agent))
    kept = duck.sql(f"DROP SCHEMA {s} CASCADE", token=agent)
    assert kept.status_code == 403 and kept.json()["reason"] == "checkpoint.unavailable", kept.text
    assert "macro" in kept.json()["message"] and kept.json()["next"]
    assert schema_snapshot(duck, s) == before


# --- DROP COLUMN --------------------------------------------------------------------

def make_wide(server: SqlgateServer, p: str, token: str) -> None:
    """No secondary index: DuckDB itself refuses ALTER TABLE on a table that has one."""
    for statement in (
        f"CREATE TABLE {p}_w (id INTEGER PRIMARY KEY, name VARCHAR NOT NULL DEFAULT 'anon',"
        f" qty INTEGER CHECK (qty >= 0), price DECIMAL(10,2) DEFAULT 1.5, tags VARCHAR[], note VARCHAR)",
        f"INSERT INTO {p}_w SELECT i, 'n' || i, i, i * 1.25, ['t' || i], CASE WHEN i % 3 = 0 THEN NULL ELSE 'x' END"
        f" FROM range(1, 51) r(i)",
        f"DELETE FROM {p}_w WHERE id % 7 = 0",  # gaps in the row ids
    ):
        ok(server.sql(statement, token=token))


@pytest.mark.parametrize("statement", [
    "ALTER TABLE {p}_w DROP COLUMN tags",
    "ALTER TABLE {p}_w DROP COLUMN qty",
    "ALTER TABLE {p}_w DROP COLUMN price CASCADE",
    "ALTER TABLE {p}_w DROP COLUMN note",
], ids=["middle", "with_check", "cascade_with_default", "last"])
@pytest.mark.parametrize("mode", ["all", "statement"])
def test_drop_any_column_then_rollback_restores_order_and_constraints(duck: SqlgateServer, agent: str,
                                                                       statement: str, mode: str) -> None:
    p = fresh("col")
    make_wide(duck, p, agent)
    destroy_and_restore(duck, agent, p, statement.format(p=p), None, None, mode=mode)
    # The CHECK that went with a dropped column holds again.
    assert duck.sql(f"UPDATE {p}_w SET qty = -1 WHERE id = 1", token=agent).status_code == 400


@pytest.mark.parametrize("last", ["done BOOLEAN NOT NULL", "done BOOLEAN NOT NULL DEFAULT false"],
                         ids=["not_null", "not_null_default"])
@pytest.mark.parametrize("mode", ["all", "statement"])
def test_drop_of_a_last_not_null_column_is_undone(duck: SqlgateServer, agent: str, last: str, mode: str) -> None:
    """Put back in place, the column would take its values by UPDATE, after which DuckDB refuses SET NOT
    NULL in the same transaction: the table is rebuilt from its definition instead (it was a 500)."""
    p = fresh("col")
    ok(duck.sql(f"CREATE TABLE {p}_n (id INTEGER PRIMARY KEY, label VARCHAR, {last})", token=agent))
    ok(duck.sql(f"INSERT INTO {p}_n SELECT i, 'l' || i, i % 2 = 0 FROM range(1, 21) r(i)", token=agent))
    destroy_and_restore(duck, agent, p, f"ALTER TABLE {p}_n DROP COLUMN done", None, None, mode=mode)
    r = duck.sql(f"INSERT INTO {p}_n (id, label, done) VALUES (100, 'x', NULL)", token=agent)
    assert r.status_code == 400 and "NOT NULL" in r.text, r.text


@pytest.mark.parametrize("rename", ["ALTER TABLE {p}_r RENAME COLUMN a TO b", "ALTER TABLE {p}_r RENAME TO {p}_s"],
                         ids=["column", "table"])
def test_not_null_dropped_after_a_rename_comes_back_under_the_old_name(
        duck: SqlgateServer, agent: str, rename: str) -> None:
    """Mode 'all' from the rename undoes the later DROP NOT NULL first, but sets NOT NULL again only
    after the rows, by which time the rename is undone too: it follows the name back (it was a 500)."""
    p = fresh("nn")
    ok(duck.sql(f"CREATE TABLE {p}_r (id INTEGER PRIMARY KEY, a INTEGER NOT NULL)", token=agent))
    ok(duck.sql(f"INSERT INTO {p}_r SELECT i, i * 10 FROM range(1, 6) r(i)", token=agent))
    before = snapshot(duck, p)
    renamed = ok(duck.sql(rename.format(p=p), token=agent))["checkpoint"]["id"]
    table, column = (f"{p}_r", "b") if "COLUMN" in rename else (f"{p}_s", "a")
    ok(duck.sql(f"ALTER TABLE {table} ALTER COLUMN {column} DROP NOT NULL", token=agent))
    ok(duck.sql(f"INSERT INTO {table} VALUES (6, 60)", token=agent))
    after = snapshot(duck, p)
    undone = ok(rollback(duck, renamed, token=agent))
    assert snapshot(duck, p) == before
    ok(rollback(duck, undone["new_checkpoint"], token=agent))  # and undoing that rollback
    assert snapshot(duck, p) == after


def test_drop_column_rollback_after_later_writes(duck: SqlgateServer, agent: str) -> None:
    """Rows written after the drop keep NULL (or nothing) for the column; mode 'all' removes them."""
    p = fresh("col")
    make_wide(duck, p, agent)
    answer = ok(duck.sql(f"ALTER TABLE {p}_w DROP COLUMN tags", token=agent))
    ok(duck.sql(f"INSERT INTO {p}_w (id, name, qty) VALUES (500, 'later', 5)", token=agent))
    ok(rollback(duck, answer["checkpoint"]["id"], token=agent, mode="statement"))
    got = rows(duck, f"SELECT id, tags FROM {p}_w WHERE id IN (2, 500) ORDER BY id")
    assert [(int(r["id"]), r["tags"]) for r in got] == [(2, ["t2"]), (500, None)]
    names = [r["column_name"] for r in rows(duck, f"SELECT column_name FROM duckdb_columns()"
                                                   f" WHERE table_name = '{p}_w' ORDER BY column_index")]
    assert names == ["id", "name", "qty", "price", "tags", "note"]


def test_drop_column_conflict_when_columns_changed(duck: SqlgateServer, agent: str) -> None:
    p = fresh("col")
    make_wide(duck, p, agent)
    answer = ok(duck.sql(f"ALTER TABLE {p}_w DROP COLUMN qty", token=agent))
    ok(duck.sql(f"ALTER TABLE {p}_w ADD COLUMN extra INTEGER", token=agent))
    before = snapshot(duck, p)
    r = rollback(duck, answer["checkpoint"]["id"], token=agent, mode="statement")
    assert r.status_code == 409 and r.json()["reason"] == "branching.rollback_conflict", r.text
    assert snapshot(duck, p) == before


# --- tables renamed aside stay out of sight -------------------------------------------

def test_tables_renamed_aside_are_not_listed_by_psql(duck: SqlgateServer, agent: str) -> None:
    """DROP TABLE renames the table aside (DuckDB cannot move it to another schema): psql's \\d family,
    answered by sqlgate, must not show it; after the rollback the table is listed again."""
    p = fresh("aside")
    ok(duck.sql(f"CREATE TABLE {p}_gone (id INTEGER PRIMARY KEY, v VARCHAR)", token=agent))
    answer = ok(duck.sql(f"DROP TABLE {p}_gone", token=agent))
    aside = rows(duck, "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE '__sqlgate_%'")
    assert any(answer["checkpoint"]["id"] in r["table_name"] for r in aside)  # it is there, under another name

    def listed() -> str:
        env = {**os.environ, "PGPASSWORD": agent, "PGHOST": "127.0.0.1", "PGPORT": str(duck.pg_port),
               "PGUSER": "agent", "PGDATABASE": "main", "PGSSLMODE": "disable", "PSQLRC": "/dev/null"}
        out = subprocess.run([PSQL, "-X", "-c", r"\dt", "-c", r"\d"], env=env, text=True, capture_output=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    out = listed()
    assert "__sqlgate_" not in out and f"{p}_gone" not in out
    ok(rollback(duck, answer["checkpoint"]["id"], token=agent))
    assert f"{p}_gone" in listed()
