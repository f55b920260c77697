"""Statements with parameters are prepared once per connection (proxy/backends/pg_prepared.py), on a
real PostgreSQL: later calls only bind and execute; a prepared statement gone stale (its table's columns
changed, or the client deallocated it) is sent again unprepared and answers as a fresh one would; failing
statements and many distinct ones never grow the server's prepared statements past the bound."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest

from proxy.backends import pg_prepared
from proxy.backends.pg_prepared import prepared
from proxy.backends.pg_wait import WatchedConnection
from tests.support.pgserver import PgServer

COUNT = "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'sqlgate\\_%'"


def _run(pg_server: PgServer, body: Callable[[WatchedConnection, psycopg.AsyncConnection[Any]], Awaitable[None]]
         ) -> None:
    dsn = pg_server.create_database("pg_prepared")

    async def main() -> None:
        conn = await WatchedConnection.connect(dsn, autocommit=True)
        other = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        try:
            await other.execute("DROP TABLE IF EXISTS t; CREATE TABLE t (id int PRIMARY KEY, v text)")
            await other.execute("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g")
            await asyncio.wait_for(body(conn, other), 30)
        finally:
            await conn.close()
            await other.close()

    asyncio.run(main())


async def _prepared_count(conn: WatchedConnection) -> int:
    return int((await prepared(conn, COUNT + " AND $1::int = 1", ["1"])).get_value(0, 0).decode()) - 1


def _rows(res: Any) -> list[tuple[str | None, ...]]:
    return [tuple(None if (v := res.get_value(r, c)) is None else v.decode() for c in range(res.nfields))
            for r in range(res.ntuples)]


def test_a_statement_is_prepared_once_and_answers_every_time(pg_server: PgServer) -> None:
    async def body(conn: WatchedConnection, other: psycopg.AsyncConnection[Any]) -> None:
        for i in (1, 2, 3, 2):
            assert _rows(await prepared(conn, "SELECT v FROM t WHERE id = $1", [str(i)])) == [(f"v{i}",)]
        assert _rows(await prepared(conn, "SELECT v FROM t WHERE id = $1", [None])) == []
        assert await _prepared_count(conn) == 1

    _run(pg_server, body)


def test_a_result_type_changed_since_is_answered_with_the_new_columns(pg_server: PgServer) -> None:
    async def body(conn: WatchedConnection, other: psycopg.AsyncConnection[Any]) -> None:
        assert _rows(await prepared(conn, "SELECT * FROM t WHERE id = $1", ["5"])) == [("5", "v5")]
        await other.execute("ALTER TABLE t ADD COLUMN w int DEFAULT 7")
        res = await prepared(conn, "SELECT * FROM t WHERE id = $1", ["5"])
        assert _rows(res) == [("5", "v5", "7")] and res.nfields == 3
        assert _rows(await prepared(conn, "SELECT * FROM t WHERE id = $1", ["6"])) == [("6", "v6", "7")]

    _run(pg_server, body)


def test_a_statement_deallocated_by_the_client_is_prepared_again(pg_server: PgServer) -> None:
    async def body(conn: WatchedConnection, other: psycopg.AsyncConnection[Any]) -> None:
        assert _rows(await prepared(conn, "SELECT v FROM t WHERE id = $1", ["1"])) == [("v1",)]
        await conn.execute("DEALLOCATE ALL")
        assert _rows(await prepared(conn, "SELECT v FROM t WHERE id = $1", ["2"])) == [("v2",)]
        assert _rows(await prepared(conn, "SELECT v FROM t WHERE id = $1", ["3"])) == [("v3",)]
        assert await _prepared_count(conn) == 1

    _run(pg_server, body)


def test_errors_are_the_statements_own_and_nothing_leaks(pg_server: PgServer) -> None:
    async def body(conn: WatchedConnection, other: psycopg.AsyncConnection[Any]) -> None:
        for _ in range(5):
            with pytest.raises(psycopg.errors.UniqueViolation):
                await prepared(conn, "INSERT INTO t VALUES ($1, 'x')", ["1"])
            with pytest.raises(psycopg.errors.SyntaxError):
                await prepared(conn, "SELEC v FROM t WHERE id = $1", ["1"])
            with pytest.raises(psycopg.errors.UndefinedTable):
                await prepared(conn, "SELECT * FROM nowhere WHERE id = $1", ["1"])
        assert await _prepared_count(conn) == 1  # the INSERT's, prepared once
        assert _rows(await prepared(conn, "INSERT INTO t VALUES ($1, 'x') RETURNING id", ["101"])) == [("101",)]

    _run(pg_server, body)


def test_distinct_statements_past_the_bound_close_the_oldest(pg_server: PgServer) -> None:
    async def body(conn: WatchedConnection, other: psycopg.AsyncConnection[Any]) -> None:
        for i in range(pg_prepared.KEPT + 10):
            assert _rows(await prepared(conn, f"SELECT v, {i} FROM t WHERE id = $1", ["1"])) == [("v1", str(i))]
        assert await _prepared_count(conn) == pg_prepared.KEPT - 1  # the count's own statement is one of them

    _run(pg_server, body)
