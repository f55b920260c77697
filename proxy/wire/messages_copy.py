"""COPY sub-protocol messages: CopyData, CopyDone and CopyFail both ways;
CopyInResponse and CopyOutResponse out."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.wire.codec import Reader, frame, int16


@dataclass(frozen=True, slots=True)
class CopyData:
    data: bytes


@dataclass(frozen=True, slots=True)
class CopyDone:
    pass


@dataclass(frozen=True, slots=True)
class CopyFail:
    message: str


def decode_copy_fail(body: bytes) -> CopyFail:
    r = Reader(body)
    message = r.cstring()
    r.end()
    return CopyFail(message)


def _response(kind: bytes, overall_format: int, column_formats: list[int]) -> bytes:
    return frame(kind, bytes([overall_format]) + int16(len(column_formats))
                 + b"".join(int16(f) for f in column_formats))


def CopyInResponse(overall_format: int, column_formats: list[int]) -> bytes:  # noqa: N802
    return _response(b"G", overall_format, column_formats)


def CopyOutResponse(overall_format: int, column_formats: list[int]) -> bytes:  # noqa: N802
    return _response(b"H", overall_format, column_formats)


def CopyDataMessage(data: bytes) -> bytes:  # noqa: N802
    return frame(b"d", data)


def CopyDoneMessage() -> bytes:  # noqa: N802
    return b"c\x00\x00\x00\x04"
