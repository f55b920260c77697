"""Undoing a DuckDB rollback that brought objects back: the statements it undid
run again (each checkpointed) in the undo's transaction, after its rows are
reversed, so the file is exactly as before the rollback; and that undo is
undoable in turn. What cannot be done is refused (409) with nothing changed.
The scenarios both backends share are in test_checkpoints_redo.py. Real DuckDB
files through a real `sqlgate serve`."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.pgserver import PgServer
from tests.support.sqlgate_server import SqlgateServer, start_sqlgate
from tests.test_checkpoints import fresh, make_tables, ok, rollback, rows, snapshot


@pytest.fixture(scope="module")
def agent(duck: SqlgateServer) -> str:
    return duck.token("write", "redo-duck")["token"]  # type: ignore[no-any-return]


def _cp(answer: dict[str, Any]) -> str:
    return answer["checkpoint"]["id"]  # type: ignore[no-any-return]


def _refused(r: Any) -> dict[str, Any]:
    assert r.status_code == 409 and r.json()["reason"] == "branching.redo_unavailable", r.text
    return r.json()  # type: ignore[no-any-return]


def _plain(duck: SqlgateServer, agent: str, p: str) -> None:
    """A table without indexes (DuckDB refuses most ALTERs of an indexed one) and a view on it."""
    ok(duck.sql(f"CREATE TABLE {p}_x (id INTEGER, a VARCHAR NOT NULL DEFAULT 'd', b INTEGER, c VARCHAR)",
                token=agent))
    ok(duck.sql(f"INSERT INTO {p}_x SELECT i, 'a' || i, i * 10, 'c' || i FROM range(8) r(i)", token=agent))
    ok(duck.sql(f"CREATE VIEW v_{p} AS SELECT id, a FROM {p}_x WHERE id > 2", token=agent))


PLAIN = [
    ("drop_table_under_a_view", "DROP TABLE {p}_x", None),
    ("drop_middle_column", "ALTER TABLE {p}_x DROP COLUMN b", "INSERT INTO {p}_x VALUES (100, 'n', 'n')"),
    ("drop_middle_column_then_update", "ALTER TABLE {p}_x DROP COLUMN b", "UPDATE {p}_x SET c = 'u' WHERE id < 3"),
    ("drop_not_null", "ALTER TABLE {p}_x ALTER COLUMN a DROP NOT NULL", "INSERT INTO {p}_x VALUES (100, NULL, 1, 'n')"),
    ("drop_default", "ALTER TABLE {p}_x ALTER COLUMN a DROP DEFAULT", "INSERT INTO {p}_x (id, a) VALUES (100, 'n')"),
    ("rename_column", "ALTER TABLE {p}_x RENAME COLUMN b TO bb", "DELETE FROM {p}_x WHERE bb > 50"),
    ("type", "ALTER TABLE {p}_x ALTER COLUMN b TYPE VARCHAR USING 'v' || b", None),
]


def test_undoing_a_rollback_of_a_type_change_after_later_rows_is_refused(duck: SqlgateServer, agent: str) -> None:
    """Rows written after a type change, which the rollback undid, had values in the new type that were
    not kept: running the change again would compute others. Refused, nothing changed."""
    p = fresh("rdt")
    _plain(duck, agent, p)
    cp = _cp(ok(duck.sql(f"ALTER TABLE {p}_x ALTER COLUMN b TYPE VARCHAR USING 'v' || b", token=agent)))
    ok(duck.sql(f"UPDATE {p}_x SET b = 'w' WHERE id = 1", token=agent))
    undone = ok(rollback(duck, cp, token=agent))
    state = _state(duck, p)
    for mode in ("all", "statement"):
        error = _refused(rollback(duck, undone["new_checkpoint"], token=agent, mode=mode))
        assert "TYPE VARCHAR" in error["next"], error
        assert _state(duck, p) == state


def _state(duck: SqlgateServer, p: str) -> dict[str, Any]:
    """The snapshot, and the view's rows whenever its table is there (a dropped table leaves it dangling:
    DuckDB keeps no dependencies of views; it is named apart so that the snapshot leaves it out)."""
    state = snapshot(duck, p)
    if f"{p}_x" in state["data"]:
        state["view"] = rows(duck, f"SELECT * FROM v_{p} ORDER BY id")
    return state


@pytest.mark.parametrize("kind", PLAIN, ids=lambda k: k[0])
@pytest.mark.parametrize("mode", ["all", "statement"])
def test_undoing_a_rollback_on_a_plain_table(duck: SqlgateServer, agent: str, kind: Any, mode: str) -> None:
    """Each statement, a later write, mode 'all' back, then its undo (in `mode`), then that undo's undo,
    then once more: each time exactly the state before."""
    p = fresh("rdx")
    _plain(duck, agent, p)
    before = _state(duck, p)
    cp = _cp(ok(duck.sql(kind[1].format(p=p), token=agent)))
    if kind[2]:
        ok(duck.sql(kind[2].format(p=p), token=agent))
    after = _state(duck, p)
    last = ok(rollback(duck, cp, token=agent))
    assert _state(duck, p) == before
    for expected in (after, before, after):
        last = ok(rollback(duck, last["new_checkpoint"], token=agent, mode=mode))
        assert _state(duck, p) == expected


@pytest.mark.parametrize("mode", ["all", "statement"])
@pytest.mark.parametrize("drops", [1, 2])
def test_undoing_a_rollback_from_before_drop_columns(duck: SqlgateServer, agent: str, drops: int, mode: str) -> None:
    """A mode-'all' rollback to a checkpoint before one or two DROP COLUMNs (and the rows written around
    them) brings the columns back; its undo reverses its rows, then drops them again, oldest first; and
    the undo is undone and redone in turn, then mode 'all' over a later write."""
    p = fresh("rdc")
    ok(duck.sql(f"CREATE TABLE {p}_t (id INTEGER, a INTEGER, b VARCHAR, c INTEGER)", token=agent))
    ok(duck.sql(f"INSERT INTO {p}_t VALUES (1, 1, 'x', 1), (2, 2, 'y', 2)", token=agent))
    before = snapshot(duck, p)
    cp = _cp(ok(duck.sql(f"UPDATE {p}_t SET a = 10 WHERE id = 1", token=agent)))
    later = [f"INSERT INTO {p}_t VALUES (3, 3, 'z', 3)", f"ALTER TABLE {p}_t DROP COLUMN b",
             f"INSERT INTO {p}_t VALUES (4, 4, 4)"]
    if drops == 2:
        later += [f"UPDATE {p}_t SET a = 20 WHERE id = 2", f"ALTER TABLE {p}_t DROP COLUMN c",
                  f"INSERT INTO {p}_t VALUES (5, 5)"]
    for q in [*later, f"DELETE FROM {p}_t WHERE id = 3"]:
        ok(duck.sql(q, token=agent))
    after = snapshot(duck, p)
    last = ok(rollback(duck, cp, token=agent))
    assert snapshot(duck, p) == before
    for expected in (after, before, after):
        last = ok(rollback(duck, last["new_checkpoint"], token=agent, mode=mode))
        assert snapshot(duck, p) == expected
    ok(duck.sql(f"INSERT INTO {p}_t VALUES (7, 7{', 7' if drops == 1 else ''})", token=agent))
    ok(rollback(duck, last["new_checkpoint"], token=agent))
    assert snapshot(duck, p) == before


def test_values_of_rows_put_back_before_a_drop_runs_again(duck: SqlgateServer, agent: str) -> None:
    """The undo puts rows back (new to its transaction, with temporary row ids) and then drops the column
    again: rolling back that DROP alone (mode 'statement') gives those rows their values back too."""
    p = fresh("rdv")
    _plain(duck, agent, p)
    cp = _cp(ok(duck.sql(f"ALTER TABLE {p}_x DROP COLUMN c", token=agent)))
    ok(duck.sql(f"UPDATE {p}_x SET b = 0 WHERE id < 3", token=agent))
    undone = ok(rollback(duck, cp, token=agent))
    redone = ok(rollback(duck, undone["new_checkpoint"], token=agent))
    again = redone["objects_restored"][0].split("checkpoint ")[1].rstrip(")")
    ok(rollback(duck, again, token=agent, mode="statement"))
    assert rows(duck, f"SELECT id, b, c FROM {p}_x ORDER BY id") == [
        {"id": i, "b": 0 if i < 3 else i * 10, "c": f"c{i}"} for i in range(8)]


def test_undoing_a_rollback_never_runs_its_statement_on_another_object_of_the_same_name(
        duck: SqlgateServer, agent: str) -> None:
    """DuckDB has no roles: the statement runs again by name, so if the agent renamed its table away and
    another one (here the admin's) took the name, the undo is refused and the other table stays."""
    p = fresh("rdn")
    ok(duck.sql(f"CREATE TABLE {p}_a (id INTEGER); INSERT INTO {p}_a VALUES (1)", token=agent))
    dropped = _cp(ok(duck.sql(f"DROP TABLE {p}_a", token=agent)))
    undone = ok(rollback(duck, dropped, token=agent, mode="statement"))
    ok(duck.sql(f"ALTER TABLE {p}_a RENAME TO {p}_mine", token=agent))
    ok(duck.sql(f"CREATE TABLE {p}_a (id INTEGER, secret VARCHAR); INSERT INTO {p}_a VALUES (7, 'admin data')"))
    for mode in ("statement", "all"):
        _refused(rollback(duck, undone["new_checkpoint"], token=agent, mode=mode))
    assert rows(duck, f"SELECT secret FROM {p}_a") == [{"secret": "admin data"}]
    assert rows(duck, f"SELECT id FROM {p}_mine") == [{"id": 1}]


def test_a_mode_all_rollback_across_a_rollback_of_an_older_drop_is_refused(duck: SqlgateServer, agent: str) -> None:
    """Going back to before a DELETE that came after a DROP COLUMN a later rollback undid would mean
    dropping the column again in the middle: refused with the order that works (as on PostgreSQL),
    nothing changed."""
    p = fresh("rdk")
    make_tables(duck, p, agent)
    drop = _cp(ok(duck.sql(f"ALTER TABLE {p}_c DROP COLUMN note", token=agent)))
    dropped = snapshot(duck, p)
    delete = _cp(ok(duck.sql(f"DELETE FROM {p}_c WHERE id < 4", token=agent)))
    undone = ok(rollback(duck, drop, token=agent, mode="statement"))
    state = snapshot(duck, p)
    error = _refused(rollback(duck, delete, token=agent))
    assert undone["new_checkpoint"] in error["message"] and "DROP COLUMN note" in error["next"], error
    assert snapshot(duck, p) == state
    # Undoing that rollback first drops the column again; going back before the DELETE across that undo
    # would bring the column back and need it dropped once more: refused too, nothing changed.
    redone = ok(rollback(duck, undone["new_checkpoint"], token=agent))
    assert {k: v for k, v in snapshot(duck, p).items() if k == "schema"} == {"schema": dropped["schema"]}
    state = snapshot(duck, p)
    _refused(rollback(duck, delete, token=agent))
    assert snapshot(duck, p) == state
    # Statement by statement it works: the DELETE alone.
    assert redone["new_checkpoint"]
    ok(rollback(duck, delete, token=agent, mode="statement"))
    assert snapshot(duck, p) == dropped


def test_a_dry_run_of_an_undo_changes_nothing(duck: SqlgateServer, agent: str) -> None:
    p = fresh("rdy")
    make_tables(duck, p, agent)
    cp = _cp(ok(duck.sql(f"DROP TABLE {p}_c", token=agent)))
    undone = ok(rollback(duck, cp, token=agent))
    state = snapshot(duck, p)
    plan = ok(rollback(duck, undone["new_checkpoint"], token=agent, dry_run=True))
    assert any("again" in o for o in plan["objects_restored"]), plan
    assert snapshot(duck, p) == state
    ok(rollback(duck, undone["new_checkpoint"], token=agent))
    assert f"{p}_c" not in snapshot(duck, p)["data"]


def test_after_a_restart_the_undo_is_refused(pg_server: PgServer) -> None:
    """DuckDB numbers catalog objects anew at each start, so after a restart sqlgate cannot tell that a
    name still names what the rollback brought back: it refuses (nothing changed) rather than guess."""
    server = start_sqlgate("duckdb", pg_server, "unused")
    try:
        p = fresh("rds")
        ok(server.sql(f"CREATE TABLE {p}_a (id INTEGER); INSERT INTO {p}_a VALUES (1)"))
        undone = ok(rollback(server, _cp(ok(server.sql(f"DROP TABLE {p}_a")))))
        server.stop()
        server.start()
        error = _refused(rollback(server, undone["new_checkpoint"]))
        assert "restarted" in error["message"], error
        assert rows(server, f"SELECT id FROM {p}_a") == [{"id": 1}]
    finally:
        server.stop()
