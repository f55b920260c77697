"""A WatchedConnection keeps its socket's reader registered between statements
(proxy/backends/pg_wait.py), on a real PostgreSQL server and on uvloop, as sqlgate
runs: psycopg's own waits in between, a server that speaks or hangs up while
nobody waits, a cancelled statement and close() must each leave the connection
(or the loop) as psycopg's own wait would."""

from __future__ import annotations

import asyncio
import gc
import os
import resource
import socket
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest
import uvloop

from proxy.backends.pg_simple import pipelined, simple_query
from proxy.backends.pg_wait import WatchedConnection
from tests.support.pgserver import PgServer

# A statement that hangs here is the failure these tests look for: never wait forever.
_BOUND = 20.0


def _run(pg_server: PgServer, body: Callable[[WatchedConnection, str], Awaitable[None]], loop: str = "uvloop") -> None:
    dsn = pg_server.create_database("pg_wait")

    async def main() -> None:
        conn = await WatchedConnection.connect(dsn, autocommit=True)
        try:
            await asyncio.wait_for(body(conn, dsn), _BOUND)
        finally:
            await conn.close()

    if loop == "uvloop":
        uvloop.run(main())
    else:
        asyncio.run(main())


async def _hears(fd: int) -> None:
    """A new socket on descriptor fd gets what is sent to it through a reader of the loop's: nothing of an
    old connection's is left there."""
    mine, theirs = socket.socketpair()
    try:
        assert mine.fileno() == fd  # the lowest free descriptor: the one just closed
        loop = asyncio.get_running_loop()
        heard = loop.create_future()
        loop.add_reader(mine, lambda: heard.done() or heard.set_result(mine.recv(10)))
        theirs.send(b"ping")
        assert await asyncio.wait_for(heard, 5) == b"ping"
        loop.remove_reader(mine)
    finally:
        mine.close()
        theirs.close()


async def _one(conn: WatchedConnection, query: str) -> Any:
    return (await simple_query(conn, query))[-1].get_value(0, 0)


def test_statements_and_psycopgs_own_waits_interleave(pg_server: PgServer) -> None:
    async def body(conn: WatchedConnection, dsn: str) -> None:
        for i in range(50):
            assert await _one(conn, f"SELECT {i} + 1") == str(i + 1).encode()
            # psycopg's wait replaces the reader, then removes it: the next statement must add it again.
            cur = await conn.execute("SELECT %s::int * 2", (i,))
            assert (await cur.fetchone()) == (i * 2,)
            results = await pipelined(conn, [("SELECT $1::int + 3", [str(i)]), ("SELECT 'x'", None)])
            assert [r.get_value(0, 0) for r in results] == [str(i + 3).encode(), b"x"]

    _run(pg_server, body)


def test_a_statement_longer_than_the_socket_buffer(pg_server: PgServer) -> None:
    async def body(conn: WatchedConnection, dsn: str) -> None:
        big = "x" * 64_000_000  # more than the kernel takes at once: the write side is waited for too
        assert await _one(conn, f"SELECT length('{big}')") == b"64000000"
        assert await _one(conn, "SELECT 1") == b"1"

    _run(pg_server, body)


def test_the_reader_leaves_the_loop_when_the_server_speaks_unprompted(pg_server: PgServer) -> None:
    async def body(conn: WatchedConnection, dsn: str) -> None:
        await simple_query(conn, "LISTEN sqlgate_wait_test")
        watch, fd = conn._watch, conn.pgconn.socket
        assert watch is not None
        calls = []

        def counted() -> None:
            calls.append(1)
            watch.readable()

        watch.loop.add_reader(fd, counted)  # the same registration, counted
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as other:
            await other.execute("NOTIFY sqlgate_wait_test, 'hello'")
        await asyncio.sleep(0.5)
        # Readable with nobody waiting: left registered, it would fire at every turn of the loop.
        assert len(calls) == 1
        assert await _one(conn, "SELECT 7") == b"7"  # and the connection goes on
        assert conn.notifies is not None

    _run(pg_server, body)


def test_a_connection_the_server_ended_fails_clearly(pg_server: PgServer) -> None:
    async def body(conn: WatchedConnection, dsn: str) -> None:
        assert await _one(conn, "SELECT 1") == b"1"
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as other:
            await other.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
        await asyncio.sleep(0.2)
        with pytest.raises(psycopg.OperationalError):
            await simple_query(conn, "SELECT 1")

    _run(pg_server, body)


def test_a_cancelled_statement_is_cancelled_on_the_server_and_the_connection_goes_on(pg_server: PgServer) -> None:
    async def body(conn: WatchedConnection, dsn: str) -> None:
        task = asyncio.ensure_future(simple_query(conn, "SELECT pg_sleep(30)"))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert await _one(conn, "SELECT 'after'") == b"after"

    _run(pg_server, body)


def test_a_closed_connections_descriptor_serves_the_next_socket(pg_server: PgServer) -> None:
    async def body(conn: WatchedConnection, dsn: str) -> None:
        first = await WatchedConnection.connect(dsn, autocommit=True)
        assert await _one(first, "SELECT 1") == b"1"  # its reader now stays in the loop
        fd = first.pgconn.socket
        await first.close()
        await _hears(fd)

    _run(pg_server, body)


def test_a_connection_collected_without_close_leaves_nothing_in_the_loop(pg_server: PgServer) -> None:
    async def body(conn: WatchedConnection, dsn: str) -> None:
        first = await WatchedConnection.connect(dsn, autocommit=True)
        assert await _one(first, "SELECT 1") == b"1"
        fd = first.pgconn.socket
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)  # psycopg's "deleted while still open": meant
            del first
            gc.collect()  # libpq closes its socket as the connection goes
        await _hears(fd)

    _run(pg_server, body)


def test_close_from_another_task_ends_the_running_statement(pg_server: PgServer) -> None:
    async def body(conn: WatchedConnection, dsn: str) -> None:
        other = await WatchedConnection.connect(dsn, autocommit=True)
        fd = other.pgconn.socket
        task = asyncio.ensure_future(simple_query(other, "SELECT pg_sleep(30)"))
        await asyncio.sleep(0.3)
        await other.close()
        with pytest.raises(psycopg.OperationalError):
            await task  # as psycopg's own wait: the statement fails, it does not hang
        await _hears(fd)

    _run(pg_server, body)


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_the_reader_stays_registered_between_statements(pg_server: PgServer, loop: str) -> None:
    async def body(conn: WatchedConnection, dsn: str) -> None:
        running = asyncio.get_running_loop()
        removed = []
        remove_reader = running.remove_reader

        def counted(fd: Any) -> Any:
            removed.append(fd)
            return remove_reader(fd)

        running.remove_reader = counted  # type: ignore[method-assign]
        try:
            for i in range(200):
                assert await _one(conn, f"SELECT {i}") == str(i).encode()
                await asyncio.sleep(0)  # the task yields between statements, as sqlgate's do
        finally:
            running.remove_reader = remove_reader  # type: ignore[method-assign]
        # asyncio's selector calls a reader once more in the turn its waiter wakes: that call must not
        # take it out (then every statement would add it again, the cost this module exists to save).
        assert len(removed) <= 1

    _run(pg_server, body, loop)


def test_a_long_statement_on_a_descriptor_above_1024(pg_server: PgServer) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 2048:
        pytest.fail(f"this machine allows {hard} open files: the test needs 2048")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), hard))
    padding = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]  # select() stops at 1024; poll() not
    try:
        async def body(conn: WatchedConnection, dsn: str) -> None:
            high = await WatchedConnection.connect(dsn, autocommit=True)
            try:
                assert high.pgconn.socket >= 1024
                assert await _one(high, f"SELECT length('{'x' * 64_000_000}')") == b"64000000"
            finally:
                await high.close()

        _run(pg_server, body)
    finally:
        for fd in padding:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
