"""One test body through both front doors (POST /sql and the wire), on both
backends: a destructive statement is checkpointed, undone, and traced the
same way, only `front_door` differing."""


from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
import pytest

from tests.support.wire import Wire

Run = Callable[[str], str | None]  # runs one statement; returns the checkpoint it announced, if any


def http_runner(w: Wire) -> Run:
    def run(sql: str) -> str | None:
        r = w.server.sql(sql, token=None)
        assert r.status_code == 200, r.text
        checkpoint = r.json().get("checkpoint")
        return checkpoint["id"] if checkpoint else None

    return run


def wire_runner(w: Wire, conn: psycopg.Connection) -> Run:
    notices: list[str] = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))

    def run(sql: str) -> str | None:
        before = len(notices)
        conn.execute(sql)
        announced = [n for n in notices[before:] if n.startswith("sqlgate: checkpoint ")]
        return announced[-1].split()[2] if announced else None

    return run


def checkpointed_delete_is_undone_and_traced(w: Wire, run: Run, table: str, front_door: str) -> None:
    assert run(f"CREATE TABLE {table} (id int, v text)") is None
    assert run(f"INSERT INTO {table} VALUES (1, 'a'), (2, 'b'), (3, 'c')") is None
    checkpoint = run(f"DELETE FROM {table} WHERE id >= 2")
    assert checkpoint and checkpoint.startswith("cp_")
    with w.server.client() as http:
        r = http.post("/rollback", json={"checkpoint": checkpoint})
        assert r.status_code == 200, r.text
    assert w.server.sql(f"SELECT count(*) AS n FROM {table}").json()["rows"][0]["n"] in (3, "3")
    deadline = time.monotonic() + 10
    while True:
        with w.server.client() as http:
            traces = http.get("/traces", params={"limit": 200}).json()["traces"]
        mine = [t for t in traces if t.get("checkpoint_id") == checkpoint]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(mine) == 1, traces[:3]
    trace = mine[0]
    assert trace["front_door"] == front_door
    assert trace["outcome"] == "ok" and trace["command"] == "DELETE" and trace["rows"] == 2
    assert table in " ".join(trace["tables"])


@pytest.mark.parametrize("front_door", ["http", "wire"])
def test_destructive_statement_through_each_front_door(wire: Wire, front_door: str) -> None:
    table = f"fd_{front_door}"
    if front_door == "http":
        checkpointed_delete_is_undone_and_traced(wire, http_runner(wire), table, "http")
        return
    with psycopg.connect(wire.dsn(), autocommit=True) as conn:
        checkpointed_delete_is_undone_and_traced(wire, wire_runner(wire, conn), table, "wire")
