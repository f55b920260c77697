"""The wire protocol's core with plain bytes: message framing and decoding,
backend message encoding, binary conversions and the start-up rules."""

from __future__ import annotations

import struct
from decimal import Decimal

import pytest

from proxy.result import Field
from proxy.wire import binary
from proxy.wire import messages_extended as ext
from proxy.wire import messages_query as qm
from proxy.wire import messages_startup as su
from proxy.wire import state as st
from proxy.wire.codec import ProtocolViolation
from proxy.wire.messages import MessageSplitter, UnsupportedMessage, decode


def startup_packet(params: dict[str, str], code: int = su.PROTOCOL_3_0) -> bytes:
    pairs = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items())
    body = struct.pack("!i", code) + pairs + b"\0"
    return struct.pack("!i", len(body) + 4) + body


def msg(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def test_startup_message_then_typed_messages_split_across_reads() -> None:
    s = MessageSplitter()
    data = startup_packet({"user": "agent", "database": "main"}) + msg(b"p", b"tok\0") + msg(b"Q", b"SELECT 1\0")
    out = []
    for i in range(len(data)):  # one byte at a time
        out += s.feed(data[i: i + 1])
    out += s.feed(b"")
    assert out[0] == su.StartupMessage(su.PROTOCOL_3_0, {"user": "agent", "database": "main"})
    assert [decode(*m) for m in out[1:]] == [su.PasswordMessage("tok"), qm.Query("SELECT 1")]


def test_ssl_gssenc_and_cancel_requests() -> None:
    assert MessageSplitter().feed(struct.pack("!ii", 8, su.SSL_REQUEST_CODE)) == [su.SSLRequest()]
    assert MessageSplitter().feed(struct.pack("!ii", 8, su.GSSENC_REQUEST_CODE)) == [su.GSSENCRequest()]
    assert MessageSplitter().feed(struct.pack("!iiii", 16, su.CANCEL_REQUEST_CODE, 7, 9)) == [su.CancelRequest(7, 9)]


@pytest.mark.parametrize("data", [
    struct.pack("!i", 3) + b"xxxx",  # length < 8
    struct.pack("!i", 1 << 30) + b"xxxx",  # huge start-up packet
    startup_packet({"user": "x"}, code=2 << 16),  # protocol 2.0
    b"GET / HTTP/1.1\r\n\r\n",  # garbage before start-up
])
def test_bad_startup_packets_are_refused(data: bytes) -> None:
    with pytest.raises(ProtocolViolation):
        MessageSplitter().feed(data)


def ready_splitter() -> MessageSplitter:
    s = MessageSplitter()
    s.feed(startup_packet({"user": "a"}))
    return s


@pytest.mark.parametrize("data", [
    b"Q" + struct.pack("!i", 3),  # length < 4
    b"Q" + struct.pack("!i", 1 << 30),  # over the 64 MiB limit
    b"S" + struct.pack("!i", 100),  # Sync has no body
    b"\x00" + struct.pack("!i", 4),  # unknown type
])
def test_bad_frames_are_refused_before_buffering(data: bytes) -> None:
    with pytest.raises(ProtocolViolation):
        ready_splitter().feed(data)


def test_function_call_is_refused_as_unsupported() -> None:
    with pytest.raises(UnsupportedMessage):
        ready_splitter().feed(msg(b"F", b"\0\0\0\0"))


def test_extended_messages_decode() -> None:
    parse = struct.pack("!h", 1) + struct.pack("!i", 23)
    assert decode(b"P", b"s1\0SELECT $1\0" + parse) == ext.Parse("s1", "SELECT $1", (23,))
    bind = (b"p1\0s1\0" + struct.pack("!hh", 1, 1) + struct.pack("!h", 2) + struct.pack("!i", 4) + b"\0\0\0\x07"
            + struct.pack("!i", -1) + struct.pack("!hh", 1, 0))
    assert decode(b"B", bind) == ext.Bind("p1", "s1", (1,), (b"\0\0\0\x07", None), (0,))
    assert decode(b"D", b"Ss1\0") == ext.Describe("S", "s1")
    assert decode(b"E", b"p1\0" + struct.pack("!i", 10)) == ext.Execute("p1", 10)
    assert decode(b"C", b"Pp1\0") == ext.Close("P", "p1")
    assert decode(b"S", b"") == ext.Sync()
    for bad in (b"p1\0s1\0" + struct.pack("!h", 1) + struct.pack("!h", 5),  # format 5
                b"p1\0s1\0\0\0" + struct.pack("!h", 1) + struct.pack("!i", 100) + b"ab"):  # truncated value
        with pytest.raises(ProtocolViolation):
            decode(b"B", bad)
    with pytest.raises(ProtocolViolation):
        decode(b"D", b"Xname\0")
    with pytest.raises(ProtocolViolation):
        decode(b"Q", b"no terminator")


def test_backend_messages_encode_as_postgresql_does() -> None:
    assert qm.ReadyForQuery("I") == b"Z\0\0\0\x05I"
    assert qm.CommandComplete("SELECT 1") == b"C\0\0\0\x0dSELECT 1\0"
    assert qm.DataRows([["1", None]]) == qm.DataRow([b"1", None]) == b"D\0\0\0\x0f\0\x02\0\0\0\x011\xff\xff\xff\xff"
    rd = qm.RowDescription([Field("a", 23, 4)], [0])
    assert rd == b"T" + struct.pack("!ih", 6 + 2 + 18, 1) + b"a\0" + struct.pack("!ihihih", 0, 0, 23, 4, -1, 0)
    err = qm.ErrorResponse({"S": "ERROR", "C": "42P01", "M": "nope"})
    assert err == b"E" + struct.pack("!i", 4 + 7 + 7 + 6 + 1) + b"SERROR\0C42P01\0Mnope\0\0"
    assert ext.ParameterDescription([23, 25]) == b"t\0\0\0\x0e\0\x02\0\0\0\x17\0\0\0\x19"


@pytest.mark.parametrize(("oid", "text"), [
    (23, "-7"), (20, "9223372036854775807"), (21, "12"), (16, "t"), (701, "1.5"), (25, "héllo"),
    (1700, "12.345"), (1700, "-0.001"), (1700, "100000000"), (1700, "0"), (1700, "NaN"),
    (1082, "2024-02-29"), (1082, "infinity"), (1114, "2024-01-02 03:04:05.25"),
    (2950, "12345678-1234-5678-1234-567812345678"), (17, "\\x00ff"),
])
def test_binary_round_trip(oid: int, text: str) -> None:
    back = binary.from_binary(oid, binary.to_binary(oid, text))
    if oid == 1700 and text not in ("NaN",):
        assert Decimal(back) == Decimal(text)
    elif oid == 1114:
        assert back.startswith("2024-01-02 03:04:05.25")
    else:
        assert back == text


def test_binary_arrays_and_timestamptz() -> None:
    assert binary.from_binary(1007, binary.to_binary(1007, "{1,NULL,3}")) == '{"1",NULL,"3"}'
    assert binary.from_binary(1009, binary.to_binary(1009, '{{"a b","c"},{d,e}}')) == '{{"a b","c"},{"d","e"}}'
    us = struct.unpack("!q", binary.to_binary(1184, "2000-01-01 01:00:00+01"))[0]
    assert us == 0


def test_startup_rules() -> None:
    assert st.startup_problem({"user": "a", "options": "-c statement_timeout=0"})
    assert st.startup_problem({"user": "a", "replication": "database"})
    assert st.startup_problem({"user": "a", "client_encoding": "LATIN1"})
    assert st.startup_problem({"user": "a", "client_encoding": "UTF8", "application_name": "x"}) is None
    assert st.branch_for({"user": "a", "database": "a"}) == "main"
    assert st.branch_for({"user": "a", "database": "try-it"}) == "try-it"
    state = st.ConnectionState()
    assert state.ready_status(False) == "I"
    state.failed = True
    assert state.ready_status(True) == "E"
    assert state.ready_status(False) == "I" and not state.failed


def test_bind_parameters_converts_binary_by_type() -> None:
    bind = ext.Bind("", "", (1, 0), (struct.pack("!i", 42), b"x"), ())
    assert st.bind_parameters(bind, (23, 25)) == ("42", "x")
    from proxy.errors import SqlgateError

    with pytest.raises(SqlgateError) as info:
        st.bind_parameters(ext.Bind("", "", (1,), (b"\x01",), ()), (23,))
    assert info.value.sqlstate == "22P03"
