"""One simple-query message on a psycopg connection, without a cursor: the statement path's hot call
(a leaf module: branching's checkpoint runner sends its statements this way too)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import generators

_ES = psycopg.pq.ExecStatus
_RESULT_OK = frozenset({_ES.TUPLES_OK, _ES.COMMAND_OK, _ES.EMPTY_QUERY, _ES.COPY_BOTH})
_execute_results = generators.execute


async def simple_query(conn: psycopg.AsyncConnection[Any], query: str | bytes) -> list[psycopg.pq.abc.PGresult]:
    """`AsyncRawCursor(conn).execute(query)` without parameters, on an autocommit connection: one
    simple-query message, every result checked and the first error raised as psycopg does, but
    without the cursor's per-call machinery (a transformer, the prepared-statement bookkeeping,
    result selection), which cost more than the rest of a statement's Python work. Every result
    comes back, in order. (Nothing is ever prepared this way: the text is sent as it is.)"""
    if conn._pipeline is not None or not conn.autocommit:  # noqa: SLF001 - what the cursor would do differently
        cur = psycopg.AsyncRawCursor(conn)
        await cur.execute(query)
        out = []
        while True:
            out.append(cur.pgresult)
            if not cur.nextset():
                return out
    pgconn = conn.pgconn
    if query.__class__ is str:  # as the cursor encodes it: in the connection's client encoding
        query = query.encode(  # type: ignore[union-attr]
            "utf-8" if pgconn.parameter_status(b"client_encoding") == b"UTF8" else conn.info.encoding)
    async with conn.lock:
        pgconn.send_query(query)
        results: list[Any] = await conn.wait(_execute_results(pgconn))
    if not results:
        raise psycopg.InternalError("got no result from the query")
    for res in results:
        if res.status not in _RESULT_OK:
            _raise_for_result(res, conn)
    return results


def _raise_for_result(res: Any, conn: psycopg.AsyncConnection[Any]) -> None:
    """psycopg's cursor's errors for a result it does not accept."""
    status = res.status
    if status == _ES.FATAL_ERROR:
        raise psycopg.errors.error_from_result(res, encoding=conn.info.encoding)
    if status == _ES.PIPELINE_ABORTED:
        raise psycopg.errors.PipelineAborted("pipeline aborted")
    if status in (_ES.COPY_IN, _ES.COPY_OUT, _ES.COPY_BOTH):
        raise psycopg.ProgrammingError("COPY cannot be used with this method; use copy() instead")
    raise psycopg.InternalError(f"unexpected result status from query: {_ES(status).name}")
