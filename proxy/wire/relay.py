"""The wire front door's fast path on PostgreSQL: a plain read the pipeline
has cleared (`Pipeline.relay_step`: classified READ, allowed, no checkpoint,
no session state) goes to PostgreSQL as the client's own protocol messages,
and the answer streams back as bytes, never decoded into Python values.

Only a client with nothing pinned on the backend takes it: outside a
transaction, with no session state (SET, temp tables, PREPARE) held on a
backend connection. Everything else, and every statement when the relay is
unavailable, takes the ordinary path through `Pipeline.run`.

Two ways in, one way through:
- `pump`, from the client socket's callback while the connection's handler
  task sleeps: the common case, with no task switch at all (PERFORMANCE.md:
  the relay path must be Protocol-level);
- `simple` / `bind`, from the handler task, for messages it already holds.
"""

from __future__ import annotations

import asyncio
import logging
from time import perf_counter
from typing import TYPE_CHECKING, Any

from proxy import errors
from proxy.db_errors import postgres_error_from_fields
from proxy.wire import messages_extended as ext
from proxy.wire import messages_query as qm
from proxy.wire import state as st
from proxy.wire.codec import ProtocolViolation
from proxy.wire.relay_conn import SYNC, Exchange, RelayConnection, message, parse_statement
from proxy.wire.relay_pool import RelayPool, RelayPools

if TYPE_CHECKING:
    from proxy.trace import Trace
    from proxy.wire.handler import WireConnection

log = logging.getLogger("sqlgate.wire")

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


class _Job(Exchange):
    """One statement on its way through the relay: also the exchange its answer is read by."""

    __slots__ = ("trace", "pool", "conn", "key", "name", "fresh", "started", "waiter")

    def __init__(self, relay: WireRelay, trace: Trace, pool: RelayPool, conn: RelayConnection | None) -> None:
        Exchange.__init__(self, relay.handler.io.send, _translate, relay._done, 0, True)
        self.trace, self.pool, self.conn = trace, pool, conn
        self.key: tuple[str, tuple[int, ...]] | None = None  # a client's named statement, prepared on conn
        self.name = b""
        self.fresh = True
        self.started = 0.0
        self.waiter: asyncio.Future[None] | None = None  # the handler task's, on the `simple`/`bind` way


def _query_text(body: bytes) -> str | None:
    """A Query message's text, as `messages_query.decode_query` reads it (one NUL, at
    the end; UTF-8); None when it would not read it: the handler then answers it."""
    if not body or body.find(b"\x00") != len(body) - 1:
        return None
    try:
        return body[:-1].decode()
    except UnicodeDecodeError:
        return None


class WireRelay:
    """The fast path for one wire connection."""

    def __init__(self, handler: WireConnection, pools: RelayPools) -> None:
        self.handler = handler
        self.pools = pools
        self.running: RelayConnection | None = None  # while a statement runs (CancelRequest, ordering)

    def _open(self) -> bool:
        h = self.handler
        state, client, sessions = h.state, h.client, h.sessions
        return (h.branch == "main" and not state.failed and not state.skipping and client is not None
                and not client.in_transaction and sessions is not None and not sessions.held
                and h.identity is not None and h.token_valid(h.identity.token))

    # --- from the socket callback -------------------------------------------------

    def pump(self, inbox: Any) -> bool:
        """Relay what the client sent while its handler sleeps: Parse, and the
        Query or Bind...Sync the relay can take, in order. True when it stopped at
        a message the handler must see (the caller then wakes it)."""
        h = self.handler
        while inbox and self.running is None:
            kind, body = inbox[0]
            try:
                if kind == b"P" and self._open():
                    h.parse(ext.decode_parse(body))  # when it raises, the Parse stays for the handler to answer
                    inbox.popleft()
                    continue
                if kind == b"Q":
                    sql = _query_text(body)
                    job = self._plan_simple(sql, take_idle=True) if sql is not None else None
                    if job is None:
                        return True
                    inbox.popleft()
                    self._start(job, message(b"Q", body), 0)
                elif kind == b"B":
                    if not self._start_bind(ext.decode_bind(body), body):
                        return True
                else:
                    return True
            except (errors.SqlgateError, ProtocolViolation):
                return True  # the handler answers it, the ordinary way
        return False

    # --- from the handler task ------------------------------------------------------

    async def simple(self, sql: str, body: bytes) -> bool:
        """A simple Query, relayed whole; False when it must take the ordinary path."""
        job = await self._acquire(self._plan_simple(sql, take_idle=False))
        if job is None:
            return False
        await self._wait(job, message(b"Q", body), 0)
        return True

    async def bind(self, bind: ext.Bind, body: bytes) -> bool:
        """Bind, [Describe portal,] Execute, Sync of one statement, relayed as a
        unit when the client sent them together (as pgbench, libpq and most
        drivers do); False when they must take the ordinary path."""
        planned = self._plan_bind(bind, self.handler.io.queued(3), take_idle=False)
        if planned is None:
            return False
        job, entry, describe = planned
        if await self._acquire(job) is None:
            return False
        self.handler.io.discard(3 if describe else 2)
        messages, swallow = self._bind_messages(job, entry, body, describe)
        await self._wait(job, messages, swallow)
        return True

    async def _acquire(self, job: _Job | None) -> _Job | None:
        if job is not None and job.conn is None:
            job.conn = await job.pool.acquire()  # type: ignore[assignment]
            if job.conn is None:
                return None
        return job

    async def _wait(self, job: _Job, messages: bytes, swallow: int) -> None:
        job.waiter = asyncio.get_running_loop().create_future()
        self._start(job, messages, swallow)
        await job.waiter

    # --- planning -----------------------------------------------------------------

    def _plan_simple(self, sql: str, take_idle: bool) -> _Job | None:
        if not self._open():
            return None
        h = self.handler
        planned = h.ctx.pipeline.relay_step(h.identity, sql, None, h.branch)  # type: ignore[arg-type]
        return self._job(planned, take_idle) if planned is not None else None

    def _job(self, planned: tuple[Trace, Any], take_idle: bool) -> _Job | None:
        trace, login = planned
        pool = self.pools.get(login)
        if pool is None:
            return None
        conn = pool.take_idle() if take_idle else None
        if take_idle and conn is None:
            return None  # the handler task will wait for one
        return _Job(self, trace, pool, conn)

    def _plan_bind(self, bind: ext.Bind, following: list[Any],
                   take_idle: bool) -> tuple[_Job, st.PreparedStatement, bool] | None:
        """`following`: the messages the client sent after the Bind, already received."""
        h = self.handler
        if bind.portal or not self._open():
            return None
        describe = len(following) >= 1 and following[0] == _DESCRIBE_PORTAL
        rest = following[1:] if describe else following
        if len(rest) < 2 or rest[0] != _EXECUTE_ALL or rest[1][0] != b"S":
            return None
        entry = h.state.statements.get(bind.statement)
        if entry is None or not entry.statement.parts:
            return None
        params = self._parameters(bind, entry)
        if params is None:
            return None
        planned = h.ctx.pipeline.relay_step(h.identity, entry.query, params, h.branch,  # type: ignore[arg-type]
                                            entry.statement)
        job = self._job(planned, take_idle) if planned is not None else None
        return (job, entry, describe) if job is not None else None

    def _start_bind(self, bind: ext.Bind, body: bytes) -> bool:
        """From `pump`: the Bind is still first in the inbox, its followers behind it."""
        planned = self._plan_bind(bind, self.handler.io.queued(4)[1:], take_idle=True)
        if planned is None:
            return False
        job, entry, describe = planned
        self.handler.io.discard(4 if describe else 3)
        messages, swallow = self._bind_messages(job, entry, body, describe)
        self._start(job, messages, swallow)
        return True

    def _bind_messages(self, job: _Job, entry: st.PreparedStatement, body: bytes, describe: bool) -> tuple[bytes, int]:
        if entry.name:
            job.key = (entry.query, entry.parameter_types)
            job.name, job.fresh = job.conn.statement_for(job.key)
        # else the client's unnamed statement stays unnamed: planned afresh each time, as it would be
        bind_rest = body[body.index(b"\x00", body.index(b"\x00") + 1) + 1:]  # after the portal and statement names
        messages = ((parse_statement(job.name, entry.query, entry.parameter_types) if job.fresh else b"")
                    + message(b"B", b"\x00" + job.name + b"\x00" + bind_rest)
                    + (_DESCRIBE if describe else b"") + _EXECUTE + SYNC)
        return messages, 1 if job.fresh else 0

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

    # --- running ------------------------------------------------------------------

    def _start(self, job: _Job, messages: bytes, swallow: int) -> None:
        conn = self.running = job.conn
        job.swallow = swallow
        job.started = perf_counter()
        conn.start(messages, job, self.handler.io.write_paused)  # type: ignore[union-attr]

    def _done(self, job: _Job, problem: BaseException | None) -> None:
        """The answer is through (or the backend went): trace, ReadyForQuery, go on."""
        h = self.handler
        self.running = None
        try:
            pipeline = h.ctx.pipeline
            conn = job.conn
            assert conn is not None
            if problem is None:
                pipeline.relayed(job.trace, job.started, job.tag.decode(), job.error)
                if job.key is not None:
                    if job.fresh and job.parsed:
                        conn.remember(job.key, job.name)
                    if job.error is not None:
                        conn.forget(job.key)  # it may have gone stale (an ALTER TABLE): not for the next client
            elif job.error is not None:  # PostgreSQL said why before it went (a FATAL): that answer stands
                pipeline.relayed(job.trace, job.started, "", job.error)
            else:
                error = errors.backend_unavailable(f"the connection to PostgreSQL was lost ({problem})")
                pipeline.relayed(job.trace, job.started, "", error)
                h.io.send(qm.ErrorResponse(error.wire_fields()))
            if conn.cancelling:  # a CancelRequest may still land: never let it hit another client's statement
                conn.close()
            job.pool.release(conn)
            if job.ready_sent:
                h.ready_relayed()
            else:
                h.ready()
        except Exception:  # noqa: BLE001 - from a protocol callback: end this client only
            log.exception("wire relay failed")
            h.terminate("XX000", "internal error in sqlgate; the connection is closed")
            return
        waiter = job.waiter
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(None)
        else:
            h.io.relay_finished()

    async def cancel(self) -> bool:
        conn = self.running
        if conn is None:
            return False
        try:
            await conn.cancel()
        except OSError:
            pass  # a cancel is best effort, as in PostgreSQL
        return True
