"""A rollback racing a writer on the same PostgreSQL table: it waits for the
writer's transaction, then applies whole against what the writer committed,
or, if the writer holds on past the lock timeout, fails clearly with nothing
changed. Never half-applied: full-table checksums prove it. The writer is a
plain psycopg session straight on the database, as another application is."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.support.sqlgate_server import SqlgateServer
from tests.test_checkpoints import fresh, ok, rollback, rows

_DIGEST = "SELECT count(*) AS n, md5(coalesce(string_agg(md5(x::text), ',' ORDER BY md5(x::text)), '')) AS h FROM {t} x"


@pytest.fixture(scope="module")
def agent(pg: SqlgateServer) -> str:
    return pg.token("write", "pg-race-agent")["token"]  # type: ignore[no-any-return]


@pytest.fixture()
def writer(pg: SqlgateServer) -> Iterator[psycopg.Connection[Any]]:
    assert pg.database is not None
    with psycopg.connect(pg.database) as conn:
        yield conn


def digest(server: SqlgateServer, table: str) -> tuple[int, str]:
    [row] = rows(server, _DIGEST.format(t=table))
    return int(row["n"]), row["h"]


def make_table(server: SqlgateServer, token: str) -> str:
    t = f"{fresh('race')}_t"
    ok(server.sql(f"CREATE TABLE {t} (id int PRIMARY KEY, v int NOT NULL, note text)", token=token))
    ok(server.sql(f"INSERT INTO {t} SELECT i, i, 'n' || i FROM generate_series(1, 200) g(i)", token=token))
    return t


def rollback_in_thread(server: SqlgateServer, cp: str, token: str, **body: Any) -> tuple[threading.Thread, list[Any]]:
    answer: list[Any] = []
    thread = threading.Thread(target=lambda: answer.append(rollback(server, cp, token=token, **body)))
    thread.start()
    return thread, answer


def wait_until_blocked(writer_pid: int, monitor: SqlgateServer) -> None:
    """Until some session waits for a lock the writer holds (the rollback), polling the catalogs."""
    query = (f"SELECT count(*) AS n FROM pg_stat_activity WHERE {writer_pid} = ANY (pg_blocking_pids(pid))")
    for _ in range(600):
        if int(rows(monitor, query)[0]["n"]) > 0:
            return
        threading.Event().wait(0.05)
    raise AssertionError("the rollback never waited for the writer")


@pytest.mark.parametrize("mode", ["all", "statement"])
def test_rollback_waits_for_a_writer_then_applies_whole(pg: SqlgateServer, agent: str, mode: str,
                                                        writer: psycopg.Connection[Any]) -> None:
    t = make_table(pg, agent)
    before = digest(pg, t)
    cp = ok(pg.sql(f"DELETE FROM {t} WHERE id % 4 = 0", token=agent))["checkpoint"]["id"]
    # The writer changes rows the undo does not touch, in a transaction it keeps open.
    writer.execute(f"UPDATE {t} SET v = v + 1000 WHERE id % 4 = 1")
    writer.execute(f"INSERT INTO {t} VALUES (1000, 0, 'late')")
    thread, answer = rollback_in_thread(pg, cp, agent, mode=mode)
    wait_until_blocked(writer.info.backend_pid, pg)
    assert not answer  # still waiting: nothing applied yet
    assert digest(pg, t)[0] == 150
    writer.commit()
    thread.join()
    undone = ok(answer[0])
    # Mode all also puts back the 50 rows the writer updated (and removes its insert).
    assert (undone["rows_restored"], undone["rows_removed"]) == ((100, 51) if mode == "all" else (50, 0))
    if mode == "all":  # the writer's committed changes came after the checkpoint: undone too, whole
        assert digest(pg, t) == before
    else:  # only the DELETE is undone; the writer's changes stay, all of them
        assert rows(pg, f"SELECT count(*)::int AS n FROM {t} WHERE v > 1000 OR id = 1000") == [{"n": 51}]
        ok(pg.sql(f"UPDATE {t} SET v = v - 1000 WHERE v > 1000", token=agent))
        ok(pg.sql(f"DELETE FROM {t} WHERE id = 1000", token=agent))
        assert digest(pg, t) == before


def test_racing_writer_that_touches_the_restored_rows_makes_statement_mode_conflict(
        pg: SqlgateServer, agent: str, writer: psycopg.Connection[Any]) -> None:
    t = make_table(pg, agent)
    cp = ok(pg.sql(f"UPDATE {t} SET note = 'changed' WHERE id <= 20", token=agent))["checkpoint"]["id"]
    writer.execute(f"UPDATE {t} SET v = -1 WHERE id = 7")  # a row the undo must put back
    thread, answer = rollback_in_thread(pg, cp, agent, mode="statement")
    wait_until_blocked(writer.info.backend_pid, pg)
    writer.commit()
    thread.join()
    seen = digest(pg, t)
    r = answer[0]
    assert r.status_code == 409 and r.json()["reason"] == "branching.rollback_conflict", r.text
    assert digest(pg, t) == seen
    assert rows(pg, f"SELECT count(*)::int AS n FROM {t} WHERE note = 'changed'") == [{"n": 20}]


def test_rollback_gives_up_whole_when_the_writer_holds_on(pg: SqlgateServer, agent: str,
                                                          writer: psycopg.Connection[Any]) -> None:
    t = make_table(pg, agent)
    before = digest(pg, t)
    cp = ok(pg.sql(f"DELETE FROM {t} WHERE id > 150", token=agent))["checkpoint"]["id"]
    writer.execute(f"UPDATE {t} SET v = 0 WHERE id = 1")
    deleted = digest(pg, t)
    r = rollback(pg, cp, token=agent)  # the writer never ends its transaction meanwhile
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["reason"] == "branching.rollback_busy" and body["code"] == "55P03", body
    assert "nothing was changed" in body["message"] and body["hint"] and cp in body["next"]
    assert digest(pg, t) == deleted
    writer.rollback()
    ok(rollback(pg, cp, token=agent))  # once the writer is gone, the same rollback goes through
    assert digest(pg, t) == before
