"""Invariant 2: every statement has exactly one trace, whatever became of it,
and a committed statement's trace commits with it."""

from __future__ import annotations

import uuid
from typing import Any

from tests.support.sqlgate_server import SqlgateServer


def traces_of(server: SqlgateServer, **filters: Any) -> list[dict[str, Any]]:
    with server.client() as c:
        r = c.get("/traces", params={"limit": 1000, **filters})
        assert r.status_code == 200, r.text
        return r.json()["traces"]  # type: ignore[no-any-return]


def by_request(server: SqlgateServer, trace_id: str) -> list[dict[str, Any]]:
    all_traces = traces_of(server)
    request_id = next(t["request_id"] for t in all_traces if t["id"] == trace_id)
    return sorted((t for t in all_traces if t["request_id"] == request_id), key=lambda t: t["id"])


def test_each_statement_of_a_script_has_exactly_one_trace(sqlgate: SqlgateServer) -> None:
    t = "tr_" + uuid.uuid4().hex[:8]
    r = sqlgate.sql(f"CREATE TABLE {t} (a int); INSERT INTO {t} VALUES ($$x$$::text::int); SELECT 1", [])
    assert r.status_code == 400  # the INSERT fails: the script rolls back
    r = sqlgate.sql(f"CREATE TABLE {t} (a int); INSERT INTO {t} VALUES (1), (2); SELECT * FROM {t}")
    assert r.status_code == 200, r.text
    traces = by_request(sqlgate, r.json()["trace_id"])
    assert [x["command"] for x in traces] == ["CREATE TABLE", "INSERT", "SELECT"]
    assert [x["class"] for x in traces] == ["safe_ddl", "write", "read"]
    assert all(x["outcome"] == "ok" for x in traces)
    insert = traces[1]
    assert insert["tables"] == [t] and insert["rows"] == 2 and insert["duration_ms"] >= 0
    assert insert["actor"] == "admin" and insert["branch"] == "main" and insert["front_door"] == "http"
    assert insert["token_id"].startswith("tok_")


def test_parameters_are_kept_apart_from_sql(sqlgate: SqlgateServer) -> None:
    r = sqlgate.sql("SELECT $1::int AS a, $2 AS b", ["7", "secret-ish"])
    trace = next(t for t in traces_of(sqlgate) if t["id"] == r.json()["trace_id"])
    assert trace["sql"] == "SELECT $1::int AS a, $2 AS b"
    assert trace["params"] == ["7", "secret-ish"]


def test_failed_refused_and_rolled_back_statements_are_traced(sqlgate: SqlgateServer) -> None:
    t = "tr_" + uuid.uuid4().hex[:8]
    assert sqlgate.sql(f"CREATE TABLE {t} (a int PRIMARY KEY)").status_code == 200
    failed = sqlgate.sql(f"INSERT INTO {t} VALUES (1); INSERT INTO {t} VALUES (1); SELECT 1")
    assert failed.status_code == 400 and failed.json()["code"] == "23505"
    traces = by_request(sqlgate, failed.json()["trace_id"])
    assert [x["outcome"] for x in traces] == ["rolled_back", "failed", "skipped"]
    assert traces[1]["error_code"] == "sql.error"

    reader = sqlgate.token("read")["token"]
    refused = sqlgate.sql(f"INSERT INTO {t} VALUES (2)", token=reader)
    assert refused.status_code == 403
    [trace] = [x for x in traces_of(sqlgate) if x["id"] == refused.json()["trace_id"]]
    assert trace["outcome"] == "refused" and trace["error_code"] == "policy.denied"

    rolled = sqlgate.sql(f"BEGIN; INSERT INTO {t} VALUES (3); ROLLBACK")
    assert rolled.status_code == 200
    traces = by_request(sqlgate, rolled.json()["trace_id"])
    assert {x["outcome"] for x in traces} == {"rolled_back"}
    assert len(traces) == 3


def test_committed_write_and_its_trace_are_both_visible_to_the_database(sqlgate: SqlgateServer) -> None:
    """The trace of a committed write is in the same database, committed with it:
    read it back through SQL (admin may read sqlgate's schema)."""
    t = "tr_" + uuid.uuid4().hex[:8]
    r = sqlgate.sql(f"CREATE TABLE {t} (a int); INSERT INTO {t} VALUES (42)")
    trace_ids = [x["trace_id"] for x in r.json()["results"]]
    rows = sqlgate.sql("SELECT id, outcome FROM sqlgate.traces WHERE id = $1 OR id = $2", trace_ids).json()["rows"]
    assert sorted(rows, key=lambda x: x["id"]) == sorted(
        [{"id": i, "outcome": "ok"} for i in trace_ids], key=lambda x: x["id"])


def test_trace_filters(sqlgate: SqlgateServer) -> None:
    actor = "filter-" + uuid.uuid4().hex[:6]
    with sqlgate.client() as c:
        c.post("/sql", json={"query": "SELECT 1"}, headers={"X-Sqlgate-Actor": actor})
        r = c.get("/traces", params={"actor": actor, "class": "read"})
        assert [t["actor"] for t in r.json()["traces"]] == [actor]
        assert c.get("/traces", params={"actor": actor, "class": "write"}).json()["traces"] == []
        bad = c.get("/traces", params={"since": "yesterday"})
        assert bad.status_code == 400 and bad.json()["next"]


def test_non_admin_sees_only_its_own_traces(sqlgate: SqlgateServer) -> None:
    token = sqlgate.token("read")["token"]
    mine = sqlgate.sql("SELECT 2", token=token).json()["trace_id"]
    sqlgate.sql("SELECT 3")  # the admin's
    with sqlgate.client(token) as c:
        seen = [t["id"] for t in c.get("/traces").json()["traces"]]
    assert seen == [mine]


def test_sqlgate_log_prints_a_table(sqlgate: SqlgateServer) -> None:
    import subprocess
    import sys

    sqlgate.sql("SELECT 'logged' AS x")
    out = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "log", "--server", sqlgate.url, "--token", sqlgate.admin_token,
         "--limit", "5"], capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:5] == ["time", "id", "actor", "class", "outcome"]
    assert any("SELECT 'logged' AS x" in line for line in lines[2:])


def test_a_statement_with_a_nul_character_is_traced_and_traces_stay_readable(sqlgate: SqlgateServer) -> None:
    r = sqlgate.sql("SELECT $1 AS s", ["a\x00b"])
    assert r.status_code in (200, 400)  # PostgreSQL refuses NUL in text; DuckDB may take it
    trace_id = r.json()["trace_id"]
    traces = traces_of(sqlgate)  # no 500: the trace was written, NUL kept visible
    [trace] = [t for t in traces if t["id"] == trace_id]
    assert trace["params"] and trace["params"][0].startswith("a") and trace["params"][0].endswith("b")


def test_a_commit_that_fails_leaves_the_work_and_its_traces_rolled_back(wire_pg: Any) -> None:
    """Traces are recorded in the same message as the COMMIT: when the COMMIT itself fails
    (a deferred constraint), neither the rows nor 'ok' traces may remain, on either front door."""
    import psycopg

    pg = wire_pg.server
    t = "tr_" + uuid.uuid4().hex[:8]
    setup = (f"CREATE TABLE {t}_p (id int PRIMARY KEY); CREATE TABLE {t} (p int REFERENCES {t}_p "
             "DEFERRABLE INITIALLY DEFERRED)")
    assert pg.sql(setup).status_code == 200

    over_http = pg.sql(f"INSERT INTO {t} VALUES (1); INSERT INTO {t} VALUES (2)")
    assert over_http.status_code == 400 and over_http.json()["code"] == "23503", over_http.text
    traces = by_request(pg, over_http.json()["trace_id"])
    assert traces and all(x["outcome"] != "ok" for x in traces), traces

    with psycopg.connect(wire_pg.dsn(), autocommit=True) as conn:
        conn.execute("BEGIN")
        conn.execute(f"INSERT INTO {t} VALUES (3)")
        try:
            conn.execute("COMMIT")
            raise AssertionError("the COMMIT should have failed")
        except psycopg.errors.ForeignKeyViolation:
            pass
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        conn.execute(f"INSERT INTO {t}_p VALUES (9)")  # the session goes on

    assert pg.sql(f"SELECT count(*) AS n FROM {t}").json()["rows"] == [{"n": "0"}]
    wire_traces = [x for x in traces_of(pg) if f"INSERT INTO {t} VALUES (3)" in x["sql"]]
    assert [x["outcome"] for x in wire_traces] == ["rolled_back"], wire_traces
    commit = [x for x in traces_of(pg) if x["sql"] == "COMMIT" and x["outcome"] == "failed"]
    assert commit, "the failed COMMIT is traced as failed"


def test_trace_rows_survive_copy_with_every_special_character(pg_server: Any) -> None:
    """traces_copy escapes what a client chose (actor, branch, SQL, parameters, messages) and
    passes sqlgate's own fields as they are: every value must come back from PostgreSQL exactly."""
    import psycopg

    from proxy.trace import COPY_COLUMNS, Trace, traces_copy

    nasty = "tab\there\nnew\rline back\\slash \\N nul\x00end 'quote' \"dq\" é"
    trace = Trace(request_id="rq_1", actor=nasty, token_id=None, branch="br\tanch", front_door="wire",
                  sql=nasty, params=[nasty, None, 1.5], klass="read", tables=["a\tb"], command="SELECT",
                  rows=None, duration_ms=0.125, cost=None, error_message=nasty)
    plain = Trace(request_id="rq_2", actor="agent", token_id="tok_1", branch="main", front_door="http",
                  sql="SELECT 1", params=None, klass="read", tables=[], command="SELECT", rows=1,
                  duration_ms=2.0, cost=2.0, checkpoint_id="cp_1", outcome="failed", error_code="sql.error")
    shown = nasty.replace("\x00", "\\x00")
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE t (id text, at timestamptz, request_id text, actor text, token_id text, "
                     "branch text, front_door text, sql text, params jsonb, class text, tables jsonb, command text,"
                     " rows bigint, duration_ms float8, cost float8, checkpoint_id text, outcome text, "
                     "error_code text, error_message text)")
        with conn.cursor().copy(f"COPY t ({', '.join(COPY_COLUMNS)}) FROM STDIN") as copy:
            copy.write(traces_copy([trace, plain]))
        rows = conn.execute("SELECT actor, branch, sql, params, tables, rows, duration_ms, cost, token_id, "
                            "error_message, at = %s FROM t ORDER BY request_id", (trace.at,)).fetchall()
    assert rows[0] == (shown, "br\tanch", shown, [shown, None, 1.5], ["a\tb"], None, 0.125, None, None, shown, True)
    assert rows[1] == ("agent", "main", "SELECT 1", None, [], 1, 2.0, 2.0, "tok_1", None, False)
