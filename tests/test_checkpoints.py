"""Checkpoints and rollback, end to end through the real `sqlgate serve` on both
backends (issue #3): for each kind of destructive statement, snapshot the
catalogs and a checksum of every table, run it as an agent, check it
happened, roll back over HTTP, and compare with the snapshot exactly."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.support.pgserver import PgServer
from tests.support.sqlgate_server import SqlgateServer, start_sqlgate

_names = itertools.count()


def fresh(prefix: str = "ck") -> str:
    return f"{prefix}{next(_names)}_{__import__('os').getpid()}"


# --- helpers ------------------------------------------------------------------

def ok(r: Any) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def rows(server: SqlgateServer, query: str, token: str | None = None) -> list[dict[str, Any]]:
    return ok(server.sql(query, token=token))["rows"]  # type: ignore[no-any-return]


def num(server: SqlgateServer, query: str) -> int:
    return int(rows(server, query)[0]["n"])


def batch(server: SqlgateServer, queries: list[str], token: str | None = None) -> Any:
    with server.client(token) as c:
        return c.post("/sql", json={"queries": [{"query": q, "params": []} for q in queries]})


def rollback(server: SqlgateServer, checkpoint: str, token: str | None = None, **body: Any) -> Any:
    with server.client(token) as c:
        return c.post("/rollback", json={"checkpoint": checkpoint, **body})


def pair_table(server: SqlgateServer, prefix: str) -> tuple[str, str]:
    """(prefix, table) of a fresh table the pair tests share: a key, a NOT NULL column, one with a
    default, a plain one; ten rows."""
    p = fresh(prefix)
    t = f"{p}_t"
    ok(server.sql(f"CREATE TABLE {t} (id int PRIMARY KEY, a int NOT NULL, b text DEFAULT 'd', c int)"))
    ok(server.sql(f"INSERT INTO {t} SELECT i, i, 'b' || i, i * 2 FROM generate_series(1, 10) g(i)"))
    return p, t


def back_and_forth(server: SqlgateServer, prefix: str, checkpoint: str, before: dict[str, Any],
                   mode: str = "all") -> dict[str, Any]:
    """Roll `checkpoint` back (tables prefix* are then as `before`), then undo that rollback (they are as
    they were); the rollback's answer."""
    after = snapshot(server, prefix)
    undone = ok(rollback(server, checkpoint, mode=mode))
    assert snapshot(server, prefix) == before
    ok(rollback(server, undone["new_checkpoint"]))
    assert snapshot(server, prefix) == after
    return undone


def refused_rollback(server: SqlgateServer, prefix: str, checkpoint: str, token: str | None = None,
                     **body: Any) -> dict[str, Any]:
    """Roll `checkpoint` back expecting a 409 that changes nothing in tables prefix*; the answer's body."""
    state = snapshot(server, prefix)
    r = rollback(server, checkpoint, token=token, **body)
    assert r.status_code == 409, r.text
    assert snapshot(server, prefix) == state
    return r.json()  # type: ignore[no-any-return]


def checkpoints(server: SqlgateServer, token: str | None = None, **params: str) -> list[dict[str, Any]]:
    with server.client(token) as c:
        r = c.get("/checkpoints", params=params)
    return ok(r)["checkpoints"]  # type: ignore[no-any-return]


_PG_SCHEMA = """
SELECT 'col' AS k, c.relname AS t, row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum) || ':' || a.attname
       || ':' || format_type(a.atttypid, a.atttypmod) || ':' || a.attnotnull
       || ':' || coalesce(pg_get_expr(d.adbin, d.adrelid), '') AS v
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = 'public' AND c.relname LIKE '{p}%' AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'v')
UNION ALL
SELECT 'con', c.relname, co.conname || ' ' || pg_get_constraintdef(co.oid)
FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relname LIKE '{p}%'
UNION ALL SELECT 'idx', tablename, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename LIKE '{p}%'
UNION ALL SELECT 'view', viewname, definition FROM pg_views WHERE schemaname = 'public' AND viewname LIKE '{p}%'
UNION ALL SELECT 'seq', sequencename, coalesce(last_value::text, 'null') FROM pg_sequences
          WHERE schemaname = 'public' AND sequencename LIKE '{p}%'
UNION ALL SELECT 'rel', c.relname, c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relname LIKE '{p}%'
"""

_DUCK_SCHEMA = """
SELECT 'col' AS k, table_name AS t, column_index || ':' || column_name || ':' || data_type || ':' || is_nullable
       || ':' || coalesce(column_default, '') AS v
FROM duckdb_columns() WHERE schema_name = 'main' AND table_name LIKE '{p}%'
UNION ALL SELECT 'con', table_name, constraint_type || ' ' || constraint_text FROM duckdb_constraints()
          WHERE schema_name = 'main' AND table_name LIKE '{p}%'
UNION ALL SELECT 'idx', table_name, sql FROM duckdb_indexes() WHERE schema_name = 'main' AND table_name LIKE '{p}%'
UNION ALL SELECT 'view', view_name, sql FROM duckdb_views() WHERE schema_name = 'main' AND view_name LIKE '{p}%'
UNION ALL SELECT 'rel', table_name, 'table' FROM duckdb_tables() WHERE schema_name = 'main' AND table_name LIKE '{p}%'
UNION ALL SELECT 'seq', sequence_name, sql || ':' || coalesce(last_value::VARCHAR, 'null') FROM duckdb_sequences()
          WHERE schema_name = 'main' AND sequence_name LIKE '{p}%'
"""


def snapshot(server: SqlgateServer, prefix: str, sequences: bool = True) -> dict[str, Any]:
    """Schema from the catalogs plus an order-independent checksum of every table named prefix*."""
    query = (_PG_SCHEMA if server.backend == "postgres" else _DUCK_SCHEMA).format(p=prefix)
    schema = sorted((r["k"], r["t"], r["v"]) for r in rows(server, query) if sequences or r["k"] != "seq")
    tables = sorted({t for k, t, v in schema if k == "rel" and v in ("r", "table")})
    text = "text" if server.backend == "postgres" else "VARCHAR"
    data = {}
    for table in tables:
        digest = f"md5(coalesce(string_agg(md5(x::{text}), ',' ORDER BY md5(x::{text})), ''))"
        [row] = rows(server, f"SELECT count(*) AS n, {digest} AS h FROM {table} x")
        data[table] = (int(row["n"]), row["h"])
    views = sorted(t for k, t, _ in schema if k == "view")
    for view in views:
        data[view] = num(server, f"SELECT count(*) AS n FROM {view}")
    return {"schema": schema, "data": data}


@pytest.fixture(scope="module")
def writer(sqlgate: SqlgateServer) -> str:
    return sqlgate.token("write", "checkpoint-agent")["token"]  # type: ignore[no-any-return]


def make_tables(server: SqlgateServer, p: str, token: str) -> None:
    """A parent with most kinds of column and constraint, a child with a foreign key, a view."""
    if server.backend == "postgres":
        ddl = [
            f"CREATE TABLE {p}_t (id serial PRIMARY KEY, name text NOT NULL DEFAULT 'anon', qty int CHECK (qty >= 0),"
            f" price numeric(10,2), tags text[], flag boolean DEFAULT true, UNIQUE (name, qty))",
            f"CREATE INDEX {p}_t_price ON {p}_t (price)",
            f"CREATE TABLE {p}_c (id int PRIMARY KEY, t_id int REFERENCES {p}_t (id), note text)",
        ]
    else:
        ddl = [
            f"CREATE SEQUENCE {p}_seq",
            f"CREATE TABLE {p}_t (id INTEGER PRIMARY KEY DEFAULT nextval('{p}_seq'),"
            f" name VARCHAR NOT NULL DEFAULT 'anon', qty INTEGER CHECK (qty >= 0), price DECIMAL(10,2),"
            f" tags VARCHAR[], flag BOOLEAN DEFAULT true,"
            f" UNIQUE (name, qty))",
            f"CREATE INDEX {p}_t_price ON {p}_t (price)",
            f"CREATE TABLE {p}_c (id INTEGER PRIMARY KEY, t_id INTEGER REFERENCES {p}_t (id), note VARCHAR)",
        ]
    for statement in ddl:
        ok(server.sql(statement, token=token))
    ok(server.sql(f"INSERT INTO {p}_t (name, qty, price, tags) SELECT 'n' || i, i, i * 1.5, ARRAY['a', 'b' || i]"
                  f" FROM generate_series(1, 60) g(i)", token=token))
    ok(server.sql(f"INSERT INTO {p}_c SELECT i, 40 + i % 5, 'note ' || i FROM generate_series(1, 12) g(i)",
                  token=token))
    ok(server.sql(f"CREATE VIEW {p}_v AS SELECT id, name FROM {p}_t WHERE qty > 30", token=token))


def refused_unchanged(server: SqlgateServer, token: str, p: str, statement: str) -> None:
    """DuckDB itself cannot run some statements PostgreSQL can: sqlgate must
    answer DuckDB's refusal cleanly, with nothing changed."""
    before = snapshot(server, p)
    r = server.sql(statement, token=token)
    assert r.status_code in (400, 403), r.text
    assert r.json()["reason"] in ("sql.error", "sql.unparseable", "checkpoint.unavailable"), r.text
    assert snapshot(server, p) == before


def destroy_and_restore(server: SqlgateServer, token: str, p: str, statement: str, check: str, expect: Any,
                        mode: str = "all") -> dict[str, Any]:
    before = snapshot(server, p)
    answer = ok(server.sql(statement, token=token))
    checkpoint = answer["checkpoint"]
    assert checkpoint["id"].startswith("cp_") and checkpoint["undo"]["body"] == {"checkpoint": checkpoint["id"]}
    after = snapshot(server, p)
    assert after != before, "the statement changed nothing"
    if check:
        assert num(server, check) == expect, statement
    undone = ok(rollback(server, checkpoint["id"], token=token, mode=mode))
    assert snapshot(server, p) == before, statement
    return undone


# --- one test per kind --------------------------------------------------------

KINDS = [
    ("delete_where", "DELETE FROM {p}_t WHERE qty % 3 = 0 AND id < 40", "SELECT count(*) AS n FROM {p}_t", 47),
    ("delete_all", "DELETE FROM {p}_c", "SELECT count(*) AS n FROM {p}_c", 0),
    ("update", "UPDATE {p}_t SET qty = qty + 1000, name = upper(name), tags = NULL WHERE qty < 20",
     "SELECT count(*) AS n FROM {p}_t WHERE qty > 1000", 19),
    ("update_key", "UPDATE {p}_t SET id = id + 1000 WHERE id <= 10",
     "SELECT count(*) AS n FROM {p}_t WHERE id > 1000", 10),
    ("truncate", "TRUNCATE {p}_c", "SELECT count(*) AS n FROM {p}_c", 0),
    ("drop_child", "DROP TABLE {p}_c", None, None),
]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k[0])
def test_destroy_then_rollback_restores_exactly(sqlgate: SqlgateServer, writer: str, kind: Any) -> None:
    name, statement, check, expect = kind
    p = fresh()
    make_tables(sqlgate, p, writer)
    undone = destroy_and_restore(sqlgate, writer, p, statement.format(p=p), check and check.format(p=p), expect)
    assert undone["new_checkpoint"], undone


def test_delete_with_using_and_params(sqlgate: SqlgateServer, writer: str) -> None:
    p = fresh()
    make_tables(sqlgate, p, writer)
    before = snapshot(sqlgate, p)
    answer = ok(sqlgate.sql(f"DELETE FROM {p}_c c USING {p}_t t WHERE c.t_id = t.id AND t.qty > $1", ["42"],
                            token=writer))
    assert answer["rowCount"] > 0
    ok(rollback(sqlgate, answer["checkpoint"]["id"], token=writer))
    assert snapshot(sqlgate, p) == before


def test_drop_table_then_rollback(sqlgate: SqlgateServer, writer: str) -> None:
    """A table with no dependents (DuckDB: even an indexed one) comes back with its rows, keys and indexes."""
    p = fresh()
    make_tables(sqlgate, p, writer)
    ok(sqlgate.sql(f"DROP TABLE {p}_c", token=writer))  # only the parent is left, with its view and index
    before = snapshot(sqlgate, p)
    if sqlgate.backend == "postgres":
        ok(sqlgate.sql(f"DROP VIEW {p}_v", token=writer))
        before = snapshot(sqlgate, p)
    answer = ok(sqlgate.sql(f"DROP TABLE {p}_t", token=writer))
    assert sqlgate.sql(f"SELECT 1 FROM {p}_t").status_code == 400
    ok(rollback(sqlgate, answer["checkpoint"]["id"], token=writer))
    assert snapshot(sqlgate, p) == before


def test_drop_table_cascade_brings_back_views_and_foreign_keys(sqlgate: SqlgateServer, writer: str) -> None:
    p = fresh()
    make_tables(sqlgate, p, writer)
    if sqlgate.backend == "duckdb":  # DuckDB has no DROP ... CASCADE: it refuses to drop a referenced table
        refused_unchanged(sqlgate, writer, p, f"DROP TABLE {p}_t CASCADE")
        return
    ok(sqlgate.sql(f"CREATE VIEW {p}_w AS SELECT * FROM {p}_v WHERE id > 45", token=writer))
    before = snapshot(sqlgate, p)
    refused = sqlgate.sql(f"DROP TABLE {p}_t", token=writer)
    assert refused.status_code == 400 and refused.json()["code"] == "2BP01", refused.text
    assert snapshot(sqlgate, p) == before
    answer = ok(sqlgate.sql(f"DROP TABLE {p}_t CASCADE", token=writer))
    gone = snapshot(sqlgate, p)
    assert not any(t in (f"{p}_t", f"{p}_v", f"{p}_w") for k, t, _ in gone["schema"] if k == "rel")
    assert not any(k == "con" and "FOREIGN KEY" in v for k, _, v in gone["schema"])
    undone = ok(rollback(sqlgate, answer["checkpoint"]["id"], token=writer))
    assert set(undone["objects_restored"]) >= {f"public.{p}_t", f"public.{p}_v", f"public.{p}_w"}
    assert snapshot(sqlgate, p) == before


def test_drop_view_then_rollback(sqlgate: SqlgateServer, writer: str) -> None:
    p = fresh()
    make_tables(sqlgate, p, writer)
    before = snapshot(sqlgate, p)
    answer = ok(sqlgate.sql(f"DROP VIEW {p}_v", token=writer))
    assert sqlgate.sql(f"SELECT 1 FROM {p}_v").status_code == 400
    ok(rollback(sqlgate, answer["checkpoint"]["id"], token=writer))
    assert snapshot(sqlgate, p) == before


def test_truncate_several_tables(sqlgate: SqlgateServer, writer: str) -> None:
    p = fresh()
    make_tables(sqlgate, p, writer)
    if sqlgate.backend == "duckdb":  # DuckDB's TRUNCATE takes one table
        refused_unchanged(sqlgate, writer, p, f"TRUNCATE {p}_t, {p}_c")
        return
    destroy_and_restore(sqlgate, writer, p, f"TRUNCATE {p}_t, {p}_c", f"SELECT count(*) AS n FROM {p}_t", 0)


def test_table_without_primary_key_and_duplicates(sqlgate: SqlgateServer, writer: str) -> None:
    p = fresh()
    ok(sqlgate.sql(f"CREATE TABLE {p}_np (a int, b text)", token=writer))
    ok(sqlgate.sql(f"INSERT INTO {p}_np SELECT i % 4, 'v' || (i % 3) FROM generate_series(1, 40) g(i)", token=writer))
    destroy_and_restore(sqlgate, writer, p, f"DELETE FROM {p}_np WHERE a = 1", f"SELECT count(*) AS n FROM {p}_np", 30)
    destroy_and_restore(sqlgate, writer, p, f"UPDATE {p}_np SET b = 'changed' WHERE a = 2 AND b = 'v0'",
                        f"SELECT count(*) AS n FROM {p}_np WHERE b = 'changed'", 3, mode="statement")


@pytest.mark.parametrize("table,column", [("c", "note"), ("t", "flag")])
def test_drop_last_column_then_rollback(sqlgate: SqlgateServer, writer: str, table: str, column: str) -> None:
    """The column comes back in its place with its type, default, NOT NULL and values; only it is kept."""
    p = fresh()
    make_tables(sqlgate, p, writer)
    if sqlgate.backend == "duckdb" and table == "t":  # DuckDB refuses ALTER TABLE on a table with an index
        refused_unchanged(sqlgate, writer, p, f"ALTER TABLE {p}_{table} DROP COLUMN {column}")
        return
    ok(sqlgate.sql(f"UPDATE {p}_t SET flag = (id % 3 = 0) WHERE id < 40", token=writer))  # DuckDB: no referenced rows
    destroy_and_restore(sqlgate, writer, p, f"ALTER TABLE {p}_{table} DROP COLUMN {column}", None, None)


def test_drop_middle_column_then_rollback(sqlgate: SqlgateServer, writer: str) -> None:
    """Not the last column: it comes back in its place (more in test_checkpoints_pg_columns)."""
    p = fresh()
    make_tables(sqlgate, p, writer)
    if sqlgate.backend == "duckdb":  # DuckDB itself refuses ALTER on a table with an index
        refused_unchanged(sqlgate, writer, p, f"ALTER TABLE {p}_t DROP COLUMN price")
        return
    destroy_and_restore(sqlgate, writer, p, f"ALTER TABLE {p}_t DROP COLUMN price", None, None)


# --- transactions -------------------------------------------------------------

def test_rolled_back_transaction_leaves_no_checkpoint(sqlgate: SqlgateServer, writer: str) -> None:
    p = fresh()
    make_tables(sqlgate, p, writer)
    known = {c["id"] for c in checkpoints(sqlgate)}
    before = snapshot(sqlgate, p)
    ok(batch(sqlgate, ["BEGIN", f"DELETE FROM {p}_c WHERE id < 5", f"DROP TABLE {p}_c", "ROLLBACK"], token=writer))
    assert snapshot(sqlgate, p) == before
    assert {c["id"] for c in checkpoints(sqlgate)} == known
    failed = batch(sqlgate, [f"DELETE FROM {p}_c WHERE id < 5", "SELECT * FROM no_such_table_anywhere"], token=writer)
    assert failed.status_code == 400
    assert {c["id"] for c in checkpoints(sqlgate)} == known
    assert snapshot(sqlgate, p) == before


def test_committed_transaction_checkpoints_each_statement(sqlgate: SqlgateServer, writer: str) -> None:
    p = fresh()
    make_tables(sqlgate, p, writer)
    before = snapshot(sqlgate, p)
    answer = ok(batch(sqlgate, ["BEGIN", f"DELETE FROM {p}_c WHERE id < 5", f"INSERT INTO {p}_c VALUES (100, 41, 'x')",
                                f"UPDATE {p}_c SET note = 'y' WHERE id > 8", "COMMIT"], token=writer))
    ids = [r["checkpoint"]["id"] for r in answer["results"] if r.get("checkpoint")]
    assert len(ids) == 2
    ok(rollback(sqlgate, ids[0], token=writer))  # mode all: both statements and the insert between them
    assert snapshot(sqlgate, p) == before


# --- modes, conflicts, permissions, listing -----------------------------------

def test_statement_mode_keeps_later_unrelated_writes(sqlgate: SqlgateServer, writer: str) -> None:
    p = fresh()
    make_tables(sqlgate, p, writer)
    answer = ok(sqlgate.sql(f"DELETE FROM {p}_c WHERE id <= 6", token=writer))
    ok(sqlgate.sql(f"INSERT INTO {p}_c VALUES (500, 41, 'later')", token=writer))
    ok(sqlgate.sql(f"UPDATE {p}_t SET qty = qty + 1 WHERE id = 1", token=writer))
    dry = ok(rollback(sqlgate, answer["checkpoint"]["id"], token=writer, mode="statement", dry_run=True))
    assert dry["rows_restored"] == 6 and dry["rows_removed"] == 0 and dry["new_checkpoint"] is None
    assert num(sqlgate, f"SELECT count(*) AS n FROM {p}_c") == 7
    undone = ok(rollback(sqlgate, answer["checkpoint"]["id"], token=writer, mode="statement"))
    assert undone["rows_restored"] == 6
    assert num(sqlgate, f"SELECT count(*) AS n FROM {p}_c") == 13
    assert num(sqlgate, f"SELECT count(*) AS n FROM {p}_c WHERE note = 'later'") == 1
    assert num(sqlgate, f"SELECT qty AS n FROM {p}_t WHERE id = 1") == 2
    again = rollback(sqlgate, answer["checkpoint"]["id"], token=writer)
    assert again.status_code == 409 and again.json()["reason"] == "branching.already_rolled_back"


def test_statement_mode_reports_conflicts_and_changes_nothing(sqlgate: SqlgateServer, writer: str) -> None:
    p = fresh()
    make_tables(sqlgate, p, writer)
    answer = ok(sqlgate.sql(f"UPDATE {p}_t SET qty = qty + 100 WHERE id <= 3", token=writer))
    ok(sqlgate.sql(f"UPDATE {p}_t SET name = 'later' WHERE id = 2", token=writer))
    before = snapshot(sqlgate, p)
    r = rollback(sqlgate, answer["checkpoint"]["id"], token=writer, mode="statement")
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["reason"] == "branching.rollback_conflict" and len(body["conflicts"]) == 1, body
    assert snapshot(sqlgate, p) == before
    # mode all undoes both, and names the later statement.
    undone = ok(rollback(sqlgate, answer["checkpoint"]["id"], token=writer))
    assert len(undone["undone_traces"]) == 1
    assert num(sqlgate, f"SELECT count(*) AS n FROM {p}_t WHERE qty > 100 OR name = 'later'") == 0


def test_mode_all_undoes_later_writes_and_lists_them(sqlgate: SqlgateServer, writer: str) -> None:
    p = fresh()
    make_tables(sqlgate, p, writer)
    before = snapshot(sqlgate, p)
    answer = ok(sqlgate.sql(f"DELETE FROM {p}_t WHERE id > 55", token=writer))
    later = [ok(sqlgate.sql(q, token=writer))["trace_id"] for q in (
        f"INSERT INTO {p}_t (name, qty) VALUES ('new', 1)",
        f"UPDATE {p}_t SET price = 0 WHERE id < 5",
        f"DELETE FROM {p}_c WHERE id = 1",
    )]
    undone = ok(rollback(sqlgate, answer["checkpoint"]["id"], token=writer))
    assert set(later[:2]) <= set(undone["undone_traces"])
    after = snapshot(sqlgate, p)
    expected = before  # sequences included: the INSERT's nextval is taken back too
    # The child table was not touched by the checkpoint's statement: its later delete stays (it has no
    # checkpoint relation with the parent), so compare the parent and the view only.
    assert after["data"][f"{p}_t"] == expected["data"][f"{p}_t"]
    assert [s for s in after["schema"] if s[1] != f"{p}_c"] == [s for s in expected["schema"] if s[1] != f"{p}_c"]


def test_rollback_is_itself_undoable(sqlgate: SqlgateServer, writer: str) -> None:
    p = fresh()
    make_tables(sqlgate, p, writer)
    # DuckDB refuses to update rows other tables reference (its foreign-key limitation), not PostgreSQL.
    op = "<" if sqlgate.backend == "duckdb" else "<>"
    answer = ok(sqlgate.sql(f"UPDATE {p}_t SET qty = 0 WHERE id % 2 = 0 AND id {op} 40", token=writer))
    after_update = snapshot(sqlgate, p)
    undone = ok(rollback(sqlgate, answer["checkpoint"]["id"], token=writer, mode="statement"))
    ok(rollback(sqlgate, undone["new_checkpoint"], token=writer, mode="statement"))
    assert snapshot(sqlgate, p) == after_update


def test_who_may_roll_back(sqlgate: SqlgateServer, writer: str) -> None:
    p = fresh()
    make_tables(sqlgate, p, writer)
    answer = ok(sqlgate.sql(f"DELETE FROM {p}_c WHERE id = 3", token=writer))
    other = sqlgate.token("write", "someone-else")["token"]
    r = rollback(sqlgate, answer["checkpoint"]["id"], token=other)
    assert r.status_code == 403 and r.json()["reason"] == "branching.not_allowed"
    assert answer["checkpoint"]["id"] not in {c["id"] for c in checkpoints(sqlgate, token=other)}
    missing = rollback(sqlgate, "cp_doesnotexist")
    assert missing.status_code == 404 and missing.json()["reason"] == "branching.checkpoint_not_found"
    assert missing.json()["next"]
    bad = rollback(sqlgate, answer["checkpoint"]["id"], mode="sideways")
    assert bad.status_code == 400
    ok(rollback(sqlgate, answer["checkpoint"]["id"]))  # admin may


def test_checkpoints_are_listed_with_size_age_expiry_and_traced(sqlgate: SqlgateServer, writer: str) -> None:
    p = fresh()
    make_tables(sqlgate, p, writer)
    answer = ok(sqlgate.sql(f"DELETE FROM {p}_t WHERE id > 45", token=writer))
    listed = {c["id"]: c for c in checkpoints(sqlgate, actor="checkpoint-agent")}
    item = listed[answer["checkpoint"]["id"]]
    assert item["size_bytes"] > 0 and item["age_s"] >= 0 and item["expires_at"] > item["created_at"]
    assert item["trace_id"] == answer["trace_id"] and item["tables"] == [f"{p}_t"]
    undone = ok(rollback(sqlgate, answer["checkpoint"]["id"], token=writer))
    with sqlgate.client() as c:
        traces = {t["id"]: t for t in ok(c.get("/traces", params={"limit": "50"}))["traces"]}
    assert traces[answer["trace_id"]]["checkpoint_id"] == answer["checkpoint"]["id"]
    assert traces[undone["trace_id"]]["checkpoint_id"] == undone["new_checkpoint"]
    assert traces[undone["trace_id"]]["rows"] == 15


def test_merge_and_data_modifying_cte(sqlgate: SqlgateServer, writer: str) -> None:
    """PostgreSQL: the capture triggers see any DML, whatever its form. DuckDB: the rows
    the statement may change are kept before it runs."""
    p = fresh()
    make_tables(sqlgate, p, writer)
    statements = [
        f"WITH gone AS (DELETE FROM {p}_c WHERE id > 6 RETURNING t_id) UPDATE {p}_t SET qty = 0"
        f" WHERE id IN (SELECT t_id FROM gone)",
        f"MERGE INTO {p}_c c USING (SELECT i AS id FROM generate_series(1, 20) g(i)) s ON c.id = s.id"
        f" WHEN MATCHED AND c.id % 2 = 0 THEN DELETE WHEN MATCHED THEN UPDATE SET note = 'merged'"
        f" WHEN NOT MATCHED THEN INSERT VALUES (s.id, 41, 'new')",
    ]
    if sqlgate.backend == "duckdb":  # DuckDB refuses to update a row still referenced (its FK limitation)
        refused_unchanged(sqlgate, writer, p, statements.pop(0))
    for statement in statements:
        destroy_and_restore(sqlgate, writer, p, statement, None, None)


DEFINITIONS = [
    ("drop_default", "ALTER TABLE {p}_t ALTER COLUMN name DROP DEFAULT"),
    ("set_default", "ALTER TABLE {p}_t ALTER COLUMN name SET DEFAULT 'other'"),  # safe_ddl, but checkpointed
    ("drop_not_null", "ALTER TABLE {p}_t ALTER COLUMN name DROP NOT NULL"),
    ("drop_check", "ALTER TABLE {p}_t DROP CONSTRAINT {p}_t_qty_check"),
    ("drop_unique", "ALTER TABLE {p}_t DROP CONSTRAINT {p}_t_name_qty_key"),
    ("drop_foreign_key", "ALTER TABLE {p}_c DROP CONSTRAINT {p}_c_t_id_fkey"),
    ("rename_column", "ALTER TABLE {p}_c RENAME COLUMN note TO remark"),
    ("rename_table", "ALTER TABLE {p}_c RENAME TO {p}_renamed"),
    ("column_type_lossy", "ALTER TABLE {p}_t ALTER COLUMN price TYPE integer"),
    ("column_type_text", "ALTER TABLE {p}_c ALTER COLUMN note TYPE varchar(4) USING left(note, 4)"),
    ("drop_index", "DROP INDEX {p}_t_price"),
    ("replace_view", "CREATE OR REPLACE VIEW {p}_v AS SELECT id, name, qty FROM {p}_t WHERE qty > 10"),
]


@pytest.mark.parametrize("kind", DEFINITIONS, ids=lambda k: k[0])
def test_definition_change_then_rollback(sqlgate: SqlgateServer, writer: str, kind: Any) -> None:
    """ALTERs that destroy a definition (or values, for a lossy type change) come back exactly."""
    duckdb_refuses = {"drop_check", "drop_unique", "drop_foreign_key", "drop_not_null", "column_type_lossy"}
    p = fresh()
    make_tables(sqlgate, p, writer)
    if sqlgate.backend == "duckdb" and kind[0] in duckdb_refuses:  # ALTER of an indexed table, DROP CONSTRAINT
        refused_unchanged(sqlgate, writer, p, kind[1].format(p=p))
        return
    destroy_and_restore(sqlgate, writer, p, kind[1].format(p=p), None, None)


def test_drop_sequence_then_rollback(sqlgate: SqlgateServer, writer: str) -> None:
    p = fresh()
    ok(sqlgate.sql(f"CREATE SEQUENCE {p}_s START 7", token=writer))
    ok(sqlgate.sql(f"SELECT nextval('{p}_s'), nextval('{p}_s')", token=writer))
    before = snapshot(sqlgate, p)
    answer = ok(sqlgate.sql(f"DROP SEQUENCE {p}_s", token=writer))
    assert snapshot(sqlgate, p) != before
    ok(rollback(sqlgate, answer["checkpoint"]["id"], token=writer))
    assert snapshot(sqlgate, p) == before
    assert num(sqlgate, f"SELECT nextval('{p}_s') AS n") == 9


def test_definition_changes_are_refused_where_not_kept(sqlgate: SqlgateServer, writer: str) -> None:
    p = fresh()
    make_tables(sqlgate, p, writer)
    if sqlgate.backend == "duckdb":  # a schema holding a macro: its definition is not kept
        ok(sqlgate.sql(f"CREATE SCHEMA {p}_m", token=writer))
        ok(sqlgate.sql(f"CREATE MACRO {p}_m.plus_one(x) AS x + 1", token=writer))
        statements = [f"DROP SCHEMA {p}_m CASCADE"]
    else:  # a type: its definition (and columns using it) are not kept
        ok(sqlgate.sql(f"CREATE TYPE {p}_mood AS ENUM ('ok', 'sad')", token=writer))
        statements = [f"DROP TYPE {p}_mood"]
    before = snapshot(sqlgate, p)
    for statement in statements:
        r = sqlgate.sql(statement, token=writer)
        assert r.status_code == 403 and r.json()["reason"] == "checkpoint.unavailable", r.text
    assert snapshot(sqlgate, p) == before
    if sqlgate.backend == "duckdb":
        assert num(sqlgate, f"SELECT {p}_m.plus_one(1) AS n") == 2
    else:
        assert num(sqlgate, f"SELECT count(*) AS n FROM pg_type WHERE typname = '{p}_mood'") == 1


def test_a_session_cannot_file_its_changes_under_another_checkpoint(sqlgate: SqlgateServer, writer: str) -> None:
    p = fresh()
    make_tables(sqlgate, p, writer)
    answer = ok(sqlgate.sql(f"DELETE FROM {p}_c WHERE id < 3", token=writer))
    cp = answer["checkpoint"]["id"]
    forged = batch(sqlgate, [f"SET sqlgate.checkpoint = '{cp}'", f"INSERT INTO {p}_c VALUES (900, 41, 'forged')"],
                   token=writer)
    if forged.status_code == 200:  # the SET was allowed: the trigger must not believe it
        ok(rollback(sqlgate, cp, token=writer, mode="statement"))
        assert num(sqlgate, f"SELECT count(*) AS n FROM {p}_c WHERE note = 'forged'") == 1
        assert num(sqlgate, f"SELECT count(*) AS n FROM {p}_c") == 13


def test_concurrent_first_checkpoints_of_one_table(sqlgate: SqlgateServer, writer: str) -> None:
    """Several agents deleting from tables never checkpointed before, at once."""
    from concurrent.futures import ThreadPoolExecutor

    for _ in range(4):
        p = fresh()
        ok(sqlgate.sql(f"CREATE TABLE {p}_q (id int PRIMARY KEY, v int)", token=writer))
        ok(sqlgate.sql(f"INSERT INTO {p}_q SELECT i, i FROM generate_series(1, 160) g(i)", token=writer))
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(
                lambda i, p=p: sqlgate.sql(f"DELETE FROM {p}_q WHERE id % 16 = {i}", token=writer), range(16)))
        assert all(r.status_code == 200 for r in answers), [r.text for r in answers if r.status_code != 200][:1]
        assert len({r.json()["checkpoint"]["id"] for r in answers}) == 16
        assert sqlgate.sql(f"SELECT count(*)::int AS n FROM {p}_q").json()["rows"] == [{"n": 0}]


def test_cli_lists_checkpoints_and_rolls_back(sqlgate: SqlgateServer, writer: str) -> None:
    import subprocess
    import sys

    p = fresh()
    ok(sqlgate.sql(f"CREATE TABLE {p}_k (id int PRIMARY KEY)", token=writer))
    ok(sqlgate.sql(f"INSERT INTO {p}_k SELECT i FROM generate_series(1, 10) g(i)", token=writer))
    cp = ok(sqlgate.sql(f"DELETE FROM {p}_k WHERE id > 3", token=writer))["checkpoint"]["id"]

    def cli(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "proxy.cli", *args, "--server", sqlgate.url, "--token",
                              sqlgate.admin_token], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert cp in cli("checkpoints", "--limit", "200")
    assert "would restore 7 rows" in cli("rollback", cp, "--dry-run")
    assert sqlgate.sql(f"SELECT count(*)::int AS n FROM {p}_k").json()["rows"] == [{"n": 3}]
    assert "restored 7 rows" in cli("rollback", cp)
    assert sqlgate.sql(f"SELECT count(*)::int AS n FROM {p}_k").json()["rows"] == [{"n": 10}]


def test_rollback_from_sql_is_traced_once_with_the_rollback(sqlgate: SqlgateServer, writer: str) -> None:
    """The call's trace commits inside the rollback's transaction, and only there."""
    import time

    p = fresh()
    ok(sqlgate.sql(f"CREATE TABLE {p}_r (id int PRIMARY KEY)", token=writer))
    ok(sqlgate.sql(f"INSERT INTO {p}_r SELECT i FROM generate_series(1, 5) g(i)", token=writer))
    cp = ok(sqlgate.sql(f"DELETE FROM {p}_r", token=writer))["checkpoint"]["id"]
    answer = ok(sqlgate.sql(f"SELECT sqlgate.rollback('{cp}')", token=writer))
    time.sleep(0.3)  # past the trace sink's batching delay: a second write would show by now
    rows = ok(sqlgate.sql("SELECT outcome, checkpoint_id FROM sqlgate.traces WHERE id = $1",
                          [answer["trace_id"]]))["rows"]
    assert len(rows) == 1 and rows[0]["outcome"] == "ok" and rows[0]["checkpoint_id"]
    assert sqlgate.sql(f"SELECT count(*)::int AS n FROM {p}_r").json()["rows"] == [{"n": 5}]


@pytest.mark.parametrize("statement", ["DELETE FROM {p}_par WHERE id = 1", "TRUNCATE {p}_par CASCADE",
                                       "UPDATE {p}_par SET id = 10 WHERE id = 2"])
def test_rows_changed_by_foreign_key_cascades_come_back(sqlgate: SqlgateServer, writer: str, statement: str) -> None:
    """Invariant 1 covers every table the statement touched, through ON DELETE/UPDATE CASCADE too."""
    if sqlgate.backend != "postgres":
        return  # DuckDB has no cascading foreign keys
    p = fresh()
    ok(sqlgate.sql(f"CREATE TABLE {p}_par (id int PRIMARY KEY)", token=writer))
    ok(sqlgate.sql(f"CREATE TABLE {p}_chi (id int PRIMARY KEY, par int REFERENCES {p}_par (id)"
                   " ON DELETE CASCADE ON UPDATE CASCADE)", token=writer))
    ok(sqlgate.sql(f"CREATE TABLE {p}_gra (id int PRIMARY KEY, chi int REFERENCES {p}_chi (id) ON DELETE SET NULL)",
                   token=writer))
    ok(sqlgate.sql(f"INSERT INTO {p}_par VALUES (1), (2), (3)", token=writer))
    ok(sqlgate.sql(f"INSERT INTO {p}_chi VALUES (10, 1), (11, 1), (20, 2)", token=writer))
    ok(sqlgate.sql(f"INSERT INTO {p}_gra VALUES (100, 10), (101, 20)", token=writer))
    before = snapshot(sqlgate, p)
    answer = ok(sqlgate.sql(statement.format(p=p), token=writer))
    assert snapshot(sqlgate, p) != before
    ok(rollback(sqlgate, answer["checkpoint"]["id"], token=writer))
    assert snapshot(sqlgate, p) == before


def test_checkpoint_retention_is_configurable(pg_server: PgServer) -> None:
    from datetime import datetime

    server = start_sqlgate("duckdb", pg_server, "unused", "--checkpoint-retention-days", "0.5")
    try:
        ok(server.sql("CREATE TABLE kept (a int); INSERT INTO kept VALUES (1)"))
        cp = ok(server.sql("DELETE FROM kept"))["checkpoint"]["id"]
        with server.client() as c:
            [item] = [i for i in c.get("/checkpoints").json()["checkpoints"] if i["id"] == cp]
        lifetime = datetime.fromisoformat(item["expires_at"]) - datetime.fromisoformat(item["created_at"])
        assert abs(lifetime.total_seconds() - 12 * 3600) < 60
    finally:
        server.stop()
