"""One simple-query message on a psycopg connection, without a cursor: the statement path's hot call
(a leaf module: branching's checkpoint runner sends its statements this way too)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

import psycopg
from psycopg import generators
from psycopg.waiting import Wait

from proxy.backends.pg_wait import WatchedConnection
from proxy.backends.pg_wait import wait as _wait

_ES = psycopg.pq.ExecStatus
RESULT_OK = frozenset({_ES.TUPLES_OK, _ES.COMMAND_OK, _ES.EMPTY_QUERY, _ES.COPY_BOTH})
_execute_results = generators.execute


async def simple_query(conn: psycopg.AsyncConnection[Any], query: str | bytes) -> list[psycopg.pq.abc.PGresult]:
    """`AsyncRawCursor(conn).execute(query)` without parameters, on an autocommit connection: one
    simple-query message, every result checked and the first error raised as psycopg does, but
    without the cursor's per-call machinery (a transformer, the prepared-statement bookkeeping,
    result selection), which cost more than the rest of a statement's Python work. Every result
    comes back, in order. (Nothing is ever prepared this way: the text is sent as it is.)"""
    if not direct(conn, None):
        cur = psycopg.AsyncRawCursor(conn)
        await cur.execute(query)
        out = []
        while True:
            out.append(cur.pgresult)
            if not cur.nextset():
                return out
    pgconn = conn.pgconn
    if query.__class__ is str:  # as the cursor encodes it: in the connection's client encoding
        query = query.encode(client_encoding(conn))  # type: ignore[union-attr]
    async with conn.lock:
        pgconn.send_query(query)
        results: list[Any] = await _wait(conn, _execute_results(pgconn))
    if not results:
        raise psycopg.InternalError("got no result from the query")
    for res in results:
        if res.status not in RESULT_OK:
            raise_for_result(res, conn)
    return results


def client_encoding(conn: psycopg.AsyncConnection[Any]) -> str:
    """The Python codec of the connection's client encoding (UTF8 asked first: conn.info's lookup costs more)."""
    return "utf-8" if conn.pgconn.parameter_status(b"client_encoding") == b"UTF8" else conn.info.encoding


def raise_for_result(res: Any, conn: psycopg.AsyncConnection[Any]) -> NoReturn:
    """psycopg's cursor's errors for a result it does not accept."""
    status = res.status
    if status == _ES.FATAL_ERROR:
        raise psycopg.errors.error_from_result(res, encoding=conn.info.encoding)
    if status == _ES.PIPELINE_ABORTED:
        raise psycopg.errors.PipelineAborted("pipeline aborted")
    if status in (_ES.COPY_IN, _ES.COPY_OUT, _ES.COPY_BOTH):
        raise psycopg.ProgrammingError("COPY cannot be used with this method; use copy() instead")
    raise psycopg.InternalError(f"unexpected result status from query: {_ES(status).name}")


_PIPELINE_SYNC = _ES.PIPELINE_SYNC


def direct(conn: psycopg.AsyncConnection[Any], params: Sequence[Any] | None) -> bool:
    """May `pipelined` take these parameters on this connection (str or None values; autocommit, as
    sqlgate's sessions are, and not inside a psycopg pipeline)?"""
    return (conn._pipeline is None and conn.autocommit  # noqa: SLF001 - what the cursor would do differently
            and (params is None or all(p is None or p.__class__ is str for p in params)))


async def pipelined(conn: psycopg.AsyncConnection[Any],
                    commands: list[tuple[str, Sequence[str | None] | None]]) -> list[psycopg.pq.abc.PGresult]:
    """Several statements in one round trip (libpq pipeline mode, then one Sync), each in the extended
    protocol with its own parameters ($1-style, text, types left to the server, as psycopg's raw cursor
    sends a str): the result of each, in order; the first error raised as psycopg raises it (PostgreSQL
    skips the rest, and the Sync ends the implicit transaction they share). What a raw cursor in
    psycopg's pipeline() does, without its per-command machinery. Anything but str or None parameters,
    raise TypeError (use the cursor)."""
    pgconn = conn.pgconn
    encoding = client_encoding(conn)
    sends = []
    for query, params in commands:
        if params is not None and not all(p is None or p.__class__ is str for p in params):
            raise TypeError("pipelined() takes str or None parameters")
        sends.append((query.encode(encoding),
                      [None if p is None else p.encode(encoding) for p in params] if params else None))
    async with conn.lock:
        pgconn.enter_pipeline_mode()
        try:
            for query, params in sends:
                pgconn.send_query_params(query, params)
            pgconn.pipeline_sync()
            results: list[Any] = await _wait(conn, pipeline_results(pgconn))
        finally:
            leave_pipeline(conn)
    for res in results:
        if res.status not in RESULT_OK:
            raise_for_result(res, conn)
    return results


def pipeline_results(pgconn: Any) -> Any:
    """psycopg generator: send what is buffered, then each command's last result until the Sync's."""
    yield from generators.send(pgconn)
    out: list[Any] = []
    last = None
    while True:
        while pgconn.is_busy():
            yield Wait.R
            pgconn.consume_input()
        res = pgconn.get_result()
        if res is None:  # the end of one command's results
            if last is not None:
                out.append(last)
                last = None
        elif res.status == _PIPELINE_SYNC:
            return out
        else:
            last = res


def leave_pipeline(conn: psycopg.AsyncConnection[Any]) -> None:
    """Back out of pipeline mode; a connection left with results in flight (the wait was cancelled) is
    closed, so that no later statement reads them (the pool discards it)."""
    try:
        conn.pgconn.exit_pipeline_mode()
    except psycopg.Error:
        if isinstance(conn, WatchedConnection):
            conn.forget_watch()  # before its socket closes
        conn.pgconn.finish()
