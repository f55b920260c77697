"""One raw PostgreSQL protocol connection of the relay fast path.

The relay sends a client's own messages to PostgreSQL and streams the answer
back as bytes, without decoding rows: the message loop below only reads each
backend message's type and length. It looks inside the few messages sqlgate
must see: CommandComplete (the trace's row count), ErrorResponse (re-rendered
with sqlgate's hint and next step), ReadyForQuery (the end of the exchange,
answered by the wire handler's own), and the ParseComplete/CloseComplete of
messages the relay added itself (the client never sent them).
"""

from __future__ import annotations

import asyncio
import struct
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

_LENGTH = struct.Struct("!i")
_CANCEL = struct.Struct("!iiii")
_CANCEL_CODE = 80877102

ERROR, COMPLETE, READY, PARSED, CLOSED = (ord(c) for c in "ECZ13")
IDLE = ord("I")  # ReadyForQuery's status outside a transaction block
_INSPECTED = frozenset({ERROR, COMPLETE, READY, PARSED, CLOSED})  # read whole; the rest streams through
SYNC = b"S\x00\x00\x00\x04"
MAX_PREPARED = 200  # server-side statements kept per connection (least recently used go)


class BackendGone(Exception):
    """The connection to PostgreSQL broke during an exchange."""


class Exchange:
    """One request's answer: bytes go to `sink` as they arrive; at ReadyForQuery
    (or when the connection breaks) `on_done(exchange, problem)` is called, from
    the protocol callback. The relay's job subclasses it (one object per statement)."""

    __slots__ = ("sink", "on_error", "on_done", "swallow", "parsed", "tag", "error", "finished", "pass_ready",
                 "ready_sent")

    def __init__(self, sink: Callable[[bytes], None], on_error: Callable[[dict[str, str]], tuple[Any, bytes]],
                 on_done: Callable[[Any, BaseException | None], None], swallow: int,
                 pass_ready: bool = False) -> None:
        self.sink = sink
        self.on_error = on_error  # backend error fields -> (sqlgate's error, the bytes to send instead)
        self.on_done = on_done
        self.swallow = swallow  # ParseComplete/CloseComplete answers to messages the relay added
        self.parsed = 0  # of those, how many were ParseComplete
        self.tag = b""
        self.error: Any = None
        self.finished = False
        # The client would be told ReadyForQuery 'I' anyway: PostgreSQL's own 'I' may go through
        # with the answer (one write, no copy); `ready_sent` says it did.
        self.pass_ready = pass_ready
        self.ready_sent = False

    def finish(self, problem: BaseException | None) -> None:
        if not self.finished:
            self.finished = True
            self.on_done(self, problem)


class RelayConnection(asyncio.Protocol):
    def __init__(self, address: tuple[Any, ...]) -> None:
        self.address = address  # ("tcp", host, port) or ("unix", path): where a CancelRequest goes
        self.transport: Any = None
        self.buffer = bytearray()
        self.closed = False
        self.process_id = 0
        self.secret_key = 0
        self.exchange: Exchange | None = None
        self.prepared: OrderedDict[tuple[str, tuple[int, ...]], bytes] = OrderedDict()
        self._names = 0
        self.closing: list[bytes] = []
        self.streaming = 0  # bytes of a message already begun that go straight to the client
        self.cancelling = False  # a CancelRequest may still reach whatever this connection runs
        self.paused = False  # Close of evicted statements, sent ahead of the next exchange
        # Before the relay starts (start-up and authentication), messages queue here.
        self._setup: deque[tuple[int, bytes]] | None = deque()
        self._waiter: asyncio.Future[None] | None = None

    # --- asyncio.Protocol -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.finish(BackendGone("the connection to PostgreSQL was lost"))
        self._wake()

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if self.streaming and exchange is not None:  # the rest of a big row: no buffering, no copy
            n = min(self.streaming, len(data))
            exchange.sink(data if n == len(data) else data[:n])
            self.streaming -= n
            data = data[n:]
            if not data:
                return
        if self.buffer:
            self.buffer += data
            data = bytes(self.buffer)
            self.buffer.clear()
        data = self._queue(data) if exchange is None else self._relay(data, exchange)
        if data:
            self.buffer += data

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- before the relay: start-up, authentication, and idle time --------------

    def _queue(self, data: bytes) -> bytes:
        pos, n = 0, len(data)
        while n - pos >= 5:
            end = pos + 1 + _LENGTH.unpack_from(data, pos + 1)[0]
            if end > n:
                break
            if self._setup is not None:
                self._setup.append((data[pos], data[pos + 5:end]))
            elif data[pos] == ERROR:  # idle: a FATAL (idle timeout, shutdown); the server closes next
                self.closed = True
            pos = end
        self._wake()
        return data[pos:]

    async def receive(self) -> tuple[int, bytes]:
        """The next message during start-up: (type byte, body)."""
        assert self._setup is not None
        while not self._setup:
            if self.closed:
                raise BackendGone("PostgreSQL closed the connection during start-up")
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None
        return self._setup.popleft()

    def ready(self) -> None:
        """Start-up is over: from now on answers belong to exchanges."""
        self._setup = None

    # --- the relay --------------------------------------------------------------

    def start(self, messages: bytes, exchange: Exchange, paused: bool = False) -> None:
        """Send, and relay the answer; `paused`: the client cannot take more yet."""
        self.exchange = exchange
        if paused != self.paused:
            self.throttle(paused)
        if self.closing:
            exchange.swallow += len(self.closing)
            messages = b"".join(self.closing) + messages
            self.closing.clear()
        self.transport.write(messages)

    def _relay(self, data: bytes, exchange: Exchange) -> bytes:
        pos, start, n = 0, 0, len(data)
        sink = exchange.sink
        unpack = _LENGTH.unpack_from
        inspected = _INSPECTED
        while n - pos >= 5:
            kind = data[pos]
            end = pos + 1 + unpack(data, pos + 1)[0]
            if kind not in inspected:  # rows and descriptions: only stepped over
                if end > n:  # stream what there is of it; the rest follows as it comes
                    sink(data[start:] if start else data)
                    self.streaming = end - n
                    return b""
                pos = end
                continue
            if end > n:
                break
            if kind == COMPLETE:
                exchange.tag = data[pos + 5:end - 1]
            elif kind == ERROR:
                if pos > start:
                    sink(data[start:pos])
                exchange.error, replacement = exchange.on_error(_error_fields(data[pos + 5:end]))
                sink(replacement)
                start = end
            elif kind == READY:
                if exchange.pass_ready and data[pos + 5] == IDLE:  # the answer, ReadyForQuery included
                    exchange.ready_sent = True
                    sink(data if start == 0 and end == n else data[start:end])
                elif pos > start:
                    sink(data[start:pos])
                self.exchange = None
                rest = self._queue(data[end:]) if end < n else b""
                exchange.finish(None)
                return rest
            elif kind in (PARSED, CLOSED) and exchange.swallow:
                if pos > start:
                    sink(data[start:pos])
                exchange.swallow -= 1
                exchange.parsed += kind == PARSED
                start = end
            pos = end
        if pos > start:
            sink(data if start == 0 and pos == n else data[start:pos])
        return data[pos:]

    def throttle(self, paused: bool) -> None:
        """Stop reading PostgreSQL's answer while the client cannot take more
        (its socket buffer is full), so a big result never piles up in memory."""
        if paused != self.paused and self.transport is not None and not self.closed:
            self.paused = paused
            if paused:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    # --- server-side prepared statements ------------------------------------------

    def statement_for(self, key: tuple[str, tuple[int, ...]]) -> tuple[bytes, bool]:
        """The server-side name for a client's named statement, and whether it must be prepared."""
        name = self.prepared.get(key)
        if name is not None:
            self.prepared.move_to_end(key)
            return name, False
        self._names += 1
        return b"sqlgate_%d" % self._names, True

    def remember(self, key: tuple[str, tuple[int, ...]], name: bytes) -> None:
        """Record a statement PostgreSQL has prepared; the oldest is closed when too many."""
        self.prepared[key] = name
        if len(self.prepared) > MAX_PREPARED:
            _, old = self.prepared.popitem(last=False)
            self.closing.append(close_statement(old))

    def forget(self, key: tuple[str, tuple[int, ...]]) -> None:
        """A prepared statement that failed (say, its table changed): prepare it afresh next time."""
        name = self.prepared.pop(key, None)
        if name is not None:
            self.closing.append(close_statement(name))

    # --- cancel and close -------------------------------------------------------

    async def cancel(self) -> None:
        """A CancelRequest for whatever this connection runs, as libpq sends it. The connection is
        marked first: it must not serve another client while the request may still arrive."""
        self.cancelling = True
        if self.address[0] == "unix":
            _, writer = await asyncio.open_unix_connection(self.address[1])
        else:
            _, writer = await asyncio.open_connection(self.address[1], self.address[2])
        try:
            writer.write(_CANCEL.pack(16, _CANCEL_CODE, self.process_id, self.secret_key))
            await writer.drain()
        finally:
            writer.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None and not self.transport.is_closing():
            try:
                self.transport.write(b"X\x00\x00\x00\x04")  # Terminate
            finally:
                self.transport.close()


def _error_fields(body: bytes) -> dict[str, str]:
    fields = {}
    for item in body.split(b"\x00"):
        if item:
            fields[chr(item[0])] = item[1:].decode("utf-8", "replace")
    return fields


def message(kind: bytes, body: bytes) -> bytes:
    return kind + _LENGTH.pack(len(body) + 4) + body


def parse_statement(name: bytes, query: str, types: tuple[int, ...]) -> bytes:
    body = name + b"\x00" + query.encode() + b"\x00" + struct.pack(f"!h{len(types)}I", len(types), *types)
    return message(b"P", body)


def close_statement(name: bytes) -> bytes:
    return message(b"C", b"S" + name + b"\x00")
