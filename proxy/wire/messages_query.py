"""Simple-query and result messages: Query and Terminate in; RowDescription,
DataRow, CommandComplete, EmptyQueryResponse, ReadyForQuery, ErrorResponse
and NoticeResponse out."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from proxy.result import Field
from proxy.wire.codec import Reader, cstr, frame, int16

_FIELD = struct.Struct("!ihihih")


@dataclass(frozen=True, slots=True)
class Query:
    query: str


@dataclass(frozen=True, slots=True)
class Terminate:
    pass


def decode_query(body: bytes) -> Query:
    r = Reader(body)
    query = r.cstring()
    r.end()
    return Query(query)


# --- backend --------------------------------------------------------------

def RowDescription(fields: Sequence[Field], formats: Sequence[int] = ()) -> bytes:  # noqa: N802
    parts = [int16(len(fields))]
    for i, f in enumerate(fields):
        fmt = formats[i] if i < len(formats) else 0
        parts.append(cstr(f.name))
        parts.append(_FIELD.pack(f.table_oid, f.column_number, f.type_oid, f.type_size, f.type_modifier, fmt))
    return frame(b"T", b"".join(parts))


_LEN = struct.Struct("!i")
_DATA_ROW_HEAD = struct.Struct("!cih")


def DataRow(values: Sequence[bytes | None]) -> bytes:  # noqa: N802
    parts = []
    size = 2
    for v in values:
        if v is None:
            parts.append(b"\xff\xff\xff\xff")
            size += 4
        else:
            parts.append(_LEN.pack(len(v)))
            parts.append(v)
            size += 4 + len(v)
    return _DATA_ROW_HEAD.pack(b"D", size + 4, len(values)) + b"".join(parts)


def DataRows(rows: Iterable[Sequence[str | None]]) -> bytes:  # noqa: N802
    """Many text-format DataRows at once (the hot path: no per-value calls)."""
    out = []
    pack, head = _LEN.pack, _DATA_ROW_HEAD.pack
    for row in rows:
        parts = []
        size = 6
        for v in row:
            if v is None:
                parts.append(b"\xff\xff\xff\xff")
                size += 4
            else:
                b = v.encode()
                parts.append(pack(len(b)))
                parts.append(b)
                size += 4 + len(b)
        out.append(head(b"D", size, len(row)))
        out.extend(parts)
    return b"".join(out)


def CommandComplete(tag: str) -> bytes:  # noqa: N802
    return frame(b"C", cstr(tag))


def EmptyQueryResponse() -> bytes:  # noqa: N802
    return b"I\x00\x00\x00\x04"


def ReadyForQuery(status: str) -> bytes:  # noqa: N802
    """status: I (idle), T (in a transaction block), E (in a failed transaction block)."""
    return b"Z\x00\x00\x00\x05" + status.encode()


def _fields_body(fields: dict[str, str]) -> bytes:
    return b"".join(code.encode() + cstr(value.replace("\0", "")) for code, value in fields.items()) + b"\0"


def ErrorResponse(fields: dict[str, str]) -> bytes:  # noqa: N802
    """fields keyed by the protocol's one-letter codes (S, V, C, M, D, H, P, ...)."""
    return frame(b"E", _fields_body(fields))


def NoticeResponse(fields: dict[str, str]) -> bytes:  # noqa: N802
    return frame(b"N", _fields_body(fields))


def error_fields(sqlstate: str, message: str, severity: str = "ERROR", hint: str = "",
                 detail: str = "") -> dict[str, str]:
    fields = {"S": severity, "V": severity, "C": sqlstate, "M": message}
    if detail:
        fields["D"] = detail
    if hint:
        fields["H"] = hint
    return fields
