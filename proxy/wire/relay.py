"""The wire front door's fast path on PostgreSQL: a plain read the pipeline
has cleared (`Pipeline.relay_step`: classified READ, allowed, no checkpoint,
no session state) goes to PostgreSQL as the client's own protocol messages,
and the answer streams back as bytes, never decoded into Python values.

Only a client with nothing pinned on the backend takes it: outside a
transaction, with no session state (SET, temp tables, PREPARE) held on a
backend connection. Everything else, and every statement when the relay is
unavailable, takes the ordinary path through `Pipeline.run`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from proxy import errors
from proxy.db_errors import postgres_error_from_fields
from proxy.wire import messages_extended as ext
from proxy.wire import messages_query as qm
from proxy.wire import state as st
from proxy.wire.relay_conn import SYNC, BackendGone, Exchange, message, parse_statement
from proxy.wire.relay_pool import RelayPools

if TYPE_CHECKING:
    from proxy.wire.handler import WireConnection

_DESCRIBE_PORTAL = (b"D", b"P\x00")
_EXECUTE_ALL = (b"E", b"\x00\x00\x00\x00\x00")  # unnamed portal, no row limit
_DESCRIBE = message(b"D", b"P\x00")
_EXECUTE = message(b"E", b"\x00\x00\x00\x00\x00")


def _translate(fields: dict[str, str]) -> tuple[errors.SqlgateError, bytes]:
    error = postgres_error_from_fields(fields)
    wire = error.wire_fields()
    for code in ("W", "s", "t", "c", "d", "n", "q", "p"):  # PostgreSQL's diagnostics reach the client as sent
        if code in fields:
            wire[code] = fields[code]
    return error, qm.ErrorResponse(wire)


class WireRelay:
    """The fast path for one wire connection."""

    def __init__(self, handler: WireConnection, pools: RelayPools) -> None:
        self.handler = handler
        self.pools = pools
        self.running: Any = None  # the RelayConnection while a statement runs (for CancelRequest)

    def _open(self) -> bool:
        h = self.handler
        return (h.branch == "main" and not h.state.failed and h.client is not None and not h.client.in_transaction
                and h.sessions is not None and not h.sessions.held and h.identity is not None
                and h.identity.token.is_valid())

    async def simple(self, sql: str, body: bytes) -> bool:
        """A simple Query, relayed whole; False when it must take the ordinary path."""
        if not self._open():
            return False
        h = self.handler
        planned = h.ctx.pipeline.relay_step(h.identity, sql, None, h.branch)  # type: ignore[arg-type]
        if planned is None:
            return False
        step, login = planned
        conn, pool = await self._connection(login)
        if conn is None:
            return False
        await self._run(step, conn, pool, message(b"Q", body), 0)
        return True

    async def bind(self, bind: ext.Bind, body: bytes) -> bool:
        """Bind, [Describe portal,] Execute, Sync of one statement, relayed as a
        unit when the client sent them together (as pgbench, libpq and most
        drivers do); False when they must take the ordinary path."""
        h = self.handler
        if bind.portal or not self._open():
            return False
        queued = h.io.queued(3)
        describe = len(queued) >= 1 and queued[0] == _DESCRIBE_PORTAL
        rest = queued[1:] if describe else queued
        if len(rest) < 2 or rest[0] != _EXECUTE_ALL or rest[1][0] != b"S":
            return False
        entry = h.state.statements.get(bind.statement)
        if entry is None or not entry.statement.parts:
            return False
        params = self._parameters(bind, entry)
        if params is None:
            return False
        planned = h.ctx.pipeline.relay_step(h.identity, entry.query, params, h.branch,  # type: ignore[arg-type]
                                            entry.statement)
        if planned is None:
            return False
        step, login = planned
        conn, pool = await self._connection(login)
        if conn is None:
            return False
        h.io.discard(3 if describe else 2)
        if entry.name:
            key = (entry.query, entry.parameter_types)
            name, fresh = conn.statement_for(key)
        else:  # the client's unnamed statement stays unnamed: planned afresh each time, as it would be
            key, name, fresh = None, b"", True
        bind_rest = body[body.index(b"\x00", body.index(b"\x00") + 1) + 1:]  # after the portal and statement names
        messages = ((parse_statement(name, entry.query, entry.parameter_types) if fresh else b"")
                    + message(b"B", b"\x00" + name + b"\x00" + bind_rest)
                    + (_DESCRIBE if describe else b"") + _EXECUTE + SYNC)
        exchange = await self._run(step, conn, pool, messages, 1 if fresh else 0)
        if key is not None and fresh and exchange is not None and exchange.parsed:
            conn.remember(key, name)
        return True

    def _parameters(self, bind: ext.Bind, entry: st.PreparedStatement) -> tuple[str | None, ...] | None:
        """The parameters as text, for the trace; None if that needs a Describe first."""
        if any(bind.parameter_formats):
            types = entry.described[0] if entry.described else entry.parameter_types
            if len(types) < len(bind.parameters) or 0 in types[: len(bind.parameters)]:
                return None
        else:
            types = ()
        try:
            return st.bind_parameters(bind, types)
        except errors.SqlgateError:
            return None

    async def _connection(self, login: Any) -> tuple[Any, Any]:
        pool = self.pools.get(login)
        return (await pool.acquire() if pool is not None else None), pool

    async def _run(self, step: Any, conn: Any, pool: Any, messages: bytes, swallow: int) -> Exchange | None:
        """Send, stream the answer to the client, trace, answer ReadyForQuery."""
        h = self.handler
        exchange = Exchange(h.io.send, _translate, swallow)
        started = time.perf_counter()
        self.running = conn
        try:
            conn.start(messages, exchange)
            await exchange.done
        except BackendGone:
            error = errors.backend_unavailable("the connection to PostgreSQL was lost")
            h.ctx.pipeline.relayed(step, started, "", error)
            h.io.send(qm.ErrorResponse(error.wire_fields()))
            return None
        else:
            h.ctx.pipeline.relayed(step, started, exchange.tag.decode(), exchange.error)
            return exchange
        finally:
            self.running = None
            pool.release(conn)
            h.state.skipping = False
            h.ready()

    async def cancel(self) -> bool:
        conn = self.running
        if conn is None:
            return False
        try:
            await conn.cancel()
        except OSError:
            pass  # a cancel is best effort, as in PostgreSQL
        return True
