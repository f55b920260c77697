"""The wire protocol listener: the only module that touches sockets.

An `asyncio.Protocol` per connection (no streams: PERFORMANCE.md) splits the
bytes into messages and hands them to the connection's handler task; output
is buffered and written once per protocol round trip. Bounded buffers, an
idle-session sweep and revocation end connections without touching others.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from pathlib import Path
from typing import Any

from proxy.wire.codec import ProtocolViolation
from proxy.wire.handler import ConnectionClosed, WireConnection, WireContext
from proxy.wire.messages import MessageSplitter
from proxy.wire.relay_pool import RelayPools

log = logging.getLogger("sqlgate.wire")

MAX_QUEUED_MESSAGES = 256  # read no more from a client whose messages pile up
FLUSH_AT = 256 * 1024


class WireProtocol(asyncio.Protocol):
    def __init__(self, server: WireServer) -> None:
        self.server = server
        self.splitter = MessageSplitter()
        self.inbox: deque[Any] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.violation: ProtocolViolation | None = None
        self.closed = False
        self.paused = False
        self.out: list[bytes] = []
        self.out_size = 0
        self.transport: Any = None
        self.tls_active = False
        self.write_paused = False  # the client's socket is full (a relay must not read PostgreSQL on)
        self.last_activity = 0.0
        self.handler: WireConnection | None = None
        self.task: asyncio.Task[None] | None = None
        self.loop: Any = None  # the running loop, from connection_made

    # --- asyncio.Protocol -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        loop = self.loop = asyncio.get_running_loop()
        self.last_activity = loop.time()
        self.handler = WireConnection(self.server.ctx, self)
        self.task = loop.create_task(self.handler.run())
        self.server.protocols.add(self)
        self.task.add_done_callback(lambda _: self.server.protocols.discard(self))

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.loop.time()
        if self.violation is not None:
            return
        inbox = self.inbox
        try:
            inbox.extend(self.splitter.feed(data))
        except ProtocolViolation as exc:
            self.violation = exc
        if len(inbox) > MAX_QUEUED_MESSAGES and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        handler = self.handler
        relay = handler.relay if handler is not None else None
        waiter = self.waiter
        if relay is not None and waiter is not None and not waiter.done() and self.violation is None:
            taken = relay.running is not None or not relay.pump(inbox)
            if self.paused:
                self._resume_reading()  # the relay may have answered what filled the inbox
            if taken:
                return  # the relay has it; the handler sleeps on
        self._wake()

    def relay_finished(self) -> None:
        """A statement the relay took from the socket callback is answered: go on with the next."""
        self.last_activity = self.loop.time()
        if self.closed:
            return
        if self.inbox:
            handler = self.handler
            relay = handler.relay if handler is not None else None
            if relay is not None and self._sleeping() and relay.pump(self.inbox):
                self._wake()  # a message only the handler can answer
        if self.paused:
            self._resume_reading()

    def _sleeping(self) -> bool:
        """The handler task waits for input and has not been woken yet."""
        return self.waiter is not None and not self.waiter.done()

    def _resume_reading(self) -> None:
        if self.paused and len(self.inbox) < MAX_QUEUED_MESSAGES // 2:
            self.paused = False
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        self.write_paused = True
        self._throttle_relay(True)

    def resume_writing(self) -> None:
        self.write_paused = False
        self._throttle_relay(False)

    def _throttle_relay(self, paused: bool) -> None:
        relay = self.handler.relay if self.handler is not None else None
        if relay is not None and relay.running is not None:
            relay.running.throttle(paused)

    def eof_received(self) -> bool | None:
        self.closed = True
        self._wake()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._throttle_relay(False)  # a relayed answer drains (to nowhere) and its connection is reused
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- ConnectionIO -----------------------------------------------------------

    async def receive(self) -> Any:
        inbox = self.inbox
        if not inbox and self.splitter.pending() and self.violation is None:
            try:
                inbox.extend(self.splitter.feed(b""))  # bytes left after a start-up packet
            except ProtocolViolation as exc:
                self.violation = exc
        relay = self.handler.relay if self.handler is not None else None
        while not inbox or (relay is not None and relay.running is not None):  # never beside a relayed statement
            if self.violation is not None:
                raise self.violation
            if self.closed:
                raise ConnectionClosed()
            self.flush()
            self.waiter = asyncio.get_running_loop().create_future()  # set while the handler waits (idle)
            try:
                await self.waiter
            finally:
                self.waiter = None
        self._resume_reading()
        return inbox.popleft()

    def queued(self, count: int) -> list[Any]:
        """Up to `count` messages already received, without taking them."""
        inbox = self.inbox
        return [inbox[i] for i in range(min(count, len(inbox)))]

    def discard(self, count: int) -> None:
        for _ in range(count):
            self.inbox.popleft()

    def send(self, data: bytes) -> None:
        self.out.append(data)
        self.out_size += len(data)
        if self.out_size > FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        if self.out:
            if not self.closed:
                self.transport.write(b"".join(self.out) if len(self.out) > 1 else self.out[0])
            self.out.clear()
            self.out_size = 0

    async def start_tls(self) -> None:
        if self.splitter.pending() or self.inbox:
            raise ProtocolViolation("received unencrypted data after SSL request")
        context = self.server.ssl_context
        assert context is not None
        loop = asyncio.get_running_loop()
        self.transport = await loop.start_tls(self.transport, self, context, server_side=True)
        self.tls_active = True

    def close(self) -> None:
        self.flush()
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        self._wake()


class WireServer:
    """Listens for PostgreSQL clients and serves each through the pipeline."""

    def __init__(self, pipeline: Any, auth: Any, host: str, port: int, tls_cert: Path | None = None,
                 tls_key: Path | None = None, idle_timeout_s: float = 3600.0, relay: bool = True) -> None:
        self.host, self.port = host, port
        self.ssl_context: ssl.SSLContext | None = None
        if tls_cert is not None and tls_key is not None:
            self.ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.ssl_context.load_cert_chain(str(tls_cert), str(tls_key))
        self.ctx = WireContext(pipeline, auth, tls_available=self.ssl_context is not None)
        self.relay = relay and pipeline.backend.dialect == "postgres"
        self.idle_timeout_s = idle_timeout_s
        self.protocols: set[WireProtocol] = set()
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.relay:
            backend = self.ctx.pipeline.backend
            self.ctx.relay = RelayPools(await backend.relay_logins(), backend.pool_size)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: WireProtocol(self), self.host, self.port, reuse_address=True)
        if self.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]
        self._sweeper = loop.create_task(self._sweep())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        for proto in list(self.protocols):
            if proto.handler is not None:
                proto.handler.terminate("57P01", "terminating connection due to administrator command")
        tasks = [p.task for p in self.protocols if p.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=5)
            for task in pending:
                task.cancel()
        if self.ctx.relay is not None:
            self.ctx.relay.close()

    def revoked(self, token: Any) -> None:
        """A token (a Token, or its id) was revoked: end its open sessions."""
        token_id = token if isinstance(token, str) else token.id
        for proto in list(self.protocols):
            handler = proto.handler
            if handler is not None and handler.identity is not None and handler.identity.token.id == token_id:
                handler.terminate("57P01", "terminating connection: its token was revoked")

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        interval = max(0.2, min(self.idle_timeout_s / 4, 10.0))
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            for proto in list(self.protocols):
                handler = proto.handler
                if (proto.waiter is not None and now - proto.last_activity > self.idle_timeout_s and handler is not None
                        and (handler.relay is None or handler.relay.running is None)):
                    handler.terminate("57P05", "terminating connection due to idle-session timeout")
