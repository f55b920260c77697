"""`sqlgate serve` itself: the admin token, secure defaults, TLS, and the
agent-facing documents it serves."""

from __future__ import annotations

import os
import re
import ssl
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from tests.support.pgserver import free_port
from tests.support.sqlgate_server import SqlgateServer


def serve(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "proxy.cli", "serve", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_first_start_creates_admin_token_once(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SQLGATE_ADMIN_TOKEN"}
    port = free_port()
    args = [sys.executable, "-m", "proxy.cli", "serve", "--data", str(tmp_path), "--http", f"127.0.0.1:{port}"]
    outputs = []
    for _ in range(2):
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "serving" in line:
                break
        # The token line (if any) comes right after "serving"; give it a moment, then stop.
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
        except httpx.HTTPError:
            pass
        proc.terminate()
        rest, _ = proc.communicate(timeout=20)
        outputs.append("".join(lines) + rest)
    token_file = tmp_path / "admin.token"
    secret = token_file.read_text().strip()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert secret in outputs[0]  # shown on first start ...
    assert secret not in outputs[1]  # ... and only then
    assert (tmp_path / "main.duckdb").exists()


def test_admin_token_from_environment(tmp_path: Path) -> None:
    server = SqlgateServer("duckdb", data_dir=tmp_path).start()
    try:
        assert server.sql("SELECT 1").status_code == 200  # the fixture passes SQLGATE_ADMIN_TOKEN
        assert not (tmp_path / "admin.token").exists()
        assert server.admin_token not in server.output()
    finally:
        server.stop()


def test_non_loopback_without_tls_is_refused(tmp_path: Path) -> None:
    out = serve("--data", str(tmp_path), "--http", "0.0.0.0:0")
    assert out.returncode == 2
    assert "without TLS" in out.stderr and "--tls-cert" in out.stderr and "--insecure" in out.stderr
    assert "Traceback" not in out.stderr


def test_half_tls_configuration_is_refused(tmp_path: Path) -> None:
    out = serve("--data", str(tmp_path), "--tls-cert", str(tmp_path / "c.pem"))
    assert out.returncode == 2 and "go together" in out.stderr


def test_unreachable_database_is_a_clear_startup_error(tmp_path: Path) -> None:
    out = serve("--data", str(tmp_path), "--http", f"127.0.0.1:{free_port()}",
                "--database", f"postgresql://x:y@127.0.0.1:{free_port()}/nope")
    assert out.returncode == 2 and "cannot start" in out.stderr and "Traceback" not in out.stderr


@pytest.fixture(scope="module")
def certificate() -> tuple[Path, Path]:
    folder = Path(tempfile.mkdtemp(prefix="sqlgate-tls-"))
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


def test_https_with_a_certificate(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    port = free_port()
    env = {**os.environ, "SQLGATE_ADMIN_TOKEN": "sqlgate_tls_test_token"}
    proc = subprocess.Popen([sys.executable, "-m", "proxy.cli", "serve", "--data", str(tmp_path), "--http",
                             f"127.0.0.1:{port}", "--tls-cert", str(cert), "--tls-key", str(key)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert proc.stdout is not None
        assert "https://" in proc.stdout.readline()
        context = ssl.create_default_context(cafile=str(cert))
        r = None
        for _ in range(50):
            try:
                r = httpx.post(f"https://127.0.0.1:{port}/sql", json={"query": "SELECT 1 AS one"}, verify=context,
                               headers={"Authorization": "Bearer sqlgate_tls_test_token"}, timeout=5)
                break
            except httpx.ConnectError:
                import time

                time.sleep(0.1)
        assert r is not None and r.status_code == 200 and r.json()["rows"] == [{"one": 1}]
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_quickstart_is_short_and_enough_for_a_first_query(sqlgate: SqlgateServer) -> None:
    for path in ("/", "/llms.txt"):
        r = httpx.get(sqlgate.url + path)
        assert r.status_code == 200
        text = r.text
        assert len(text) / 4 < 2000, "over 2,000 tokens at 4 characters a token"
        assert f"{sqlgate.url}/sql" in text and "Authorization: Bearer" in text
        for needed in ("dry_run", "checkpoint", "/traces", "/tokens", "Neon-Array-Mode", "next"):
            assert needed in text
    # The curl example in it really works.
    example = re.search(r"-d '(\{.*?\})'", text)
    assert example is not None
    body = example.group(1).replace("{{", "{").replace("}}", "}")
    r = httpx.post(sqlgate.url + "/sql", content=body, headers={"Authorization": f"Bearer {sqlgate.admin_token}"})
    assert r.status_code == 200 and r.json()["rows"] == [{"answer": 42}]


def test_openapi_lists_every_route(sqlgate: SqlgateServer) -> None:
    from proxy.http.app import ROUTES

    spec = httpx.get(sqlgate.url + "/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    for route in ROUTES:
        for method in route.methods or ():
            if method != "HEAD":
                assert method.lower() in spec["paths"][route.path], (method, route.path)


def test_unknown_endpoint_lists_real_ones(sqlgate: SqlgateServer) -> None:
    r = httpx.get(sqlgate.url + "/v1/query")
    assert r.status_code == 404
    assert "POST /sql" in r.json()["hint"].replace("OPTIONS ", "") or "/sql" in r.json()["hint"]
    assert r.json()["next"] and r.json()["reason"] == "http.not_found"
    r = httpx.put(sqlgate.url + "/sql")
    assert r.status_code == 405 and r.json()["reason"] == "http.method_not_allowed"


def test_health_needs_no_token(sqlgate: SqlgateServer) -> None:
    r = httpx.get(sqlgate.url + "/health")
    assert r.status_code == 200 and r.json() == {"status": "ok", "backend": sqlgate.backend}
