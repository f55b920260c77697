"""A write token over the wire: its DDL runs as the ddl login and its DML as
the write login, yet the session behaves as one direct connection: what it
SET holds for both, and a transaction that reads and then runs DDL commits
whole (a transaction that already wrote is refused clearly instead)."""

from __future__ import annotations

import psycopg
import pytest

from tests.support.wire import Wire


def _where(conn: psycopg.Connection, table: str) -> list[tuple[str, ...]]:
    return conn.execute("SELECT table_schema FROM information_schema.tables WHERE table_name = %s "
                        "AND table_schema NOT LIKE 'sqlgate%%' ORDER BY 1", (table,)).fetchall()


@pytest.fixture
def writer(wire: Wire) -> psycopg.Connection:
    token = wire.server.token("write", "wire-writer")["token"]
    with psycopg.connect(wire.dsn(token, actor="wire-writer"), autocommit=True) as conn:
        yield conn


def test_session_settings_hold_for_ddl(wire: Wire, writer: psycopg.Connection) -> None:
    schema = f"ws_{wire.backend}"
    writer.execute(f"CREATE SCHEMA {schema}")
    writer.execute("CREATE TABLE ws_table (id int)")  # before any SET: the default schema
    writer.execute(f"SET search_path = {schema}")
    writer.execute("CREATE TABLE ws_table (id int)")  # DDL: the ddl login's connection
    writer.execute("INSERT INTO ws_table VALUES (1)")  # DML: the write login's
    assert writer.execute("SELECT count(*) FROM ws_table").fetchone() == (1,)
    assert writer.execute(f"SELECT count(*) FROM {schema}.ws_table").fetchone() == (1,)
    writer.execute("DROP TABLE ws_table")  # checkpointed, and it drops the one in the schema SET
    writer.execute("RESET search_path")
    default = "public" if wire.backend == "postgres" else "main"
    assert _where(writer, "ws_table") == [(default,)]
    writer.execute("CREATE TABLE ws_after_reset (id int)")
    assert _where(writer, "ws_after_reset") == [(default,)]


def test_transaction_that_read_then_runs_ddl_commits_whole(wire: Wire, writer: psycopg.Connection) -> None:
    writer.execute("CREATE TABLE wt_seen (id int)")
    writer.execute("BEGIN")
    assert writer.execute("SELECT count(*) FROM wt_seen").fetchone() == (0,)
    writer.execute("CREATE TABLE wt_made (id int PRIMARY KEY)")
    writer.execute("INSERT INTO wt_made VALUES (1), (2)")
    writer.execute("ALTER TABLE wt_made ADD COLUMN note text")
    writer.execute("COMMIT")
    assert writer.execute("SELECT count(*), count(note) FROM wt_made").fetchone() == (2, 0)
    writer.execute("BEGIN")
    writer.execute("CREATE TABLE wt_gone (id int)")
    writer.execute("ROLLBACK")
    assert _where(writer, "wt_gone") == []


def test_checkpoint_in_a_transaction_moved_to_the_ddl_login(wire: Wire, writer: psycopg.Connection) -> None:
    notices: list[str] = []
    writer.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    writer.execute("CREATE TABLE wt_drop (id int)")
    writer.execute("INSERT INTO wt_drop VALUES (1), (2), (3)")
    writer.execute("BEGIN")
    writer.execute("SELECT 1")
    writer.execute("DROP TABLE wt_drop")
    writer.execute("COMMIT")
    checkpoint = next(n.split()[2] for n in notices if n.startswith("sqlgate: checkpoint cp_"))
    writer.execute(f"SELECT sqlgate.rollback('{checkpoint}')")
    assert writer.execute("SELECT count(*) FROM wt_drop").fetchone() == (3,)


def test_ddl_after_a_write_in_the_transaction_is_refused_clearly(wire_pg: Wire) -> None:
    token = wire_pg.server.token("write", "wire-writer")["token"]
    with psycopg.connect(wire_pg.dsn(token), autocommit=True) as conn:
        conn.execute("CREATE TABLE wt_wrote (id int)")
        conn.execute("BEGIN")
        conn.execute("INSERT INTO wt_wrote VALUES (1)")
        with pytest.raises(psycopg.errors.ActiveSqlTransaction) as refused:
            conn.execute("CREATE TABLE wt_never (id int)")
        assert "ROLLBACK" in (refused.value.diag.message_hint or "")
        conn.execute("ROLLBACK")
        assert conn.execute("SELECT count(*) FROM wt_wrote").fetchone() == (0,)
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        conn.execute("SELECT count(*) FROM wt_wrote")  # the snapshot is taken: moving would lose it
        with pytest.raises(psycopg.errors.ActiveSqlTransaction):
            conn.execute("CREATE TABLE wt_never (id int)")
        conn.execute("ROLLBACK")
        assert _where(conn, "wt_never") == []
        conn.execute("CREATE TABLE wt_never (id int)")  # outside a transaction it runs
        assert _where(conn, "wt_never") == [("public",)]
