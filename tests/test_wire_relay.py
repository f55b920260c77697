"""The wire relay (proxy/wire/relay.py): plain reads on PostgreSQL go to the
server as the client's own messages and come back as bytes. The ordinary
pipeline is the reference: a second sqlgate on the same database runs with
--no-wire-relay, and both must answer the same bytes, traces and errors."""

from __future__ import annotations

import os
import signal
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.pgserver import PgServer
from tests.support.sqlgate_server import SqlgateServer
from tests.support.wire import Wire, start_wire
from tests.support.wire_raw import Conn, msg, scram_login

SETUP = """
CREATE TABLE relay_items (id int PRIMARY KEY, name text, price numeric(8,2), tags text[], at timestamptz,
                          doc jsonb, raw bytea);
INSERT INTO relay_items SELECT g, 'item ' || g, g * 1.25, ARRAY['a', 'b' || g],
                               '2026-01-01'::timestamptz + g * interval '1 hour', jsonb_build_object('n', g),
                               decode(lpad(to_hex(g), 4, '0'), 'hex')
FROM generate_series(1, 50) g;
CREATE SCHEMA relay_other;
CREATE TABLE relay_other.relay_items (id int, name text);
INSERT INTO relay_other.relay_items VALUES (1, 'from the other schema');
"""


@pytest.fixture(scope="module")
def servers(pg_server: PgServer) -> Iterator[tuple[Wire, Wire]]:
    """(relay on, relay off) over one database."""
    with start_wire("postgres", pg_server, "sqlgate_wire_relay") as on, \
            SqlgateServer("postgres", on.server.database, ["--no-wire-relay"]).start() as off_server:
        with psycopg.connect(on.dsn(), autocommit=True) as conn:
            conn.execute(SETUP)
        yield on, Wire(off_server, off_server.pg_port, "postgres")


def answer(w: Wire, *messages: bytes) -> list[tuple[bytes, bytes]]:
    """Send messages on a fresh authenticated connection; the backend messages up to ReadyForQuery."""
    c, _ = scram_login(w, w.server.admin_token)
    while c.message()[0] != b"Z":
        pass
    c.sock.sendall(b"".join(messages))
    out = []
    while True:
        kind, body = c.message()
        out.append((kind, body))
        if kind == b"Z":
            c.sock.close()
            return out


def query(sql: str) -> bytes:
    return msg(b"Q", sql.encode() + b"\0")


def extended(sql: str, params: list[bytes | None], result_format: int = 0, name: bytes = b"") -> bytes:
    parse = msg(b"P", name + b"\0" + sql.encode() + b"\0" + struct.pack("!h", 0))
    values = b"".join(struct.pack("!i", -1) if p is None else struct.pack("!i", len(p)) + p for p in params)
    bind = msg(b"B", b"\0" + name + b"\0" + struct.pack("!h", 0) + struct.pack("!h", len(params)) + values
               + struct.pack("!hh", 1, result_format))
    return parse + bind + msg(b"D", b"P\0") + msg(b"E", b"\0" + struct.pack("!i", 0)) + msg(b"S", b"")


READS = [
    "SELECT * FROM relay_items ORDER BY id",
    "SELECT id, price * 2 AS double, tags[2], doc->'n' FROM relay_items WHERE id < 5 ORDER BY id",
    "SELECT count(*), sum(price), min(at), max(raw::text) FROM relay_items",
    "SELECT NULL::int AS nothing, 'é ☃'::text AS unicode, 1.5::float8, interval '1 day 2 hours'",
]


@pytest.mark.parametrize("sql", READS)
def test_simple_query_answers_the_same_bytes_as_the_pipeline(servers: tuple[Wire, Wire], sql: str) -> None:
    on, off = servers
    relayed, ordinary = answer(on, query(sql)), answer(off, query(sql))
    assert [k for k, _ in relayed].count(b"D") > 0
    assert relayed == ordinary


@pytest.mark.parametrize("result_format", [0, 1])
def test_extended_query_answers_the_same_bytes_as_the_pipeline(servers: tuple[Wire, Wire], result_format: int) -> None:
    on, off = servers
    sql = "SELECT id, name, price, tags, at FROM relay_items WHERE id BETWEEN $1 AND $2 ORDER BY id"
    for name in (b"", b"named"):
        messages = extended(sql, [b"3", b"7"], result_format, name)
        relayed, ordinary = answer(on, messages), answer(off, messages)
        assert [k for k, _ in relayed] == [b"1", b"2", b"T", *[b"D"] * 5, b"C", b"Z"]
        assert relayed == ordinary


def test_errors_carry_sqlgate_hint_and_postgresql_fields(servers: tuple[Wire, Wire]) -> None:
    on, off = servers
    for sql in ("SELECT nosuch FROM relay_items", "SELECT 1/0", "SELECT * FROM relay_missing"):
        relayed, ordinary = answer(on, query(sql)), answer(off, query(sql))
        assert [k for k, _ in relayed] == [b"E", b"Z"]
        fields = {f[:1]: f[1:] for f in relayed[0][1].split(b"\0") if f}
        assert b"Next: fix the statement" in fields[b"H"]
        expected = {f[:1]: f[1:] for f in ordinary[0][1].split(b"\0") if f}
        for code in (b"C", b"M", b"P", b"S"):
            assert fields.get(code) == expected.get(code), (sql, code)


def traces(w: Wire, **params: str) -> list[dict[str, Any]]:
    with w.server.client() as c:
        r = c.get("/traces", params={"limit": "50", **params})
        r.raise_for_status()
        return r.json()["traces"]  # type: ignore[no-any-return]


def test_relayed_reads_are_traced_with_rows_params_and_failures(servers: tuple[Wire, Wire]) -> None:
    on, _ = servers
    with psycopg.connect(on.dsn(actor="tracer"), autocommit=True) as conn:
        assert conn.execute("SELECT id FROM relay_items WHERE id <= %s", (4,)).fetchall() == [(1,), (2,), (3,), (4,)]
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1/0 AS relay_boom")
    seen = {t["sql"]: t for t in traces(on, actor="tracer")}
    read = seen["SELECT id FROM relay_items WHERE id <= $1"]
    assert (read["outcome"], read["rows"], read["params"], read["front_door"], read["class"]) == (
        "ok", 4, ["4"], "wire", "read")
    failed = seen["SELECT 1/0 AS relay_boom"]
    assert (failed["outcome"], failed["error_code"]) == ("failed", "sql.error")


def test_the_relay_serves_reads_from_its_own_connections(servers: tuple[Wire, Wire], pg_server: PgServer) -> None:
    on, _ = servers
    with psycopg.connect(on.dsn(), autocommit=True) as conn:
        conn.execute("SELECT 1").fetchall()
    with psycopg.connect(pg_server.dsn("sqlgate_wire_relay"), autocommit=True) as direct:
        names = [r[0] for r in direct.execute("SELECT application_name FROM pg_stat_activity").fetchall()]
    assert "sqlgate-relay-owner" in names


def test_session_state_and_transactions_are_never_bypassed(servers: tuple[Wire, Wire]) -> None:
    on, _ = servers
    with psycopg.connect(on.dsn(), autocommit=True) as conn:
        conn.execute("SET search_path = relay_other")
        assert conn.execute("SELECT name FROM relay_items").fetchall() == [("from the other schema",)]
        conn.execute("CREATE TEMP TABLE relay_temp AS SELECT 42 AS answer")
        assert conn.execute("SELECT answer FROM relay_temp").fetchall() == [(42,)]
    with psycopg.connect(on.dsn()) as conn:  # a transaction sees its own uncommitted writes
        conn.execute("INSERT INTO relay_items (id, name) VALUES (1000, 'uncommitted')")
        assert conn.execute("SELECT name FROM relay_items WHERE id = 1000").fetchall() == [("uncommitted",)]
        conn.rollback()
    with psycopg.connect(on.dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM relay_items WHERE id = 1000").fetchone() == (0,)


def test_policy_still_decides(servers: tuple[Wire, Wire]) -> None:
    on, _ = servers
    reader = on.server.token("read", name="relay-reader")["token"]
    with psycopg.connect(on.dsn(reader), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM relay_items").fetchone() == (50,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
            conn.execute("DELETE FROM relay_items")
        assert "Next:" in (refused.value.diag.message_hint or "")
        assert conn.execute("SELECT sqlgate.whoami()").fetchone() is not None


def test_cancel_reaches_a_relayed_statement(servers: tuple[Wire, Wire]) -> None:
    on, _ = servers
    with psycopg.connect(on.dsn(), autocommit=True) as conn:
        timer = threading.Timer(0.5, conn.cancel)
        timer.start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(20)")
        assert time.monotonic() - started < 10
        assert conn.execute("SELECT 7").fetchone() == (7,)


def test_relay_connections_killed_by_the_server_are_replaced(servers: tuple[Wire, Wire],
                                                             pg_server: PgServer) -> None:
    on, _ = servers
    with psycopg.connect(on.dsn(), autocommit=True) as conn:
        conn.execute("SELECT 1").fetchall()
        with psycopg.connect(pg_server.dsn("sqlgate_wire_relay"), autocommit=True) as direct:
            killed = direct.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                    " WHERE application_name LIKE 'sqlgate-relay-%'").fetchone()
        assert killed is not None and killed[0] >= 1
        time.sleep(0.3)  # the server's FATAL and close reach the idle connection
        assert conn.execute("SELECT count(*) FROM relay_items").fetchone() == (50,)


def test_many_prepared_statements_on_one_relay_connection(servers: tuple[Wire, Wire]) -> None:
    """More named statements than a relay connection keeps: the oldest are closed on
    the server behind the client's back, and their CloseComplete never reaches it."""
    on, _ = servers
    c, _ = scram_login(on, on.server.admin_token)
    while c.message()[0] != b"Z":
        pass
    for round_no in range(2):
        for i in range(230):
            name = f"s{i}".encode()
            if round_no == 0:
                c.sock.sendall(extended(f"SELECT {i} + $1::int", [str(round_no).encode()], name=name))
            else:  # Bind to the statement already parsed
                values = struct.pack("!i", 1) + b"1"
                c.sock.sendall(msg(b"B", b"\0" + name + b"\0" + struct.pack("!hh", 0, 1) + values
                                   + struct.pack("!h", 0)) + msg(b"E", b"\0" + struct.pack("!i", 0)) + msg(b"S", b""))
            kinds, rows = [], []
            while not kinds or kinds[-1] != b"Z":
                kind, body = c.message()
                kinds.append(kind)
                if kind == b"D":
                    rows.append(body[6:].decode())
            expected = [b"1", b"2", b"T", b"D", b"C", b"Z"] if round_no == 0 else [b"2", b"D", b"C", b"Z"]
            assert (kinds, rows) == (expected, [str(i + round_no)])
    c.sock.close()


def test_a_client_gone_mid_read_leaves_the_relay_usable(servers: tuple[Wire, Wire]) -> None:
    on, _ = servers
    c = Conn(on)
    c.sock.close()
    c, _ = scram_login(on, on.server.admin_token)
    while c.message()[0] != b"Z":
        pass
    c.sock.sendall(query("SELECT g, repeat('x', 1000) FROM generate_series(1, 20000) g"))
    c.sock.close()  # before the answer is read
    for _ in range(20):  # every relay connection still answers
        assert answer(on, query("SELECT 5"))[-2][0] == b"C"


def _rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0])


def test_a_big_answer_to_a_slow_reader_stays_out_of_memory(servers: tuple[Wire, Wire]) -> None:
    """About 300 MB of rows to a client that does not read for a while: the relay
    stops reading PostgreSQL instead of buffering, then streams all of it."""
    on, _ = servers
    pid = on.server.process.pid  # type: ignore[union-attr]
    c, _ = scram_login(on, on.server.admin_token)
    while c.message()[0] != b"Z":
        pass
    before = _rss_kb(pid)
    c.sock.sendall(query("SELECT g, repeat('x', 1000) FROM generate_series(1, 300000) g"))
    time.sleep(3)  # PostgreSQL could have sent everything by now
    grown_mb = (_rss_kb(pid) - before) / 1024
    rows, total = 0, 0
    while True:
        kind, body = c.message()
        total += len(body)
        rows += kind == b"D"
        if kind == b"Z":
            break
    c.sock.close()
    assert rows == 300000 and total > 300_000_000
    assert grown_mb < 64, f"sqlgate grew by {grown_mb:.0f} MB while the client was not reading"


def test_a_bad_parse_is_answered_before_the_rest_is_skipped(servers: tuple[Wire, Wire]) -> None:
    """Parse of SQL that does not parse, then Bind/Execute/Sync: one ErrorResponse, then ReadyForQuery."""
    on, off = servers
    messages = extended("SELEKT nothing", [])
    relayed, ordinary = answer(on, messages), answer(off, messages)
    assert [k for k, _ in relayed] == [b"E", b"Z"]
    assert relayed == ordinary


def _logged_in(w: Wire) -> Conn:
    c, _ = scram_login(w, w.server.admin_token)
    while c.message()[0] != b"Z":
        pass
    return c


def _kinds_until_ready(c: Conn, count: int = 1) -> list[tuple[bytes, bytes]]:
    out = []
    while count:
        kind, body = c.message()
        out.append((kind, body))
        count -= kind == b"Z"
    return out


def test_answers_keep_their_order_when_messages_arrive_mid_relay(servers: tuple[Wire, Wire]) -> None:
    """Messages that arrive while a relayed statement runs, some for the handler, some for the
    relay, and in one burst after a pause: answered in the order sent."""
    on, _ = servers
    pid = on.server.process.pid  # type: ignore[union-attr]
    c = _logged_in(on)
    c.sock.sendall(msg(b"P", b"s1\0SELECT pg_sleep(0.3), 'bind'\0" + struct.pack("!h", 0)) + msg(b"S", b""))
    _kinds_until_ready(c)
    c.sock.sendall(query("SELECT pg_sleep(0.5), 'q0'"))
    time.sleep(0.1)
    c.sock.sendall(msg(b"B", b"\0s1\0" + struct.pack("!hhh", 0, 0, 0)))
    time.sleep(0.1)
    os.kill(pid, signal.SIGSTOP)  # what comes next piles up and arrives at once
    try:
        time.sleep(0.6)
        c.sock.sendall(msg(b"E", b"\0" + struct.pack("!i", 0)) + msg(b"S", b"") + query("SELECT 'q3'"))
        time.sleep(0.1)
    finally:
        os.kill(pid, signal.SIGCONT)
    rows = [body for kind, body in _kinds_until_ready(c, 3) if kind == b"D"]
    c.sock.close()
    assert len(rows) == 3 and all(r.endswith(t) for r, t in zip(rows, (b"q0", b"bind", b"q3"), strict=True)), rows


def test_a_thousand_parses_at_once_are_all_answered(servers: tuple[Wire, Wire]) -> None:
    """More messages than sqlgate queues pause reading the client; the relay answering them must resume it."""
    on, _ = servers
    c = _logged_in(on)
    c.sock.sendall(b"".join(msg(b"P", f"p{i}\0SELECT {i}\0".encode() + struct.pack("!h", 0)) for i in range(1000))
                   + msg(b"S", b""))
    kinds = [k for k, _ in _kinds_until_ready(c)]
    c.sock.close()
    assert kinds == [b"1"] * 1000 + [b"Z"]


def test_a_statement_prepared_before_an_alter_is_prepared_afresh_for_others(servers: tuple[Wire, Wire]) -> None:
    """A named statement whose table changed fails for the client that prepared it, as in
    PostgreSQL; the relay's server-side copy is dropped, so the next client's works."""
    on, _ = servers
    with psycopg.connect(on.dsn(), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS relay_stale")
        conn.execute("CREATE TABLE relay_stale (id int PRIMARY KEY, a text)")
        conn.execute("INSERT INTO relay_stale VALUES (1, 'x')")
    sql = "SELECT * FROM relay_stale WHERE id = %s"
    with psycopg.connect(on.dsn(), autocommit=True) as first:
        assert first.execute(sql, (1,), prepare=True).fetchall() == [(1, "x")]
        with psycopg.connect(on.dsn(), autocommit=True) as conn:
            conn.execute("ALTER TABLE relay_stale ADD COLUMN b int DEFAULT 7")
        with pytest.raises(psycopg.errors.FeatureNotSupported):  # cached plan must not change result type
            first.execute(sql, (1,), prepare=True)
    for _ in range(3):
        with psycopg.connect(on.dsn(), autocommit=True) as later:
            assert later.execute(sql, (1,), prepare=True).fetchall() == [(1, "x", 7)]


def test_a_huge_value_streams_through(servers: tuple[Wire, Wire]) -> None:
    """A 40 MB value is forwarded as it arrives, not gathered and copied on every read."""
    on, _ = servers
    c = _logged_in(on)
    c.sock.sendall(query("SELECT repeat('x', 40000000) AS big"))
    out = _kinds_until_ready(c)
    c.sock.close()
    [row] = [body for kind, body in out if kind == b"D"]
    assert struct.unpack("!hi", row[:6]) == (1, 40_000_000) and row[6:].count(b"x") == 40_000_000


def test_backpressure_holds_when_the_client_was_already_full(servers: tuple[Wire, Wire]) -> None:
    """The client stopped reading during an ordinary-path answer; the relayed answer that follows
    must still wait for it rather than pile up."""
    on, _ = servers
    pid = on.server.process.pid  # type: ignore[union-attr]
    c = _logged_in(on)
    before = _rss_kb(pid)
    c.sock.sendall(query("BEGIN") + query("SELECT repeat('y', 8000000)") + query("COMMIT")
                   + query("SELECT g, repeat('x', 1000) FROM generate_series(1, 300000) g"))
    time.sleep(3)
    grown_mb = (_rss_kb(pid) - before) / 1024
    rows = sum(kind == b"D" for kind, _ in _kinds_until_ready(c, 4))
    c.sock.close()
    assert rows == 300001
    assert grown_mb < 64, f"sqlgate grew by {grown_mb:.0f} MB while the client was not reading"


def test_a_session_level_advisory_lock_stays_with_its_client(servers: tuple[Wire, Wire]) -> None:
    """pg_advisory_lock() outlives the transaction: it must stay on the client's own backend
    session (never a pooled or relayed one), and go when the client goes, as on a direct connection."""
    on, _ = servers
    with psycopg.connect(on.dsn(), autocommit=True) as other:
        with psycopg.connect(on.dsn(), autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(4242)")
            assert other.execute("SELECT pg_try_advisory_lock(4243)").fetchone() == (True,)
            assert other.execute("SELECT pg_try_advisory_lock(4242)").fetchone() == (False,)
        deadline = time.monotonic() + 5
        while other.execute("SELECT pg_try_advisory_lock(4242)").fetchone() != (True,):
            assert time.monotonic() < deadline, "the lock outlived its client"
            time.sleep(0.1)
