"""Bad input never crashes the server nor gets a stack trace (invariant 5):
random bodies, headers and SQL against the real server, bounded in count."""

from __future__ import annotations

import json

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.sqlgate_server import SqlgateServer

EXPECTED = {200, 400, 401, 403, 404, 413, 507}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)
sql_fragments = st.sampled_from([
    "SELECT", "1", "'", "$$", "$1", ";", "--", "/*", "*/", "\r", "DROP TABLE", "FROM", "sqlgate.traces", "(",
    ")", "U&\"\\0075\"", "E'\\''", "WITH x AS (DELETE FROM t RETURNING *)", "DO $$ BEGIN END $$", "\x00", "é",
])


def check(response: httpx.Response) -> None:
    assert response.status_code in EXPECTED, (response.status_code, response.text[:300])
    assert response.headers["content-type"] == "application/json", (response.status_code, response.text[:300])
    body = response.json()
    assert body["message"] if response.status_code != 200 else "fields" in body or "results" in body
    assert "Traceback" not in response.text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sql=st.lists(sql_fragments, min_size=1, max_size=8).map(" ".join), params=st.lists(json_values, max_size=3))
def test_random_sql_is_answered_cleanly(sqlgate: SqlgateServer, sql: str, params: list[object]) -> None:
    check(sqlgate.sql(sql, params))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=json_values | st.binary(max_size=64).map(lambda b: b.decode("latin-1")))
def test_random_bodies_are_answered_cleanly(sqlgate: SqlgateServer, body: object) -> None:
    with sqlgate.client() as c:
        content = body if isinstance(body, str) else json.dumps(body)
        check(c.post("/sql", content=content.encode("utf-8", "surrogatepass")))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(conn=st.text(max_size=60), array_mode=st.text(max_size=6), level=st.text(max_size=12))
def test_random_neon_headers_are_answered_cleanly(sqlgate: SqlgateServer, conn: str, array_mode: str,
                                                  level: str) -> None:
    headers = {"Neon-Connection-String": conn, "Neon-Array-Mode": array_mode, "Neon-Batch-Isolation-Level": level}
    # Only what HTTP can carry in a header: printable ASCII.
    safe = {k: "".join(ch for ch in v if " " <= ch <= "~").strip() for k, v in headers.items()}
    with httpx.Client(base_url=sqlgate.url, timeout=30) as c:
        check(c.post("/sql", json={"queries": [{"query": "SELECT 1"}]}, headers=safe))


def test_server_still_serves_after_the_fuzzing(sqlgate: SqlgateServer) -> None:
    r = sqlgate.sql("SELECT 1 AS ok")
    assert r.status_code == 200 and r.json()["rows"] == [{"ok": 1}]
