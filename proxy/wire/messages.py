"""Splitting the client's byte stream into messages and decoding each one.

`MessageSplitter` is fed raw bytes and returns whole messages; lengths are
checked before anything is buffered (no message may claim less than 4 or
more than its type's limit), so a hostile length cannot grow memory.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from proxy.wire import messages_copy as copy
from proxy.wire import messages_extended as ext
from proxy.wire import messages_query as query
from proxy.wire import messages_startup as startup
from proxy.wire.codec import ProtocolViolation

_HEADER = struct.Struct("!ci")
_LENGTH = struct.Struct("!i")

BIG = 64 * 1024 * 1024  # Query, Parse, Bind, CopyData
SMALL = 64 * 1024  # everything else

_DECODERS: dict[bytes, tuple[int, Callable[[bytes], Any]]] = {
    b"Q": (BIG, query.decode_query),
    b"P": (BIG, ext.decode_parse),
    b"B": (BIG, ext.decode_bind),
    b"D": (SMALL, ext.decode_describe),
    b"E": (SMALL, ext.decode_execute),
    b"C": (SMALL, ext.decode_close),
    b"S": (4, lambda body: ext.decode_empty(body, ext.Sync())),
    b"H": (4, lambda body: ext.decode_empty(body, ext.Flush())),
    b"X": (4, lambda body: query.Terminate()),
    b"d": (BIG, lambda body: copy.CopyData(body)),
    b"c": (4, lambda body: copy.CopyDone()),
    b"f": (SMALL, copy.decode_copy_fail),
    b"p": (SMALL, startup.decode_password),  # PasswordMessage (also SASL responses)
}


class UnsupportedMessage(ProtocolViolation):
    """A message type PostgreSQL knows but sqlgate refuses (FunctionCall)."""

    sqlstate = "0A000"


def decode(kind: bytes, body: bytes) -> Any:
    """One frontend message object from its type byte and body."""
    entry = _DECODERS.get(kind)
    if entry is None:
        raise _unknown(kind)
    return entry[1](body)


def _unknown(kind: bytes) -> ProtocolViolation:
    if kind == b"F":  # SECURITY.md vector 16: a function call with no SQL text to classify
        return UnsupportedMessage("the fast-path FunctionCall message is not supported; call the function from SQL")
    return ProtocolViolation(f"invalid frontend message type {kind!r}")


class MessageSplitter:
    """Whole frontend messages out of a byte stream. `startup` is True until the
    start-up packet (which has no type byte) has been read."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.startup = True

    def feed(self, data: bytes) -> list[Any]:
        """Messages completed by `data`; raises ProtocolViolation on a bad frame.
        A start-up packet comes out alone, decoded; others as (kind, body), to `decode`."""
        buf = self.buffer
        if self.startup or buf:
            buf += data
            data = buf
        out: list[Any] = []
        pos = 0
        n = len(data)
        try:
            while True:
                if self.startup:
                    if n - pos < 4:
                        break
                    (length,) = _LENGTH.unpack_from(data, pos)
                    if length < 8 or length > startup.MAX_STARTUP_LENGTH:
                        raise ProtocolViolation(f"invalid length of startup packet: {length}")
                    if n - pos < length:
                        break
                    packet = startup.decode_startup(bytes(data[pos + 4: pos + length]))
                    pos += length
                    out.append(packet)
                    if isinstance(packet, startup.StartupMessage | startup.CancelRequest):
                        self.startup = False
                    break  # what may follow depends on the answer (TLS, auth): one packet at a time
                if n - pos < 5:
                    break
                kind, length = _HEADER.unpack_from(data, pos)
                entry = _DECODERS.get(kind)
                if entry is None:
                    raise _unknown(kind)
                if length < 4 or length - 4 > entry[0]:
                    raise ProtocolViolation(f"invalid message length {length} for message type {kind!r}")
                if n - pos < length + 1:
                    break
                out.append((kind, bytes(data[pos + 5: pos + 1 + length])))
                pos += length + 1
        finally:
            if data is buf:
                del buf[:pos]
            elif pos < n:  # fed straight from `data` (nothing was buffered): keep what is left
                buf += data[pos:]
        return out

    def pending(self) -> int:
        return len(self.buffer)

