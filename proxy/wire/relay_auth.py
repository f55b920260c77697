"""Opening a relay connection: the StartupMessage and the client side of
PostgreSQL's authentication (trust, cleartext, MD5, SCRAM-SHA-256), as libpq
does it, for the agent logins sqlgate created (their passwords are its own)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass

from proxy.wire.relay_conn import ERROR, BackendGone, RelayConnection, message

_AUTH, _KEY, _READY, _STATUS, _NOTICE = (ord(c) for c in "RKZSN")
_PROTOCOL = 196608  # 3.0


class RelayRefused(Exception):
    """PostgreSQL would not let the relay log in (or could not be reached)."""


@dataclass(frozen=True)
class Target:
    """Where and as whom a relay connection logs in."""

    address: tuple[str, ...]  # ("tcp", host, port) or ("unix", socket path)
    user: str
    password: str
    database: str
    application_name: str


async def connect(target: Target, timeout: float = 10.0) -> RelayConnection:
    loop = asyncio.get_running_loop()
    address = target.address
    conn: RelayConnection | None = None
    try:
        async with asyncio.timeout(timeout):
            if address[0] == "unix":
                _, conn = await loop.create_unix_connection(lambda: RelayConnection(address), address[1])
            else:
                _, conn = await loop.create_connection(lambda: RelayConnection(address), address[1], int(address[2]))
            await _log_in(conn, target)
    except RelayRefused:
        raise
    except (OSError, TimeoutError, ValueError, KeyError, IndexError, struct.error, binascii.Error) as exc:
        if conn is not None:  # a malformed or slow exchange: no socket is left behind
            conn.close()
        raise RelayRefused(f"{type(exc).__name__}: {exc}") from exc
    return conn


async def _log_in(conn: RelayConnection, target: Target) -> None:
    params = {"user": target.user, "database": target.database, "application_name": target.application_name,
              "client_encoding": "UTF8"}
    body = struct.pack("!i", _PROTOCOL) + b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items())
    conn.transport.write(struct.pack("!i", len(body) + 5) + body + b"\0")
    scram: _ScramClient | None = None
    while True:
        try:
            kind, body = await conn.receive()
        except BackendGone as exc:
            conn.close()
            raise RelayRefused(str(exc)) from exc
        if kind == ERROR:
            conn.close()
            raise RelayRefused(_message_of(body))
        if kind == _AUTH:
            code = struct.unpack_from("!i", body)[0]
            if code == 3:  # cleartext
                conn.transport.write(message(b"p", target.password.encode() + b"\0"))
            elif code == 5:  # MD5
                inner = hashlib.md5((target.password + target.user).encode()).hexdigest()
                outer = hashlib.md5(inner.encode() + body[4:8]).hexdigest()
                conn.transport.write(message(b"p", b"md5" + outer.encode() + b"\0"))
            elif code == 10:  # SASL: the mechanisms offered
                if b"SCRAM-SHA-256\0" not in body[4:]:
                    conn.close()
                    raise RelayRefused("PostgreSQL offered no SASL mechanism the relay speaks")
                scram = _ScramClient(target.password)
                first = scram.client_first()
                conn.transport.write(message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first))
            elif code == 11 and scram is not None:
                conn.transport.write(message(b"p", scram.client_final(body[4:])))
            elif code == 12 and scram is not None:
                if not scram.verify(body[4:]):
                    conn.close()
                    raise RelayRefused("PostgreSQL's SCRAM signature did not verify")
                scram.verified = True
            elif code == 0 and scram is not None and not scram.verified:
                conn.close()  # a server that skips SCRAM's last step has not proved it knows the password
                raise RelayRefused("PostgreSQL ended SCRAM without its signature")
            elif code != 0:
                conn.close()
                raise RelayRefused(f"authentication method {code} is not supported by the relay")
        elif kind == _KEY:
            conn.process_id, conn.secret_key = struct.unpack_from("!ii", body)
        elif kind == _READY:
            conn.ready()
            return
        # ParameterStatus and NoticeResponse during start-up need no answer.


def _message_of(body: bytes) -> str:
    for item in body.split(b"\0"):
        if item[:1] == b"M":
            return item[1:].decode("utf-8", "replace")
    return "PostgreSQL refused the connection"


class _ScramClient:
    """RFC 5802/7677 as libpq speaks it: no channel binding, empty user name."""

    def __init__(self, password: str) -> None:
        self.password = password.encode()  # sqlgate's own logins: ASCII, so SASLprep changes nothing
        self.nonce = base64.b64encode(secrets.token_bytes(18)).decode()
        self.first_bare = f"n=,r={self.nonce}"
        self.server_key = b""
        self.auth_message = b""
        self.verified = False

    def client_first(self) -> bytes:
        return f"n,,{self.first_bare}".encode()

    def client_final(self, server_first: bytes) -> bytes:
        attrs = dict(item.split("=", 1) for item in server_first.decode().split(","))
        if not attrs["r"].startswith(self.nonce):
            raise RelayRefused("PostgreSQL's SCRAM nonce does not extend ours")
        salted = hashlib.pbkdf2_hmac("sha256", self.password, base64.b64decode(attrs["s"]), int(attrs["i"]))
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={attrs['r']}"
        self.auth_message = f"{self.first_bare},{server_first.decode()},{without_proof}".encode()
        signature = hmac.digest(stored_key, self.auth_message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self.server_key = hmac.digest(salted, b"Server Key", "sha256")
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes) -> bool:
        text = server_final.decode()
        if not text.startswith("v="):
            return False
        expected = hmac.digest(self.server_key, self.auth_message, "sha256")
        return hmac.compare_digest(base64.b64decode(text[2:]), expected)
