"""On the embedded DuckDB, sqlgate names output columns as PostgreSQL does
(FigureColname: `count`, `?column?`, `int4`, `case`, ...) and tags CREATE
TABLE ... AS `SELECT n`; the reference is always the real PostgreSQL server
running the same statement, through HTTP and through the wire protocol."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from proxy.backends.duckdb_names import STAR, pg_column_names, shape_of
from tests.support.pgserver import PgServer
from tests.support.sqlgate_server import SqlgateServer
from tests.support.wire import Wire

SETUP = [
    "CREATE TABLE nm_t (a integer, b integer, x text)",
    "INSERT INTO nm_t VALUES (1, 2, '3'), (4, 5, '6')",
]

# Each statement runs unchanged on PostgreSQL and on DuckDB.
STATEMENTS = [
    "SELECT count(*) FROM nm_t",
    "SELECT 1",
    "SELECT now()",
    "SELECT a + 1 FROM nm_t",
    "SELECT x::int FROM nm_t",
    "SELECT CAST(1 AS int)",
    "SELECT 'a'",
    "SELECT CASE WHEN a > 1 THEN 'y' ELSE 'n' END FROM nm_t",
    "SELECT CASE WHEN a > 1 THEN a ELSE b END FROM nm_t",
    "SELECT coalesce(a, b) FROM nm_t",
    "SELECT ARRAY[1]",
    "SELECT (SELECT 1)",
    "SELECT (SELECT max(a) FROM nm_t)",
    "SELECT EXISTS (SELECT 1 FROM nm_t)",
    "SELECT nm_t.a FROM nm_t",
    "SELECT max(a) FROM nm_t",
    "SELECT row(1, 2)",
    "SELECT current_date",
    "SELECT true",
    "SELECT NULL",
    "SELECT 1::text",
    "SELECT 1::int::text, now()::date, x COLLATE \"C\" FROM nm_t",
    "SELECT greatest(1, 2), nullif(1, 2), trim(' a '), extract(year from now())",
    "SELECT count(*) AS n, max(a), A, a AS Big, a AS \"Quoted\" FROM nm_t GROUP BY a",
    "SELECT *, 1 FROM nm_t",
    "SELECT 1, nm_t.*, a + 1 FROM nm_t",
    "SELECT 1 UNION SELECT 2",
    "SELECT count(*) AS k FROM nm_t UNION ALL SELECT 2",
    "VALUES (1, 'a')",
    "WITH q AS (SELECT count(*), max(a) FROM nm_t) SELECT * FROM q",
    "SELECT * FROM (SELECT a, count(*) FROM nm_t GROUP BY a) s ORDER BY 1",
    "SELECT * FROM (VALUES (1, 2)) v",
]


@pytest.fixture(scope="module")
def reference(pg_server: PgServer) -> Iterator[psycopg.Connection[Any]]:
    """The real PostgreSQL server, with the same table as the DuckDB side."""
    dsn = pg_server.create_database("sqlgate_names_ref")
    with psycopg.connect(dsn, autocommit=True) as conn:
        for sql in SETUP:
            conn.execute(sql)
        yield conn


@pytest.fixture(scope="module")
def duck_db(duck: SqlgateServer) -> SqlgateServer:
    for sql in SETUP:
        r = duck.sql(sql)
        assert r.status_code == 200, r.text
    return duck


@pytest.fixture(scope="module")
def duck_wire(duck_db: SqlgateServer) -> Wire:
    return Wire(duck_db, duck_db.pg_port, "duckdb")


def pg_names(conn: psycopg.Connection[Any], sql: str) -> list[str]:
    cur = conn.execute(sql)
    assert cur.description is not None
    return [d.name for d in cur.description]


def pg_tag(conn: psycopg.Connection[Any], sql: str) -> str:
    return conn.execute(sql).statusmessage or ""


# --- HTTP ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sql", STATEMENTS)
def test_http_field_names_are_postgresql_names(sql: str, duck_db: SqlgateServer,
                                               reference: psycopg.Connection[Any]) -> None:
    r = duck_db.sql(sql)
    assert r.status_code == 200, r.text
    assert [f["name"] for f in r.json()["fields"]] == pg_names(reference, sql)


def test_http_rows_are_keyed_by_postgresql_names(duck_db: SqlgateServer) -> None:
    r = duck_db.sql("SELECT count(*), 1, max(a) FROM nm_t")
    assert r.json()["rows"] == [{"count": "2", "?column?": 1, "max": 4}]  # bigint: a string, as Neon sends it


# --- wire protocol ---------------------------------------------------------------------------------

def test_wire_simple_query_names(duck_wire: Wire, reference: psycopg.Connection[Any]) -> None:
    """The simple query protocol (what psql sends): RowDescription of each statement."""
    with psycopg.connect(duck_wire.dsn(), autocommit=True) as conn:
        for sql in STATEMENTS:
            res = conn.pgconn.exec_(sql.encode())
            assert res.status == psycopg.pq.ExecStatus.TUPLES_OK, (sql, res.error_message)
            got = [(res.fname(i) or b"").decode() for i in range(res.nfields)]
            assert got == pg_names(reference, sql), sql


def test_wire_extended_query_names(duck_wire: Wire, reference: psycopg.Connection[Any]) -> None:
    """The extended protocol (psycopg with parameters or prepare=True): Parse, Bind, Describe
    portal, Execute; RowDescription comes from the Describe, before the statement runs."""
    with psycopg.connect(duck_wire.dsn(), autocommit=True) as conn:
        for sql in STATEMENTS:
            cur = conn.execute(sql, prepare=True)
            assert cur.description is not None
            assert [d.name for d in cur.description] == pg_names(reference, sql), sql
        sql = "SELECT count(*), a + %s::int FROM nm_t WHERE a > %s::int GROUP BY a"
        cur = conn.execute(sql, [1, 0])
        assert [d.name for d in cur.description or []] == ["count", "?column?"]


def test_wire_describe_prepared_statement(duck_wire: Wire, reference: psycopg.Connection[Any]) -> None:
    sql = "SELECT count(*), max(a), x::int FROM nm_t GROUP BY x"
    with psycopg.connect(duck_wire.dsn(), autocommit=True) as conn:
        pgconn = conn.pgconn
        res = pgconn.prepare(b"nm_stmt", sql.encode())
        assert res.status == psycopg.pq.ExecStatus.COMMAND_OK, res.error_message
        res = pgconn.describe_prepared(b"nm_stmt")
        assert res.status == psycopg.pq.ExecStatus.COMMAND_OK, res.error_message
        assert [(res.fname(i) or b"").decode() for i in range(res.nfields)] == pg_names(reference, sql)


def test_wire_returning_names(duck_wire: Wire, reference: psycopg.Connection[Any]) -> None:
    sql = "INSERT INTO nm_t VALUES (7, 8, '9') RETURNING a + 1, *, x::int"
    with psycopg.connect(duck_wire.dsn(), autocommit=True) as conn:
        cur = conn.execute(sql)
        assert [d.name for d in cur.description or []] == pg_names(reference, sql)
        conn.execute("DELETE FROM nm_t WHERE a = 7")
    reference.execute("DELETE FROM nm_t WHERE a = 7")


# --- command tags ----------------------------------------------------------------------------------

TAGGED = [
    "CREATE TABLE nm_ctas AS SELECT * FROM nm_t",
    "CREATE TABLE IF NOT EXISTS nm_ctas AS SELECT * FROM nm_t",  # exists: nothing filled
    "CREATE TABLE nm_ctas_empty AS SELECT a FROM nm_t WHERE false",
    "CREATE TABLE nm_ctas_nodata AS SELECT a FROM nm_t WITH NO DATA",
    "CREATE TABLE nm_ctas_values AS VALUES (1), (2), (3)",
    "CREATE TABLE nm_plain (a integer)",
    "INSERT INTO nm_plain SELECT a FROM nm_t",
    "UPDATE nm_plain SET a = a + 1 WHERE a > 1",
    "MERGE INTO nm_plain p USING nm_t s ON p.a = s.a WHEN NOT MATCHED THEN INSERT VALUES (s.a)",
    "DELETE FROM nm_plain",
    "SELECT * FROM nm_t",
]


def test_wire_command_tags(duck_wire: Wire, reference: psycopg.Connection[Any]) -> None:
    with psycopg.connect(duck_wire.dsn(), autocommit=True) as conn:
        for sql in TAGGED:
            assert conn.execute(sql).statusmessage == pg_tag(reference, sql), sql
        # the same through the simple query protocol
        for sql in ("CREATE TABLE nm_ctas_simple AS SELECT * FROM nm_t", "DROP TABLE nm_ctas_simple"):
            res = conn.pgconn.exec_(sql.encode())
            assert (res.command_status or b"").decode() == pg_tag(reference, sql), sql


def test_http_ctas_command_and_row_count(duck_db: SqlgateServer, reference: psycopg.Connection[Any]) -> None:
    sql = "CREATE TABLE nm_ctas_http AS SELECT * FROM nm_t"
    body = duck_db.sql(sql).json()
    tag = pg_tag(reference, sql)  # SELECT 2
    assert (body["command"], body["rowCount"]) == (tag.split()[0], int(tag.split()[1]))


# --- the rule itself, without a server -------------------------------------------------------------

def test_names_left_to_duckdb() -> None:
    # DuckDB syntax PostgreSQL's parser rejects: DuckDB's names stay.
    assert pg_column_names("SELECT * EXCLUDE (a) FROM t", ["b"]) == ["b"]
    assert pg_column_names("SELECT [1, 2]", ["main.list_value(1, 2)"]) == ["main.list_value(1, 2)"]
    # COLUMNS() expands to several columns: never renamed.
    assert pg_column_names("SELECT COLUMNS('a|b') + 1 FROM t", ["a", "b"]) == ["a", "b"]
    # a count that does not match the select list: left alone.
    assert pg_column_names("SELECT 1, 2", ["x"]) == ["x"]
    # two stars of unknown width: only the items outside them are placed.
    assert pg_column_names("SELECT 1, *, 2, t.*, 3 FROM t", ["1", "a", "2", "a", "3"]) == [
        "?column?", "a", "2", "a", "?column?"]
    assert shape_of("SELECT * FROM t").items == (STAR,)
    assert shape_of("SHOW search_path").items is None


def test_shapes_are_cached_by_text_and_by_numeric_fingerprint() -> None:
    a = shape_of("SELECT count(*) FROM nm_cache WHERE id = 1")
    assert shape_of("SELECT count(*) FROM nm_cache WHERE id = 1") is a
    assert shape_of("SELECT count(*) FROM nm_cache WHERE id = 987") is a  # same fingerprint: no parse
    assert a.items == ("count",)
