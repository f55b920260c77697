"""pgJDBC (Debian's libpostgresql-jdbc-java, 42.5.x; Maven Central is not
reachable here) through the wire front door, on both backends. The client
is tests/clients/jdbc/JdbcCheck.java, run as a single-file Java program."""


from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.wire import Wire

JAR = Path("/usr/share/java/postgresql.jar")
CHECK = Path(__file__).parent / "clients" / "jdbc" / "JdbcCheck.java"


def test_pgjdbc(wire: Wire) -> None:
    assert shutil.which("java") and JAR.exists(), (
        "java and the pgJDBC jar are needed: `make test` installs them (apt-get install default-jre-headless "
        "libpostgresql-jdbc-java)")
    with wire.server.client() as http:
        http.post("/sql", json={"query": "DROP TABLE IF EXISTS jdbc_t"})
    url = f"jdbc:postgresql://127.0.0.1:{wire.pg_port}/main"
    r = subprocess.run(["java", "-cp", str(JAR), str(CHECK), url, "jdbc-agent", wire.server.admin_token],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert r.stdout.strip() == "ok"
