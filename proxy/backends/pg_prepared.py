"""Statements with parameters as named prepared statements of their connection: parsed and planned
once, then only bound and executed at each later call, as psycopg's cursor does for a query it has
seen a few times (the unnamed statement `pipelined` sends is parsed and planned at every call: about
70 µs of PostgreSQL's CPU for a point select). For autocommit statements only: a prepared statement
gone stale (its result type changed under it, or a DEALLOCATE dropped it) is then forgotten and the
statement sent again, unprepared, with nothing done in between; inside a transaction that error would
abort the client's transaction."""

from __future__ import annotations

import itertools
import secrets
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import psycopg

from proxy.backends.pg_simple import (
    RESULT_OK,
    client_encoding,
    leave_pipeline,
    pipeline_results,
    pipelined,
    raise_for_result,
)
from proxy.backends.pg_wait import wait as _wait

_ES = psycopg.pq.ExecStatus
KEPT = 64  # statements prepared per connection, the least recently used closed beyond that
_names = itertools.count(1)
# Names no client's own PREPARE would pick: a random part per process.
_PREFIX = b"sqlgate_" + secrets.token_hex(6).encode() + b"_"
# What a statement prepared earlier answers once it no longer applies as prepared.
_STALE = {"26000", "0A000"}  # invalid_sql_statement_name; feature_not_supported: "cached plan must not change..."


def _statements(conn: psycopg.AsyncConnection[Any]) -> OrderedDict[bytes, bytes]:
    cache: OrderedDict[bytes, bytes] | None = getattr(conn, "_sqlgate_statements", None)
    if cache is None:
        cache = OrderedDict()
        conn._sqlgate_statements = cache  # type: ignore[attr-defined]  # noqa: SLF001 - lives with the connection
    return cache


async def prepared(conn: psycopg.AsyncConnection[Any], query: str,
                   params: Sequence[str | None]) -> psycopg.pq.abc.PGresult:
    """`pipelined(conn, [(query, params)])[0]` on an autocommit connection outside a transaction, the
    query prepared on the connection the first time it is seen."""
    pgconn = conn.pgconn
    encoding = client_encoding(conn)
    text = query.encode(encoding)
    values = [None if p is None else p.encode(encoding) for p in params]
    cache = _statements(conn)
    name = cache.get(text)
    fresh = name is None
    parse_at = 0  # the Parse's result among the results: after a Close, if one is sent
    async with conn.lock:
        pgconn.enter_pipeline_mode()
        try:
            if name is None:
                if len(cache) >= KEPT:
                    pgconn.send_close_prepared(cache.popitem(last=False)[1])
                    parse_at = 1
                name = _PREFIX + b"%d" % next(_names)
                pgconn.send_prepare(name, text)
            else:
                cache.move_to_end(text)
            pgconn.send_query_prepared(name, values)
            pgconn.pipeline_sync()
            results: list[Any] = await _wait(conn, pipeline_results(pgconn))
        finally:
            leave_pipeline(conn)
    if fresh and len(results) > parse_at and results[parse_at].status == _ES.COMMAND_OK:
        cache[text] = name  # prepared, whatever its execution did: kept (and closed in turn), never leaked
    failed = next((r for r in results if r.status not in RESULT_OK), None)
    if failed is None:
        return results[-1]
    if not fresh and failed.error_field(psycopg.pq.DiagnosticField.SQLSTATE).decode() in _STALE:
        cache.pop(text, None)
        return (await pipelined(conn, [(query, params)]))[0]  # the same error again, if it was the statement's
    raise_for_result(failed, conn)
