"""One wire client, from start-up to Terminate: authentication, then each
frontend message turned into pipeline requests and backend messages.

It reads and writes through a `ConnectionIO` the server provides, so it never
touches a socket; the statement pipeline does all classification, policy,
checkpoints, execution and tracing.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Protocol

from sqlglot import exp

from policy.classify import classify_cached
from policy.identity import Identity
from proxy import errors
from proxy.client_session import ClientSession
from proxy.pipeline import Pipeline, Query, Request, Response, Step
from proxy.result import Result
from proxy.statement import StatementClass
from proxy.trace import Trace, new_id
from proxy.txcontrol import TxVerb, transaction_verb
from proxy.wire import catalog_duckdb, scram
from proxy.wire import messages_copy as copy_msgs
from proxy.wire import messages_extended as ext
from proxy.wire import messages_query as qm
from proxy.wire import messages_startup as su
from proxy.wire import state as st
from proxy.wire.codec import ProtocolViolation
from proxy.wire.messages import decode
from proxy.wire.relay import WireRelay
from proxy.wire.relay_pool import RelayPools
from proxy.wire.sessions import WireSessions, describe

log = logging.getLogger("sqlgate.wire")
C = StatementClass
_AUTH_HINT = ("The password is a sqlgate token (POST /tokens). A token made before sqlgate spoke SCRAM"
              " works here once it has been used over HTTP; or create a new token.")


class ConnectionClosed(Exception):
    """The client went away (or the server closed it)."""


class ConnectionIO(Protocol):
    """What the server gives a handler: buffered output, whole messages in."""

    tls_active: bool

    def send(self, data: bytes) -> None: ...

    def flush(self) -> None: ...

    async def receive(self) -> Any:
        """The next start-up packet (decoded) or (kind, body); raises ConnectionClosed."""

    async def start_tls(self) -> None: ...

    def queued(self, count: int) -> list[Any]:
        """Up to `count` (kind, body) messages already received, without taking them."""

    def discard(self, count: int) -> None:
        """Drop that many received messages (the relay answered them)."""

    write_paused: bool  # the client's socket buffer is full

    def relay_finished(self) -> None:
        """A statement the relay took from the socket callback is answered: go on."""

    def close(self) -> None: ...


@dataclass
class WireContext:
    """What every connection shares: the pipeline, authentication and the registries."""

    pipeline: Pipeline
    auth: Any  # proxy.auth.Authenticator
    tls_available: bool = False
    relay: RelayPools | None = None  # the fast path for plain reads (PostgreSQL only)
    connections: dict[int, WireConnection] = field(default_factory=dict)  # by process id


class CopyFailed(Exception):
    pass




class WireConnection:
    def __init__(self, ctx: WireContext, io: ConnectionIO) -> None:
        self.ctx = ctx
        self.io = io
        self.state = st.ConnectionState()
        self.identity: Identity | None = None
        self.branch = "main"
        self.process_id = 0
        self.secret_key = secrets.randbits(31)
        self.sessions: WireSessions | None = None
        self.client: ClientSession | None = None
        self.busy = False
        self.dialect = ctx.pipeline.backend.dialect
        self.relay: WireRelay | None = None  # once logged in, when the backend has a relay
        self._token: Any = None  # the token `_valid_until` was computed for
        self._valid_until = 0.0

    # --- start-up -------------------------------------------------------------

    async def run(self) -> None:
        try:
            if await self.startup():
                await self.serve()
        except ProtocolViolation as exc:
            self._fatal(exc.sqlstate, str(exc))
        except ConnectionClosed:
            pass
        except Exception:  # noqa: BLE001 - one client's failure never reaches the others
            log.exception("wire connection failed")
            self._fatal("XX000", "internal error in sqlgate; the connection is closed")
        finally:
            self.state.phase = st.Phase.CLOSED
            self.ctx.connections.pop(self.process_id, None)
            if self.client is not None:  # gone mid-transaction: its statements are traced as rolled back
                self.ctx.pipeline.end_session(self.client)
            if self.sessions is not None:
                await self.sessions.close()
            self.io.close()

    def _fatal(self, sqlstate: str, message: str, hint: str = "") -> None:
        try:
            self.io.send(qm.ErrorResponse(st.fatal_fields(sqlstate, message, hint)))
            self.io.flush()
        except Exception:  # noqa: BLE001 - the socket may already be gone
            pass

    async def startup(self) -> bool:
        while True:
            packet = await self.io.receive()
            if isinstance(packet, su.SSLRequest):
                if self.ctx.tls_available and not self.io.tls_active:
                    self.io.send(b"S")
                    self.io.flush()
                    await self.io.start_tls()
                else:
                    self.io.send(b"N")
                    self.io.flush()
                continue
            if isinstance(packet, su.GSSENCRequest):
                self.io.send(b"N")
                self.io.flush()
                continue
            if isinstance(packet, su.CancelRequest):
                target = self.ctx.connections.get(packet.process_id)
                if target is not None and target.secret_key == packet.secret_key:
                    await target.cancel()
                return False
            if isinstance(packet, su.StartupMessage):
                return await self.authenticate(packet)
            raise ProtocolViolation("expected a start-up packet")

    async def authenticate(self, startup: su.StartupMessage) -> bool:
        params = startup.parameters
        problem = st.startup_problem(params)
        if problem:
            self._fatal("08P01" if "options" in problem else "0A000", problem,
                        "Connect with postgresql://ACTOR:TOKEN@HOST:PORT/BRANCH and no other options.")
            return False
        user = params.get("user", "")
        try:
            self.identity, server_final = await self.scram_exchange(user)
        except errors.SqlgateError:
            self._fatal("28P01", f'password authentication failed for user "{user}"', _AUTH_HINT)
            return False
        self.io.send(su.AuthenticationSASLFinal(server_final))
        self.branch = st.branch_for(params)
        self.state.parameters = params
        self.sessions = WireSessions(self.ctx.pipeline.backend, self.branch, self)
        self.client = ClientSession(self.sessions)
        self.sessions.client = self.client
        while True:
            self.process_id = secrets.randbits(31) or 1
            if self.process_id not in self.ctx.connections:
                break
        self.ctx.connections[self.process_id] = self
        self.state.phase = st.Phase.READY
        if self.ctx.relay is not None:
            self.relay = WireRelay(self, self.ctx.relay)
        self.io.send(st.startup_complete(params, self.process_id, self.secret_key) + qm.ReadyForQuery("I"))
        self.io.flush()
        return True

    async def scram_exchange(self, user: str) -> tuple[Identity, bytes]:
        """SCRAM-SHA-256, the only method offered: the token never crosses the
        network, with or without TLS. A server offers one method per login and,
        before the proof, cannot tell which token is coming, so there is no
        cleartext fallback: tokens made before SCRAM gain a verifier the next
        time their secret is seen (on an HTTP request; see _AUTH_HINT).
        Raises SqlgateError when no valid token made the proof."""
        self.io.send(su.AuthenticationSASL(scram.MECHANISMS))
        self.io.flush()
        self.state.phase = st.Phase.AUTHENTICATING
        body = await self._auth_message()
        initial = su.decode_sasl_initial(body)
        if initial.mechanism not in scram.MECHANISMS:
            raise ProtocolViolation("client selected an invalid SASL authentication mechanism")
        exchange = scram.ScramExchange()
        self.io.send(su.AuthenticationSASLContinue(exchange.client_first(initial.data)))
        self.io.flush()
        auth_message, proof = exchange.client_final(su.decode_sasl_response(await self._auth_message()))
        identity, signature = await self.ctx.auth.authenticate_scram(auth_message, proof, user or None)
        return identity, exchange.server_final(signature)

    async def _auth_message(self) -> bytes:
        message = await self.io.receive()
        if not isinstance(message, tuple) or message[0] != b"p":
            raise ProtocolViolation("expected SASL response")
        return message[1]

    # --- the message loop -----------------------------------------------------

    async def serve(self) -> None:
        while True:
            raw = await self.io.receive()
            if not isinstance(raw, tuple):
                raise ProtocolViolation("unexpected start-up packet")
            message = decode(*raw)
            if isinstance(message, qm.Terminate):
                return
            if isinstance(message, qm.Query):
                if self.relay is None or not await self.relay.simple(message.query, raw[1]):
                    await self.simple_query(message.query)
                await self.release_idle()
            elif isinstance(message, ext.Sync):
                self.state.skipping = False
                self.ready()
                await self.release_idle()
            elif isinstance(message, ext.Flush):
                self.io.flush()
            elif isinstance(message, copy_msgs.CopyData | copy_msgs.CopyDone | copy_msgs.CopyFail):
                pass  # outside COPY these are ignored, as PostgreSQL does
            elif isinstance(message, su.PasswordMessage):
                raise ProtocolViolation("unexpected password message")
            elif not self.state.skipping:
                if self.relay is not None and isinstance(message, ext.Bind) and await self.relay.bind(message, raw[1]):
                    await self.release_idle()
                    continue
                try:
                    await self.extended(message)
                except errors.SqlgateError as error:
                    self.error(error)
                    self.state.skipping = True

    def ready(self) -> None:
        assert self.client is not None
        in_tx = self.client.in_transaction
        if not in_tx:
            self.state.end_of_transaction()
        self.io.send(qm.ReadyForQuery(self.state.ready_status(in_tx)))
        self.io.flush()

    def ready_relayed(self) -> None:
        """`ready` when the relay passed PostgreSQL's own ReadyForQuery 'I' through
        with the answer (it does only outside a transaction block, where `ready`
        would send 'I' too): the same bookkeeping, then the same flush."""
        self.state.end_of_transaction()
        self.state.failed = False
        self.io.flush()

    async def release_idle(self) -> None:
        assert self.client is not None and self.sessions is not None
        if not self.client.in_transaction:
            await self.sessions.release_idle()

    def error(self, error: errors.SqlgateError) -> None:
        if self.client is not None and self.client.in_transaction:
            self.state.failed = True
        self.io.send(qm.ErrorResponse(error.wire_fields()))

    async def cancel(self) -> None:
        if self.relay is not None and await self.relay.cancel():
            return
        if self.busy and self.sessions is not None:
            await self.sessions.cancel()

    def terminate(self, sqlstate: str, message: str) -> None:
        """End this connection from outside (revocation, idle timeout)."""
        self._fatal(sqlstate, message)
        self.io.close()

    # --- running statements ---------------------------------------------------

    async def execute(self, sql: str, params: tuple[str | None, ...] | None) -> tuple[Response, str | None]:
        """The pipeline on one query string; also the tag to answer with instead
        (COMMIT in a failed transaction block answers ROLLBACK, as PostgreSQL does)."""
        assert self.identity is not None and self.client is not None
        if not self.token_valid(self.identity.token):
            raise errors.auth_invalid()
        tag = None
        if self.state.failed and self.client.in_transaction:
            sql, tag = self._aborted_transaction(sql)
        if self.dialect == "duckdb":
            if catalog_duckdb.harmless_setting(sql):  # a driver's SET of a PostgreSQL-only setting
                return Response(new_id("rq"), [self._acknowledged(sql, "SET")]), None
            sql = catalog_duckdb.rewrite(sql) or sql  # psql's \d family, answered from DuckDB's catalog
        request = Request(self.identity, (Query(sql, params),), self.branch, front_door="wire")
        self.busy = True
        try:
            response = await self.ctx.pipeline.run(request, client=self.client)
        finally:
            self.busy = False
        if tag is None and self.state.failed and any(
                s.part.klass is C.TRANSACTION and transaction_verb(s.part.sql, self.dialect) is TxVerb.ROLLBACK_TO
                for s in response.steps):
            self.state.failed = False
        return response, tag

    def token_valid(self, token: Any) -> bool:
        """`token.is_valid()` without a datetime per statement (the relay asks too): a Token is
        frozen, so whether it is revoked is fixed and only its expiry time can come; that is
        kept as a POSIX timestamp and compared with the same wall clock."""
        if token is not self._token:
            self._token = token
            if not token.is_valid():
                self._valid_until = 0.0
            else:
                self._valid_until = math.inf if token.expires_at is None else token.expires_at.timestamp()
        return time.time() < self._valid_until

    def _acknowledged(self, sql: str, tag: str) -> Step:
        """A statement the wire layer answers itself (nothing runs); traced like any other."""
        from policy.decide import Allow

        assert self.identity is not None
        part = classify_cached(sql, "postgres").parts[0]
        trace = Trace(request_id=new_id("rq"), actor=self.identity.actor, token_id=self.identity.token.id,
                      branch=self.branch, front_door="wire", sql=sql, params=None, klass=part.klass.label,
                      tables=[], command=part.command)
        self.ctx.pipeline.traces.add([trace])
        return Step(0, part, None, Allow(), trace, Result(command_tag=tag))

    def _aborted_transaction(self, sql: str) -> tuple[str, str | None]:
        statement = classify_cached(sql, self.dialect)
        if len(statement.parts) == 1 and statement.parts[0].klass is C.TRANSACTION:
            verb = transaction_verb(statement.parts[0].sql, self.dialect)
            if verb is TxVerb.COMMIT:
                return "ROLLBACK", "ROLLBACK"
            if verb in (TxVerb.ROLLBACK, TxVerb.ROLLBACK_TO):
                return sql, None
        raise errors.in_failed_transaction()

    def _step_notices(self, response: Response) -> None:
        for step in response.steps:
            if step.checkpoint is not None:
                self.io.send(st.checkpoint_notice(step.checkpoint.id))
            if step.result is not None:
                for text in step.result.notices:
                    self.io.send(st.notice(text))

    async def simple_query(self, sql: str) -> None:
        try:
            response, tag = await self.execute(sql, None)
        except errors.SqlgateError as error:
            for step in error.completed:  # PostgreSQL sends what ran before the error first
                self.io.send(st.simple_result(step.result or Result(), step.part.command))
            self.error(error)
        else:
            if not response.steps:
                self.io.send(qm.EmptyQueryResponse())
            self._step_notices(response)
            for step in response.steps:
                result = step.result or Result()
                if tag:
                    result = Result(command_tag=tag)
                self.io.send(st.simple_result(result, step.part.command))
        self.ready()

    # --- extended protocol ----------------------------------------------------

    async def extended(self, message: Any) -> None:
        state = self.state
        if isinstance(message, ext.Parse):
            self.parse(message)
        elif isinstance(message, ext.Bind):
            entry = state.statement(message.statement)
            types: tuple[int, ...] = entry.parameter_types
            if st.needs_types(message) and (len(types) < len(message.parameters) or 0 in types):
                types = (await self.describe_statement(entry))[0]
            params = st.bind_parameters(message, types)
            if not message.portal:
                state.portals.pop("", None)
            state.add_portal(st.Portal(message.portal, entry, params, message.result_formats))
            self.io.send(ext.BindComplete())
        elif isinstance(message, ext.Describe):
            if message.kind == "S":
                entry = state.statement(message.name)
                types, fields = await self.describe_statement(entry)
                self.io.send(ext.ParameterDescription(types))
                self.io.send(st.row_description(fields) if fields else ext.NoData())
            else:
                portal = state.portal(message.name)
                if portal.result is None and self._describable(portal.statement):
                    fields = (await self.describe_statement(portal.statement))[1]
                else:  # DuckDB cannot describe a write's RETURNING rows: the portal runs now
                    fields = (await self.run_portal(portal)).fields
                if fields:
                    st.check_formats(fields, portal.result_formats)
                    self.io.send(st.row_description(fields, portal.result_formats))
                else:
                    self.io.send(ext.NoData())
        elif isinstance(message, ext.Execute):
            portal = state.portal(message.portal)
            result = await self.run_portal(portal)
            if not portal.statement.statement.parts:
                self.io.send(qm.EmptyQueryResponse())
                return
            rows = result.rows
            start = portal.sent
            end = len(rows) if message.max_rows == 0 else min(len(rows), start + message.max_rows)
            if result.fields and end > start:
                st.check_formats(result.fields, portal.result_formats)
                self.io.send(st.data_rows(result.fields, rows[start:end], portal.result_formats))
            portal.sent = end
            if message.max_rows and end < len(rows):
                self.io.send(ext.PortalSuspended())
            else:
                self.io.send(st.command_complete(result, portal.statement.statement.parts[0].command))
        elif isinstance(message, ext.Close):
            state.close(message.kind, message.name)
            self.io.send(ext.CloseComplete())
        else:
            raise ProtocolViolation(f"unexpected message {type(message).__name__}")

    def _describable(self, entry: st.PreparedStatement) -> bool:
        """Whether Describe can tell a portal's row shape without running it (as
        PostgreSQL does): always on PostgreSQL; on DuckDB for reads, and for
        writes with no RETURNING (they have no rows)."""
        parts = entry.statement.parts
        if self.dialect == "postgres" or not parts or parts[0].klass is C.READ:
            return True
        tree = parts[0].tree
        return tree is not None and tree.find(exp.Returning) is None

    def parse(self, message: ext.Parse) -> None:
        """Parse is answered here, classified but not sent to the database (the
        relay's `pump` calls it too, so it never awaits)."""
        query, types = message.query, message.parameter_types
        if self.dialect == "duckdb":  # a driver's catalog lookup, answered from DuckDB's catalog
            query = catalog_duckdb.rewrite(query) or query
            types = catalog_duckdb.parameter_types(query) or types
        statement = classify_cached(query, self.dialect)
        if statement.klass is C.UNPARSEABLE:
            raise errors.unparseable(statement.error or "invalid SQL", statement.error_position)
        if len(statement.parts) > 1:
            raise errors.prepared_multiple_statements()
        if not message.name:
            self.state.statements.pop("", None)
        self.state.add_statement(st.PreparedStatement(message.name, query, types, statement))
        self.io.send(ext.ParseComplete())

    async def run_portal(self, portal: st.Portal) -> Result:
        """A portal's statement runs (through the pipeline) on its first Describe or Execute."""
        if portal.result is None:
            if not portal.statement.statement.parts:
                portal.result = Result()
                return portal.result
            response, tag = await self.execute(portal.statement.query, portal.parameters or None)
            self._step_notices(response)
            result = response.steps[0].result if response.steps and response.steps[0].result else Result()
            portal.result = Result(command_tag=tag) if tag else result
        return portal.result

    async def describe_statement(self, entry: st.PreparedStatement) -> tuple[tuple[int, ...], list[Any] | None]:
        if entry.described is None:
            assert self.identity is not None and self.client is not None and self.sessions is not None
            parts = entry.statement.parts
            if not parts:
                entry.described = ((), None)
                return entry.described
            session = self.client.active
            if session is None or not self.client.in_transaction:
                login = self.ctx.pipeline.login_for(self.identity, [SimpleNamespace(part=p) for p in parts])  # type: ignore[misc]
                session = await self.sessions.session_for(login)
            entry.described = await describe(session, entry.query, entry.parameter_types,  # type: ignore[arg-type]
                                              parts[0].klass is C.READ)
        return entry.described

    # --- COPY (called from the backend session while a COPY statement runs) -----

    async def copy_in(self, column_count: int, binary: bool) -> AsyncIterator[bytes]:
        self.io.send(copy_msgs.CopyInResponse(int(binary), [int(binary)] * column_count))
        self.io.flush()
        while True:
            raw = await self.io.receive()
            if not isinstance(raw, tuple):
                raise ProtocolViolation("unexpected start-up packet during COPY")
            message = decode(*raw)
            if isinstance(message, copy_msgs.CopyData):
                yield message.data
            elif isinstance(message, copy_msgs.CopyDone):
                return
            elif isinstance(message, copy_msgs.CopyFail):
                raise errors.copy_failed(message.message)
            elif isinstance(message, ext.Flush | ext.Sync):
                continue  # PostgreSQL ignores these during COPY IN
            else:
                raise ProtocolViolation(f"unexpected message type {raw[0]!r} during COPY from stdin")

    def copy_out_start(self, column_count: int, binary: bool) -> None:
        self.io.send(copy_msgs.CopyOutResponse(int(binary), [int(binary)] * column_count))

    def copy_out_data(self, data: bytes) -> None:
        self.io.send(copy_msgs.CopyDataMessage(data))  # the server flushes as its buffer fills

    def copy_out_done(self) -> None:
        self.io.send(copy_msgs.CopyDoneMessage())

