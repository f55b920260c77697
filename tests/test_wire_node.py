"""node-postgres (npm `pg`) through the wire front door, on both backends.
The client script is tests/clients/node/pg_check.mjs."""


from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.wire import Wire

NODE_DIR = Path(__file__).parent / "clients" / "node"


@pytest.fixture(scope="module")
def node_pg() -> Path:
    assert shutil.which("node") and shutil.which("npm"), "Node 20 and npm are needed for the node-postgres tests"
    if not (NODE_DIR / "node_modules" / "pg").exists():
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    return NODE_DIR / "pg_check.mjs"


def test_node_postgres(wire: Wire, node_pg: Path) -> None:
    with wire.server.client() as http:  # a table name of its own per backend run
        http.post("/sql", json={"query": "DROP TABLE IF EXISTS node_t"})
    r = subprocess.run(["node", str(node_pg), wire.dsn()], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "ok"
