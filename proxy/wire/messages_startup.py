"""Start-up and authentication messages: StartupMessage, SSLRequest,
GSSENCRequest, CancelRequest, PasswordMessage and the SASL responses in;
Authentication*, ParameterStatus and BackendKeyData out."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.wire.codec import ProtocolViolation, Reader, cstr, frame, int32

PROTOCOL_3_0 = 196608
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102
MAX_STARTUP_LENGTH = 10_000  # PostgreSQL's MAX_STARTUP_PACKET_LENGTH


@dataclass(frozen=True, slots=True)
class SSLRequest:
    pass


@dataclass(frozen=True, slots=True)
class GSSENCRequest:
    pass


@dataclass(frozen=True, slots=True)
class CancelRequest:
    process_id: int
    secret_key: int


@dataclass(frozen=True, slots=True)
class StartupMessage:
    protocol_version: int
    parameters: dict[str, str]


@dataclass(frozen=True, slots=True)
class PasswordMessage:
    password: str


@dataclass(frozen=True, slots=True)
class SASLInitialResponse:
    mechanism: str
    data: bytes


StartupPacket = SSLRequest | GSSENCRequest | CancelRequest | StartupMessage


def decode_startup(body: bytes) -> StartupPacket:
    """A start-up packet's body (everything after its Int32 length)."""
    r = Reader(body)
    code = r.int32()
    if code == SSL_REQUEST_CODE:
        r.end()
        return SSLRequest()
    if code == GSSENC_REQUEST_CODE:
        r.end()
        return GSSENCRequest()
    if code == CANCEL_REQUEST_CODE:
        process_id, secret_key = r.int32(), r.int32()
        r.end()
        return CancelRequest(process_id, secret_key)
    if code >> 16 != 3:
        raise ProtocolViolation(f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}: server supports 3.0")
    parameters: dict[str, str] = {}
    while True:
        name = r.cstring()
        if not name:
            break
        parameters[name] = r.cstring()
    r.end()
    return StartupMessage(code, parameters)


def decode_password(body: bytes) -> PasswordMessage:
    r = Reader(body)
    password = r.cstring()
    r.end()
    return PasswordMessage(password)


def decode_sasl_initial(body: bytes) -> SASLInitialResponse:
    """SASLInitialResponse: a 'p' message sent in answer to AuthenticationSASL."""
    r = Reader(body)
    mechanism = r.cstring()
    length = r.int32()
    data = b"" if length == -1 else r.take(length)
    r.end()
    return SASLInitialResponse(mechanism, data)


def decode_sasl_response(body: bytes) -> bytes:
    """SASLResponse: a 'p' message after AuthenticationSASLContinue; all data."""
    return body


# --- backend --------------------------------------------------------------

def AuthenticationOk() -> bytes:  # noqa: N802 - named as the protocol names it
    return frame(b"R", int32(0))


def AuthenticationSASL(mechanisms: list[str]) -> bytes:  # noqa: N802
    return frame(b"R", int32(10) + b"".join(cstr(m) for m in mechanisms) + b"\0")


def AuthenticationSASLContinue(data: bytes) -> bytes:  # noqa: N802
    return frame(b"R", int32(11) + data)


def AuthenticationSASLFinal(data: bytes) -> bytes:  # noqa: N802
    return frame(b"R", int32(12) + data)


def ParameterStatus(name: str, value: str) -> bytes:  # noqa: N802
    return frame(b"S", cstr(name) + cstr(value))


def BackendKeyData(process_id: int, secret_key: int) -> bytes:  # noqa: N802
    return frame(b"K", int32(process_id) + int32(secret_key))
