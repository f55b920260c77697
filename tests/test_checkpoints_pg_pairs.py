"""Pairs of destructive statements on PostgreSQL: statement 1 checkpointed, statement 2 after it, then
statement 1's checkpoint rolled back in mode 'all' (exactly the state before statement 1), and that
rollback undone (exactly the state after statement 2); or statement 1 alone undone (mode 'statement'),
statement 2 kept. Where a pair cannot be undone exactly, a clear 409 that names the real conflict, with
nothing changed, never a 500."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.support.sqlgate_server import SqlgateServer
from tests.test_checkpoints import back_and_forth, num, ok, pair_table, rollback, rows, snapshot

DELETE = "DELETE FROM {t} WHERE id % 2 = 0"
TRUNCATE = "TRUNCATE {t}"
RENAME = "ALTER TABLE {t} RENAME COLUMN a TO a2"
RETYPE = "ALTER TABLE {t} ALTER COLUMN c TYPE VARCHAR"
DROP_B = "ALTER TABLE {t} DROP COLUMN b"
DROP_C = "ALTER TABLE {t} DROP COLUMN c"
DROP_DEFAULT = "ALTER TABLE {t} ALTER COLUMN b DROP DEFAULT"
DROP_NOT_NULL = "ALTER TABLE {t} ALTER COLUMN a DROP NOT NULL"
ADD_D = "ALTER TABLE {t} ADD COLUMN d int DEFAULT 7"


def _table(pg: SqlgateServer) -> tuple[str, str]:
    return pair_table(pg, "pgpair")


@pytest.mark.parametrize(("first", "second"), [
    # Rows deleted before a rename / a type change are put back in the shape they were deleted in:
    # the definition comes back first (rows written after it are undone before it).
    (DELETE, RENAME), (TRUNCATE, RENAME), (DELETE, RETYPE), (TRUNCATE, RETYPE),
    # A column brought back re-creates the columns after it by the positions they had, and the
    # definitions kept of columns re-created by this rollback still find them.
    (DROP_C, DROP_B), (DROP_B, RETYPE), (DROP_DEFAULT, DROP_B), (RETYPE, DROP_C), (RETYPE, DROP_B),
], ids=["delete-rename", "truncate-rename", "delete-retype", "truncate-retype", "dropc-dropb", "dropb-retype",
        "dropdefault-dropb", "retype-dropc", "retype-dropb"])
def test_mode_all_back_to_before_the_first_and_undo(pg: SqlgateServer, first: str, second: str) -> None:
    p, t = _table(pg)
    before = snapshot(pg, p)
    cp = ok(pg.sql(first.format(t=t)))["checkpoint"]["id"]
    ok(pg.sql(second.format(t=t)))
    back_and_forth(pg, p, cp, before)


def test_undo_of_a_statement_rollback_whose_statement_no_longer_applies(pg: SqlgateServer) -> None:
    """DROP NOT NULL on a, RENAME a TO a2, rollback the DROP NOT NULL alone (a2 is NOT NULL again): undoing
    that would run `ALTER COLUMN a DROP NOT NULL` again, which names a column that is gone. A clear 409 with
    the database's reason, nothing changed; not the "transaction is aborted" that hid it."""
    p, t = _table(pg)
    cp = ok(pg.sql(DROP_NOT_NULL.format(t=t)))["checkpoint"]["id"]
    ok(pg.sql(RENAME.format(t=t)))
    undo = ok(rollback(pg, cp, mode="statement"))["new_checkpoint"]
    state = snapshot(pg, p)
    assert rows(pg, f"SELECT attnotnull AS n FROM pg_attribute WHERE attrelid = '{t}'::regclass"
                    " AND attname = 'a2'") == [{"n": True}]
    r = rollback(pg, undo)
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "0A000"
    assert "does not exist" in r.json()["message"] and "aborted" not in r.json()["message"]
    assert snapshot(pg, p) == state



def _conflicts(r: Any) -> list[dict[str, Any]]:
    assert r.status_code == 409 and r.json()["reason"] == "branching.rollback_conflict", r.text
    return r.json()["conflicts"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("first", [DELETE, TRUNCATE], ids=["delete", "truncate"])
def test_mode_statement_rows_put_back_take_the_default_of_a_column_added_since(pg: SqlgateServer, first: str) -> None:
    """The kept rows have no value for a column added since: they get its default, as ADD COLUMN gave every
    row then (and as an INSERT would); a value kept as NULL stays NULL, default or not. Undoing that is exact."""
    p, t = _table(pg)
    ok(pg.sql(f"UPDATE {t} SET b = NULL, c = NULL WHERE id = 2"))
    expected = rows(pg, f"SELECT *, 7 AS d FROM {t} ORDER BY id")
    cp = ok(pg.sql(first.format(t=t)))["checkpoint"]["id"]
    ok(pg.sql(ADD_D.format(t=t)))
    after = snapshot(pg, p)
    undone = ok(rollback(pg, cp, mode="statement"))
    assert rows(pg, f"SELECT * FROM {t} ORDER BY id") == expected
    ok(rollback(pg, undone["new_checkpoint"]))
    assert snapshot(pg, p) == after


def test_mode_statement_of_a_drop_column_names_rows_whose_key_changed_since(pg: SqlgateServer) -> None:
    """Rows whose key a later UPDATE changed were not added since: the conflict says their key changed
    (and by which checkpoint); a row inserted since is still named as added."""
    p, t = _table(pg)
    cp = ok(pg.sql(DROP_C.format(t=t)))["checkpoint"]["id"]
    moved = ok(pg.sql(f"UPDATE {t} SET id = id + 100 WHERE id <= 3"))["checkpoint"]["id"]
    ok(pg.sql(f"INSERT INTO {t} VALUES (50, 50, 'new')"))
    state = snapshot(pg, p)
    why = {c["row"]["id"]: c["conflict"] for c in _conflicts(rollback(pg, cp, mode="statement"))}
    assert sorted(why) == ["101", "102", "103", "50"], why
    for key in ("101", "102", "103"):
        assert "key was changed since" in why[key] and moved in why[key] and "added" not in why[key], why
    assert why["50"].startswith("added since c was dropped"), why
    assert snapshot(pg, p) == state


@pytest.mark.parametrize("first", [DELETE, TRUNCATE], ids=["delete", "truncate"])
@pytest.mark.parametrize("column", ["a", "c"], ids=["not_null", "nullable"])
def test_mode_statement_of_rows_kept_before_a_rename_names_the_rename(
        pg: SqlgateServer, first: str, column: str) -> None:
    """The kept rows have the column's old name: the conflict says so and which rename to undo first (it
    read like a key collision; a nullable column was even put back as NULL). Doing that then works."""
    p, t = _table(pg)
    before = snapshot(pg, p)
    cp = ok(pg.sql(first.format(t=t)))["checkpoint"]["id"]
    renamed = ok(pg.sql(f"ALTER TABLE {t} RENAME COLUMN {column} TO {column}2"))["checkpoint"]["id"]
    state = snapshot(pg, p)
    [c] = _conflicts(rollback(pg, cp, mode="statement"))
    assert c["column"] == column and f"renamed since to {column}2" in c["conflict"] and renamed in c["conflict"], c
    assert snapshot(pg, p) == state
    ok(rollback(pg, renamed, mode="statement"))
    ok(rollback(pg, cp, mode="statement"))
    assert snapshot(pg, p) == before


# --- mode 'statement' with a column added since: rows are compared on the columns they were captured with

UPDATE_A = "UPDATE {t} SET a = a + 1 WHERE id % 2 = 0"
UNDONE_A = "SELECT id, a - (id % 2 = 0)::int AS a, b, c, d FROM {t} ORDER BY id"


def _keyed(pg: SqlgateServer, key: bool) -> tuple[str, str]:
    p, t = _table(pg)
    if not key:  # rows matched by their whole content
        ok(pg.sql(f"ALTER TABLE {t} DROP CONSTRAINT {t}_pkey"))
    return p, t


@pytest.mark.parametrize(("key", "later"), [
    (True, ""), (False, ""), (True, "UPDATE {t} SET d = id * 10 WHERE id <= 4"),
], ids=["key", "no_key", "key-later_value"])
@pytest.mark.parametrize("added", ["int DEFAULT 7", "int"], ids=["default", "null"])
def test_mode_statement_of_an_update_keeps_a_column_added_since(
        pg: SqlgateServer, key: bool, later: str, added: str) -> None:
    """A column added since the UPDATE is no change of its rows (the UPDATE did not touch it; a 409 "rows
    changed since" compared it too): they get their old values back and keep the added column's, a value a
    later UPDATE wrote in it too (rows with a key are updated in place)."""
    p, t = _keyed(pg, key)
    cp = ok(pg.sql(UPDATE_A.format(t=t)))["checkpoint"]["id"]
    ok(pg.sql(f"ALTER TABLE {t} ADD COLUMN d {added}"))
    if later:
        ok(pg.sql(later.format(t=t)))
    expected = rows(pg, UNDONE_A.format(t=t))
    after = snapshot(pg, p)
    undone = ok(rollback(pg, cp, mode="statement"))
    assert rows(pg, f"SELECT * FROM {t} ORDER BY id") == expected
    ok(rollback(pg, undone["new_checkpoint"]))
    assert snapshot(pg, p) == after


@pytest.mark.parametrize("key", [True, False], ids=["key", "no_key"])
def test_mode_statement_of_an_update_with_a_column_added_since_still_sees_later_changes(
        pg: SqlgateServer, key: bool) -> None:
    """A row whose captured columns changed since is still a conflict, whatever the added column holds."""
    p, t = _keyed(pg, key)
    cp = ok(pg.sql(UPDATE_A.format(t=t)))["checkpoint"]["id"]
    ok(pg.sql(ADD_D.format(t=t)))
    ok(pg.sql(f"UPDATE {t} SET d = 1, b = 'x' WHERE id = 2"))
    state = snapshot(pg, p)
    conflicts = _conflicts(rollback(pg, cp, mode="statement"))
    assert conflicts and all("changed" in c["conflict"] for c in conflicts), conflicts
    assert snapshot(pg, p) == state


@pytest.mark.parametrize(("key", "first"), [(False, UPDATE_A), (True, "UPDATE {t} SET id = id + 100 WHERE id <= 2")],
                         ids=["no_key", "key_changed"])
def test_mode_statement_never_loses_a_later_value_of_a_column_added_since(
        pg: SqlgateServer, key: bool, first: str) -> None:
    """Rows the undo takes away (put back whole: no key, or a key the statement changed) while a later
    statement wrote the added column in them: that value would be lost. A 409 naming the column and that
    statement's checkpoint, nothing changed; undoing that one first, then this one, works."""
    p, t = _keyed(pg, key)
    expected = rows(pg, f"SELECT *, 7 AS d FROM {t} ORDER BY id")
    cp = ok(pg.sql(first.format(t=t)))["checkpoint"]["id"]
    ok(pg.sql(ADD_D.format(t=t)))
    later = ok(pg.sql(f"UPDATE {t} SET d = 1 WHERE id % 2 = 0 OR id > 100"))["checkpoint"]["id"]
    state = snapshot(pg, p)
    conflicts = _conflicts(rollback(pg, cp, mode="statement"))
    assert conflicts and all(c["column"] == "d" and later in c["conflict"] for c in conflicts), conflicts
    assert snapshot(pg, p) == state
    ok(rollback(pg, later, mode="statement"))
    ok(rollback(pg, cp, mode="statement"))
    assert rows(pg, f"SELECT * FROM {t} ORDER BY id") == expected


# --- mode 'statement' of rows kept with a column that now has another name: never put back without it

def _renamed_conflict(r: Any, column: str, now: str, *undo_first: str) -> None:
    """One conflict naming `column`, where it is now, and the checkpoints to undo first, in that order."""
    [c] = _conflicts(r)
    assert c["column"] == column and f"renamed since to {now}" in c["conflict"], c
    at = [c["conflict"].index(cp) for cp in undo_first]  # each named
    assert at == sorted(at), c


def test_mode_statement_of_rows_kept_before_two_renames_names_both_latest_first(pg: SqlgateServer) -> None:
    """RENAME a TO a2, then a2 TO a3: the first rename cannot be undone alone (renamed again since), so the
    answer names both, the latest first; undoing them in that order, then the DELETE, is exact."""
    p, t = _table(pg)
    before = snapshot(pg, p)
    cp = ok(pg.sql(DELETE.format(t=t)))["checkpoint"]["id"]
    first = ok(pg.sql(RENAME.format(t=t)))["checkpoint"]["id"]
    second = ok(pg.sql(f"ALTER TABLE {t} RENAME COLUMN a2 TO a3"))["checkpoint"]["id"]
    state = snapshot(pg, p)
    _renamed_conflict(rollback(pg, cp, mode="statement"), "a", "a3", second, first)
    assert snapshot(pg, p) == state
    for undo in (second, first, cp):
        ok(rollback(pg, undo, mode="statement"))
    assert snapshot(pg, p) == before


def test_mode_statement_of_rows_kept_after_a_rename_that_was_undone_since(pg: SqlgateServer) -> None:
    """RENAME c TO c2, DELETE (rows kept with c2), the rename undone alone (c again): the kept values of c2
    were put back as NULL. The 409 names the rollback that renamed it back; undoing that rollback (the
    rename runs again), then the DELETE, gives the table as it was before the DELETE."""
    p, t = _table(pg)
    renamed = ok(pg.sql(f"ALTER TABLE {t} RENAME COLUMN c TO c2"))["checkpoint"]["id"]
    before = snapshot(pg, p)
    cp = ok(pg.sql(DELETE.format(t=t)))["checkpoint"]["id"]
    back = ok(rollback(pg, renamed, mode="statement"))["new_checkpoint"]
    state = snapshot(pg, p)
    _renamed_conflict(rollback(pg, cp, mode="statement"), "c2", "c", back)
    assert snapshot(pg, p) == state
    ok(rollback(pg, back, mode="statement"))
    ok(rollback(pg, cp, mode="statement"))
    assert snapshot(pg, p) == before


def test_mode_statement_of_rows_kept_before_a_rename_undone_and_run_again(pg: SqlgateServer) -> None:
    """RENAME c TO c2 undone alone, then that undo undone (the rename runs again, with a checkpoint of its
    own): the 409 names the rename that is in effect, not the first one, which is undone."""
    p, t = _table(pg)
    cp = ok(pg.sql(DELETE.format(t=t)))["checkpoint"]["id"]
    renamed = ok(pg.sql(f"ALTER TABLE {t} RENAME COLUMN c TO c2"))["checkpoint"]["id"]
    back = ok(rollback(pg, renamed, mode="statement"))["new_checkpoint"]
    [redone] = ok(rollback(pg, back, mode="statement"))["objects_restored"]
    again = redone.rsplit("checkpoint ", 1)[1].rstrip(")")
    state = snapshot(pg, p)
    _renamed_conflict(rollback(pg, cp, mode="statement"), "c", "c2", again)
    assert snapshot(pg, p) == state
    ok(rollback(pg, again, mode="statement"))
    ok(rollback(pg, cp, mode="statement"))
    assert num(pg, f"SELECT count(*) AS n FROM {t} WHERE c = id * 2") == 10


def test_mode_statement_of_rows_kept_before_a_rename_its_name_taken_since(pg: SqlgateServer) -> None:
    """RENAME c TO c2, then ADD COLUMN c: the kept values of c went into the new c (and c2 got NULL)."""
    p, t = _table(pg)
    cp = ok(pg.sql(DELETE.format(t=t)))["checkpoint"]["id"]
    renamed = ok(pg.sql(f"ALTER TABLE {t} RENAME COLUMN c TO c2"))["checkpoint"]["id"]
    ok(pg.sql(f"ALTER TABLE {t} ADD COLUMN c int"))
    state = snapshot(pg, p)
    _renamed_conflict(rollback(pg, cp, mode="statement"), "c", "c2", renamed)
    assert snapshot(pg, p) == state


def test_mode_statement_of_rows_kept_before_two_columns_swapped_names(pg: SqlgateServer) -> None:
    """a and c swap names through a third: each kept value would have gone into the other column."""
    p, t = _table(pg)
    before = snapshot(pg, p)
    cp = ok(pg.sql(DELETE.format(t=t)))["checkpoint"]["id"]
    swap = [ok(pg.sql(f"ALTER TABLE {t} RENAME COLUMN {old} TO {new}"))["checkpoint"]["id"]
            for old, new in (("a", "x"), ("c", "a"), ("x", "c"))]
    state = snapshot(pg, p)
    why = {c["column"]: c["conflict"] for c in _conflicts(rollback(pg, cp, mode="statement"))}
    assert sorted(why) == ["a", "c"] and "renamed since to c" in why["a"] and "renamed since to a" in why["c"], why
    assert snapshot(pg, p) == state
    for undo in (*reversed(swap), cp):
        ok(rollback(pg, undo, mode="statement"))
    assert snapshot(pg, p) == before


def test_mode_statement_of_rows_kept_before_a_rename_sqlgate_did_not_see(pg: SqlgateServer) -> None:
    """A column renamed behind sqlgate's back: it cannot tell a rename from a drop, so it does not guess."""
    p, t = _table(pg)
    cp = ok(pg.sql(DELETE.format(t=t)))["checkpoint"]["id"]
    assert pg.database is not None
    with psycopg.connect(pg.database, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE {t} RENAME COLUMN c TO c2")
    state = snapshot(pg, p)
    [c] = _conflicts(rollback(pg, cp, mode="statement"))
    assert c["column"] == "c" and "no longer has" in c["conflict"], c
    assert snapshot(pg, p) == state


def test_mode_statement_of_rows_kept_before_a_column_renamed_then_dropped(pg: SqlgateServer) -> None:
    """A column renamed, then dropped (the DROP still in effect): its values are the DROP's to keep; the
    rows come back without them, as after a DROP alone."""
    p, t = _table(pg)
    expected = rows(pg, f"SELECT id, a, b FROM {t} ORDER BY id")
    cp = ok(pg.sql(DELETE.format(t=t)))["checkpoint"]["id"]
    ok(pg.sql(f"ALTER TABLE {t} RENAME COLUMN c TO c2"))
    ok(pg.sql(f"ALTER TABLE {t} DROP COLUMN c2"))
    ok(rollback(pg, cp, mode="statement"))
    assert rows(pg, f"SELECT * FROM {t} ORDER BY id") == expected
