"""Pairs of destructive statements on PostgreSQL: statement 1 checkpointed, statement 2 after it, then
statement 1's checkpoint rolled back in mode 'all' (exactly the state before statement 1), and that
rollback undone (exactly the state after statement 2). Where a pair cannot be undone exactly, a clear
409 with nothing changed, never a 500."""

from __future__ import annotations

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
