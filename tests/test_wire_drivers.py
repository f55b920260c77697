"""psycopg 3 (text, binary, prepared, COPY) and asyncpg through the wire
front door, on both backends; the same test bodies for each."""


from __future__ import annotations

import asyncio
import datetime
import uuid
from decimal import Decimal

import asyncpg
import psycopg
import pytest

from tests.support.wire import Wire


def test_psycopg_text_and_params(wire: Wire) -> None:
    with psycopg.connect(wire.dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT 1, 'a'::text, 2.5::double precision").fetchone() == (1, "a", 2.5)
        conn.execute("CREATE TABLE drv_t (id int, name text)")
        conn.execute("INSERT INTO drv_t VALUES (%s, %s), (%s, %s)", [1, "one", 2, None])
        assert conn.execute("SELECT name FROM drv_t WHERE id = %s", [1]).fetchall() == [("one",)]
        assert conn.info.parameter_status("server_version").startswith("15")
        assert conn.info.parameter_status("standard_conforming_strings") == "on"


def test_psycopg_prepared_statements(wire: Wire) -> None:
    with psycopg.connect(wire.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE drv_prep (id int, v text)")
        for i in range(4):  # prepare=True: a named Parse, then Bind/Execute of it
            conn.execute("INSERT INTO drv_prep VALUES (%s, %s)", [i, f"v{i}"], prepare=True)
        for i in range(4):
            assert conn.execute("SELECT v FROM drv_prep WHERE id = %s", [i], prepare=True).fetchone() == (f"v{i}",)


def test_psycopg_binary_types(wire: Wire) -> None:
    with psycopg.connect(wire.dsn(), autocommit=True) as conn:
        cur = conn.cursor(binary=True)
        row = cur.execute(
            "SELECT 1::int2, 2::int4, 3::int8, 'x'::text, true, 1.5::float8, 2.5::float4, DATE '2024-02-29',"
            " TIMESTAMP '2024-01-02 03:04:05.25', 12.345::numeric(10,3), -0.5::numeric(4,2),"
            " '12345678-1234-5678-1234-567812345678'::uuid, NULL::int4"
        ).fetchone()
        assert row == (1, 2, 3, "x", True, 1.5, 2.5, datetime.date(2024, 2, 29),
                       datetime.datetime(2024, 1, 2, 3, 4, 5, 250000), Decimal("12.345"), Decimal("-0.50"),
                       uuid.UUID("12345678-1234-5678-1234-567812345678"), None)
        ts = cur.execute("SELECT TIMESTAMPTZ '2024-01-02 03:04:05+00'").fetchone()[0]
        assert ts == datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
        # binary parameters
        got = cur.execute("SELECT %s::int8 + 1, %s::text, %s::date", [41, "hé", datetime.date(2020, 1, 1)]).fetchone()
        assert got == (42, "hé", datetime.date(2020, 1, 1))


def test_psycopg_transaction_and_rollback(wire: Wire) -> None:
    with psycopg.connect(wire.dsn()) as conn:
        conn.execute("CREATE TABLE drv_tx (id int)")
        conn.commit()
        conn.execute("INSERT INTO drv_tx VALUES (1)")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM drv_tx").fetchone() == (0,)
        conn.rollback()
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM drv_missing_table")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        conn.rollback()
        assert conn.execute("SELECT 7").fetchone() == (7,)


def test_psycopg_server_side_cursor_row_limits(wire: Wire) -> None:
    with psycopg.connect(wire.dsn(), autocommit=True) as conn:
        cur = conn.cursor()
        # Execute with a row limit: PortalSuspended, then the rest
        rows = list(cur.stream("SELECT * FROM (VALUES (1), (2), (3)) AS v(x) ORDER BY x"))
        assert rows == [(1,), (2,), (3,)]


def test_asyncpg(wire: Wire) -> None:
    async def main() -> None:
        conn = await asyncpg.connect(wire.dsn())
        try:
            assert await conn.fetchval("SELECT 1") == 1
            await conn.execute("CREATE TABLE drv_apg (id int, name text, amount numeric(10,2))")
            await conn.executemany("INSERT INTO drv_apg VALUES ($1::int, $2::text, $3::numeric(10,2))",
                                   [(1, "a", Decimal("1.50")), (2, "b", Decimal("-3.25"))])
            rows = await conn.fetch("SELECT id, name, amount FROM drv_apg WHERE id >= $1::int ORDER BY id", 1)
            assert [tuple(r) for r in rows] == [(1, "a", Decimal("1.50")), (2, "b", Decimal("-3.25"))]
            stmt = await conn.prepare("SELECT name FROM drv_apg WHERE id = $1::int")
            assert await stmt.fetchval(2) == "b"
            assert await conn.fetchval("SELECT $1::int8 * 2", 21) == 42
            async with conn.transaction():
                await conn.execute("INSERT INTO drv_apg VALUES (3, 'c', 0)")
            assert await conn.fetchval("SELECT count(*) FROM drv_apg") == 3
            # Arrays make asyncpg look their types up in pg_type (and pg_range) first.
            assert await conn.fetchval("SELECT ARRAY[1, 2, 3]::int[]") == [1, 2, 3]
            assert await conn.fetchval("SELECT $1::int[]", [4, None, 6]) == [4, None, 6]
            assert await conn.fetchval("SELECT $1::text[]", ["x", "y"]) == ["x", "y"]
            assert await conn.fetchval("SELECT ARRAY[1.5, 2.25]::float8[]") == [1.5, 2.25]
            with pytest.raises(asyncpg.PostgresError) as info:
                await conn.fetch("SELECT * FROM drv_apg_missing")
            assert info.value.sqlstate == "42P01"
        finally:
            await conn.close()

    asyncio.run(main())


def test_session_state_lasts_for_the_connection(wire: Wire) -> None:
    with psycopg.connect(wire.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE drv_temp (id int)")
        conn.execute("INSERT INTO drv_temp VALUES (1)")
        assert conn.execute("SELECT count(*) FROM drv_temp").fetchone() == (1,)
        if wire.backend == "postgres":
            conn.execute("SET work_mem = '8MB'")
            assert conn.execute("SHOW work_mem").fetchone() == ("8MB",)
    with psycopg.connect(wire.dsn(), autocommit=True) as conn, pytest.raises(psycopg.errors.UndefinedTable):
        conn.execute("SELECT * FROM drv_temp")  # another session: the temp table is not there


def test_more_clients_than_backend_connections(wire: Wire) -> None:
    """Clients without session state share backend connections between transactions."""
    conns = [psycopg.connect(wire.dsn(), autocommit=True) for _ in range(16)]  # the pool holds 10
    try:
        for round_no in range(2):
            for i, conn in enumerate(conns):
                assert conn.execute("SELECT %s::int", [i + round_no]).fetchone() == (i + round_no,)
    finally:
        for conn in conns:
            conn.close()


def test_temporary_tables_of_a_write_token_last_for_its_session(wire: Wire) -> None:
    """A write token's temp table is created on the login its later DML and reads use, so the
    session sees it, as on a direct connection; another session does not."""
    token = wire.server.token("write", name="temp-writer")["token"]
    with psycopg.connect(wire.dsn(token), autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE drv_scratch (a int)")
        conn.execute("INSERT INTO drv_scratch VALUES (1), (2)")
        conn.execute("CREATE TEMPORARY TABLE drv_scratch2 AS SELECT a * 10 AS b FROM drv_scratch")
        assert conn.execute("SELECT sum(b) FROM drv_scratch2").fetchone() == (30,)
        with psycopg.connect(wire.dsn(token), autocommit=True) as other, pytest.raises(psycopg.errors.UndefinedTable):
            other.execute("SELECT * FROM drv_scratch")
