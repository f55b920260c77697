"""DuckDB checkpoints of row changes whose rows cannot be selected up front:
upserts that update (INSERT ... ON CONFLICT DO UPDATE, INSERT OR REPLACE),
MERGE and data-modifying CTEs. Through the real `sqlgate serve` on a DuckDB
file: run it, check it happened, roll back (both modes), compare exactly."""

from __future__ import annotations

import pytest

from policy.classify import classify
from proxy.statement import Target
from tests.support.sqlgate_server import SqlgateServer
from tests.test_checkpoints import destroy_and_restore, fresh, num, ok, rollback, rows, snapshot


@pytest.fixture(scope="module")
def agent(duck: SqlgateServer) -> str:
    return duck.token("write", "duck-rows-agent")["token"]  # type: ignore[no-any-return]


def make_keyed(server: SqlgateServer, p: str, token: str) -> None:
    """A table with a primary key, a second unique key, a default and a check; a keyless log table;
    a table with only a primary key (DuckDB wants a conflict target when a table has two keys)."""
    for statement in (
        f"CREATE TABLE {p}_k (id INTEGER PRIMARY KEY, code VARCHAR UNIQUE, qty INTEGER DEFAULT 5 CHECK (qty >= 0),"
        f" tags VARCHAR[])",
        f"INSERT INTO {p}_k SELECT i, 'c' || i, i, ['t' || i] FROM range(1, 41) r(i)",
        f"CREATE TABLE {p}_log (a INTEGER, b VARCHAR)",
        f"INSERT INTO {p}_log SELECT i % 5, 'v' || (i % 3) FROM range(1, 31) r(i)",
        f"CREATE TABLE {p}_one (v VARCHAR, id INTEGER PRIMARY KEY)",
        f"INSERT INTO {p}_one SELECT 'v' || i, i FROM range(1, 41) r(i)",
    ):
        ok(server.sql(statement, token=token))


# --- classification -----------------------------------------------------------

@pytest.mark.parametrize("sql, action", [
    ("INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET v = excluded.v", "upsert"),
    ("INSERT INTO t VALUES (1) ON CONFLICT DO UPDATE SET v = 2 WHERE t.v < 2", "upsert"),
    ("INSERT OR REPLACE INTO s.t VALUES (1)", "upsert"),
    ("INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING", "insert"),
    ("INSERT OR IGNORE INTO t VALUES (1)", "insert"),
])
def test_upserts_that_update_are_marked_to_be_checkpointed(sql: str, action: str) -> None:
    part = classify(sql, "duckdb").parts[0]
    assert part.klass.label == "write"
    assert part.targets[0].action == action and part.targets[0].kind == "table"
    assert part.checkpointed_anyway is (action == "upsert")


def test_upsert_target_names_the_table() -> None:
    part = classify("INSERT OR REPLACE INTO s.t (id) VALUES (1)", "duckdb").parts[0]
    assert part.targets == (Target("table", "s.t", "upsert"),)


# --- upserts --------------------------------------------------------------------

UPSERTS = [
    ("on_conflict_key", "INSERT INTO {p}_k VALUES (3, 'x3', 300, NULL), (50, 'c50', 1, ['n'])"
                        " ON CONFLICT (id) DO UPDATE SET qty = excluded.qty, tags = excluded.tags",
     "SELECT count(*) AS n FROM {p}_k WHERE qty = 300 OR id = 50", 2),
    ("no_conflict_target", "INSERT INTO {p}_one (id, v) SELECT i, 'w' || i FROM range(35, 45) r(i)"
                           " ON CONFLICT DO UPDATE SET v = excluded.v",
     "SELECT count(*) AS n FROM {p}_one WHERE v LIKE 'w%'", 10),
    ("conditional", "INSERT INTO {p}_k SELECT i, 'c' || i, 0, NULL FROM range(1, 21) r(i)"
                    " ON CONFLICT (id) DO UPDATE SET qty = excluded.qty WHERE {p}_k.id % 2 = 0",
     "SELECT count(*) AS n FROM {p}_k WHERE qty = 0", 10),
    ("or_replace", "INSERT OR REPLACE INTO {p}_one VALUES ('r7', 7), ('r8', 8), ('r99', 99)",
     "SELECT count(*) AS n FROM {p}_one WHERE v LIKE 'r%'", 3),
    ("by_name", "INSERT INTO {p}_one BY NAME SELECT 12 AS id, 'b12' AS v ON CONFLICT DO UPDATE SET v = excluded.v",
     "SELECT count(*) AS n FROM {p}_one WHERE v = 'b12'", 1),
]


@pytest.mark.parametrize("kind", UPSERTS, ids=lambda k: k[0])
@pytest.mark.parametrize("mode", ["all", "statement"])
def test_upsert_then_rollback_restores_exactly(duck: SqlgateServer, agent: str, kind: tuple, mode: str) -> None:
    _, statement, check, expect = kind
    p = fresh("up")
    make_keyed(duck, p, agent)
    undone = destroy_and_restore(duck, agent, p, statement.format(p=p), check.format(p=p), expect, mode=mode)
    assert undone["rows_restored"] > 0


def test_upsert_with_parameters_keeps_only_the_rows_it_overwrites(duck: SqlgateServer, agent: str) -> None:
    p = fresh("up")
    make_keyed(duck, p, agent)
    before = snapshot(duck, p)
    answer = ok(duck.sql(f"INSERT INTO {p}_k VALUES ($1, $2, $3, NULL), (41, 'c41', 1, NULL)"
                         f" ON CONFLICT (id) DO UPDATE SET qty = $4", ["5", "c5", "55", "555"], token=agent))
    assert answer["checkpoint"]["tables"] == [f"{p}_k"]
    assert num(duck, f"SELECT qty AS n FROM {p}_k WHERE id = 5") == 555
    dry = ok(rollback(duck, answer["checkpoint"]["id"], token=agent, mode="statement", dry_run=True))
    assert (dry["rows_restored"], dry["rows_removed"]) == (1, 2)  # the old row 5 back; new 5 and 41 out
    ok(rollback(duck, answer["checkpoint"]["id"], token=agent, mode="statement"))
    assert snapshot(duck, p) == before


def test_upsert_statement_mode_keeps_later_writes_and_reports_conflicts(duck: SqlgateServer, agent: str) -> None:
    p = fresh("up")
    make_keyed(duck, p, agent)
    answer = ok(duck.sql(f"INSERT INTO {p}_k VALUES (1, 'c1', 100, NULL), (2, 'c2', 200, NULL)"
                         f" ON CONFLICT (id) DO UPDATE SET qty = excluded.qty", token=agent))
    ok(duck.sql(f"INSERT INTO {p}_k VALUES (60, 'c60', 6, NULL)", token=agent))  # unrelated, stays
    ok(duck.sql(f"UPDATE {p}_k SET qty = 7 WHERE id = 30", token=agent))  # unrelated, stays
    undone = ok(rollback(duck, answer["checkpoint"]["id"], token=agent, mode="statement"))
    assert undone["rows_restored"] == 2
    got = {r["id"]: int(r["qty"]) for r in rows(duck, f"SELECT id, qty FROM {p}_k WHERE id IN (1, 2, 30, 60)")}
    assert got == {1: 1, 2: 2, 30: 7, 60: 6}
    # A later change to a row the undo must restore is a conflict: nothing changes.
    answer = ok(duck.sql(f"INSERT OR REPLACE INTO {p}_one VALUES ('r3', 3)", token=agent))
    ok(duck.sql(f"UPDATE {p}_one SET v = 'later' WHERE id = 3", token=agent))
    before = snapshot(duck, p)
    r = rollback(duck, answer["checkpoint"]["id"], token=agent, mode="statement")
    assert r.status_code == 409 and r.json()["reason"] == "branching.rollback_conflict", r.text
    assert snapshot(duck, p) == before


def test_upsert_that_changes_nothing_takes_an_empty_checkpoint(duck: SqlgateServer, agent: str) -> None:
    """DO NOTHING is not checkpointed; an upsert whose condition holds for no row keeps no rows."""
    p = fresh("up")
    make_keyed(duck, p, agent)
    nothing = ok(duck.sql(f"INSERT INTO {p}_k VALUES (1, 'c1', 9, NULL) ON CONFLICT DO NOTHING", token=agent))
    assert nothing.get("checkpoint") is None
    before = snapshot(duck, p)
    answer = ok(duck.sql(f"INSERT INTO {p}_k VALUES (1, 'c1', 9, NULL) ON CONFLICT (id) DO UPDATE SET qty = 9"
                         f" WHERE {p}_k.qty > 1000", token=agent))
    assert snapshot(duck, p) == before
    dry = ok(rollback(duck, answer["checkpoint"]["id"], token=agent, mode="statement", dry_run=True))
    assert (dry["rows_restored"], dry["rows_removed"]) == (0, 0)


def test_upsert_inside_a_transaction_after_an_insert(duck: SqlgateServer, agent: str) -> None:
    """Rows the transaction appended before the upsert are not taken for rows it wrote."""
    p = fresh("up")
    make_keyed(duck, p, agent)
    before = snapshot(duck, p)
    with duck.client(agent) as c:
        answer = ok(c.post("/sql", json={"queries": [
            {"query": f"INSERT INTO {p}_k VALUES (70, 'c70', 1, NULL)", "params": []},
            {"query": f"INSERT INTO {p}_k VALUES (4, 'c4', 400, NULL) ON CONFLICT (id) DO UPDATE SET qty = 400",
             "params": []}]}))
    checkpoint = answer["results"][1]["checkpoint"]["id"]
    ok(rollback(duck, checkpoint, token=agent, mode="statement"))
    assert num(duck, f"SELECT count(*) AS n FROM {p}_k WHERE id = 70") == 1
    assert num(duck, f"SELECT qty AS n FROM {p}_k WHERE id = 4") == 4
    ok(duck.sql(f"DELETE FROM {p}_k WHERE id = 70", token=agent))
    assert snapshot(duck, p)["data"] == before["data"]


# --- MERGE and data-modifying CTEs ----------------------------------------------

CHANGES = [
    ("merge", "MERGE INTO {p}_k k USING (SELECT i AS id FROM range(1, 61) r(i)) s ON k.id = s.id"
              " WHEN MATCHED AND k.id % 2 = 0 THEN DELETE WHEN MATCHED AND k.id < 20 THEN UPDATE SET qty = 1000"
              " WHEN NOT MATCHED THEN INSERT VALUES (s.id, 'm' || s.id, 1, NULL)",
     "SELECT count(*) AS n FROM {p}_k", 40),
    ("merge_by_source", "MERGE INTO {p}_one o USING (SELECT i AS id FROM range(1, 11) r(i)) s ON o.id = s.id"
                        " WHEN MATCHED THEN UPDATE SET v = 'matched' WHEN NOT MATCHED BY SOURCE THEN DELETE",
     "SELECT count(*) AS n FROM {p}_one", 10),
    ("merge_keyless", "MERGE INTO {p}_log l USING (SELECT 1 AS a) s ON l.a = s.a"
                      " WHEN MATCHED THEN UPDATE SET b = 'merged'",
     "SELECT count(*) AS n FROM {p}_log WHERE b = 'merged'", 6),
    ("cte_delete_update", "WITH gone AS (DELETE FROM {p}_log WHERE a = 1 RETURNING a)"
                          " UPDATE {p}_k SET qty = 0 WHERE id IN (SELECT a + 10 FROM gone)",
     "SELECT count(*) AS n FROM {p}_log", 24),
    ("cte_delete_insert", "WITH d AS (DELETE FROM {p}_one WHERE id > 30 RETURNING *)"
                          " INSERT INTO {p}_log SELECT id, v FROM d",
     "SELECT count(*) AS n FROM {p}_log", 40),
    ("cte_update_select", "WITH u AS (UPDATE {p}_k SET qty = qty + 100 WHERE id <= 5 RETURNING *) SELECT * FROM u",
     "SELECT count(*) AS n FROM {p}_k WHERE qty > 100", 5),
]


@pytest.mark.parametrize("kind", CHANGES, ids=lambda k: k[0])
@pytest.mark.parametrize("mode", ["all", "statement"])
def test_merge_and_cte_then_rollback_restore_exactly(duck: SqlgateServer, agent: str, kind: tuple, mode: str) -> None:
    _, statement, check, expect = kind
    p = fresh("mg")
    make_keyed(duck, p, agent)
    undone = destroy_and_restore(duck, agent, p, statement.format(p=p), check.format(p=p), expect, mode=mode)
    assert undone["rows_restored"] + undone["rows_removed"] > 0


def test_merge_statement_mode_keeps_later_unrelated_writes(duck: SqlgateServer, agent: str) -> None:
    p = fresh("mg")
    make_keyed(duck, p, agent)
    answer = ok(duck.sql(f"MERGE INTO {p}_k k USING (SELECT 3 AS id UNION ALL SELECT 77) s ON k.id = s.id"
                         f" WHEN MATCHED THEN DELETE WHEN NOT MATCHED THEN INSERT VALUES (s.id, 'n', 2, NULL)"
                         f" RETURNING merge_action, id", token=agent))
    assert sorted((r["merge_action"], int(r["id"])) for r in answer["rows"]) == [("DELETE", 3), ("INSERT", 77)]
    ok(duck.sql(f"INSERT INTO {p}_k VALUES (80, 'c80', 8, NULL)", token=agent))
    undone = ok(rollback(duck, answer["checkpoint"]["id"], token=agent, mode="statement"))
    assert (undone["rows_restored"], undone["rows_removed"]) == (1, 1)
    ids = {int(r["id"]) for r in rows(duck, f"SELECT id FROM {p}_k WHERE id IN (3, 77, 80)")}
    assert ids == {3, 80}
