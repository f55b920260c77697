"""Runs the real `sqlgate serve` command in a subprocess for tests and
benchmarks, on either backend, and gives clients its address and token."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.pgserver import PgServer, free_port


def wait_until_healthy(process: subprocess.Popen[bytes], url: str, seconds: float, name: str,
                       output: Callable[[], str]) -> None:
    """Until `url`/health answers 200; the process's output if it dies or never does."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited: {output()}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not start: {output()}")


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """Terminate, then kill if it will not go within 10 s."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class SqlgateServer:
    backend: str  # "duckdb" or "postgres"
    database: str | None = None  # PostgreSQL DSN for the postgres backend
    extra_args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    pg_port: int = field(default_factory=free_port)  # the wire protocol front door
    admin_token: str = field(default_factory=lambda: "sqlgate_test_" + secrets.token_urlsafe(16))
    data_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sqlgate-data-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SqlgateServer:
        args = [sys.executable, "-m", "proxy.cli", "serve", "--data", str(self.data_dir),
                "--http", f"127.0.0.1:{self.port}", "--pg", f"127.0.0.1:{self.pg_port}", *self.extra_args]
        if self.database:
            args += ["--database", self.database]
        env = {**os.environ, "SQLGATE_ADMIN_TOKEN": self.admin_token}
        self.log = open(self.data_dir / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                        cwd=Path(__file__).resolve().parents[2])
        try:
            wait_until_healthy(self.process, self.url, 60, "sqlgate", lambda: self.output()[-3000:])
        except BaseException:
            self.stop()  # its log file too: left open, it fails a later test with a ResourceWarning
            raise
        return self

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()

    def __enter__(self) -> SqlgateServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def output(self) -> str:
        return (self.data_dir / "server.log").read_text()

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def sql(self, query: str, params: list[Any] | None = None, token: str | None = None, **body: Any) -> httpx.Response:
        with self.client(token) as c:
            return c.post("/sql", json={"query": query, "params": params or [], **body})

    def token(self, role: str, name: str = "agent", expires_in: float | None = 3600) -> dict[str, Any]:
        with self.client() as c:
            r = c.post("/tokens", json={"role": role, "name": name, "expires_in": expires_in})
            r.raise_for_status()
            return r.json()  # type: ignore[no-any-return]


def start_sqlgate(backend: str, pg_server: PgServer, db_name: str, *extra: str) -> SqlgateServer:
    """A private sqlgate on `backend`; on PostgreSQL over a fresh database `db_name`."""
    database = pg_server.create_database(db_name) if backend == "postgres" else None
    return SqlgateServer(backend, database, list(extra)).start()
