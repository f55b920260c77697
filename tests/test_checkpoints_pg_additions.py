"""Keys, constraints and columns added on PostgreSQL, and ALTER TABLEs that change several things at
once: both rollback modes give back exactly the table as it was (ADD PRIMARY KEY's NOT NULL included)
and their undo exactly the table after; mode 'statement' undoes each change of one ALTER TABLE, and
refuses (409, nothing changed) when a later statement touched one of them."""

from __future__ import annotations

import pytest

from tests.support.sqlgate_server import SqlgateServer
from tests.test_checkpoints import back_and_forth, fresh, ok, refused_rollback, rollback, rows, snapshot

PLAIN = "CREATE TABLE {t} (id int, v text)"
KEYED = "CREATE TABLE {t} (id int PRIMARY KEY, v text NOT NULL)"

CHANGES = [
    ("add-primary-key", PLAIN, "ALTER TABLE {t} ADD PRIMARY KEY (id)"),
    ("add-named-primary-key", PLAIN, "ALTER TABLE {t} ADD CONSTRAINT {t}_k PRIMARY KEY (id, v)"),
    ("add-column-primary-key", PLAIN, "ALTER TABLE {t} ADD COLUMN w serial PRIMARY KEY"),
    ("add-column-unique", PLAIN, "ALTER TABLE {t} ADD COLUMN w int UNIQUE"),
    ("add-column-and-check", KEYED, "ALTER TABLE {t} ADD COLUMN w int, ADD CONSTRAINT {t}_c CHECK (w > 0)"),
    ("add-two-columns", KEYED, "ALTER TABLE {t} ADD COLUMN w int, ADD COLUMN x text DEFAULT 'z'"),
    ("set-not-null-and-default", PLAIN, "ALTER TABLE {t} ALTER COLUMN v SET NOT NULL, ALTER COLUMN v SET DEFAULT 'x'"),
    ("drop-not-null-and-set-default", KEYED,
     "ALTER TABLE {t} ALTER COLUMN v DROP NOT NULL, ALTER COLUMN v SET DEFAULT 'd'"),
    ("unnamed-check-and-unique", KEYED, "ALTER TABLE {t} ADD CHECK (id > 0), ADD UNIQUE (v)"),
]


def _table(pg: SqlgateServer, create: str) -> tuple[str, str]:
    p = fresh("pgadd")
    t = f"{p}_t"
    ok(pg.sql(create.format(t=t)))
    ok(pg.sql(f"INSERT INTO {t} (id, v) VALUES (1, 'a'), (2, 'b')"))
    return p, t


def _not_null(pg: SqlgateServer, t: str, column: str) -> bool:
    [row] = rows(pg, f"SELECT attnotnull AS n FROM pg_attribute WHERE attrelid = '{t}'::regclass"
                     f" AND attname = '{column}'")
    return bool(row["n"])


@pytest.mark.parametrize("mode", ["all", "statement"])
@pytest.mark.parametrize(("create", "statement"), [c[1:] for c in CHANGES], ids=[c[0] for c in CHANGES])
def test_rollback_and_its_undo_are_exact(pg: SqlgateServer, create: str, statement: str, mode: str) -> None:
    p, t = _table(pg, create)
    before = snapshot(pg, p)
    cp = ok(pg.sql(statement.format(t=t)))["checkpoint"]["id"]
    assert snapshot(pg, p) != before
    back_and_forth(pg, p, cp, before, mode=mode)


def test_undoing_a_primary_key_alone_keeps_a_not_null_set_since(pg: SqlgateServer) -> None:
    """The key's columns go back to nullable, except one a later statement (not undone) set NOT NULL."""
    p, t = _table(pg, "CREATE TABLE {t} (id int, v text, w int DEFAULT 0)")
    cp = ok(pg.sql(f"ALTER TABLE {t} ADD PRIMARY KEY (id, w)"))["checkpoint"]["id"]
    ok(pg.sql(f"ALTER TABLE {t} ALTER COLUMN id SET NOT NULL"))
    ok(rollback(pg, cp, mode="statement"))
    assert rows(pg, f"SELECT conname FROM pg_constraint WHERE conrelid = '{t}'::regclass AND contype = 'p'") == []
    assert _not_null(pg, t, "id") and not _not_null(pg, t, "w")


def test_several_changes_undone_alone_keep_the_rows_written_since(pg: SqlgateServer) -> None:
    p, t = _table(pg, PLAIN)
    cp = ok(pg.sql(f"ALTER TABLE {t} ALTER COLUMN v SET NOT NULL, ALTER COLUMN v SET DEFAULT 'x'"))["checkpoint"]["id"]
    ok(pg.sql(f"INSERT INTO {t} (id) VALUES (3)"))
    ok(rollback(pg, cp, mode="statement"))
    assert not _not_null(pg, t, "v")
    assert rows(pg, f"SELECT pg_get_expr(adbin, adrelid) AS d FROM pg_attrdef WHERE adrelid = '{t}'::regclass") == []
    assert rows(pg, f"SELECT id, v FROM {t} ORDER BY id") == [{"id": 1, "v": "a"}, {"id": 2, "v": "b"},
                                                               {"id": 3, "v": "x"}]


@pytest.mark.parametrize(("statement", "later", "why"), [
    ("ALTER TABLE {t} ALTER COLUMN v SET NOT NULL, ALTER COLUMN v SET DEFAULT 'x'",
     "ALTER TABLE {t} ALTER COLUMN v SET DEFAULT 'y'", "its default was set again since"),
    ("ALTER TABLE {t} ADD COLUMN w int, ADD CONSTRAINT {t}_c CHECK (w > 0)",
     "INSERT INTO {t} VALUES (3, 'c', 5)", "rows were written since; they may hold values in the column"),
], ids=["default-set-again", "rows-in-the-added-column"])
def test_several_changes_undone_alone_refuse_a_later_change_of_one(
        pg: SqlgateServer, statement: str, later: str, why: str) -> None:
    p, t = _table(pg, PLAIN)
    cp = ok(pg.sql(statement.format(t=t)))["checkpoint"]["id"]
    ok(pg.sql(later.format(t=t)))
    body = refused_rollback(pg, p, cp, mode="statement")
    assert [c["conflict"] for c in body["conflicts"]] == [why], body
    assert why in body["message"], body  # the one conflict is named in the message itself



def test_undoing_a_drop_not_null_then_a_primary_key_added_since_keeps_not_null(pg: SqlgateServer) -> None:
    """The first undo sets NOT NULL under the key (a no-op then); the key's undo must not drop it."""
    p, t = _table(pg, "CREATE TABLE {t} (id int NOT NULL, v text)")
    before = snapshot(pg, p)
    dropped = ok(pg.sql(f"ALTER TABLE {t} ALTER COLUMN id DROP NOT NULL"))["checkpoint"]["id"]
    keyed = ok(pg.sql(f"ALTER TABLE {t} ADD PRIMARY KEY (id)"))["checkpoint"]["id"]
    ok(rollback(pg, dropped, mode="statement"))
    ok(rollback(pg, keyed, mode="statement"))
    assert snapshot(pg, p) == before
