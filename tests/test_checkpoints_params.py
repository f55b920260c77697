"""Checkpointed statements with parameters, on both backends and through both
front doors: the checkpoint selects the rows the statement changes with the
statement's own values, bound as the statement binds them (an UPDATE's SET
values are not in its WHERE; a bytea value is bytes, not its escaped text)."""

from __future__ import annotations

import psycopg
import pytest

from tests.support.wire import Wire
from tests.test_checkpoints import fresh, ok, rollback, rows, snapshot


@pytest.mark.parametrize("mode", ["all", "statement"])
def test_parameterized_update_over_http_is_checkpointed_and_undone(wire: Wire, mode: str) -> None:
    server, p = wire.server, fresh("pp")
    ok(server.sql(f"CREATE TABLE {p}_t (id int PRIMARY KEY, b text, n int)"))
    ok(server.sql(f"INSERT INTO {p}_t VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3)"))
    before = snapshot(server, p)
    cp = ok(server.sql(f"UPDATE {p}_t SET b = $1, n = n + $2 WHERE id >= $3", ["x", "10", "2"]))["checkpoint"]["id"]
    assert rows(server, f"SELECT b, n FROM {p}_t ORDER BY id") == [{"b": "a", "n": 1}, {"b": "x", "n": 12},
                                                                 {"b": "x", "n": 13}]
    ok(rollback(server, cp, mode=mode))
    assert snapshot(server, p) == before


def test_parameterized_statements_over_the_wire(wire: Wire) -> None:
    server, p = wire.server, fresh("pw")
    with psycopg.connect(wire.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {p}_t (id int PRIMARY KEY, b bytea, n int)")
        conn.execute(f"INSERT INTO {p}_t VALUES (%s, %s, %s), (%s, %s, %s)", (1, b"\x00\xff\\", 1, 2, b"\x01", 2))
        before = snapshot(server, p)
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        conn.execute(f"UPDATE {p}_t SET n = n + %s WHERE b = %s", (5, b"\x00\xff\\"))
        conn.execute(f"DELETE FROM {p}_t WHERE b = %s", (b"\x01",))
        assert conn.execute(f"SELECT id, n FROM {p}_t").fetchall() == [(1, 6)]
        checkpoints = [n.split()[2] for n in notices if n.startswith("sqlgate: checkpoint cp_")]
        assert len(checkpoints) == 2
        conn.execute(f"SELECT sqlgate.rollback('{checkpoints[0]}')")  # mode all: both undone
    assert snapshot(server, p) == before

