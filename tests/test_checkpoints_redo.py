"""A rollback is itself undoable, DDL included: undoing the rollback of a DROP
or ALTER runs that statement again (checkpointed), so the branch is exactly as
it was before the rollback; and that redo can be rolled back in turn."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.sqlgate_server import SqlgateServer
from tests.test_checkpoints import fresh, make_tables, ok, rollback, rows, snapshot

# (name, statement, a later write to the table it changed, which mode 'all' undoes with it)
STATEMENTS = [
    ("drop_table", "DROP TABLE {p}_c", None),
    ("drop_view", "DROP VIEW {p}_v", None),
    ("drop_column", "ALTER TABLE {p}_c DROP COLUMN note", "INSERT INTO {p}_c VALUES (100, 41)"),
    ("drop_default", "ALTER TABLE {p}_t ALTER COLUMN name DROP DEFAULT",
     "INSERT INTO {p}_t (name, qty) VALUES ('later', 7)"),
    ("rename_column", "ALTER TABLE {p}_c RENAME COLUMN note TO remark", "INSERT INTO {p}_c VALUES (100, 41, 'r')"),
    ("drop_index", "DROP INDEX {p}_t_price", None),
]


@pytest.fixture(scope="module")
def writer(pg: SqlgateServer) -> str:
    return pg.token("write", "redo-agent")["token"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", STATEMENTS, ids=lambda k: k[0])
def test_undoing_a_rollback_runs_the_statement_again(pg: SqlgateServer, writer: str, kind: Any) -> None:
    sqlgate = pg
    p = fresh("rd")
    make_tables(sqlgate, p, writer)
    before = snapshot(sqlgate, p)
    name, statement, later = kind
    answer = ok(sqlgate.sql(statement.format(p=p), token=writer))
    if later:
        ok(sqlgate.sql(later.format(p=p), token=writer))
    after = snapshot(sqlgate, p)
    undone = ok(rollback(sqlgate, answer["checkpoint"]["id"], token=writer))
    assert snapshot(sqlgate, p) == before
    redone = ok(rollback(sqlgate, undone["new_checkpoint"], token=writer))
    assert snapshot(sqlgate, p) == after, "undoing the rollback must bring back the state it undid"
    assert any("again" in o for o in redone["objects_restored"]), redone
    ok(rollback(sqlgate, redone["new_checkpoint"], token=writer))
    assert snapshot(sqlgate, p) == before, "and that undo is undoable in turn"


def test_duckdb_says_when_undoing_a_rollback_needs_the_statement_again(duck: SqlgateServer) -> None:
    """On DuckDB a rollback that brought objects back cannot yet be undone by running the statement
    again: it answers so, with the statement to send, and changes nothing (never only the rows)."""
    agent = duck.token("write", "redo-duck")["token"]
    p = fresh("rdd")
    make_tables(duck, p, agent)
    answer = ok(duck.sql(f"ALTER TABLE {p}_c DROP COLUMN note", token=agent))
    undone = ok(rollback(duck, answer["checkpoint"]["id"], token=agent))
    restored = snapshot(duck, p)
    r = rollback(duck, undone["new_checkpoint"], token=agent)
    assert r.status_code == 409 and r.json()["reason"] == "branching.redo_unavailable", r.text
    assert f"ALTER TABLE {p}_c DROP COLUMN note" in r.json()["next"]
    assert snapshot(duck, p) == restored
    # A rollback of rows alone is still undone as before.
    rows_cp = ok(duck.sql(f"DELETE FROM {p}_c WHERE id < 5", token=agent))["checkpoint"]["id"]
    after_delete = snapshot(duck, p)
    undone = ok(rollback(duck, rows_cp, token=agent, mode="statement"))
    ok(rollback(duck, undone["new_checkpoint"], token=agent, mode="statement"))
    assert snapshot(duck, p) == after_delete


def test_undoing_a_rollback_never_runs_its_statement_on_another_object_of_the_same_name(
        pg: SqlgateServer, writer: str) -> None:
    """The statement runs again by name on sqlgate's login: if the agent renamed its table away and
    another one (here the admin's) took the name, the undo is refused and the other table stays."""
    p = fresh("rdn")
    ok(pg.sql(f"CREATE TABLE {p}_a (id int); INSERT INTO {p}_a VALUES (1)", token=writer))
    dropped = ok(pg.sql(f"DROP TABLE {p}_a", token=writer))["checkpoint"]["id"]
    undone = ok(rollback(pg, dropped, token=writer, mode="statement"))
    ok(pg.sql(f"ALTER TABLE {p}_a RENAME TO {p}_mine", token=writer))
    ok(pg.sql(f"CREATE TABLE {p}_a (id int, secret text); INSERT INTO {p}_a VALUES (7, 'admin data')"))
    assert pg.sql(f"DROP TABLE {p}_a", token=writer).status_code in (400, 403)
    r = rollback(pg, undone["new_checkpoint"], token=writer, mode="statement")
    assert r.status_code == 409 and r.json()["reason"] == "branching.redo_unavailable", r.text
    assert rows(pg, f"SELECT secret FROM {p}_a") == [{"secret": "admin data"}]
    assert rows(pg, f"SELECT id FROM {p}_mine") == [{"id": 1}]


def test_a_dry_run_leaves_sequences_alone(sqlgate: SqlgateServer) -> None:
    """setval is not transactional on PostgreSQL: a dry run of mode 'all' must not call it (the dry run a
    non-admin rollback plans with set sequences back, and the real rollback then kept the wrong value)."""
    agent = sqlgate.token("write", "redo-dry")["token"]
    p = fresh("rdy")
    make_tables(sqlgate, p, agent)
    answer = ok(sqlgate.sql(f"DELETE FROM {p}_t WHERE id < 3", token=agent))
    ok(sqlgate.sql(f"INSERT INTO {p}_t (name, qty) VALUES ('later', 7)", token=agent))
    before = snapshot(sqlgate, p)
    ok(rollback(sqlgate, answer["checkpoint"]["id"], token=agent, dry_run=True))
    assert snapshot(sqlgate, p) == before



@pytest.mark.parametrize("kind", STATEMENTS, ids=lambda k: k[0])
@pytest.mark.parametrize("mode", ["all", "statement"])
def test_a_statement_run_again_can_be_rolled_back_and_run_again_once_more(
        pg: SqlgateServer, writer: str, kind: Any, mode: str) -> None:
    """The checkpoint a redo takes keeps the statement it ran (its trace is the undo's call): rolling
    it back and undoing that runs the same statement again, never the rollback call's SQL (was a 403)."""
    p = fresh("rd")
    make_tables(pg, p, writer)
    before = snapshot(pg, p)
    cp = ok(pg.sql(kind[1].format(p=p), token=writer))["checkpoint"]["id"]
    after = snapshot(pg, p)
    undo = ok(rollback(pg, cp, token=writer))
    redo = ok(rollback(pg, undo["new_checkpoint"], token=writer))
    assert snapshot(pg, p) == after
    again = redo["objects_restored"][0].split("checkpoint ")[1].rstrip(")")
    second = ok(rollback(pg, again, token=writer, mode=mode))
    assert snapshot(pg, p) == before
    ok(rollback(pg, second["new_checkpoint"], token=writer, mode=mode))
    assert snapshot(pg, p) == after
