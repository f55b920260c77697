"""kill -9 of the server during a destructive workload: after a restart every
committed destructive statement still has a working checkpoint, no
checkpoint is left without its statement, and rolling back to the first
one returns the table exactly to where the workload started."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

from tests.conftest import start_sqlgate
from tests.support.pgserver import PgServer
from tests.support.sqlgate_server import SqlgateServer
from tests.test_checkpoints import ok, rollback, rows


def workload(server: SqlgateServer, stop: threading.Event, answers: list[dict[str, Any]]) -> None:
    i = 0
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_token}"},
                      timeout=5) as client:
        while not stop.is_set():
            i += 1
            statement = (f"DELETE FROM crash WHERE id = {i}" if i % 3 else
                         f"UPDATE crash SET v = v + 1 WHERE id % 7 = {i % 7}")
            try:
                r = client.post("/sql", json={"query": statement, "params": []})
            except httpx.HTTPError:
                return  # the server is gone
            if r.status_code == 200:
                answers.append(r.json())


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_kill_9_during_destructive_workload(pg_server: PgServer, backend: str) -> None:
    server = start_sqlgate(backend, pg_server, "sqlgate_crash")
    ok(server.sql("CREATE TABLE crash (id int PRIMARY KEY, v int NOT NULL)"))
    ok(server.sql("INSERT INTO crash SELECT i, i * 10 FROM generate_series(1, 400) g(i)"))
    digest = "SELECT count(*) AS n, sum(v) AS s, sum(id * v) AS w FROM crash"
    start = rows(server, digest)
    stop = threading.Event()
    answers: list[dict[str, Any]] = []
    worker = threading.Thread(target=workload, args=(server, stop, answers))
    worker.start()
    time.sleep(2.0)
    assert server.process is not None
    server.process.kill()  # SIGKILL, mid-statement
    server.process.wait()
    stop.set()
    worker.join()
    server.stop()
    assert len(answers) > 5
    again = SqlgateServer(backend, server.database, data_dir=server.data_dir, admin_token=server.admin_token).start()
    try:
        with again.client() as c:
            listed = ok(c.get("/checkpoints", params={"limit": "10000"}))["checkpoints"]
            traces = ok(c.get("/traces", params={"limit": "10000"}))["traces"]
        by_id = {cp["id"]: cp for cp in listed}
        committed = {t["checkpoint_id"] for t in traces if t["outcome"] == "ok" and t["checkpoint_id"]}
        # Every statement the client saw committed has its checkpoint, and so does every committed trace.
        assert {a["checkpoint"]["id"] for a in answers} <= set(by_id)
        assert committed <= set(by_id)
        # No half-taken checkpoint: each one belongs to a committed statement.
        assert set(by_id) <= committed
        first = min(by_id.values(), key=lambda cp: cp["created_at"])
        dry = ok(rollback(again, first["id"], dry_run=True))
        assert dry["rows_restored"] > 0
        ok(rollback(again, first["id"]))
        assert rows(again, digest) == start
    finally:
        again.stop()
