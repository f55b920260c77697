"""Pairs of destructive statements on DuckDB: the first is rolled back (mode
'all': exactly the state before it; mode 'statement': only what it changed,
the second's change stays), then that rollback is undone (exactly the state
after both). What cannot be done is a clear 409 with nothing changed, never a
500. Real DuckDB files through a real `sqlgate serve`."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.sqlgate_server import SqlgateServer
from tests.test_checkpoints import back_and_forth, fresh, ok, refused_rollback, rollback, rows, snapshot


@pytest.fixture(scope="module")
def agent(duck: SqlgateServer) -> str:
    return duck.token("write", "pairs-duck")["token"]  # type: ignore[no-any-return]


def _table(duck: SqlgateServer, agent: str, p: str) -> None:
    ok(duck.sql(f"CREATE TABLE {p}_t (id int PRIMARY KEY, a int NOT NULL, b text DEFAULT 'd', c int)", token=agent))
    ok(duck.sql(f"INSERT INTO {p}_t SELECT i, i, 'b' || i, i * 2 FROM range(1, 11) g(i)", token=agent))


def _renamed(state: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    return {"schema": [tuple(str(x).replace(old, new) for x in e) for e in state["schema"]],
            "data": {k.replace(old, new): v for k, v in state["data"].items()}}


DEFINITION_PAIRS = [
    ("ALTER TABLE {t} ALTER COLUMN a DROP NOT NULL", "ALTER TABLE {t} ALTER COLUMN b DROP DEFAULT"),
    ("ALTER TABLE {t} ALTER COLUMN a DROP NOT NULL", "ALTER TABLE {t} DROP COLUMN b"),
    ("ALTER TABLE {t} ALTER COLUMN b DROP DEFAULT", "ALTER TABLE {t} RENAME COLUMN a TO a2"),
    ("ALTER TABLE {t} RENAME COLUMN a TO a2", "ALTER TABLE {t} ALTER COLUMN c TYPE VARCHAR"),
    ("ALTER TABLE {t} RENAME a TO a2", "ALTER TABLE {t} ALTER COLUMN b DROP DEFAULT"),
    ("ALTER TABLE {t} DROP COLUMN b", "ALTER TABLE {t} ALTER COLUMN a DROP NOT NULL"),
    ("ALTER TABLE {t} DROP COLUMN b", "ALTER TABLE {t} ALTER COLUMN c TYPE VARCHAR"),
    ("ALTER TABLE {t} ALTER COLUMN c TYPE VARCHAR", "ALTER TABLE {t} DROP COLUMN b"),
    ("ALTER TABLE {t} ALTER COLUMN c TYPE VARCHAR", "INSERT INTO {t} VALUES (100, 1, 'x', '1')"),
    ("ALTER TABLE {t} ALTER COLUMN c TYPE VARCHAR", "UPDATE {t} SET id = id + 50 WHERE id > 6"),
]


@pytest.mark.parametrize(("first", "second"), DEFINITION_PAIRS)
def test_statement_mode_undoes_only_the_statement_and_its_undo_is_exact(
        duck: SqlgateServer, agent: str, first: str, second: str) -> None:
    """Mode 'statement' on a definition change reverts only what that statement changed (before: the
    whole kept definition, or the table as kept by a DROP COLUMN, which also undid the later change);
    undoing it runs the statement again: exactly the state after both."""
    p, twin = fresh("prs"), fresh("prw")
    _table(duck, agent, p)
    _table(duck, agent, twin)
    cp = ok(duck.sql(first.format(t=f"{p}_t"), token=agent))["checkpoint"]["id"]
    ok(duck.sql(second.format(t=f"{p}_t"), token=agent))
    _first_alone(duck, agent, p, twin, cp, second)


def _first_alone(duck: SqlgateServer, agent: str, p: str, twin: str, cp: str, second: str) -> None:
    """Mode 'statement' of `cp` (then `second`) leaves p as `twin` after `second` alone; its undo, as before."""
    after = snapshot(duck, p)
    ok(duck.sql(second.format(t=f"{twin}_t"), token=agent))
    undone = ok(rollback(duck, cp, token=agent, mode="statement"))
    assert snapshot(duck, p) == _renamed(snapshot(duck, twin), twin, p)
    ok(rollback(duck, undone["new_checkpoint"], token=agent))
    assert snapshot(duck, p) == after


@pytest.mark.parametrize("first", [
    "ALTER TABLE {t} ALTER COLUMN a DROP NOT NULL",
    "ALTER TABLE {t} ALTER COLUMN b DROP DEFAULT",
    "ALTER TABLE {t} RENAME COLUMN a TO a2",
    "ALTER TABLE {t} ALTER COLUMN c TYPE VARCHAR",
])
def test_mode_all_across_a_drop_column_that_rebuilds_the_table(duck: SqlgateServer, agent: str, first: str) -> None:
    """Undoing the DROP COLUMN rebuilds the table (a new oid): the earlier definition checkpoint finds it
    through that rebuild (it was 'table is gone', a 500)."""
    p = fresh("pra")
    _table(duck, agent, p)
    before = snapshot(duck, p)
    cp = ok(duck.sql(first.format(t=f"{p}_t"), token=agent))["checkpoint"]["id"]
    ok(duck.sql(f"ALTER TABLE {p}_t DROP COLUMN b", token=agent))
    after = snapshot(duck, p)
    undone = ok(rollback(duck, cp, token=agent))
    assert snapshot(duck, p) == before
    ok(rollback(duck, undone["new_checkpoint"], token=agent))
    assert snapshot(duck, p) == after


def test_statement_mode_of_a_type_change_whose_column_was_dropped_is_a_conflict(
        duck: SqlgateServer, agent: str) -> None:
    """Before: the rollback answered 200 without the column (and its undo was a 500)."""
    p = fresh("prc")
    _table(duck, agent, p)
    cp = ok(duck.sql(f"ALTER TABLE {p}_t ALTER COLUMN c TYPE VARCHAR", token=agent))["checkpoint"]["id"]
    ok(duck.sql(f"ALTER TABLE {p}_t DROP COLUMN c", token=agent))
    body = refused_rollback(duck, p, cp, token=agent, mode="statement")
    assert body["reason"] == "branching.rollback_conflict", body


def test_undo_that_cannot_run_the_statement_again_says_why(duck: SqlgateServer, agent: str) -> None:
    """The column the statement names was renamed since: running it again fails. A clear 409 naming that
    error, nothing changed (before: the later rename was undone too, or 'transaction is aborted', a 500)."""
    p = fresh("prr")
    _table(duck, agent, p)
    cp = ok(duck.sql(f"ALTER TABLE {p}_t ALTER COLUMN a DROP NOT NULL", token=agent))["checkpoint"]["id"]
    ok(duck.sql(f"ALTER TABLE {p}_t RENAME COLUMN a TO a2", token=agent))
    undone = ok(rollback(duck, cp, token=agent, mode="statement"))
    state = snapshot(duck, p)
    assert any(e[2].startswith("2:a2:INTEGER:false") for e in state["schema"] if e[0] == "col")  # NOT NULL back
    r = rollback(duck, undone["new_checkpoint"], token=agent)
    assert r.status_code == 409 and r.json()["reason"] == "branching.redo_unavailable", r.text
    assert "does not have a column" in r.json()["message"]
    assert snapshot(duck, p) == state


@pytest.mark.parametrize(("first_mode", "second_mode"), [("statement", "statement"), ("statement", "all"),
                                                         ("all", "all")])
def test_older_definition_after_a_rollback_that_rebuilt_the_table(duck: SqlgateServer, agent: str,
                                                                   first_mode: str, second_mode: str) -> None:
    """A rollback of DROP COLUMN rebuilt the table (a new oid, recorded with its moves): an older
    definition checkpoint still finds it (it was 'table is gone', a 500)."""
    p = fresh("pro")
    _table(duck, agent, p)
    before = snapshot(duck, p)
    cp1 = ok(duck.sql(f"ALTER TABLE {p}_t ALTER COLUMN a DROP NOT NULL", token=agent))["checkpoint"]["id"]
    middle = snapshot(duck, p)
    cp2 = ok(duck.sql(f"ALTER TABLE {p}_t DROP COLUMN b", token=agent))["checkpoint"]["id"]
    ok(rollback(duck, cp2, token=agent, mode=first_mode))
    assert snapshot(duck, p) == middle
    undone = ok(rollback(duck, cp1, token=agent, mode=second_mode))
    assert snapshot(duck, p) == before
    ok(rollback(duck, undone["new_checkpoint"], token=agent))
    assert snapshot(duck, p) == middle


def test_statement_mode_of_a_type_change_keeps_rows_written_since_or_refuses(duck: SqlgateServer, agent: str) -> None:
    """Rows written after the type change keep their values cast back (before: NULL, a silent loss); one
    that does not fit the old type exactly is a conflict, nothing changed."""
    p = fresh("prv")
    _table(duck, agent, p)
    cp = ok(duck.sql(f"ALTER TABLE {p}_t ALTER COLUMN c TYPE VARCHAR", token=agent))["checkpoint"]["id"]
    ok(duck.sql(f"INSERT INTO {p}_t VALUES (100, 1, 'x', 'abc')", token=agent))
    body = refused_rollback(duck, p, cp, token=agent, mode="statement")
    assert "does not fit INTEGER" in str(body), body
    ok(duck.sql(f"UPDATE {p}_t SET c = '7' WHERE id = 100", token=agent))
    ok(rollback(duck, cp, token=agent, mode="statement"))
    assert ok(duck.sql(f"SELECT c FROM {p}_t WHERE id = 100", token=agent))["rows"] == [{"c": 7}]


def test_a_dropped_column_comes_back_alone_after_an_update_of_its_table(duck: SqlgateServer, agent: str) -> None:
    """An UPDATE's checkpoint used UPDATE ... RETURNING, with which DuckDB re-inserts the rows of a table
    with a key (new row ids) where the UPDATE as sent keeps them: the dropped column's values, kept by row
    id, then came back NULL in every row (a 200). Now the rows keep their ids."""
    p = fresh("prb")
    _table(duck, agent, p)
    cp = ok(duck.sql(f"ALTER TABLE {p}_t DROP COLUMN b", token=agent))["checkpoint"]["id"]
    ok(duck.sql(f"UPDATE {p}_t SET c = c + 1", token=agent))
    undone = ok(rollback(duck, cp, token=agent, mode="statement"))
    assert rows(duck, f"SELECT id, b, c FROM {p}_t ORDER BY id") == [
        {"id": i, "b": f"b{i}", "c": i * 2 + 1} for i in range(1, 11)]
    ok(rollback(duck, undone["new_checkpoint"], token=agent))


@pytest.mark.parametrize("first", ["ALTER TABLE {t} DROP COLUMN b", "ALTER TABLE {t} ALTER COLUMN c TYPE TINYINT"])
def test_rows_given_new_ids_since_are_a_conflict_not_lost_values(duck: SqlgateServer, agent: str, first: str) -> None:
    """An UPDATE of a key re-inserts the rows (new row ids): which kept value is whose is unknown. Mode
    'statement' answered 200 with the dropped column NULL in those rows, or a lossy type change's values
    as the new type left them; now a 409, nothing changed."""
    p = fresh("prc")
    ok(duck.sql(f"CREATE TABLE {p}_t (id int PRIMARY KEY, b text, c DECIMAL(6, 2))", token=agent))
    ok(duck.sql(f"INSERT INTO {p}_t SELECT i, 'b' || i, i + 0.25 FROM range(1, 11) g(i)", token=agent))
    cp = ok(duck.sql(first.format(t=f"{p}_t"), token=agent))["checkpoint"]["id"]
    ok(duck.sql(f"UPDATE {p}_t SET id = id + 100 WHERE id > 6", token=agent))
    body = refused_rollback(duck, p, cp, token=agent, mode="statement")
    assert "new row ids" in body["conflicts"][0]["conflict"]
    ok(rollback(duck, cp, token=agent))  # mode 'all' undoes the UPDATE first: exact
    assert rows(duck, f"SELECT count(*) AS n, sum(c) AS s FROM {p}_t WHERE b LIKE 'b%'") == [{"n": "10", "s": "57.50"}]


@pytest.mark.parametrize("first", ["ALTER TABLE {t} DROP COLUMN c", "ALTER TABLE {t} ALTER COLUMN c TYPE VARCHAR"])
def test_a_column_undone_alone_after_its_table_was_renamed(duck: SqlgateServer, agent: str, first: str) -> None:
    """Its kept values follow the table by name: a 409 that says to undo the rename first (was a 500,
    'Table ... does not exist'); in that order both come undone."""
    p = fresh("prd")
    _table(duck, agent, p)
    before = snapshot(duck, p)
    cp = ok(duck.sql(first.format(t=f"{p}_t"), token=agent))["checkpoint"]["id"]
    renamed = ok(duck.sql(f"ALTER TABLE {p}_t RENAME TO {p}_t2", token=agent))["checkpoint"]["id"]
    body = refused_rollback(duck, p, cp, token=agent, mode="statement")
    assert body["conflicts"][0]["conflict"] == "the table was renamed or dropped since: undo that first"
    ok(rollback(duck, renamed, token=agent, mode="statement"))
    ok(rollback(duck, cp, token=agent, mode="statement"))
    assert snapshot(duck, p) == before


def test_a_row_added_while_a_column_was_gone_gets_its_default(duck: SqlgateServer, agent: str) -> None:
    """Mode 'statement' of a DROP COLUMN that rebuilds the table: a row added since has no kept value and
    gets the column's default, as on PostgreSQL (it got NULL)."""
    p = fresh("pre")
    _table(duck, agent, p)
    cp = ok(duck.sql(f"ALTER TABLE {p}_t DROP COLUMN b", token=agent))["checkpoint"]["id"]
    ok(duck.sql(f"INSERT INTO {p}_t VALUES (100, 100, 200)", token=agent))
    ok(rollback(duck, cp, token=agent, mode="statement"))
    assert rows(duck, f"SELECT id, b FROM {p}_t WHERE id IN (1, 100) ORDER BY id") == [
        {"id": 1, "b": "b1"}, {"id": 100, "b": "d"}]


def test_an_index_made_between_two_updates_is_seen_by_the_second(duck: SqlgateServer, agent: str) -> None:
    """Whether an UPDATE moves rows to new ids depends on the table's indexes, read once per catalog
    version: an index made since must count (else the kept new rows would be read at ids the rows left)."""
    p = fresh("prf")
    ok(duck.sql(f"CREATE TABLE {p}_t (id int PRIMARY KEY, c int)", token=agent))
    ok(duck.sql(f"INSERT INTO {p}_t SELECT i, i FROM range(1, 11) g(i)", token=agent))
    ok(duck.sql(f"UPDATE {p}_t SET c = c + 1000 WHERE id < 3", token=agent))
    ok(duck.sql(f"CREATE UNIQUE INDEX {p}_ci ON {p}_t (c)", token=agent))
    before = snapshot(duck, p)
    cp = ok(duck.sql(f"UPDATE {p}_t SET c = c + 100 WHERE id > 5", token=agent))["checkpoint"]["id"]
    assert rows(duck, f"SELECT count(*) AS n FROM {p}_t WHERE c BETWEEN 100 AND 999") == [{"n": "5"}]
    ok(rollback(duck, cp, token=agent, mode="statement"))
    assert snapshot(duck, p) == before


def test_an_update_of_a_list_column_on_a_table_with_a_key(duck: SqlgateServer, agent: str) -> None:
    """DuckDB re-inserts a row whose LIST (or STRUCT, MAP) value an UPDATE changes, index or not: its
    checkpoint reads the new rows as RETURNING gives them, not by their old ids."""
    p = fresh("prg")
    ok(duck.sql(f"CREATE TABLE {p}_t (id int PRIMARY KEY, l int[], s STRUCT(x int))", token=agent))
    ok(duck.sql(f"INSERT INTO {p}_t SELECT i, [i], {{'x': i}} FROM range(1, 6) g(i)", token=agent))
    before = snapshot(duck, p)
    cp = ok(duck.sql(f"UPDATE {p}_t SET l = [0, 0] WHERE id < 3", token=agent))["checkpoint"]["id"]
    ok(rollback(duck, cp, token=agent, mode="statement"))
    assert snapshot(duck, p) == before


def test_an_index_made_after_a_drop_column_stays_when_the_column_comes_back(duck: SqlgateServer, agent: str) -> None:
    """Mode 'statement' of a DROP COLUMN that rebuilds the table keeps the indexes made since (they went).
    Undoing that rollback would drop b again, which DuckDB refuses while an index is on a later column:
    a 409 naming it, nothing changed."""
    p = fresh("prh")
    _table(duck, agent, p)
    cp = ok(duck.sql(f"ALTER TABLE {p}_t DROP COLUMN b", token=agent))["checkpoint"]["id"]
    ok(duck.sql(f"CREATE INDEX {p}_ci ON {p}_t (c)", token=agent))
    undone = ok(rollback(duck, cp, token=agent, mode="statement"))
    assert rows(duck, f"SELECT index_name AS i FROM duckdb_indexes() WHERE table_name = '{p}_t'") == [
        {"i": f"{p}_ci"}]
    assert rows(duck, f"SELECT b FROM {p}_t WHERE id = 3") == [{"b": "b3"}]
    body = refused_rollback(duck, p, undone["new_checkpoint"], token=agent)
    assert body["reason"] == "branching.redo_unavailable", body
    assert "an index depends on a column after it" in body["message"]


INDEX_C = "CREATE INDEX {t}_ci ON {t} (c)"


@pytest.mark.parametrize("first", [
    "ALTER TABLE {t} RENAME COLUMN a TO a2",
    "ALTER TABLE {t} ALTER COLUMN a DROP NOT NULL",
    "ALTER TABLE {t} ALTER COLUMN c SET NOT NULL",
    "ALTER TABLE {t} ALTER COLUMN c TYPE VARCHAR",
])
def test_an_index_made_since_does_not_stop_a_definition_undone_alone(duck: SqlgateServer, agent: str,
                                                                       first: str) -> None:
    """DuckDB refuses most ALTER TABLE while the table has an index: the restore drops the indexes and makes
    them again around it, or (a type, which DuckDB will not change on an index's column in the transaction
    that dropped the index) builds the table again, the index kept (was a 500: "Cannot alter entry", "an
    index depends on it"). Its undo runs the statement again the same way; only the type change, which DuckDB
    refuses on an indexed column, is a clear 409, nothing changed."""
    p, twin = fresh("pri"), fresh("prj")
    _table(duck, agent, p)
    _table(duck, agent, twin)
    cp = ok(duck.sql(first.format(t=f"{p}_t"), token=agent))["checkpoint"]["id"]
    ok(duck.sql(INDEX_C.format(t=f"{p}_t"), token=agent))
    after = snapshot(duck, p)
    ok(duck.sql(INDEX_C.format(t=f"{twin}_t"), token=agent))
    undone = ok(rollback(duck, cp, token=agent, mode="statement"))
    state = snapshot(duck, p)
    assert state == _renamed(snapshot(duck, twin), twin, p)
    r = rollback(duck, undone["new_checkpoint"], token=agent)
    if "TYPE" not in first:
        ok(r)
        assert snapshot(duck, p) == after
        return
    assert r.status_code == 409 and r.json()["reason"] == "branching.redo_unavailable", r.text
    assert "an index depends on it" in r.json()["message"]
    assert snapshot(duck, p) == state


@pytest.mark.parametrize(("first", "second"), [
    ("ALTER TABLE {t} ALTER COLUMN c TYPE VARCHAR", INDEX_C),
    ("ALTER TABLE {t} ALTER COLUMN c SET NOT NULL", "ALTER TABLE {t} ALTER COLUMN c TYPE VARCHAR"),
    ("ALTER TABLE {t} ALTER COLUMN a DROP NOT NULL", "ALTER TABLE {t} ALTER COLUMN a TYPE VARCHAR"),
    ("ALTER TABLE {t} ALTER COLUMN a TYPE BIGINT", "ALTER TABLE {t} ALTER COLUMN b SET DEFAULT 'z'"),
    ("ALTER TABLE {t} ADD COLUMN d int DEFAULT 7", "CREATE INDEX {t}_di ON {t} (d)"),
    ("ALTER TABLE {t} RENAME COLUMN a TO a2", INDEX_C),
])
def test_mode_all_past_a_later_index_or_a_not_null_column(duck: SqlgateServer, agent: str, first: str,
                                                          second: str) -> None:
    """A later index goes (an addition) before the type comes back or the added column goes (was a 500:
    "an index depends on it", DuckDB counting the index dropped in the same transaction until it commits:
    the table is built again). A NOT NULL column takes its old type and values without passing through
    NULL (was a 500: "NOT NULL constraint failed"), and NOT NULL dropped since comes back after them (was a
    500: DuckDB sets none once an UPDATE ran in the transaction). Its undo is exact."""
    p = fresh("prk")
    _table(duck, agent, p)
    before = snapshot(duck, p)
    cp = ok(duck.sql(first.format(t=f"{p}_t"), token=agent))["checkpoint"]["id"]
    ok(duck.sql(second.format(t=f"{p}_t"), token=agent))
    after = snapshot(duck, p)
    undone = ok(rollback(duck, cp, token=agent))
    assert snapshot(duck, p) == before
    ok(rollback(duck, undone["new_checkpoint"], token=agent))
    assert snapshot(duck, p) == after


def test_an_added_column_undone_alone_after_a_delete_says_what_blocks_it(duck: SqlgateServer, agent: str) -> None:
    """A later checkpoint of the table (a DELETE, a change of definition) blocks it, not rows written: the
    409 said "rows were written since"."""
    p = fresh("prl")
    _table(duck, agent, p)
    cp = ok(duck.sql(f"ALTER TABLE {p}_t ADD COLUMN d int DEFAULT 7", token=agent))["checkpoint"]["id"]
    ok(duck.sql(f"DELETE FROM {p}_t WHERE id = 1", token=agent))
    body = refused_rollback(duck, p, cp, token=agent, mode="statement")
    assert body["conflicts"][0]["conflict"] == "the table was changed again since; undo that first"


def test_a_table_renamed_back_keeps_an_index_made_since(duck: SqlgateServer, agent: str) -> None:
    """Mode 'statement': the index goes aside for the rename back and is made again on the old name, and
    the undo renames it forward again, the index with it (was a 500, "Cannot alter entry"). Mode 'all' would
    leave the index's checkpoint (taken under the new name) behind and lose the index: a 409 naming it,
    nothing changed."""
    p = fresh("prm")
    _table(duck, agent, p)
    cp = ok(duck.sql(f"ALTER TABLE {p}_t RENAME TO {p}_t2", token=agent))["checkpoint"]["id"]
    index = ok(duck.sql(f"CREATE INDEX {p}_ci ON {p}_t2 (c)", token=agent))["checkpoint"]["id"]
    after = snapshot(duck, p)
    body = refused_rollback(duck, p, cp, token=agent)
    assert index in body["message"], body
    undone = ok(rollback(duck, cp, token=agent, mode="statement"))
    assert rows(duck, f"SELECT table_name AS t FROM duckdb_indexes() WHERE index_name = '{p}_ci'") == [{"t": f"{p}_t"}]
    ok(rollback(duck, undone["new_checkpoint"], token=agent))
    assert snapshot(duck, p) == after


UNIQUE_B = "CREATE UNIQUE INDEX {t}_bu ON {t} (b)"
UPDATE_A = "UPDATE {t} SET a = a + 100 WHERE id <= 4"


@pytest.mark.parametrize("statements", [
    [UNIQUE_B, UPDATE_A],
    [UPDATE_A, UNIQUE_B],
    ["ALTER TABLE {t} ALTER COLUMN a DROP NOT NULL", UNIQUE_B, UPDATE_A],
    ["DELETE FROM {t} WHERE id <= 2", UNIQUE_B, UPDATE_A],
    ["ALTER TABLE {t} DROP COLUMN c", UNIQUE_B, UPDATE_A],
])
def test_undoing_mode_all_makes_a_unique_index_again_over_rows_put_back(duck: SqlgateServer, agent: str,
                                                                         statements: list[str]) -> None:
    """The undo puts the updated rows back (deleted and inserted again) and then makes the unique index
    again, which DuckDB checks at COMMIT against the deleted rows too (was a 500, "duplicate key"): the
    table is built again first, before any statement runs again, so undoing the undo is exact too."""
    p = fresh("prn")
    _table(duck, agent, p)
    before = snapshot(duck, p)
    cp = ok(duck.sql(statements[0].format(t=f"{p}_t"), token=agent))["checkpoint"]["id"]
    for statement in statements[1:]:
        ok(duck.sql(statement.format(t=f"{p}_t"), token=agent))
    for state in (before, snapshot(duck, p), before):  # rolled back, undone, that undone
        cp = ok(rollback(duck, cp, token=agent))["new_checkpoint"]
        assert snapshot(duck, p) == state


GENERATED = "CREATE TABLE {t} (id int PRIMARY KEY, a int NOT NULL, b text, c int GENERATED ALWAYS AS (a * 2), d int)"


@pytest.mark.parametrize(("first", "second", "mode"), [
    *((first, second, mode) for first, second in [
        ("DELETE FROM {t} WHERE id >= 9", UPDATE_A),
        (UPDATE_A, "ALTER TABLE {t} ALTER COLUMN d SET NOT NULL"),
        ("UPDATE {t} SET b = b || 'x' WHERE id > 6", "CREATE INDEX {t}_di ON {t} (d)"),
    ] for mode in ("all", "statement")),
    ("ALTER TABLE {t} DROP COLUMN d", "DELETE FROM {t} WHERE id <= 2", "all"),
])
def test_rows_put_back_into_a_table_with_a_generated_column(duck: SqlgateServer, agent: str, first: str,
                                                             second: str, mode: str) -> None:
    """Rows go back without the generated column's values, which DuckDB computes (was a 500: "Cannot insert
    into a generated column", or in mode 'all' "transaction is aborted", the error hidden)."""
    p, twin = fresh("prt"), fresh("pru")
    for table in (p, twin):
        ok(duck.sql(GENERATED.format(t=f"{table}_t"), token=agent))
        ok(duck.sql(f"INSERT INTO {table}_t (id, a, b, d) SELECT i, i, 'b' || i, i FROM range(1, 11) g(i)",
                    token=agent))
    before = snapshot(duck, p)
    cp = ok(duck.sql(first.format(t=f"{p}_t"), token=agent))["checkpoint"]["id"]
    ok(duck.sql(second.format(t=f"{p}_t"), token=agent))
    if mode == "all":
        back_and_forth(duck, p, cp, before)
    else:
        _first_alone(duck, agent, p, twin, cp, second)


@pytest.mark.parametrize("mode", ["all", "statement"])
@pytest.mark.parametrize("rows_since", [False, True], ids=["alone", "rows-since"])
def test_a_column_added_with_unique_is_taken_away_and_comes_back(
        duck: SqlgateServer, agent: str, mode: str, rows_since: bool) -> None:
    """DuckDB will neither drop a column a UNIQUE names nor drop the constraint: the table is built again
    without both. Rows written since (values in the column) are undone first in mode 'all', and make mode
    'statement' a 409 with nothing changed."""
    p = fresh("dpu")
    _table(duck, agent, p)
    before = snapshot(duck, p)
    cp = ok(duck.sql(f"ALTER TABLE {p}_t ADD COLUMN w int UNIQUE", token=agent))["checkpoint"]["id"]
    if rows_since:
        ok(duck.sql(f"INSERT INTO {p}_t VALUES (11, 11, 'x', 22, 5)", token=agent))
    if rows_since and mode == "statement":
        body = refused_rollback(duck, p, cp, token=agent, mode=mode)
        assert [c["conflict"] for c in body["conflicts"]] == [
            "rows were written since; they may hold values in the column"], body
        return
    if rows_since:  # the rollback is exact; undoing it loses the values written since in the column (README)
        ok(rollback(duck, cp, token=agent, mode=mode))
        assert snapshot(duck, p) == before
        return
    back_and_forth(duck, p, cp, before, mode=mode)
