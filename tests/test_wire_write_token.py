"""A write token over the wire: its DDL runs as the ddl login and its DML as
the write login, yet the session behaves as one direct connection: what it
SET holds for both, and a transaction that reads and then runs DDL commits
whole. A transaction that moving would change (a write, a lock, a cursor, a
snapshot, temporary tables) is refused clearly instead, and stays as it was."""

from __future__ import annotations

import psycopg
import pytest

from tests.support.wire import Wire


def _where(conn: psycopg.Connection, table: str) -> list[tuple[str, ...]]:
    return conn.execute("SELECT table_schema FROM information_schema.tables WHERE table_name = %s "
                        "AND table_schema NOT LIKE 'sqlgate%%' ORDER BY 1", (table,)).fetchall()


def _write_token_conn(wire: Wire) -> psycopg.Connection:
    token = wire.server.token("write", "wire-writer")["token"]
    return psycopg.connect(wire.dsn(token, actor="wire-writer"), autocommit=True)


@pytest.fixture
def writer(wire: Wire) -> psycopg.Connection:
    with _write_token_conn(wire) as conn:
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
    with _write_token_conn(wire_pg) as conn:
        conn.execute("CREATE TABLE wt_wrote (id int)")
        conn.execute("BEGIN")
        conn.execute("INSERT INTO wt_wrote VALUES (1)")
        with pytest.raises(psycopg.errors.ActiveSqlTransaction) as refused:
            conn.execute("CREATE TABLE wt_never (id int)")
        assert "it ran INSERT" in str(refused.value)
        assert "ROLLBACK" in (refused.value.diag.message_hint or "")
        conn.execute("ROLLBACK")
        assert conn.execute("SELECT count(*) FROM wt_wrote").fetchone() == (0,)
        conn.execute("CREATE TABLE wt_never (id int)")  # outside a transaction it runs
        assert _where(conn, "wt_never") == [("public",)]


# What a move would lose, as PostgreSQL reports it (each was lost silently before).
LOSSES = {
    "snapshot": (["BEGIN ISOLATION LEVEL REPEATABLE READ", "SELECT count(*) FROM wl_t"], "holds a snapshot"),
    "session_isolation": (["SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE", "BEGIN",
                           "SELECT count(*) FROM wl_t"], "holds a snapshot"),
    "lock_table": (["BEGIN", "LOCK TABLE wl_t IN ACCESS EXCLUSIVE MODE"], "holds locks"),
    "for_update": (["BEGIN", "SELECT * FROM wl_t FOR UPDATE"], "holds locks"),
    "advisory": (["BEGIN", "SELECT pg_advisory_xact_lock(4242)"], "holds locks"),
    "cursor": (["BEGIN", "DECLARE wl_c CURSOR FOR SELECT * FROM wl_t"], "open cursors"),
    "temp": (["CREATE TEMP TABLE wl_tmp (id int)", "BEGIN"], "temporary tables"),
    "set_local": (["BEGIN", "SET LOCAL work_mem = '8MB'"], "it ran SET"),
}


@pytest.mark.parametrize("case", sorted(LOSSES))
def test_a_move_that_would_lose_state_is_refused(wire_pg: Wire, case: str) -> None:
    statements, reason = LOSSES[case]
    with _write_token_conn(wire_pg) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS wl_t (id int)")
        conn.execute("INSERT INTO wl_t VALUES (1)")
        for sql in statements:
            conn.execute(sql)
        backend_pid = conn.execute("SELECT pg_backend_pid()").fetchone()
        with pytest.raises(psycopg.errors.ActiveSqlTransaction) as refused:
            conn.execute(f"CREATE TABLE wl_{case} (id int)")
        assert reason in str(refused.value)
        # Nothing moved: the transaction is still on the write login's connection, which PostgreSQL
        # saw no error on (the client's transaction is aborted, as after any error).
        conn.execute("ROLLBACK")
        assert conn.execute("SELECT pg_backend_pid()").fetchone() == backend_pid
        assert _where(conn, f"wl_{case}") == []


def test_moving_keeps_nothing_behind_and_reads_stay_plain(wire_pg: Wire) -> None:
    """The plain reads before the DDL took only AccessShare locks: after the move no lock of the
    transaction is left on the write login's connection (a writer is not blocked)."""
    with _write_token_conn(wire_pg) as conn, \
            psycopg.connect(wire_pg.server.database, autocommit=True) as owner:
        conn.execute("CREATE TABLE wm_t (id int)")
        conn.execute("BEGIN")
        conn.execute("SELECT count(*) FROM wm_t")
        conn.execute("CREATE INDEX wm_i ON wm_t (id)")
        owner.execute("SET lock_timeout = '2s'")
        owner.execute("SELECT count(*) FROM wm_t")  # the index build's ShareLock lets reads through
        conn.execute("COMMIT")
        assert conn.execute("SELECT count(*) FROM pg_indexes WHERE indexname = 'wm_i'").fetchone() == (1,)


def test_settings_that_cannot_follow_do_not_break_the_session(wire_pg: Wire) -> None:
    with _write_token_conn(wire_pg) as conn:
        conn.execute("CREATE SCHEMA wf_s")
        conn.execute("SET search_path = wf_s")
        conn.execute("SET transaction_deferrable = on")  # settable only before a transaction's first query
        conn.execute("SET app.tenant = 'alice'")  # a custom setting: pg_settings does not list it
        conn.execute("CREATE TABLE wf_t AS SELECT current_setting('app.tenant') AS tenant")
        assert _where(conn, "wf_t") == [("wf_s",)]
        assert conn.execute("SELECT tenant FROM wf_t").fetchone() == ("alice",)
        conn.execute("INSERT INTO wf_t VALUES (current_setting('app.tenant'))")
        assert conn.execute("SELECT count(*) FROM wf_t WHERE tenant = 'alice'").fetchone() == (2,)


def test_an_agent_catalog_lookalike_cannot_change_the_safeguards(wire_pg: Wire) -> None:
    """The settings copy reads the catalog by qualified names, and never copies a safeguard: a view
    named pg_settings in the agent's own schema, first on its search_path, changes nothing."""
    with _write_token_conn(wire_pg) as conn:
        timeout = conn.execute("SELECT current_setting('statement_timeout')").fetchone()
        user = conn.execute("SELECT current_user").fetchone()[0]
        conn.execute("CREATE SCHEMA ev")
        conn.execute("CREATE VIEW ev.pg_settings AS SELECT name, source, reset_val, setting "
                     "FROM pg_catalog.pg_settings WHERE source = 'session' AND name <> 'statement_timeout' "
                     f"UNION ALL SELECT 'statement_timeout', 'session', '0', '0' WHERE current_user = '{user}'")
        conn.execute("SET search_path = ev, pg_catalog, public")
        conn.execute("CREATE TABLE ev_t (id int)")  # to the ddl login's connection
        conn.execute("INSERT INTO ev_t VALUES (1)")  # and back to the write login's
        assert conn.execute("SELECT current_setting('statement_timeout')").fetchone() == timeout
        assert timeout != ("0",)


@pytest.mark.parametrize("wire", ["duckdb"], indirect=True)
def test_duckdb_transactions_never_move(wire: Wire) -> None:
    """DuckDB has one connection for both: a write then DDL runs, and the snapshot holds."""
    with _write_token_conn(wire) as conn, \
            psycopg.connect(wire.dsn(), autocommit=True) as other:
        conn.execute("CREATE TABLE wd_t (id int)")
        conn.execute("BEGIN")
        conn.execute("INSERT INTO wd_t VALUES (1)")
        other.execute("INSERT INTO wd_t VALUES (2)")
        conn.execute("CREATE TABLE wd_u (id int)")
        assert conn.execute("SELECT count(*) FROM wd_t").fetchone() == (1,)  # its snapshot, and its write
        conn.execute("COMMIT")
        assert conn.execute("SELECT count(*) FROM wd_t").fetchone() == (2,)
