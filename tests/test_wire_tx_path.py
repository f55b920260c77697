"""The non-relayed statement path's shortcuts behave as what they replace:
`simple_query` as psycopg's raw cursor (results, errors, encodings),
`pipelined` as raw cursors in psycopg's pipeline(), the cached
transaction-verb reading as the tokenizer's."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from proxy.backends.pg_simple import pipelined, simple_query
from proxy.backends.postgres import PostgresSession
from proxy.txcontrol import TxVerb, begin_options, transaction_verb
from tests.support.pgserver import PgServer


async def _cursor_results(conn: psycopg.AsyncConnection[Any], query: str) -> list[Any]:
    cur = psycopg.AsyncRawCursor(conn)
    await cur.execute(query)
    out = []
    while True:
        res = cur.pgresult
        out.append((res.status, res.command_status, [res.get_value(r, 0) for r in range(res.ntuples)]
                    if res.nfields else []))
        if not cur.nextset():
            return out


def _shape(results: list[Any]) -> list[Any]:
    return [(r.status, r.command_status, [r.get_value(i, 0) for i in range(r.ntuples)] if r.nfields else [])
            for r in results]


async def _error(coro: Any) -> BaseException:
    try:
        await coro
    except BaseException as exc:  # noqa: BLE001 - compared below
        return exc
    raise AssertionError("no error")


def test_simple_query_answers_as_the_raw_cursor(pg_server: PgServer) -> None:
    dsn = pg_server.create_database("wire_tx_path")

    async def main() -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            for query in ("SELECT 1", "SELECT 1; SELECT 'two'", "", "  -- only a comment",
                          "CREATE TEMP TABLE IF NOT EXISTS t (a int); INSERT INTO t VALUES (1), (2)",
                          "BEGIN; SELECT count(*) > 0 FROM t; COMMIT"):
                expected = await _cursor_results(conn, query)
                assert _shape(await simple_query(conn, query)) == expected, query
            # Errors: the same class and message, and the connection is usable afterwards.
            for query in ("SELECT 1/0", "SELECT 1; SELECT nope", "SELEC 1"):
                a = await _error(_cursor_results(conn, query))
                b = await _error(simple_query(conn, query))
                assert type(a) is type(b) and str(a) == str(b) and a.sqlstate == b.sqlstate, query  # type: ignore[attr-defined]
            assert _shape(await simple_query(conn, b"SELECT 'bytes'")) == [(psycopg.pq.ExecStatus.TUPLES_OK,
                                                                             b"SELECT 1", [b"bytes"])]
            # A session in another client encoding gets its text in that encoding, as the cursor sends it.
            await simple_query(conn, "SET client_encoding TO 'LATIN1'")
            expected = await _cursor_results(conn, "SELECT 'é' AS v")
            assert _shape(await simple_query(conn, "SELECT 'é' AS v")) == expected
            assert expected[0][2] == ["é".encode("latin-1")]
            await simple_query(conn, "RESET client_encoding")
            # Inside a transaction and through PostgresSession: tags and rows as before.
            session = PostgresSession(conn)
            await session.begin()
            assert session.in_transaction
            result = await session.execute("SELECT 2 AS two")
            assert result.command_tag == "SELECT 1" and result.rows == [["2"]]
            assert [f.name for f in result.fields] == ["two"]
            await session.commit()
            assert not session.in_transaction

        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        try:  # refused as the cursor refuses it (the connection is left in COPY, as there: closed)
            error = await _error(simple_query(conn, "COPY (SELECT 1) TO STDOUT"))
            assert isinstance(error, psycopg.ProgrammingError) and "COPY" in str(error)
        finally:
            await conn.close()

        async with await psycopg.AsyncConnection.connect(dsn) as conn:  # not autocommit: the cursor's own path
            results = await simple_query(conn, "SELECT 1; SELECT 2")
            assert [r.get_value(0, 0) for r in results] == [b"1", b"2"]
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS

    asyncio.run(main())


async def _psycopg_pipeline(conn: psycopg.AsyncConnection[Any], commands: list[tuple[str, Any]]) -> list[Any]:
    cursors = []
    async with conn.pipeline() as p:
        for query, params in commands:
            cur = psycopg.AsyncRawCursor(conn)
            await cur.execute(query, params)
            cursors.append(cur)
        await p.sync()
    return [c.pgresult for c in cursors]


def test_pipelined_answers_as_raw_cursors_in_psycopgs_pipeline(pg_server: PgServer) -> None:
    dsn = pg_server.create_database("wire_tx_pipeline")
    fine = [("SELECT $1::int + 1", ["41"]), ("SELECT $1, $2::text IS NULL", ["é", None]),
            ("CREATE TEMP TABLE IF NOT EXISTS p (a int, b text)", None),
            ("INSERT INTO p VALUES ($1, $2), ($1, 'x')", ["7", "\\n'quoted'"]),
            ("SELECT count(*), min(b) FROM p WHERE a = $1", ["7"]), ("DELETE FROM p", None)]
    failing = [("INSERT INTO p VALUES (1, 'kept?')", None), ("SELECT $1::int", ["nope"]), ("SELECT 2", None)]

    async def main() -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            expected = [(r.status, r.command_status, [[r.get_value(i, j) for j in range(r.nfields)]
                                                      for i in range(r.ntuples)]) for r in
                        await _psycopg_pipeline(conn, fine)]
            got = [(r.status, r.command_status, [[r.get_value(i, j) for j in range(r.nfields)]
                                                 for i in range(r.ntuples)]) for r in await pipelined(conn, fine)]
            assert got == expected
            # The first error, as psycopg raises it; the commands share one implicit transaction, so the
            # INSERT before it is gone; the connection is usable and out of pipeline mode afterwards.
            a = await _error(_psycopg_pipeline(conn, failing))
            b = await _error(pipelined(conn, failing))
            assert type(a) is type(b) and str(a) == str(b) and b.sqlstate == "22P02"  # type: ignore[attr-defined]
            assert conn.pgconn.pipeline_status == psycopg.pq.PipelineStatus.OFF
            assert _shape(await simple_query(conn, "SELECT count(*) FROM p")) == [
                (psycopg.pq.ExecStatus.TUPLES_OK, b"SELECT 1", [b"0"])]
            with pytest.raises(TypeError):
                await pipelined(conn, [("SELECT $1", [b"bytes"])])

    asyncio.run(main())


@pytest.mark.parametrize(("sql", "verb"), [
    ("BEGIN;", TxVerb.BEGIN), ("begin", TxVerb.BEGIN), ("START TRANSACTION READ ONLY", TxVerb.BEGIN),
    ("END;", TxVerb.COMMIT), ("commit", TxVerb.COMMIT), ("COMMIT PREPARED 'x'", TxVerb.OTHER),
    ("ROLLBACK", TxVerb.ROLLBACK), ("ABORT", TxVerb.ROLLBACK), ("ROLLBACK TO SAVEPOINT a", TxVerb.ROLLBACK_TO),
    ("rollback to a", TxVerb.ROLLBACK_TO), ("ROLLBACK PREPARED 'x'", TxVerb.OTHER),
    ("SAVEPOINT a", TxVerb.SAVEPOINT), ("RELEASE SAVEPOINT a", TxVerb.RELEASE),
    ("/* c */ BEGIN", TxVerb.BEGIN), ("SET TRANSACTION READ ONLY", TxVerb.OTHER),
])
def test_transaction_verb_is_the_same_when_asked_again(sql: str, verb: TxVerb) -> None:
    assert transaction_verb(sql, "postgres") is verb
    assert transaction_verb(sql, "postgres") is verb  # from the cache


def test_begin_options_is_the_same_when_asked_again() -> None:
    for _ in range(2):
        assert begin_options("BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY DEFERRABLE", "postgres") == (
            "SERIALIZABLE", True, True)
        assert begin_options("BEGIN", "postgres") == (None, False, False)
