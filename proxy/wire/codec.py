"""Byte-level reading and writing shared by every message module: a bounded
reader over one message body, and the framing of backend messages."""

from __future__ import annotations

import struct

_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_HEADER = struct.Struct("!ci")


class ProtocolViolation(Exception):
    """The client sent something the protocol does not allow (SQLSTATE 08P01)."""

    sqlstate = "08P01"


class Reader:
    """Reads one message body front to back; every read checks its bounds."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def int16(self) -> int:
        if self.pos + 2 > len(self.data):
            raise ProtocolViolation("message too short (expected an Int16)")
        (value,) = _I16.unpack_from(self.data, self.pos)
        self.pos += 2
        return int(value)

    def int32(self) -> int:
        if self.pos + 4 > len(self.data):
            raise ProtocolViolation("message too short (expected an Int32)")
        (value,) = _I32.unpack_from(self.data, self.pos)
        self.pos += 4
        return int(value)

    def byte(self) -> bytes:
        if self.pos >= len(self.data):
            raise ProtocolViolation("message too short (expected a Byte1)")
        self.pos += 1
        return self.data[self.pos - 1: self.pos]

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ProtocolViolation(f"invalid length {n} inside message")
        self.pos += n
        return self.data[self.pos - n: self.pos]

    def cstring(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise ProtocolViolation("unterminated string in message")
        raw = self.data[self.pos: end]
        self.pos = end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolViolation("invalid UTF-8 in message") from None

    def rest(self) -> bytes:
        raw = self.data[self.pos:]
        self.pos = len(self.data)
        return raw

    def end(self) -> None:
        if self.pos != len(self.data):
            raise ProtocolViolation("message has trailing bytes")


def frame(kind: bytes, body: bytes = b"") -> bytes:
    """One backend message: type byte, Int32 length (counting itself), body."""
    return _HEADER.pack(kind, len(body) + 4) + body


def cstr(text: str) -> bytes:
    return text.encode() + b"\0"


def int16(value: int) -> bytes:
    return _I16.pack(value)


def int32(value: int) -> bytes:
    return _I32.pack(value)
