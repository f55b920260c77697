"""A raw wire-protocol client that logs in with SCRAM-SHA-256, written from
RFC 5802/7677 with hashlib only: independent of the server's own code, so
tests can check the exact message sequence and fuzz an authenticated session."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import socket
import struct

from policy.identity import SCRAM_ITERATIONS, SCRAM_SALT
from proxy.wire import messages_startup as su
from tests.support.wire import Wire


def client_proof(password: str, salt: bytes, iterations: int, auth_message: bytes) -> tuple[bytes, bytes]:
    """(ClientProof, expected ServerSignature), straight from RFC 5802 section 3."""
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    signature = hmac.new(hashlib.sha256(client_key).digest(), auth_message, hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return (bytes(a ^ b for a, b in zip(client_key, signature, strict=True)),
            hmac.new(server_key, auth_message, hashlib.sha256).digest())


def msg(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def startup(user: str = "agent") -> bytes:
    body = struct.pack("!i", su.PROTOCOL_3_0) + b"user\0" + user.encode() + b"\0database\0main\0\0"
    return struct.pack("!i", len(body) + 4) + body


class Conn:
    def __init__(self, w: Wire) -> None:
        self.sock = socket.create_connection(("127.0.0.1", w.pg_port), timeout=10)
        self.buf = b""

    def message(self) -> tuple[bytes, bytes]:
        while len(self.buf) < 5 or len(self.buf) < 1 + struct.unpack("!i", self.buf[1:5])[0]:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; buffered {self.buf!r}")
            self.buf += chunk
        n = 1 + struct.unpack("!i", self.buf[1:5])[0]
        kind, body, self.buf = self.buf[:1], self.buf[5:n], self.buf[n:]
        return kind, body

    def closed(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, TimeoutError):
            return True


def auth(kind_body: tuple[bytes, bytes]) -> tuple[int, bytes]:
    kind, body = kind_body
    assert kind == b"R", kind_body
    return struct.unpack("!i", body[:4])[0], body[4:]


def error_fields(body: bytes) -> dict[str, str]:
    return {f[:1].decode(): f[1:].decode() for f in body.split(b"\0") if f}


def scram_login(w: Wire, secret: str, gs2: str = "n,,", tamper: bool = False) -> tuple[Conn, bytes]:
    """A raw SCRAM login up to the server's answer to client-final."""
    c = Conn(w)
    c.sock.sendall(startup())
    code, data = auth(c.message())
    assert code == 10 and data == b"SCRAM-SHA-256\0\0"  # AuthenticationSASL, SCRAM only (no -PLUS)
    first_bare = "n=,r=" + secrets.token_urlsafe(18)
    first = (gs2 + first_bare).encode()
    c.sock.sendall(msg(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first))
    code, server_first = auth(c.message())
    assert code == 11
    attrs = dict(a.split("=", 1) for a in server_first.decode().split(","))
    assert attrs["r"].startswith(first_bare[5:]) and base64.b64decode(attrs["s"]) == SCRAM_SALT
    assert int(attrs["i"]) == SCRAM_ITERATIONS
    final_wo_proof = f"c={base64.b64encode(gs2.encode()).decode()},r={attrs['r']}"
    auth_message = f"{first_bare},{server_first.decode()},{final_wo_proof}".encode()
    proof, signature = client_proof(secret, SCRAM_SALT, SCRAM_ITERATIONS, auth_message)
    if tamper:
        proof = bytes([proof[0] ^ 1]) + proof[1:]
    c.sock.sendall(msg(b"p", f"{final_wo_proof},p={base64.b64encode(proof).decode()}".encode()))
    return c, signature




def authenticated(w: Wire, secret: str) -> socket.socket:
    """A socket logged in with SCRAM and past the first ReadyForQuery."""
    c, _ = scram_login(w, secret)
    while c.message()[0] != b"Z":
        pass
    return c.sock
