"""psql, scripted, through the wire front door on both backends."""


from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

from tests.support.pgserver import free_port
from tests.support.wire import PSQL, Wire


def psql(w: Wire, *args: str, token: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([PSQL, "-X", "-v", "ON_ERROR_STOP=0", *args], env=w.psql_env(token), text=True,
                            capture_output=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_simple_queries_and_several_statements(wire: Wire) -> None:
    out = psql(wire, "-A", "-t", "-c", "SELECT 1 AS a, 'x' AS b").stdout
    assert out.strip() == "1|x"
    psql(wire, "-c", "CREATE TABLE psql_t (id int, name text)")
    out = psql(wire, "-c", "INSERT INTO psql_t VALUES (1, 'a'), (2, NULL)").stdout
    assert "INSERT 0 2" in out
    out = psql(wire, "-A", "-t", "-c", "SELECT id FROM psql_t ORDER BY id; SELECT count(*) FROM psql_t").stdout
    assert out.split() == ["1", "2", "2"]


def test_error_has_sqlstate_and_session_goes_on(wire: Wire) -> None:
    r = psql(wire, "-v", "VERBOSITY=verbose", "-c", "SELECT * FROM no_such_table_xyz", "-c", "SELECT 41 + 1",
             check=False)
    assert "42P01" in r.stderr
    assert "42" in r.stdout


def test_destructive_statement_is_announced_as_notice(wire: Wire) -> None:
    psql(wire, "-c", "CREATE TABLE psql_cp (id int)", "-c", "INSERT INTO psql_cp VALUES (1), (2)")
    r = psql(wire, "-c", "DELETE FROM psql_cp WHERE id = 1")
    assert "NOTICE:  sqlgate: checkpoint cp_" in r.stderr
    assert "SELECT sqlgate.rollback('cp_" in r.stderr
    assert "DELETE 1" in r.stdout


def test_refused_statement_is_42501_with_hint(wire: Wire) -> None:
    token = wire.server.token("read", "reader")["token"]
    r = psql(wire, "-v", "VERBOSITY=verbose", "-c", "CREATE TABLE psql_denied (id int)", token=token, check=False)
    assert "42501" in r.stderr
    assert "HINT" in r.stderr


def test_transaction_blocks_and_failed_status(wire: Wire) -> None:
    script = """
CREATE TABLE psql_tx (id int);
BEGIN;
INSERT INTO psql_tx VALUES (1);
SELECT nope_column FROM psql_tx;
INSERT INTO psql_tx VALUES (2);
COMMIT;
SELECT count(*) AS n FROM psql_tx;
BEGIN;
INSERT INTO psql_tx VALUES (3);
COMMIT;
SELECT count(*) AS n FROM psql_tx;
"""
    r = subprocess.run([PSQL, "-X", "-A", "-t"], input=script, env=wire.psql_env(), text=True, capture_output=True,
                       timeout=60)
    lines = [line for line in r.stdout.split("\n") if line.strip()]
    assert "25P02" in r.stderr or "current transaction is aborted" in r.stderr
    assert "ROLLBACK" in r.stdout  # COMMIT of a failed transaction answers ROLLBACK
    assert lines[-1] == "1"


def test_empty_query_and_bad_password(wire: Wire) -> None:
    r = psql(wire, "-c", ";")
    assert r.returncode == 0
    r = psql(wire, "-c", "SELECT 1", token="sqlgate_wrong", check=False)
    assert r.returncode != 0
    assert "password authentication failed" in r.stderr


def test_startup_options_are_refused(wire: Wire) -> None:
    env = wire.psql_env()
    env["PGOPTIONS"] = "-c statement_timeout=0"
    r = subprocess.run([PSQL, "-X", "-c", "SELECT 1"], env=env, text=True, capture_output=True, timeout=30)
    assert r.returncode != 0
    assert "options" in r.stderr


def test_psql_describe_family(wire: Wire) -> None:
    psql(wire, "-c", "CREATE TABLE psql_desc (id int PRIMARY KEY, name text NOT NULL DEFAULT 'x', u int UNIQUE)",
         "-c", "CREATE VIEW psql_desc_v AS SELECT id FROM psql_desc")
    out = psql(wire, "-c", r"\dt").stdout
    assert "psql_desc " in out and "table" in out and "psql_desc_v" not in out
    out = psql(wire, "-c", r"\d").stdout
    assert "psql_desc_v" in out and "view" in out
    out = psql(wire, "-c", r"\d psql_desc").stdout
    assert 'Table "' in out and "psql_desc" in out
    assert " id     | integer |           | not null |" in out
    assert " name   | text    |           | not null | 'x'" in out
    assert "PRIMARY KEY, btree (id)" in out
    assert "UNIQUE CONSTRAINT, btree (u)" in out
    out = psql(wire, "-c", r"\d psql_desc_v").stdout
    assert 'View "' in out and " id     | integer |" in out
    out = psql(wire, "-c", r"\dn").stdout
    assert ("main" if wire.backend == "duckdb" else "public") in out
    out = psql(wire, "-c", r"\l").stdout
    assert "List of databases" in out
    if wire.backend == "duckdb":
        assert " main " in out  # the branches
    assert 'Did not find any relation named "psql_nosuch"' in psql(wire, "-c", r"\d psql_nosuch", check=False).stderr



def test_tls_when_the_server_has_a_certificate(tmp_path: Path) -> None:
    """SSLRequest answered 'S' and TLS negotiated; with sslmode=require psql connects over TLS."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    port, token = free_port(), "sqlgate_tls_" + secrets.token_hex(8)
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "serve", "--data", str(tmp_path / "data"), "--http",
         f"127.0.0.1:{free_port()}", "--pg", f"127.0.0.1:{port}", "--tls-cert", str(cert), "--tls-key", str(key)],
        env={**os.environ, "SQLGATE_ADMIN_TOKEN": token}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parents[1])
    try:
        env = {**os.environ, "PGPASSWORD": token, "PGSSLMODE": "require", "PSQLRC": "/dev/null"}
        url = f"postgresql://agent@127.0.0.1:{port}/main"
        deadline = time.monotonic() + 60
        while True:
            r = subprocess.run([PSQL, "-X", "-A", "-t", url, "-c", "SELECT 'over tls'", "-c", r"\conninfo"], env=env,
                               text=True, capture_output=True, timeout=60)
            if r.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert r.returncode == 0, r.stderr
        assert "over tls" in r.stdout and "SSL connection" in r.stdout
    finally:
        proc.terminate()
        proc.wait(10)


def test_psql_copy_text_and_csv(wire: Wire, tmp_path: Path) -> None:
    data = tmp_path / "in.tsv"
    data.write_text("1\tone\n2\t\\N\n3\ttab\\there\n")
    psql(wire, "-c", "CREATE TABLE psql_copy (id int, name text)", "-c", rf"\copy psql_copy FROM '{data}'")
    out = psql(wire, "-c", r"\copy (SELECT id, name FROM psql_copy ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)")
    assert out.stdout.splitlines()[-4:] == ["id,name", "1,one", "2,", '3,tab\there']
    out = psql(wire, "-c", r"\copy psql_copy (id) TO STDOUT")
    assert sorted(out.stdout.split()) == ["1", "2", "3"]


def test_results_before_an_error_are_sent_first(wire: Wire) -> None:
    """As PostgreSQL does: `SELECT 7; SELECT * FROM missing` shows the 7, then the error."""
    r = psql(wire, "-A", "-t", "-c", "SELECT 7 AS seven; SELECT * FROM no_such_table_before_error", check=False)
    assert r.stdout.split() == ["7"], (r.stdout, r.stderr)
    assert "no_such_table_before_error" in r.stderr
