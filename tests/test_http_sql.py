"""POST /sql through the real `sqlgate serve`, the same bodies on DuckDB and
PostgreSQL: Neon's shapes and modes, batches, scripts, limits and errors."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.support.sqlgate_server import SqlgateServer

NEON_HEADERS = {"Neon-Array-Mode": "true", "Neon-Raw-Text-Output": "true"}


def table_name() -> str:
    return "t_" + uuid.uuid4().hex[:10]


def test_params_are_untyped_text_and_rows_typed_json(sqlgate: SqlgateServer) -> None:
    r = sqlgate.sql("SELECT $1::int + 1 AS answer, $2 AS s, $3::boolean AS b", ["41", "héllo 'q'", "true"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["rows"] == [{"answer": 42, "s": "héllo 'q'", "b": True}]
    assert [f["name"] for f in body["fields"]] == ["answer", "s", "b"]
    assert [f["dataTypeID"] for f in body["fields"]] == [23, 25, 16]
    assert body["command"] == "SELECT" and body["rowCount"] == 1 and body["rowAsArray"] is False
    assert body["trace_id"].startswith("tr_")


def test_neon_raw_text_and_array_mode(sqlgate: SqlgateServer) -> None:
    with sqlgate.client() as c:
        r = c.post("/sql", headers=NEON_HEADERS, json={
            "query": "SELECT 1.50::numeric(4,2) AS n, 9007199254740993::bigint AS big, NULL::int AS z, true AS t",
            "params": [],
        })
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["rows"] == [["1.50", "9007199254740993", None, "t"]]
    assert body["rowAsArray"] is True
    assert list(body)[:5] == ["fields", "rows", "command", "rowCount", "rowAsArray"]  # Neon's order
    field = body["fields"][0]
    assert field == {"name": "n", "dataTypeID": 1700, "tableID": 0, "columnID": 0, "dataTypeSize": -1,
                     "dataTypeModifier": (4 << 16 | 2) + 4, "format": "text"}


def test_body_array_mode_overrides_header(sqlgate: SqlgateServer) -> None:
    with sqlgate.client() as c:
        r = c.post("/sql", headers=NEON_HEADERS, json={"query": "SELECT 1 AS a", "arrayMode": False})
    assert r.json()["rows"] == [{"a": "1"}]


def test_content_type_is_not_required(sqlgate: SqlgateServer) -> None:
    with sqlgate.client() as c:
        r = c.post("/sql", content=json.dumps({"query": "SELECT 2 AS x"}),
                   headers={"Content-Type": "text/plain;charset=UTF-8"})
    assert r.status_code == 200 and r.json()["rows"] == [{"x": 2}]


def test_ddl_and_dml_round_trip_with_command_and_row_counts(sqlgate: SqlgateServer) -> None:
    t = table_name()
    r = sqlgate.sql(f"CREATE TABLE {t} (id integer PRIMARY KEY, v text)")
    assert r.status_code == 200, r.text
    assert r.json()["command"] == "CREATE" and r.json()["rowCount"] is None and r.json()["fields"] == []
    r = sqlgate.sql(f"INSERT INTO {t} VALUES ($1, $2), ($3, $4), ($5, $6)", ["1", "a", "2", "b", "3", None])
    assert r.json()["command"] == "INSERT" and r.json()["rowCount"] == 3
    r = sqlgate.sql(f"SELECT id, v FROM {t} ORDER BY id")
    assert r.json()["rows"] == [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}, {"id": 3, "v": None}]
    assert r.json()["rowCount"] == 3


def test_script_of_several_statements_runs_in_order_in_one_transaction(sqlgate: SqlgateServer) -> None:
    t = table_name()
    r = sqlgate.sql(f"CREATE TABLE {t} (a int); INSERT INTO {t} VALUES (1), (2); SELECT sum(a)::int AS s FROM {t}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["rows"] == [{"s": 3}]  # the last statement's answer
    assert [x["command"] for x in body["results"]] == ["CREATE", "INSERT", "SELECT"]
    # A failure later in the script undoes the earlier statements.
    u = table_name()
    r = sqlgate.sql(f"CREATE TABLE {u} (a int); INSERT INTO {u} VALUES (1); SELECT * FROM missing_{u}")
    assert r.status_code == 400
    assert sqlgate.sql(f"SELECT * FROM {u}").status_code == 400  # the CREATE was rolled back


def test_leading_begin_and_trailing_commit_or_rollback(sqlgate: SqlgateServer) -> None:
    t = table_name()
    assert sqlgate.sql(f"CREATE TABLE {t} (a int)").status_code == 200
    r = sqlgate.sql(f"BEGIN; INSERT INTO {t} VALUES (1); COMMIT")
    assert r.status_code == 200, r.text
    assert [x["command"] for x in r.json()["results"]] == ["BEGIN", "INSERT", "COMMIT"]
    r = sqlgate.sql(f"BEGIN; INSERT INTO {t} VALUES (2); ROLLBACK")
    assert r.status_code == 200, r.text
    assert sqlgate.sql(f"SELECT a FROM {t}").json()["rows"] == [{"a": 1}]


def test_commit_in_the_middle_is_refused(sqlgate: SqlgateServer) -> None:
    t = table_name()
    sqlgate.sql(f"CREATE TABLE {t} (a int)")
    r = sqlgate.sql(f"INSERT INTO {t} VALUES (1); COMMIT; INSERT INTO {t} VALUES (2)")
    assert r.status_code == 400
    assert "COMMIT" in r.json()["message"] and r.json()["next"]
    assert sqlgate.sql(f"SELECT count(*)::int AS n FROM {t}").json()["rows"] == [{"n": 0}]


def test_batch_is_one_transaction_with_neon_results_shape(sqlgate: SqlgateServer) -> None:
    t = table_name()
    sqlgate.sql(f"CREATE TABLE {t} (a int)")
    with sqlgate.client() as c:
        r = c.post("/sql", headers={**NEON_HEADERS, "Neon-Batch-Isolation-Level": "Serializable"}, json={
            "queries": [
                {"query": f"INSERT INTO {t} VALUES ($1)", "params": ["1"]},
                {"query": f"SELECT count(*)::int AS n FROM {t}", "params": []},
            ]})
        assert r.status_code == 200, r.text
        assert r.headers["Neon-Batch-Isolation-Level"] == "Serializable"
        results = r.json()["results"]
        assert [x["command"] for x in results] == ["INSERT", "SELECT"]
        assert results[1]["rows"] == [["1"]]
        # One failing query undoes the whole batch.
        r = c.post("/sql", json={"queries": [
            {"query": f"INSERT INTO {t} VALUES (2)"}, {"query": "SELECT * FROM no_such_table_here"}]})
        assert r.status_code == 400
        assert c.post("/sql", json={"query": f"SELECT count(*)::int AS n FROM {t}"}).json()["rows"] == [{"n": 1}]


def test_batch_read_only_header_refuses_writes(sqlgate: SqlgateServer) -> None:
    t = table_name()
    sqlgate.sql(f"CREATE TABLE {t} (a int)")
    with sqlgate.client() as c:
        r = c.post("/sql", headers={"Neon-Batch-Read-Only": "true"},
                   json={"queries": [{"query": f"INSERT INTO {t} VALUES (1)"}]})
    assert r.status_code == 400 and r.json()["code"] == "25006"


def test_invalid_isolation_level(sqlgate: SqlgateServer) -> None:
    with sqlgate.client() as c:
        r = c.post("/sql", headers={"Neon-Batch-Isolation-Level": "Chaos"}, json={"queries": [{"query": "SELECT 1"}]})
    assert r.status_code == 400 and r.json()["message"] == "invalid isolation level"


def test_params_with_several_statements_point_to_batches(sqlgate: SqlgateServer) -> None:
    r = sqlgate.sql("SELECT $1; SELECT 2", ["1"])
    assert r.status_code == 400
    assert "queries" in r.json()["next"]


def test_sql_error_keeps_postgres_fields(sqlgate: SqlgateServer) -> None:
    r = sqlgate.sql("SELECT * FROM nope_not_here")
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == "42P01" and "nope_not_here" in body["message"]
    assert body["severity"] == "ERROR" and body["reason"] == "sql.error" and body["next"]
    assert body["trace_id"].startswith("tr_")
    assert r.headers["access-control-allow-origin"] == "*"


def test_unparseable_sql_is_refused_before_running(sqlgate: SqlgateServer) -> None:
    t = table_name()
    r = sqlgate.sql(f"CREATE TABLE {t} (a int)")
    assert r.status_code == 200, r.text
    r = sqlgate.sql(f"INSERT INTO {t} VALUES (1); SELEC oops")
    assert r.status_code == 400 and r.json()["code"] == "42601" and r.json()["reason"] == "sql.unparseable"
    r = sqlgate.sql(f"SELECT count(*)::int AS n FROM {t}")
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == [{"n": 0}]


@pytest.mark.parametrize("body, expected", [
    (b"not json", "could not parse the HTTP request body"),
    (b"[1, 2]", "could not parse the HTTP request body"),
    (b'{"qurey": "SELECT 1"}', '"query"'),
    (b'{"query": "SELECT 1", "params": "x"}', "params"),
    (b'{"queries": []}', "queries"),
])
def test_wrong_shapes_get_the_right_shape_back(sqlgate: SqlgateServer, body: bytes, expected: str) -> None:
    with sqlgate.client() as c:
        r = c.post("/sql", content=body)
    assert r.status_code == 400
    data = r.json()
    assert expected in data["message"]
    assert '"query"' in data["hint"] and data["next"]


def test_empty_query_answers_empty_result(sqlgate: SqlgateServer) -> None:
    r = sqlgate.sql("  -- nothing here\n")
    assert r.status_code == 200 and r.json()["fields"] == [] and r.json()["rows"] == []


def test_request_too_large_is_413(sqlgate: SqlgateServer) -> None:
    with sqlgate.client() as c:
        r = c.post("/sql", content=b'{"query": "SELECT 1", "pad": "' + b"x" * (10 * 1024 * 1024) + b'"}')
    assert r.status_code == 413 and "too large" in r.json()["message"]


def test_response_too_large_is_507(sqlgate: SqlgateServer) -> None:
    r = sqlgate.sql("SELECT repeat('x', 1000) AS pad FROM generate_series(1, 12000)")
    assert r.status_code == 507, r.text[:200]
    assert r.json()["reason"] == "response.too_large" and "LIMIT" in r.json()["next"]


def test_cors_preflight(sqlgate: SqlgateServer) -> None:
    r = httpx.options(sqlgate.url + "/sql")
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"
    assert "Neon-Connection-String" in r.headers["access-control-allow-headers"]


def test_unknown_branch_is_404_with_next_step(sqlgate: SqlgateServer) -> None:
    r = sqlgate.sql("SELECT 1", branch="nope")
    assert r.status_code == 404 and r.json()["reason"] == "branching.branch_not_found" and "main" in r.json()["next"]


def test_dry_run_plans_without_running(sqlgate: SqlgateServer) -> None:
    t = table_name()
    sqlgate.sql(f"CREATE TABLE {t} (a int); INSERT INTO {t} VALUES (1), (2)")
    r = sqlgate.sql(f"DELETE FROM {t} WHERE a = 1; INSERT INTO {t} VALUES (3)", dry_run=True)
    assert r.status_code == 200, r.text
    plan = r.json()["plan"]
    assert [p["class"] for p in plan] == ["destructive_dml", "write"]
    assert plan[0]["tables"] == [t] and plan[0]["decision"] == "checkpoint_then_allow"
    assert plan[0]["checkpoint"]["tables"] == [t]
    assert plan[1]["decision"] == "allow"
    if sqlgate.backend == "postgres":
        assert isinstance(plan[0]["cost_estimate"], float)
    assert sqlgate.sql(f"SELECT count(*)::int AS n FROM {t}").json()["rows"] == [{"n": 2}]


def test_dry_run_of_a_refused_statement_is_refused(sqlgate: SqlgateServer) -> None:
    token = sqlgate.token("read")["token"]
    r = sqlgate.sql("CREATE TABLE should_not_exist (a int)", token=token, dry_run=True)
    assert r.status_code == 403 and r.json()["reason"] == "policy.denied"


def test_syntax_error_position_is_reported_as_postgresql_does(sqlgate: SqlgateServer) -> None:
    r = sqlgate.sql("SELECT 1; SELEC oops")
    assert r.status_code == 400 and r.json()["code"] == "42601"
    if sqlgate.backend == "postgres":
        assert r.json()["position"] == "11"  # PostgreSQL's own answer for this text


def test_begin_read_only_in_a_script_is_honoured(sqlgate: SqlgateServer) -> None:
    """An agent that opens its script with BEGIN READ ONLY gets a read-only transaction."""
    t = table_name()
    sqlgate.sql(f"CREATE TABLE {t} (a int); INSERT INTO {t} VALUES (1)")
    r = sqlgate.sql(f"BEGIN READ ONLY; INSERT INTO {t} VALUES (2); COMMIT")
    assert r.status_code == 400 and r.json()["code"] == "25006", r.text
    if sqlgate.backend == "postgres":  # DuckDB has no ISOLATION LEVEL syntax
        r = sqlgate.sql(f"START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY; SELECT count(*)::int AS n"
                        f" FROM {t}")
        assert r.status_code == 200 and r.json()["rows"] == [{"n": 1}], r.text
    assert sqlgate.sql(f"SELECT count(*)::int AS n FROM {t}").json()["rows"] == [{"n": 1}]
