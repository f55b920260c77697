"""A throwaway PostgreSQL 15 server for tests and benchmarks.

PostgreSQL refuses to run as root, so when we are root the server runs as an
unprivileged OS user (created if missing). It lives in a temporary directory,
listens on a free loopback port with SCRAM auth, and is stopped on exit.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN = Path(os.environ.get("SQLGATE_PG_BIN", "/usr/lib/postgresql/15/bin"))
OS_USER = "sqlgate-pg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ensure_os_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(OS_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OS_USER],
            check=True,
        )
        return pwd.getpwnam(OS_USER)


@dataclass
class PgServer:
    """A running server; `dsn(db)` gives a superuser connection string."""

    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sqlgate-pg-")))
    superuser: str = "postgres"
    _as_user: list[str] = field(default_factory=list)

    def dsn(self, dbname: str = "postgres", user: str | None = None, password: str | None = None) -> str:
        user = user or self.superuser
        password = self.password if password is None else password
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*self._as_user, *args], check=True, capture_output=True, **kw)  # type: ignore[call-overload]

    def start(self) -> PgServer:
        data = self.root / "data"
        if os.geteuid() == 0:
            user = _ensure_os_user()
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as_user = ["runuser", "-u", OS_USER, "--"]
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._as_user:
            user = pwd.getpwnam(OS_USER)
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        self._run(
            str(PG_BIN / "initdb"), "-D", str(data), "-U", self.superuser, "--pwfile", str(pwfile),
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
        )
        options = " ".join([
            f"-p {self.port}", "-c listen_addresses=127.0.0.1", f"-c unix_socket_directories={self.root}",
            "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",
            "-c max_connections=300", "-c shared_buffers=128MB",
        ])
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-t", "60", "-l", str(self.root / "log"),
                  "-o", options, "start")
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL did not start; log: {(self.root / 'log').read_text()[-2000:]}")

    def stop(self) -> None:
        data = self.root / "data"
        if data.exists():
            subprocess.run([*self._as_user, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                           capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self, name: str) -> str:
        """A fresh database owned by the superuser; returns its superuser DSN."""
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)
