"""A rollback is itself undoable, DDL included: undoing the rollback of a DROP
or ALTER runs that statement again (checkpointed), so the branch is exactly as
it was before the rollback; and that redo can be rolled back in turn. On both
backends (DuckDB-only cases: test_checkpoints_duckdb_redo.py)."""

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
    ("rename_table", "ALTER TABLE {p}_c RENAME TO {p}_renamed", "INSERT INTO {p}_renamed VALUES (100, 41, 'r')"),
    ("column_type", "ALTER TABLE {p}_c ALTER COLUMN note TYPE varchar(4) USING left(note, 4)",
     "INSERT INTO {p}_c VALUES (100, 41, 'abcd')"),
    ("update_after_drop_column", "ALTER TABLE {p}_c DROP COLUMN note", "UPDATE {p}_c SET t_id = 42 WHERE id < 5"),
]


@pytest.fixture(scope="module")
def writer(sqlgate: SqlgateServer) -> str:
    return sqlgate.token("write", "redo-agent")["token"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", STATEMENTS, ids=lambda k: k[0])
@pytest.mark.parametrize("mode", ["all", "statement"])
def test_undoing_a_rollback_runs_the_statement_again(sqlgate: SqlgateServer, writer: str, kind: Any,
                                                     mode: str) -> None:
    p = fresh("rd")
    make_tables(sqlgate, p, writer)
    seqs = mode == "all"  # mode 'statement' leaves sequences as they are
    before = snapshot(sqlgate, p, sequences=seqs)
    name, statement, later = kind
    answer = ok(sqlgate.sql(statement.format(p=p), token=writer))
    if later:
        ok(sqlgate.sql(later.format(p=p), token=writer))
    after = snapshot(sqlgate, p, sequences=seqs)
    undone = ok(rollback(sqlgate, answer["checkpoint"]["id"], token=writer))
    assert snapshot(sqlgate, p, sequences=seqs) == before
    if sqlgate.backend == "duckdb" and name == "column_type":
        # DuckDB keeps no values in the new type of rows written after the change (the rollback undid
        # them): running it again would compute others, so it is refused, nothing changed.
        r = rollback(sqlgate, undone["new_checkpoint"], token=writer, mode=mode)
        assert r.status_code == 409 and r.json()["reason"] == "branching.redo_unavailable", r.text
        assert snapshot(sqlgate, p, sequences=seqs) == before
        return
    redone = ok(rollback(sqlgate, undone["new_checkpoint"], token=writer, mode=mode))
    assert snapshot(sqlgate, p, sequences=seqs) == after, "undoing the rollback must bring back the state it undid"
    assert any("again" in o for o in redone["objects_restored"]), redone
    ok(rollback(sqlgate, redone["new_checkpoint"], token=writer, mode=mode))
    assert snapshot(sqlgate, p, sequences=seqs) == before, "and that undo is undoable in turn"


def test_a_rollback_of_rows_alone_is_undone_as_before(sqlgate: SqlgateServer, writer: str) -> None:
    p = fresh("rdr")
    make_tables(sqlgate, p, writer)
    rows_cp = ok(sqlgate.sql(f"DELETE FROM {p}_c WHERE id < 5", token=writer))["checkpoint"]["id"]
    after_delete = snapshot(sqlgate, p)
    undone = ok(rollback(sqlgate, rows_cp, token=writer, mode="statement"))
    redone = ok(rollback(sqlgate, undone["new_checkpoint"], token=writer, mode="statement"))
    assert snapshot(sqlgate, p) == after_delete
    assert not any("again" in o for o in redone["objects_restored"]), redone


def test_undoing_a_rollback_never_runs_its_statement_on_another_object_of_the_same_name(
        pg: SqlgateServer) -> None:
    """The statement runs again by name on sqlgate's login: if the agent renamed its table away and
    another one (here the admin's) took the name, the undo is refused and the other table stays.
    (DuckDB: test_checkpoints_duckdb_redo.py.)"""
    writer = pg.token("write", "redo-agent-pg")["token"]
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
        sqlgate: SqlgateServer, writer: str, kind: Any, mode: str) -> None:
    """The checkpoint a redo takes keeps the statement it ran (its trace is the undo's call): rolling
    it back and undoing that runs the same statement again, never the rollback call's SQL (was a 403)."""
    pg = sqlgate
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
