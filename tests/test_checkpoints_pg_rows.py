"""PostgreSQL checkpoints of upserts that update (INSERT ... ON CONFLICT DO
UPDATE): classed `write` by the corpus contract, yet checkpointed, because
they overwrite rows. Their rows are captured by the same statement-level
transition-table triggers as any DML (AFTER INSERT and AFTER UPDATE both fire).
Through the real `sqlgate serve` on PostgreSQL: run, check, roll back, compare."""

from __future__ import annotations

import pytest

from policy.classify import classify
from proxy.statement import Target
from tests.support.sqlgate_server import SqlgateServer
from tests.test_checkpoints import destroy_and_restore, fresh, num, ok, rollback, rows, snapshot


@pytest.fixture(scope="module")
def agent(pg: SqlgateServer) -> str:
    return pg.token("write", "pg-rows-agent")["token"]  # type: ignore[no-any-return]


# --- classification -----------------------------------------------------------

@pytest.mark.parametrize("sql, action", [
    ("INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET v = excluded.v", "upsert"),
    ("INSERT INTO t VALUES (1) ON CONFLICT ON CONSTRAINT t_pkey DO UPDATE SET v = 2 WHERE t.v < 2", "upsert"),
    ("INSERT INTO t AS x VALUES (1) ON CONFLICT (id) DO UPDATE SET v = x.v + 1 RETURNING *", "upsert"),
    ("INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING", "insert"),
    ("INSERT INTO t VALUES (1) ON CONFLICT (id) DO NOTHING", "insert"),
    ("INSERT INTO t VALUES (1)", "insert"),
])
def test_upserts_that_update_are_marked_to_be_checkpointed(sql: str, action: str) -> None:
    part = classify(sql, "postgres").parts[0]
    assert part.klass.label == "write"
    assert part.targets == (Target("table", "t", action),)
    assert part.checkpointed_anyway is (action == "upsert")


def test_upsert_inside_a_cte_names_its_table() -> None:
    part = classify("WITH u AS (INSERT INTO s.t VALUES (1) ON CONFLICT (id) DO UPDATE SET v = 2 RETURNING id)"
                    " SELECT count(*) FROM u", "postgres").parts[0]
    assert part.klass.label == "write" and part.checkpointed_anyway
    assert Target("table", "s.t", "upsert") in part.targets


# --- upserts end to end ---------------------------------------------------------

def make_keyed(server: SqlgateServer, p: str, token: str) -> None:
    """A keyed table with a second unique key, a default, a check and an array; a child pointing at it
    (ON UPDATE CASCADE, so an upsert that changes a key reaches it); a keyed table without sequences."""
    for statement in (
        f"CREATE TABLE {p}_k (id int PRIMARY KEY, code text UNIQUE, qty int DEFAULT 5 CHECK (qty >= 0), tags text[])",
        f"INSERT INTO {p}_k SELECT i, 'c' || i, i, ARRAY['t' || i] FROM generate_series(1, 40) g(i)",
        f"CREATE TABLE {p}_ch (id int PRIMARY KEY, k int REFERENCES {p}_k (id) ON UPDATE CASCADE)",
        f"INSERT INTO {p}_ch SELECT i, i FROM generate_series(1, 10) g(i)",
        f"CREATE TABLE {p}_s (id serial PRIMARY KEY, code text UNIQUE NOT NULL, hits int NOT NULL DEFAULT 0)",
        f"INSERT INTO {p}_s (code) SELECT 'c' || i FROM generate_series(1, 20) g(i)",
    ):
        ok(server.sql(statement, token=token))


UPSERTS = [
    ("on_conflict_key", "INSERT INTO {p}_k VALUES (3, 'x3', 300, NULL), (50, 'c50', 1, ARRAY['n'])"
                        " ON CONFLICT (id) DO UPDATE SET qty = excluded.qty, tags = excluded.tags",
     "SELECT count(*) AS n FROM {p}_k WHERE qty = 300 OR id = 50", 2),
    ("on_constraint", "INSERT INTO {p}_k VALUES (99, 'c7', 0, NULL) ON CONFLICT ON CONSTRAINT {p}_k_code_key"
                      " DO UPDATE SET qty = 77",
     "SELECT count(*) AS n FROM {p}_k WHERE qty = 77", 1),
    ("conditional", "INSERT INTO {p}_k SELECT i, 'c' || i, 0, NULL FROM generate_series(1, 20) g(i)"
                    " ON CONFLICT (id) DO UPDATE SET qty = excluded.qty WHERE {p}_k.id % 2 = 0",
     "SELECT count(*) AS n FROM {p}_k WHERE qty = 0", 10),
    ("changes_key_and_cascades", "INSERT INTO {p}_k VALUES (0, 'c4', 1, NULL) ON CONFLICT (code)"
                                 " DO UPDATE SET id = 400",
     "SELECT count(*) AS n FROM {p}_ch WHERE k = 400", 1),
    ("in_cte", "WITH u AS (INSERT INTO {p}_k VALUES (5, 'c5', 55, NULL), (60, 'c60', 6, NULL)"
               " ON CONFLICT (id) DO UPDATE SET qty = excluded.qty RETURNING id) SELECT count(*) FROM u",
     "SELECT count(*) AS n FROM {p}_k WHERE qty = 55 OR id = 60", 2),
]


@pytest.mark.parametrize("kind", UPSERTS, ids=lambda k: k[0])
@pytest.mark.parametrize("mode", ["all", "statement"])
def test_upsert_then_rollback_restores_exactly(pg: SqlgateServer, agent: str, kind: tuple, mode: str) -> None:
    _, statement, check, expect = kind
    p = fresh("pgup")
    make_keyed(pg, p, agent)
    undone = destroy_and_restore(pg, agent, p, statement.format(p=p), check.format(p=p), expect, mode=mode)
    assert undone["rows_restored"] > 0


def test_upsert_on_a_serial_table_gives_back_the_sequence_in_mode_all(pg: SqlgateServer, agent: str) -> None:
    """Conflicting rows still draw nextval; mode all puts the sequence back with the rows."""
    p = fresh("pgup")
    make_keyed(pg, p, agent)
    destroy_and_restore(pg, agent, p, f"INSERT INTO {p}_s (code) VALUES ('c1'), ('c2'), ('new')"
                                      f" ON CONFLICT (code) DO UPDATE SET hits = {p}_s.hits + 1",
                        f"SELECT sum(hits) AS n FROM {p}_s", 2)


def test_upsert_with_parameters_keeps_only_the_rows_it_touches(pg: SqlgateServer, agent: str) -> None:
    p = fresh("pgup")
    make_keyed(pg, p, agent)
    before = snapshot(pg, p)
    answer = ok(pg.sql(f"INSERT INTO {p}_k VALUES ($1, $2, $3, NULL), (41, 'c41', 1, NULL)"
                       f" ON CONFLICT (id) DO UPDATE SET qty = $4", ["5", "c5", "55", "555"], token=agent))
    assert answer["checkpoint"]["tables"] == [f"{p}_k"]
    assert num(pg, f"SELECT qty AS n FROM {p}_k WHERE id = 5") == 555
    dry = ok(rollback(pg, answer["checkpoint"]["id"], token=agent, mode="statement", dry_run=True))
    # The old row 5 comes back in place (an UPDATE by key), the new row 41 goes.
    assert (dry["rows_restored"], dry["rows_removed"]) == (1, 2)
    assert num(pg, f"SELECT qty AS n FROM {p}_k WHERE id = 5") == 555  # a dry run changes nothing
    ok(rollback(pg, answer["checkpoint"]["id"], token=agent, mode="statement"))
    assert snapshot(pg, p) == before


def test_upsert_that_does_nothing_on_conflict_takes_no_checkpoint(pg: SqlgateServer, agent: str) -> None:
    p = fresh("pgup")
    make_keyed(pg, p, agent)
    answer = ok(pg.sql(f"INSERT INTO {p}_k VALUES (1, 'x', 0, NULL) ON CONFLICT DO NOTHING", token=agent))
    assert answer.get("checkpoint") is None
    assert num(pg, f"SELECT qty AS n FROM {p}_k WHERE id = 1") == 1


def test_upsert_statement_mode_keeps_later_writes_and_reports_conflicts(pg: SqlgateServer, agent: str) -> None:
    p = fresh("pgup")
    make_keyed(pg, p, agent)
    answer = ok(pg.sql(f"INSERT INTO {p}_k VALUES (1, 'c1', 100, NULL), (2, 'c2', 200, NULL)"
                       f" ON CONFLICT (id) DO UPDATE SET qty = excluded.qty", token=agent))
    ok(pg.sql(f"INSERT INTO {p}_k VALUES (70, 'c70', 6, NULL)", token=agent))  # unrelated, stays
    ok(pg.sql(f"UPDATE {p}_k SET qty = 7 WHERE id = 30", token=agent))  # unrelated, stays
    undone = ok(rollback(pg, answer["checkpoint"]["id"], token=agent, mode="statement"))
    assert undone["rows_restored"] == 2
    got = {r["id"]: int(r["qty"]) for r in rows(pg, f"SELECT id, qty FROM {p}_k WHERE id IN (1, 2, 30, 70)")}
    assert got == {1: 1, 2: 2, 30: 7, 70: 6}
    # A later change to a row the undo must restore is a conflict: nothing changes.
    answer = ok(pg.sql(f"INSERT INTO {p}_k VALUES (3, 'c3', 33, NULL) ON CONFLICT (id) DO UPDATE SET qty = 33",
                       token=agent))
    ok(pg.sql(f"UPDATE {p}_k SET tags = NULL WHERE id = 3", token=agent))
    before = snapshot(pg, p)
    r = rollback(pg, answer["checkpoint"]["id"], token=agent, mode="statement")
    assert r.status_code == 409 and r.json()["reason"] == "branching.rollback_conflict", r.text
    assert r.json()["conflicts"] and r.json()["next"]
    assert snapshot(pg, p) == before
    # Mode all undoes the upsert and the later update together.
    ok(rollback(pg, answer["checkpoint"]["id"], token=agent))
    assert rows(pg, f"SELECT qty, tags FROM {p}_k WHERE id = 3") == [{"qty": 3, "tags": ["t3"]}]

