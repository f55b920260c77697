"""Hostile and malformed wire messages (hypothesis, bounded in time): each
gets an error and a closed connection for that client only, while a
well-behaved client connected beside it keeps being served."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as s

from tests.support.pgserver import PgServer
from tests.support.wire import Wire, start_wire
from tests.support.wire_raw import authenticated

BUDGET_S = 20.0


@pytest.fixture(scope="module")
def fuzz_wire(pg_server: PgServer) -> Iterator[Wire]:
    with start_wire("duckdb", pg_server, "unused") as w:
        yield w


def _startup(user: str = "fuzz", database: str = "main") -> bytes:
    body = struct.pack("!i", 196608) + b"user\0" + user.encode() + b"\0database\0" + database.encode() + b"\0\0"
    return struct.pack("!i", len(body) + 4) + body


def _msg(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def _read_until_closed(sock: socket.socket, limit_s: float = 2.0) -> bytes:
    sock.settimeout(limit_s)
    data = b""
    deadline = time.monotonic() + limit_s
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if len(data) > 1 << 20:
                break
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def _authenticated(w: Wire) -> socket.socket:
    return authenticated(w, w.server.admin_token)


KINDS = s.sampled_from([b"Q", b"P", b"B", b"D", b"E", b"C", b"S", b"H", b"X", b"d", b"c", b"f", b"p", b"F", b"\0",
                        b"z"])


@s.composite
def hostile(draw: s.DrawFn) -> tuple[str, bytes]:
    kind = draw(s.sampled_from(["before_startup", "bad_frame", "bad_body", "truncated"]))
    if kind == "before_startup":
        return kind, draw(s.binary(min_size=1, max_size=64))
    if kind == "bad_frame":
        length = draw(s.one_of(s.integers(-(2**31), 3), s.integers(64 * 2**20 + 5, 2**31 - 1),
                               s.integers(4, 64)))
        return kind, draw(KINDS) + struct.pack("!i", length) + draw(s.binary(max_size=32))
    if kind == "bad_body":
        return kind, _msg(draw(KINDS), draw(s.binary(max_size=48)))
    whole = _msg(draw(KINDS), draw(s.binary(max_size=48)))
    return kind, whole[: draw(s.integers(1, max(1, len(whole) - 1)))]


def test_hostile_messages_leave_other_clients_served(fuzz_wire: Wire) -> None:
    good = psycopg.connect(fuzz_wire.dsn(), autocommit=True)
    started = time.monotonic()
    seen = {"n": 0}

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(hostile())
    def one(case: tuple[str, bytes]) -> None:
        if time.monotonic() - started > BUDGET_S:
            return
        seen["n"] += 1
        kind, data = case
        if kind == "before_startup":
            sock = socket.create_connection(("127.0.0.1", fuzz_wire.pg_port), timeout=5)
        else:
            sock = _authenticated(fuzz_wire)
        try:
            sock.sendall(data)
            if kind == "truncated":
                sock.shutdown(socket.SHUT_WR)  # the rest never comes
            _read_until_closed(sock, 1.0)
        except OSError:
            pass
        finally:
            sock.close()
        assert good.execute("SELECT 42").fetchone() == (42,)

    try:
        one()
    finally:
        good.close()
    assert seen["n"] >= 20


def test_garbage_after_startup_is_an_error_and_a_close(fuzz_wire: Wire) -> None:
    sock = _authenticated(fuzz_wire)
    sock.sendall(b"\x00\x00\x00\x00\x00")
    data = _read_until_closed(sock)
    sock.close()
    assert data.startswith(b"E") and b"08P01" in data
    sock = socket.create_connection(("127.0.0.1", fuzz_wire.pg_port), timeout=5)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    data = _read_until_closed(sock)
    sock.close()
    assert data.startswith(b"E") and b"FATAL" in data
