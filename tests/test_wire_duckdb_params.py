"""Parameter types on the DuckDB wire front door: values the client typed (Parse
OIDs, binary formats, Describe answers) reach DuckDB as those types, Describe
infers uncast parameters' types as PostgreSQL does, and COPY FROM decodes bytea
and arrays by column type. Each case runs against real PostgreSQL too."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import asyncpg
import duckdb
import psycopg
import pytest

from proxy.backends.duckdb_params import Typed, adapt_params, from_text, infer_types
from tests.support.pgserver import PgServer
from tests.support.wire import Wire

DUCK = pytest.mark.parametrize("wire", ["duckdb"], indirect=True)
RAW = b"\x00\xff\\"


@pytest.fixture(scope="module")
def ref(pg_server: PgServer) -> str:
    return pg_server.create_database("wire_params_ref")


@pytest.fixture
def both(wire: Wire, ref: str) -> Iterator[list[str]]:
    yield [wire.dsn(), ref]


def same(dsns: list[str], body: Callable[[psycopg.Connection[Any]], Any]) -> Any:
    """Run `body` on sqlgate (DuckDB) and on PostgreSQL; the answers must agree."""
    answers = []
    for dsn in dsns:
        with psycopg.connect(dsn, autocommit=True) as conn:
            answers.append(body(conn))
    assert answers[0] == answers[1]
    return answers[0]


# --- psycopg -----------------------------------------------------------------------

@DUCK
@pytest.mark.parametrize("binary", [False, True])
def test_psycopg_bytea_without_cast(both: list[str], binary: bool) -> None:
    table = f"dp_bytea_{int(binary)}"

    def body(conn: psycopg.Connection[Any]) -> Any:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} (id int, b bytea)")
        cur = conn.cursor(binary=binary)
        cur.execute(f"INSERT INTO {table} (id, b) VALUES (%s, %s), (%s,%s)", [1, RAW, 2, RAW + b"x"])
        cur.execute(f"DELETE FROM {table} WHERE b = %s", [RAW + b"x"])
        return cur.execute(f"SELECT b, octet_length(b) FROM {table} WHERE b IN (%s)", [RAW]).fetchall()

    assert same(both, body) == [(RAW, 3)]


@DUCK
@pytest.mark.parametrize("binary", [False, True])
def test_psycopg_typed_values(both: list[str], binary: bool) -> None:
    table = f"dp_types_{int(binary)}"
    row = [1, datetime.date(2024, 2, 29), Decimal("12.50"), True, [1, None, 3], ["a", None, 'q"'],
           datetime.datetime(2024, 1, 2, 3, 4, 5, 123456)]

    def body(conn: psycopg.Connection[Any]) -> Any:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} (id int, d date, n numeric(10,2), f bool, a int[], t text[], ts timestamp)")
        cur = conn.cursor(binary=binary)
        cur.execute(f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s, %s, %s)", row)
        got = cur.execute(f"SELECT * FROM {table} WHERE d = %s AND f = %s", [row[1], True]).fetchall()
        return got, cur.execute("SELECT %s + 1, %s * 2", [5, Decimal("1.5")]).fetchone()

    rows, arithmetic = same(both, body)
    assert rows == [tuple(row)] and arithmetic == (6, Decimal("3.0"))


@DUCK
def test_psycopg_copy_from_bytea_and_arrays(both: list[str]) -> None:
    def body(conn: psycopg.Connection[Any]) -> Any:
        conn.execute("DROP TABLE IF EXISTS dp_copy")
        conn.execute("CREATE TABLE dp_copy (id int, b bytea, a int[], t text[])")
        cur = conn.cursor()
        with cur.copy("COPY dp_copy (id, b, a, t) FROM STDIN") as copy:
            copy.write_row([1, RAW, [1, 2], ["x y", None]])
        with cur.copy("COPY dp_copy FROM STDIN") as copy:
            copy.write("2\t\\\\x00ff5c\t{3,NULL}\t{\"a,b\"}\n3\t\\\\000ab\\\\\\\\\t{}\t\\N\n")
        with cur.copy("COPY dp_copy (id, b, a) FROM STDIN WITH (FORMAT csv)") as copy:
            copy.write('4,\\x00ff5c,"{5,6}"\n')
        return cur.execute("SELECT id, b, a, t FROM dp_copy ORDER BY id").fetchall()

    assert same(both, body) == [(1, RAW, [1, 2], ["x y", None]), (2, RAW, [3, None], ["a,b"]),
                                (3, b"\x00ab\\", [], None), (4, RAW, [5, 6], None)]


# --- asyncpg -----------------------------------------------------------------------

async def _asyncpg_body(dsn: str) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DROP TABLE IF EXISTS dp_apg")
        await conn.execute("CREATE TABLE dp_apg (id int, b bytea, d date, n numeric(10,2), f boolean, a int[])")
        insert = await conn.prepare("INSERT INTO dp_apg (id, b, d, n, f, a) VALUES ($1, $2, $3, $4, $5, $6)")
        await insert.fetch(1, RAW, datetime.date(2020, 2, 29), Decimal("-1.25"), True, [1, None])
        await conn.execute("INSERT INTO dp_apg (id, b) VALUES ($1,$2)", 2, b"")
        select = await conn.prepare("SELECT id, b, d, n, f, a FROM dp_apg WHERE id = ANY($1) AND d > $2 LIMIT $3")
        rows = [tuple(r) for r in await select.fetch([1, 2], datetime.date(2020, 1, 1), 5)]
        deleted = await conn.execute("DELETE FROM dp_apg WHERE id = $1 AND n IS NULL", 2)
        between = await conn.fetchval("SELECT count(*) FROM dp_apg WHERE n BETWEEN $1 AND $2", -2, 3)
        return ([t.name for t in insert.get_parameters()], [t.name for t in select.get_parameters()],
                rows, deleted, between)
    finally:
        await conn.close()


@DUCK
def test_asyncpg_uncast_parameters(both: list[str]) -> None:
    duck, pg = (asyncio.run(_asyncpg_body(dsn)) for dsn in both)
    assert duck == pg
    assert duck[0] == ["int4", "bytea", "date", "numeric", "bool", "int4[]"]
    assert duck[2] == [(1, RAW, datetime.date(2020, 2, 29), Decimal("-1.25"), True, [1, None])]


# --- units -------------------------------------------------------------------------

def test_from_text_by_oid() -> None:
    assert from_text(17, "\\x00ff5c") == RAW
    assert from_text(17, "a\\000\\\\") == b"a\x00\\"
    assert from_text(1001, '{"\\\\x00",NULL}') == [b"\x00", None]
    assert from_text(1007, "{1,NULL}") == [1, None]
    assert from_text(1082, "infinity") == "infinity"  # DuckDB casts what Python cannot hold
    assert from_text(1700, "NaN") == "NaN"
    assert from_text(16, "on") is True
    assert from_text(23, "x") == "x"


def test_adapt_params() -> None:
    assert adapt_params("SELECT $1, $2", [Typed("\\x00", 17), "\\x00"]) == [b"\x00", "\\x00"]
    assert adapt_params("SELECT $1::bytea,$2::int[]", ["\\xdead", "{1,2}"]) == [b"\xde\xad", ["1", "2"]]


def test_infer_types() -> None:
    conn = duckdb.connect()
    conn.execute("CREATE TABLE t (id int, b blob, d date)")

    def columns_of(table: str) -> dict[str, str]:
        rel = conn.sql(f"SELECT * FROM {table} LIMIT 0")
        return {n.lower(): str(ty) for n, ty in zip(rel.columns, rel.types, strict=True)}

    assert infer_types("INSERT INTO t VALUES ($1,$2,$3)", columns_of) == {1: "INTEGER", 2: "BLOB", 3: "DATE"}
    assert infer_types("SELECT * FROM t x WHERE x.b = $1 OR id IN ($2) LIMIT $3", columns_of) == {
        1: "BLOB", 2: "INTEGER", 3: "BIGINT"}
    assert infer_types("SELECT $1 + 1, length($2), $3::date", columns_of) == {1: "INTEGER", 3: "DATE"}
    assert infer_types("SELECT * FROM nowhere WHERE x = $1", columns_of) == {}


def test_adapt_untyped_by_catalog() -> None:
    """Untyped text (node-postgres, Neon's HTTP) is bytea or an array where the statement puts it."""
    conn = duckdb.connect()
    conn.execute("CREATE TABLE u (id int, b blob, t varchar[], s varchar)")
    sql = "INSERT INTO u VALUES ($1,$2,$3,$4)"
    params = ["1", "\\x00ff5c", '{"x y",NULL}', "{not an array}"]
    assert adapt_params(sql, params) == params  # no connection: nothing known, as before
    conn.execute(sql, adapt_params(sql, params, conn))
    assert conn.execute("SELECT * FROM u").fetchall() == [(1, RAW, ["x y", None], "{not an array}")]
