"""Extended-query messages: Parse, Bind, Describe, Execute, Close, Sync and
Flush in; ParseComplete, BindComplete, CloseComplete, NoData,
ParameterDescription and PortalSuspended out."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from proxy.wire.codec import ProtocolViolation, Reader, frame, int16, int32

MAX_PARAMETERS = 65535


@dataclass(frozen=True, slots=True)
class Parse:
    name: str
    query: str
    parameter_types: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Bind:
    portal: str
    statement: str
    parameter_formats: tuple[int, ...]
    parameters: tuple[bytes | None, ...]
    result_formats: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Describe:
    kind: str  # "S" (statement) or "P" (portal)
    name: str


@dataclass(frozen=True, slots=True)
class Execute:
    portal: str
    max_rows: int  # 0 = no limit


@dataclass(frozen=True, slots=True)
class Close:
    kind: str  # "S" or "P"
    name: str


@dataclass(frozen=True, slots=True)
class Sync:
    pass


@dataclass(frozen=True, slots=True)
class Flush:
    pass


def _formats(r: Reader) -> tuple[int, ...]:
    n = r.int16()
    if n < 0:
        raise ProtocolViolation("negative format count")
    formats = tuple(r.int16() for _ in range(n))
    if any(f not in (0, 1) for f in formats):
        raise ProtocolViolation("invalid format code (must be 0 or 1)")
    return formats


def decode_parse(body: bytes) -> Parse:
    r = Reader(body)
    name, query = r.cstring(), r.cstring()
    n = r.int16()
    if n < 0:
        raise ProtocolViolation("negative parameter type count")
    types = tuple(r.int32() & 0xFFFFFFFF for _ in range(n))
    r.end()
    return Parse(name, query, types)


_I16 = struct.Struct("!h").unpack_from
_I32 = struct.Struct("!i").unpack_from


def decode_bind(body: bytes) -> Bind:
    """Bind, read without a Reader when it is well formed (every Bind a driver
    sends; the relay reads one per statement); anything else is read again by
    `_decode_bind_checked`, which raises the exact ProtocolViolation."""
    try:
        a = body.index(b"\x00")
        b = body.index(b"\x00", a + 1)
        portal, statement = body[:a].decode(), body[a + 1:b].decode()
        pos = b + 1
        (n,) = _I16(body, pos)
        formats = _I16_TUPLES[n](body, pos + 2) if 0 <= n <= 2 else None
        if formats is None or any(f not in (0, 1) for f in formats):
            return _decode_bind_checked(body)
        pos += 2 + 2 * n
        (count,) = _I16(body, pos)
        if count < 0 or len(formats) not in (0, 1, count):
            return _decode_bind_checked(body)
        pos += 2
        params: list[bytes | None] = []
        for _ in range(count):
            (length,) = _I32(body, pos)
            pos += 4
            if length == -1:
                params.append(None)
            elif length < 0 or pos + length > len(body):
                return _decode_bind_checked(body)
            else:
                params.append(body[pos:pos + length])
                pos += length
        (n,) = _I16(body, pos)
        result_formats = _I16_TUPLES[n](body, pos + 2) if 0 <= n <= 2 else None
        if result_formats is None or any(f not in (0, 1) for f in result_formats) or pos + 2 + 2 * n != len(body):
            return _decode_bind_checked(body)
    except (ValueError, struct.error):  # a missing NUL, bad UTF-8, too short
        return _decode_bind_checked(body)
    return Bind(portal, statement, formats, tuple(params), result_formats)


_I16_TUPLES = [lambda body, pos: (), struct.Struct("!h").unpack_from, struct.Struct("!hh").unpack_from]


def _decode_bind_checked(body: bytes) -> Bind:
    r = Reader(body)
    portal, statement = r.cstring(), r.cstring()
    formats = _formats(r)
    n = r.int16()
    if n < 0:
        raise ProtocolViolation("negative parameter count")
    params: list[bytes | None] = []
    for _ in range(n):
        length = r.int32()
        if length == -1:
            params.append(None)
        elif length < 0:
            raise ProtocolViolation(f"invalid parameter length {length}")
        else:
            params.append(r.take(length))
    if len(formats) not in (0, 1, n):
        raise ProtocolViolation(f"bind message has {len(formats)} parameter formats but {n} parameters")
    result_formats = _formats(r)
    r.end()
    return Bind(portal, statement, formats, tuple(params), result_formats)


def _kind_and_name(body: bytes, what: str) -> tuple[str, str]:
    r = Reader(body)
    kind = r.byte().decode("latin-1")
    if kind not in ("S", "P"):
        raise ProtocolViolation(f"invalid {what} message subtype {kind!r}")
    name = r.cstring()
    r.end()
    return kind, name


def decode_describe(body: bytes) -> Describe:
    return Describe(*_kind_and_name(body, "DESCRIBE"))


def decode_close(body: bytes) -> Close:
    return Close(*_kind_and_name(body, "CLOSE"))


def decode_execute(body: bytes) -> Execute:
    r = Reader(body)
    portal = r.cstring()
    max_rows = r.int32()
    r.end()
    return Execute(portal, max(max_rows, 0))


def decode_empty(body: bytes, message: Sync | Flush) -> Sync | Flush:
    if body:
        raise ProtocolViolation("message has trailing bytes")
    return message


# --- backend --------------------------------------------------------------

def ParseComplete() -> bytes:  # noqa: N802
    return b"1\x00\x00\x00\x04"


def BindComplete() -> bytes:  # noqa: N802
    return b"2\x00\x00\x00\x04"


def CloseComplete() -> bytes:  # noqa: N802
    return b"3\x00\x00\x00\x04"


def NoData() -> bytes:  # noqa: N802
    return b"n\x00\x00\x00\x04"


def PortalSuspended() -> bytes:  # noqa: N802
    return b"s\x00\x00\x00\x04"


def ParameterDescription(type_oids: tuple[int, ...] | list[int]) -> bytes:  # noqa: N802
    return frame(b"t", int16(len(type_oids)) + b"".join(int32(o if o < 2**31 else o - 2**32) for o in type_oids))
