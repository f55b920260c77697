"""The wire front door's quick paths read exactly what the careful ones do:
Bind's fast decoder against the Reader-based one (same value or the same
ProtocolViolation), the splitter fed straight from the socket's bytes against
byte-at-a-time feeding, and trace COPY rows against a plain reference writer."""

from __future__ import annotations

import json
import random
import struct
from datetime import UTC, datetime

import pytest

from proxy.trace import Trace, traces_copy
from proxy.wire.codec import ProtocolViolation
from proxy.wire.messages import MessageSplitter
from proxy.wire.messages_extended import _decode_bind_checked, decode_bind


def _outcome(decoder, body: bytes):
    try:
        return "ok", decoder(body)
    except ProtocolViolation as exc:
        return "error", type(exc), str(exc)


def _random_bind(rng: random.Random) -> bytes:
    parts = [rng.choice([b"", b"p1", "é".encode()]) + b"\0", rng.choice([b"", b"s", b"\xff"]) + b"\0"]
    n = rng.choice([0, 1, 2, 3, -1])
    parts.append(struct.pack("!h", n))
    parts += [struct.pack("!h", rng.choice([0, 1, 1, 2, -1])) for _ in range(max(n, 0))]
    count = rng.choice([0, 1, 2, 3, -2])
    parts.append(struct.pack("!h", count))
    for _ in range(max(count, 0)):
        length = rng.choice([-1, 0, 3, 5, -7, 100])
        value = bytes(rng.randrange(256) for _ in range(max(length, 0)))
        if rng.random() < 0.1:
            value = value[:-1]
        parts.append(struct.pack("!i", length) + value)
    results = rng.choice([0, 1, 2, 3])
    parts.append(struct.pack("!h", results))
    parts += [struct.pack("!h", rng.choice([0, 1, 1, 5])) for _ in range(results)]
    body = b"".join(parts)
    r = rng.random()
    if r < 0.1:
        body = body[:rng.randrange(len(body) + 1)]
    elif r < 0.15:
        body += b"x"
    return body


def test_bind_fast_decoder_agrees_with_the_checked_one() -> None:
    rng = random.Random(11)
    for _ in range(30000):
        body = _random_bind(rng)
        assert _outcome(decode_bind, body) == _outcome(_decode_bind_checked, body), body


def _msg(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


@pytest.mark.parametrize("seed", range(20))
def test_splitter_gives_the_same_messages_however_the_bytes_arrive(seed: int) -> None:
    rng = random.Random(seed)
    startup = struct.pack("!ii", 8 + 12, 196608) + b"user\0bench\0\0"
    stream = startup + b"".join(
        _msg(rng.choice([b"Q", b"P", b"B", b"d"]), bytes(rng.randrange(256) for _ in range(rng.randrange(40))))
        for _ in range(50))
    whole = MessageSplitter()
    expected = []
    while True:  # a start-up packet comes out alone
        got = whole.feed(b"" if expected else stream)
        if not got:
            break
        expected += got
    pieces = MessageSplitter()
    received: list = []
    pos = 0
    while pos < len(stream):
        step = rng.choice([1, 2, 5, 7, 64, 300])
        received += pieces.feed(stream[pos:pos + step])
        pos += step
    while True:
        more = pieces.feed(b"")
        if not more:
            break
        received += more
    assert [m for m in received if isinstance(m, tuple)] == [m for m in expected if isinstance(m, tuple)]
    assert len(received) == len(expected) == 51
    assert pieces.pending() == whole.pending() == 0


def _reference_row(t: Trace) -> str:
    """COPY text of one trace, the slow and obvious way."""
    def text(v):
        if v is None:
            return "\\N"
        s = str(v)
        return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r") \
            .replace("\x00", "\\\\x00")

    def js(v):
        if v is None:
            return "\\N"
        if not v:
            return "[]"
        encoded = json.dumps(v, default=str)
        if "\\u0000" in encoded:
            encoded = encoded.replace("\\u0000", "\\\\x00")
        return text(encoded)

    return "\t".join([
        t.id, t.at.isoformat(), t.request_id, text(t.actor), text(t.token_id), text(t.branch), t.front_door,
        text(t.sql), js(t.params), t.klass, js(t.tables), text(t.command), text(t.rows), repr(t.duration_ms),
        text(None if t.cost is None else repr(t.cost)), text(t.checkpoint_id), t.outcome, text(t.error_code),
        text(t.error_message),
    ])


def test_trace_copy_rows_match_a_reference_writer() -> None:
    rng = random.Random(3)
    pieces = ["", "a", "é", "☃", "\t", "\n", "\r", "\\", "\x00", '"', "'", "x1", "\x7f", "\u2028", " "]

    def s() -> str:
        return "".join(rng.choice(pieces) for _ in range(rng.randrange(4)))

    traces = []
    for i in range(2000):
        t = Trace(f"rq_{i}", s() or "agent", rng.choice([None, "tok_1"]), s() or "main", "wire", s(),
                  rng.choice([None, [], [s(), None], [s()]]), "read", rng.choice([[], [s()], [s(), s()]]), s(),
                  id=f"tr_{i}", at=datetime(2026, 1, 2, 3, 4, 5, rng.choice([0, 123456]), tzinfo=UTC))
        t.rows = rng.choice([None, 0, 7])
        t.duration_ms = rng.random()
        t.cost = rng.choice([None, t.duration_ms, rng.random()])
        t.error_code, t.error_message = rng.choice([(None, None), ("sql.error", s())])
        traces.append(t)
    rows = traces_copy(traces).decode().split("\n")
    assert rows[-1] == ""
    assert rows[:-1] == [_reference_row(t) for t in traces]
