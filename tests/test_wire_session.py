"""Session-level behaviour of the wire front door: CancelRequest, COPY,
revocation ending open sessions, the idle timeout, checkpoints undone from
SQL, and traces recorded as over HTTP."""


from __future__ import annotations

import asyncio
import struct
import threading
import time
from pathlib import Path

import psycopg
import pytest

from tests.support.wire import Wire
from tests.support.wire_raw import msg, scram_login

LONG_QUERY = {
    "postgres": "SELECT pg_sleep(20)",
    "duckdb": "SELECT count(*) FROM range(100000000000) a WHERE a.range % 7 = 3",
}


def test_cancel_request_stops_the_running_statement(wire: Wire) -> None:
    with psycopg.connect(wire.dsn(), autocommit=True) as conn:
        timer = threading.Timer(1.0, conn.cancel_safe)
        timer.start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute(LONG_QUERY[wire.backend])
        assert time.monotonic() - started < 10
        assert conn.execute("SELECT 1").fetchone() == (1,)  # the session goes on


def test_copy_from_stdin_and_to_stdout(wire: Wire) -> None:
    with psycopg.connect(wire.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE copy_t (id int, name text)")
        cur = conn.cursor()
        with cur.copy("COPY copy_t (id, name) FROM STDIN") as copy:
            for i in range(1000):
                copy.write_row((i, f"n{i}" if i % 10 else None))
        assert cur.rowcount == 1000
        assert conn.execute("SELECT count(*), count(name) FROM copy_t").fetchone() == (1000, 900)
        out = []
        with cur.copy("COPY (SELECT id, name FROM copy_t WHERE id < 3 ORDER BY id) TO STDOUT") as copy:
            for row in copy.rows():
                out.append(row)
        assert out == [("0", None), ("1", "n1"), ("2", "n2")]
        with pytest.raises(RuntimeError), cur.copy("COPY copy_t FROM STDIN") as copy:
            copy.write_row((1, "x"))
            raise RuntimeError("client gives up")  # psycopg sends CopyFail
        assert conn.execute("SELECT count(*) FROM copy_t").fetchone() == (1000,)
    with psycopg.connect(wire.dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM copy_t").fetchone() == (1000,)


def test_revoking_a_token_ends_its_sessions(wire: Wire) -> None:
    created = wire.server.token("write", "soon-revoked")
    other = psycopg.connect(wire.dsn(), autocommit=True)
    with psycopg.connect(wire.dsn(created["token"]), autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        with wire.server.client() as http:
            assert http.delete(f"/tokens/{created['id']}").status_code == 200
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    assert other.execute("SELECT 2").fetchone() == (2,)  # other sessions go on
    other.close()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(wire.dsn(created["token"]))


def _checkpointed_delete(w: Wire, table: str) -> tuple[psycopg.Connection, str]:
    notices: list[str] = []
    conn = psycopg.connect(w.dsn(), autocommit=True)
    conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    conn.execute(f"CREATE TABLE {table} (id int)")
    conn.execute(f"INSERT INTO {table} VALUES (1), (2), (3)")
    conn.execute(f"DELETE FROM {table} WHERE id > 1")
    assert notices and notices[-1].startswith("sqlgate: checkpoint cp_"), notices
    assert f"SELECT sqlgate.rollback('{notices[-1].split()[2]}')" in notices[-1]
    return conn, notices[-1].split()[2]


def test_checkpoint_announced_over_the_wire_is_undone(wire: Wire) -> None:
    conn, checkpoint = _checkpointed_delete(wire, "cp_wire_http")
    with conn:
        with wire.server.client() as http:
            r = http.post("/rollback", json={"checkpoint": checkpoint})
            assert r.status_code == 200, r.text
        assert conn.execute("SELECT count(*) FROM cp_wire_http").fetchone() == (3,)


def test_checkpoint_undone_with_sqlgate_rollback_from_sql(wire: Wire) -> None:
    conn, checkpoint = _checkpointed_delete(wire, "cp_wire_sql")
    with conn:
        conn.execute(f"SELECT sqlgate.rollback('{checkpoint}')")
        assert conn.execute("SELECT count(*) FROM cp_wire_sql").fetchone() == (3,)


def test_traces_name_the_wire_front_door_and_actor(wire: Wire) -> None:
    with psycopg.connect(wire.dsn(actor="wire-actor"), autocommit=True) as conn:
        conn.execute("SELECT 12345 AS traced_marker")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with wire.server.client() as http:
            body = http.get("/traces", params={"actor": "wire-actor"}).json()
        items = body.get("traces", body) if isinstance(body, dict) else body
        found = [t for t in items if "traced_marker" in t.get("sql", "")]
        if found:
            assert found[0]["front_door"] == "wire"
            return
        time.sleep(0.2)
    raise AssertionError("no trace for the wire statement")


def test_idle_sessions_time_out(tmp_path: Path) -> None:
    """In-process: a WireServer with a short idle timeout on a DuckDB backend."""
    from proxy.config import Settings
    from proxy.server import build_context
    from proxy.wire.server import WireServer

    async def main() -> None:
        ctx = await build_context(Settings(data_dir=tmp_path))
        _, secret = await ctx.auth.create_token(None, "admin", __import__("policy.identity").identity.Role.ADMIN, None)
        server = WireServer(ctx.pipeline, ctx.auth, "127.0.0.1", 0, idle_timeout_s=0.5)
        await server.start()
        try:
            dsn = f"postgresql://idle:{secret}@127.0.0.1:{server.port}/main"
            conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
            await conn.execute("SELECT 1")
            await asyncio.sleep(2.0)
            with pytest.raises(psycopg.OperationalError):
                await conn.execute("SELECT 1")
            await conn.close()
        finally:
            await server.close()
            await ctx.traces.close()
            await ctx.backend.close()

    asyncio.run(main())


def test_a_client_gone_mid_transaction_leaves_its_statements_traced(wire: Wire) -> None:
    """Invariant 2: statements of a transaction the client never ended are traced as rolled back."""
    import time
    import uuid

    import psycopg

    table = "gone_" + uuid.uuid4().hex[:8]
    with wire.server.client() as http:
        assert http.post("/sql", json={"query": f"CREATE TABLE {table} (a int)"}).status_code == 200
    conn = psycopg.connect(wire.dsn(actor="leaver"))  # not autocommit: psycopg opens a transaction
    conn.execute(f"INSERT INTO {table} VALUES (1)")
    conn.close()  # no COMMIT
    deadline = time.monotonic() + 5
    while True:
        with wire.server.client() as http:
            traces = http.get("/traces", params={"actor": "leaver", "limit": 50}).json()["traces"]
        inserts = [t for t in traces if t["sql"].startswith(f"INSERT INTO {table}")]
        if inserts or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [t["outcome"] for t in inserts] == ["rolled_back"]
    with wire.server.client() as http:
        rows = http.post("/sql", json={"query": f"SELECT count(*)::int AS n FROM {table}"}).json()["rows"]
    assert rows == [{"n": 0}]


@pytest.mark.parametrize("statement, shape", [
    ("INSERT INTO {t} VALUES (1)", [b"1", b"2", b"n", b"Z"]),  # no rows: NoData
    ("SELECT count(*) AS n FROM {t}", [b"1", b"2", b"T", b"Z"]),
])
def test_describing_a_portal_does_not_run_it(wire: Wire, statement: str, shape: list[bytes]) -> None:
    """Bind + Describe portal + Sync with no Execute: PostgreSQL describes the rows
    the portal would return and runs nothing; so must sqlgate."""
    table = f"described_{len(shape)}_{'ins' if 'INSERT' in statement else 'sel'}"
    with psycopg.connect(wire.dsn(), autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} (a int)")
    c, _ = scram_login(wire, wire.server.admin_token)
    while c.message()[0] != b"Z":
        pass
    sql = statement.format(t=table).encode()
    c.sock.sendall(msg(b"P", b"\0" + sql + b"\0" + struct.pack("!h", 0))
                   + msg(b"B", b"\0\0" + struct.pack("!hhh", 0, 0, 0))
                   + msg(b"D", b"P\0") + msg(b"S", b""))
    kinds = []
    while not kinds or kinds[-1] != b"Z":
        kinds.append(c.message()[0])
    c.sock.close()
    assert kinds == shape
    with psycopg.connect(wire.dsn(), autocommit=True) as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)


def test_transaction_control_answers_with_no_row_description(wire: Wire) -> None:
    """PostgreSQL answers BEGIN/COMMIT with CommandComplete alone. DuckDB's cursor reports a
    `Success` column for them, which must not reach the client as a RowDescription: pgJDBC
    42.7 sends BEGIN together with the next statement and fails on the extra message."""
    c, _ = scram_login(wire, wire.server.admin_token)
    while c.message()[0] != b"Z":
        pass

    def kinds(query: str) -> list[bytes]:
        c.sock.sendall(msg(b"Q", query.encode() + b"\0"))
        seen = []
        while True:
            kind, body = c.message()
            seen.append(kind if kind != b"C" else b"C:" + body.rstrip(b"\0"))
            if kind == b"Z":
                return seen

    try:
        assert kinds("BEGIN") == [b"C:BEGIN", b"Z"]
        assert kinds("SELECT 1 AS one") == [b"T", b"D", b"C:SELECT 1", b"Z"]
        assert kinds("COMMIT") == [b"C:COMMIT", b"Z"]
        assert kinds("BEGIN; SELECT 2 AS two; COMMIT") == [b"C:BEGIN", b"T", b"D", b"C:SELECT 1", b"C:COMMIT", b"Z"]
    finally:
        c.sock.close()
