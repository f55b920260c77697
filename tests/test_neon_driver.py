"""The real, unchanged `@neondatabase/serverless` npm driver (1.2.0, pinned in
tests/clients/neon/package.json) against sqlgate's POST /sql on both backends.

Each test runs tests/clients/neon/neon_check.mjs for one scenario in a Node
subprocess, against the real `sqlgate serve` started by the `sqlgate` fixture,
and asserts on the JSON it prints: every value is described with the JS type
the driver's own parsers produced ({"t": "number", "v": 1}, {"t": "Date",
"iso": ...}, {"t": "Buffer", "hex": ...}, ...). See neon-http.md for the
protocol these tests hold sqlgate to.

The SQL is written so that both backends accept it; the one genuine dialect
difference used here is `jsonb`, which DuckDB does not have (`json` is checked
on both, `jsonb` only on PostgreSQL).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.sqlgate_server import SqlgateServer

NEON_DIR = Path(__file__).resolve().parent / "clients" / "neon"
DRIVER_VERSION = "1.2.0"
NODE_TIMEOUT = 60

TS_ISO = "2024-01-02T03:04:05.678Z"
TEXT = "it's \"quoted\" \\ back, ünïcödé ✓ 😀 日本"
OBJ = {"a": [1, 2.5, None], "b": {"c": "d'e\"f"}, "u": "✓"}


# --- the driver ------------------------------------------------------------

def _npm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["npm", *args, "--no-audit", "--no-fund"], cwd=NEON_DIR, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="session")
def neon_driver() -> Path:
    """tests/clients/neon with node_modules installed (npm ci, else npm install), once per session."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.fail(f"`{tool}` is not on PATH; the Neon driver tests need Node 20+ and npm", pytrace=False)
    installed = NEON_DIR / "node_modules" / "@neondatabase" / "serverless" / "package.json"
    if not installed.exists():
        result = _npm("ci")
        if result.returncode != 0:
            fallback = _npm("install")
            if fallback.returncode != 0:
                pytest.fail(
                    f"could not install the Neon driver in {NEON_DIR}:\n"
                    f"npm ci exited {result.returncode}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}\n"
                    f"npm install exited {fallback.returncode}:\n{fallback.stdout[-2000:]}{fallback.stderr[-2000:]}",
                    pytrace=False,
                )
    version = json.loads(installed.read_text())["version"]
    if version != DRIVER_VERSION:
        pytest.fail(f"{installed} is version {version}, expected {DRIVER_VERSION}; run `npm ci` in {NEON_DIR}",
                    pytrace=False)
    return NEON_DIR


def conn_string(server: SqlgateServer, token: str | None, actor: str = "neon-agent", branch: str = "main") -> str:
    port = server.url.rsplit(":", 1)[1]
    credentials = f"{actor}:{token}" if token is not None else actor
    return f"postgresql://{credentials}@127.0.0.1:{port}/{branch}"


def run_scenario(driver_dir: Path, server: SqlgateServer, scenario: str, *, conn: str,
                 table: str | None = None, read_conn: str | None = None, token: str | None = None,
                 tz: str = "UTC") -> dict[str, Any]:
    env = {**os.environ, "TZ": tz, "NEON_ENDPOINT": server.url + "/sql", "NEON_CONN": conn}
    for name, value in (("NEON_TABLE", table), ("NEON_READ_CONN", read_conn), ("NEON_TOKEN", token)):
        if value is not None:
            env[name] = value
    try:
        proc = subprocess.run(["node", "neon_check.mjs", scenario], cwd=driver_dir, env=env, capture_output=True,
                              text=True, timeout=NODE_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"neon_check.mjs {scenario} did not finish in {NODE_TIMEOUT}s; stderr: {exc.stderr!r}\n"
                    f"server log:\n{server.output()[-3000:]}")
    assert proc.returncode == 0, f"neon_check.mjs {scenario} exited {proc.returncode}:\n{proc.stderr}\n{proc.stdout}"
    out = json.loads(proc.stdout)
    assert out["scenario"] == scenario
    return out["results"]  # type: ignore[no-any-return]


def ok(results: dict[str, Any], name: str) -> Any:
    step = results[name]
    assert step["ok"], f"{name}: the driver threw {step.get('error')}"
    return step["value"]


def err(results: dict[str, Any], name: str) -> dict[str, Any]:
    step = results[name]
    assert not step["ok"], f"{name}: expected the driver to throw, it returned {step.get('value')}"
    error = step["error"]
    assert error["isNeonDbError"], f"{name}: expected a NeonDbError, got {error}"
    return error  # type: ignore[no-any-return]


def unique_table(kind: str, server: SqlgateServer) -> str:
    return f"neon_{kind}_{server.backend}_{secrets.token_hex(4)}"


def num(v: float) -> dict[str, Any]:
    return {"t": "number", "v": v}


def string(v: str) -> dict[str, Any]:
    return {"t": "string", "v": v}


def boolean(v: bool) -> dict[str, Any]:
    return {"t": "boolean", "v": v}


NULL = {"t": "null"}


def expected_types(server: SqlgateServer, untyped: dict[str, Any]) -> dict[str, Any]:
    expected = {
        "null": NULL,
        "undefined": NULL,  # the driver sends undefined as null
        "true": boolean(True),
        "false": boolean(False),
        "int": num(-42),
        "float": num(3.25),
        "int8": string("9007199254740993"),  # int8 stays a string (no precision loss past 2^53)
        "bigint_numeric": string("12345678901234567890"),
        "numeric": string("1.50"),
        "text": string(TEXT),
        "untyped": untyped,
        "date": {"t": "Date", "iso": TS_ISO},
        "json": {"t": "object", "v": OBJ},
        "int_array": {"t": "array", "items": [num(1), num(2), num(3)]},
        "text_array": {"t": "array", "items": [string("a"), string('b"c'), NULL, string("d,e")]},
        "buffer": {"t": "Buffer", "hex": "deadbeef0001"},
    }
    if server.backend == "postgres":  # DuckDB has no jsonb type
        expected["jsonb"] = {"t": "object", "v": OBJ}
    return expected


def check_values(results: dict[str, Any], expected: dict[str, Any]) -> None:
    """Compares every case, so one failure report lists all the wrong ones."""
    wrong = {}
    for name, want in expected.items():
        step = results[name]
        got = step["value"] if step["ok"] else {"threw": step["error"]}
        if got != want:
            wrong[name] = {"expected": want, "got": got}
    assert not wrong, "values that did not round-trip through the driver:\n" + "\n".join(
        f"  {name}: expected {json.dumps(w['expected'], ensure_ascii=False)}\n"
        f"  {' ' * len(name)}  got      {json.dumps(w['got'], ensure_ascii=False)}" for name, w in wrong.items())


# --- 1. parameters of every JS type, typed results --------------------------

def test_tagged_template_params(neon_driver: Path, sqlgate: SqlgateServer) -> None:
    token = sqlgate.token("write")["token"]
    results = run_scenario(neon_driver, sqlgate, "template", conn=conn_string(sqlgate, token))
    check_values(results, expected_types(sqlgate, untyped=string(TEXT)))
    assert ok(results, "two_params") == {"a": num(7), "b": string("x"), "rows": 1}


def test_query_params(neon_driver: Path, sqlgate: SqlgateServer) -> None:
    token = sqlgate.token("write")["token"]
    # A local-time zone far from UTC: the driver sends Dates with the local offset (+05:30).
    results = run_scenario(neon_driver, sqlgate, "query", conn=conn_string(sqlgate, token), tz="Asia/Kolkata")
    # Parameters are untyped text, as on Neon: `SELECT $1` with 42 answers the text "42".
    check_values(results, expected_types(sqlgate, untyped=string("42")))
    assert ok(results, "no_params") == string("plain")


# --- 2. fullResults / arrayMode, command and rowCount ------------------------

def _field(name: str, oid: int, size: int) -> dict[str, Any]:
    return {"name": name, "dataTypeID": oid, "dataTypeSize": size, "dataTypeModifier": -1, "format": "text"}


def _fields(result: dict[str, Any]) -> list[dict[str, Any]]:
    for f in result["fields"]:  # every FieldDef key Neon writes must be there
        assert set(f) == {"name", "dataTypeID", "tableID", "columnID", "dataTypeSize", "dataTypeModifier", "format"}
        assert isinstance(f["tableID"], int) and isinstance(f["columnID"], int)
    return [{k: v for k, v in f.items() if k not in ("tableID", "columnID")} for f in result["fields"]]


def test_full_results_and_array_mode(neon_driver: Path, sqlgate: SqlgateServer) -> None:
    token = sqlgate.token("write")["token"]
    results = run_scenario(neon_driver, sqlgate, "options", conn=conn_string(sqlgate, token),
                           table=unique_table("options", sqlgate))
    int4, text = _field("a", 23, 4), _field("b", 25, -1)

    full = ok(results, "select_full")
    assert _fields(full) == [int4, text]
    assert (full["command"], full["rowCount"], full["rowAsArray"]) == ("SELECT", 2, False)
    assert full["rows"] == [{"a": num(1), "b": string("x")}, {"a": num(2), "b": string("y")}]

    full_array = ok(results, "select_full_array")
    assert _fields(full_array) == [int4, text]
    assert (full_array["command"], full_array["rowCount"], full_array["rowAsArray"]) == ("SELECT", 1, True)
    assert full_array["rows"] == [[num(5), string("z")]]

    assert ok(results, "select_array") == [[num(1), string("x")]]
    assert ok(results, "select_array_query") == [[num(9), boolean(True)]]

    create = ok(results, "create_full")
    assert (create["fields"], create["rows"], create["command"], create["rowCount"]) == ([], [], "CREATE", None)
    insert = ok(results, "insert_full")
    assert (insert["fields"], insert["rows"], insert["command"], insert["rowCount"]) == ([], [], "INSERT", 3)
    select = ok(results, "select_rows_full")
    assert _fields(select) == [_field("id", 23, 4), _field("name", 25, -1)]
    assert (select["command"], select["rowCount"]) == ("SELECT", 3)
    assert select["rows"] == [{"id": num(i), "name": string(s)} for i, s in ((1, "a"), (2, "b"), (3, "c"))]
    returning = ok(results, "insert_returning_full")
    assert _fields(returning) == [_field("id", 23, 4), _field("name", 25, -1)]
    assert (returning["command"], returning["rowCount"]) == ("INSERT", 1)
    assert returning["rows"] == [{"id": num(4), "name": string("d")}]


# --- 3. sql.transaction([...]) ---------------------------------------------

def test_transaction_batches(neon_driver: Path, sqlgate: SqlgateServer) -> None:
    token = sqlgate.token("write")["token"]
    results = run_scenario(neon_driver, sqlgate, "transaction", conn=conn_string(sqlgate, token),
                           table=unique_table("tx", sqlgate))
    ok(results, "create")
    # One result per query, in order.
    assert ok(results, "batch") == [[], [], [{"v": string("first")}], [{"n": num(2)}]]
    # isolationLevel + readOnly are sent as Neon-Batch-* headers.
    assert ok(results, "batch_options") == [[num(1)], [num(2)]]
    full = ok(results, "batch_full_array")
    assert [(r["command"], r["rowCount"], r["rowAsArray"]) for r in full] == [("SELECT", 1, True), ("SELECT", 2, True)]
    assert [r["rows"] for r in full] == [[[string("a")]], [[num(1)], [num(2)]]]
    assert _fields(full[0]) == [_field("s", 25, -1)] and _fields(full[1]) == [_field("id", 23, 4)]
    # A failing query rolls the whole batch back, including the rows inserted before it.
    assert err(results, "batch_failing")["code"] == "23505"
    missing = err(results, "batch_failing_missing")
    assert missing["code"] == "42P01" and "_missing" in missing["message"]
    read_only = err(results, "batch_read_only_write")
    assert read_only["code"] == "25006", read_only
    assert ok(results, "after") == [[num(1), string("one")], [num(2), string("two")]]


# --- 4. errors -------------------------------------------------------------

def _sqlstate_reachable(error: dict[str, Any], sqlstate: str) -> bool:
    """The SQLSTATE as `.code` (HTTP 400) or only inside the message (any other status)."""
    return error["code"] == sqlstate or f'"code": "{sqlstate}"' in error["message"]


def test_errors(neon_driver: Path, sqlgate: SqlgateServer) -> None:
    write = sqlgate.token("write")["token"]
    read = sqlgate.token("read")["token"]
    table = unique_table("errors", sqlgate)
    results = run_scenario(neon_driver, sqlgate, "errors", conn=conn_string(sqlgate, write), table=table,
                           read_conn=conn_string(sqlgate, read, actor="neon-reader"))
    missing = err(results, "missing_table")
    assert missing["code"] == "42P01" and f"{table}_does_not_exist" in missing["message"], missing
    assert missing["severity"] == "ERROR"
    syntax = err(results, "syntax")
    assert syntax["code"] == "42601" and "SELEC" in syntax["message"], syntax
    assert err(results, "bad_cast")["code"] == "22P02"

    ok(results, "create")
    assert ok(results, "read_token_select") == [num(0)]
    # A statement sqlgate's policy refuses. sqlgate answers 403, and the driver
    # parses the JSON error body only for HTTP 400: `.code` is then lost and the
    # body is only in the message ("Server error (HTTP status 403): {...}").
    refused = err(results, "read_token_insert")
    assert "sqlgate refused this statement" in refused["message"], refused
    assert _sqlstate_reachable(refused, "42501"), refused
    assert ok(results, "after") == [num(0)]  # nothing was inserted


# --- 5. authentication ------------------------------------------------------

def test_auth(neon_driver: Path, sqlgate: SqlgateServer) -> None:
    token = sqlgate.token("write")["token"]
    actor = "neon-auth-" + secrets.token_hex(3)
    results = run_scenario(neon_driver, sqlgate, "auth", conn=conn_string(sqlgate, token, actor=actor), token=token)
    assert ok(results, "password") == string("ok")  # token as the connection-string password
    assert ok(results, "auth_token") == string("ok")  # authToken -> Authorization: Bearer
    assert ok(results, "auth_token_fn") == string("ok")  # authToken as an async function
    for name in ("wrong_password", "wrong_auth_token"):
        wrong = err(results, name)
        assert "the token is not valid" in wrong["message"], wrong
        assert _sqlstate_reachable(wrong, "28P01"), wrong
    missing = err(results, "no_credentials")
    assert "missing authentication credentials" in missing["message"], missing
    # The connection string's user name labels the actor in sqlgate's traces.
    traces = httpx.get(sqlgate.url + "/traces", params={"actor": actor, "limit": 50},
                       headers={"Authorization": f"Bearer {sqlgate.admin_token}"}, timeout=30).json()["traces"]
    assert len(traces) == 3 and all(t["front_door"] == "http" and t["outcome"] == "ok" for t in traces), traces


# --- 6. DDL + DML round trip -------------------------------------------------

def test_ddl_dml_round_trip(neon_driver: Path, sqlgate: SqlgateServer) -> None:
    token = sqlgate.token("write")["token"]
    results = run_scenario(neon_driver, sqlgate, "roundtrip", conn=conn_string(sqlgate, token),
                           table=unique_table("roundtrip", sqlgate))
    assert ok(results, "create") == []
    assert ok(results, "insert") == [1, 1, 1]  # rowCount of each INSERT
    rows = ok(results, "select")
    assert rows == [
        {"id": string("1"), "name": string("alpha"), "score": num(1.5), "active": boolean(True),
         "meta": {"t": "object", "v": {"k": 1}}, "created": {"t": "Date", "iso": "2024-05-06T07:08:09.010Z"}},
        {"id": string("2"), "name": string("O'Brien \"quoted\" ✓"), "score": num(-0.25), "active": boolean(False),
         "meta": {"t": "object", "v": {"k": [True, None]}},
         "created": {"t": "Date", "iso": "1999-12-31T23:59:59.999Z"}},
        {"id": string("3"), "name": NULL, "score": NULL, "active": NULL, "meta": NULL, "created": NULL},
    ]
    assert ok(results, "insert_returning") == [[string("4"), string("delta")]]
    assert ok(results, "count") == num(3)
