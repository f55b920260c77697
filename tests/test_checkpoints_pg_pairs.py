"""Pairs of destructive statements on PostgreSQL: statement 1 checkpointed, statement 2 after it, then
statement 1's checkpoint rolled back in mode 'all' (exactly the state before statement 1), and that
rollback undone (exactly the state after statement 2); or statement 1 alone undone (mode 'statement'),
statement 2 kept. Where a pair cannot be undone exactly, a clear 409 that names the real conflict, with
nothing changed, never a 500."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.sqlgate_server import SqlgateServer
from tests.test_checkpoints import back_and_forth, ok, pair_table, rollback, rows, snapshot

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
