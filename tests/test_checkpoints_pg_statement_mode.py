"""Mode 'statement' on PostgreSQL undoes ONLY that statement (issue #3): a column
type change comes back without touching the rows written since (their values are
cast back; one that cannot be cast back exactly is a conflict); one definition
change is reverted without reverting later ones; undoing a mode-'all' rollback
that crossed a DROP COLUMN restores its rows exactly. Where it cannot be done
exactly: 409 with the conflicts listed, and nothing changed."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.sqlgate_server import SqlgateServer
from tests.test_checkpoints import fresh, make_tables, ok, rollback, rows, snapshot


@pytest.fixture(scope="module")
def agent(pg: SqlgateServer) -> str:
    return pg.token("write", "pg-statement-agent")["token"]  # type: ignore[no-any-return]


def conflict(r: Any) -> list[dict[str, Any]]:
    assert r.status_code == 409 and r.json()["reason"] == "branching.rollback_conflict", r.text
    return r.json()["conflicts"]  # type: ignore[no-any-return]


def table(server: SqlgateServer, name: str) -> list[dict[str, Any]]:
    return rows(server, f"SELECT * FROM {name} ORDER BY id")


def column_types(server: SqlgateServer, name: str) -> list[tuple[str, str, str | None]]:
    return [(r["attname"], r["t"], r["d"]) for r in rows(server, (
        "SELECT attname, format_type(atttypid, atttypmod) AS t,"
        " (SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = attrelid AND adnum = attnum) AS d"
        f" FROM pg_attribute WHERE attrelid = '{name}'::regclass AND attnum > 0 AND NOT attisdropped"
        " ORDER BY attnum"))]


# --- 1. ALTER COLUMN TYPE, mode 'statement': later rows keep their values -----------------------

def test_type_change_undone_alone_keeps_rows_written_since(pg: SqlgateServer, agent: str) -> None:
    p = fresh("sm")
    ok(pg.sql(f"CREATE TABLE {p}_t (id int PRIMARY KEY, q int)", token=agent))
    ok(pg.sql(f"INSERT INTO {p}_t VALUES (1, 10), (2, 20)", token=agent))
    before = column_types(pg, f"{p}_t")
    cp = ok(pg.sql(f"ALTER TABLE {p}_t ALTER COLUMN q TYPE bigint", token=agent))["checkpoint"]["id"]
    ok(pg.sql(f"INSERT INTO {p}_t VALUES (3, 30)", token=agent))
    ok(pg.sql(f"UPDATE {p}_t SET q = 21 WHERE id = 2", token=agent))
    ok(rollback(pg, cp, token=agent, mode="statement"))
    assert column_types(pg, f"{p}_t") == before
    assert table(pg, f"{p}_t") == [{"id": 1, "q": 10}, {"id": 2, "q": 21}, {"id": 3, "q": 30}]


def test_type_change_undone_alone_refuses_a_later_value_the_old_type_cannot_hold(
        pg: SqlgateServer, agent: str) -> None:
    p = fresh("sm")
    ok(pg.sql(f"CREATE TABLE {p}_t (id int PRIMARY KEY, price numeric(10,2), q int)", token=agent))
    ok(pg.sql(f"INSERT INTO {p}_t VALUES (1, 1.25, 1), (2, 2.5, 2)", token=agent))
    cp = ok(pg.sql(f"ALTER TABLE {p}_t ALTER COLUMN price TYPE numeric(12,4)", token=agent))["checkpoint"]["id"]
    cp_q = ok(pg.sql(f"ALTER TABLE {p}_t ALTER COLUMN q TYPE bigint", token=agent))["checkpoint"]["id"]
    ok(pg.sql(f"INSERT INTO {p}_t VALUES (3, 3.1234, 5000000000), (4, 4.5, 4)", token=agent))
    state = snapshot(pg, p)
    [c] = conflict(rollback(pg, cp, token=agent, mode="statement"))
    assert "3.1234" in str(c["row"]) and c["column"] == "price", c
    [c] = conflict(rollback(pg, cp_q, token=agent, mode="statement"))  # out of range for integer
    assert "5000000000" in str(c["row"]), c
    assert snapshot(pg, p) == state
    # Once the later value fits, the undo goes through and keeps it.
    ok(pg.sql(f"UPDATE {p}_t SET price = 3.12, q = 3 WHERE id = 3", token=agent))
    ok(rollback(pg, cp, token=agent, mode="statement"))
    ok(rollback(pg, cp_q, token=agent, mode="statement"))
    assert [t for _, t, _ in column_types(pg, f"{p}_t")] == ["integer", "numeric(10,2)", "integer"]
    assert [(r["id"], str(r["price"]), r["q"]) for r in table(pg, f"{p}_t")] == [
        (1, "1.25", 1), (2, "2.50", 2), (3, "3.12", 3), (4, "4.50", 4)]


def test_lossy_type_change_undone_alone_restores_kept_values_of_untouched_rows(
        pg: SqlgateServer, agent: str) -> None:
    """The kept values come back where the column was not written since (even when other columns of
    the row were); rows written since are cast back."""
    p = fresh("sm")
    ok(pg.sql(f"CREATE TABLE {p}_t (id int PRIMARY KEY, price numeric(10,2), note text)", token=agent))
    ok(pg.sql(f"INSERT INTO {p}_t VALUES (1, 1.25, 'a'), (2, 2.75, 'b'), (3, 3.5, 'c')", token=agent))
    before = snapshot(pg, p)
    cp = ok(pg.sql(f"ALTER TABLE {p}_t ALTER COLUMN price TYPE int", token=agent))["checkpoint"]["id"]
    ok(pg.sql(f"UPDATE {p}_t SET note = 'b2' WHERE id = 2", token=agent))
    ok(pg.sql(f"UPDATE {p}_t SET price = 9 WHERE id = 3", token=agent))
    ok(pg.sql(f"INSERT INTO {p}_t VALUES (4, 7, 'd')", token=agent))
    ok(rollback(pg, cp, token=agent, mode="statement"))
    assert snapshot(pg, p)["schema"] == before["schema"]
    assert [(r["id"], str(r["price"]), r["note"]) for r in table(pg, f"{p}_t")] == [
        (1, "1.25", "a"), (2, "2.75", "b2"), (3, "9.00", "c"), (4, "7.00", "d")]


@pytest.mark.parametrize("mode", ["all", "statement"])
def test_type_change_rollback_and_its_undo_keep_every_value(pg: SqlgateServer, agent: str, mode: str) -> None:
    p = fresh("sm")
    ok(pg.sql(f"CREATE TABLE {p}_t (id int PRIMARY KEY, price numeric(10,2))", token=agent))
    ok(pg.sql(f"INSERT INTO {p}_t VALUES (1, 1.25), (2, 2.5)", token=agent))
    before = snapshot(pg, p)
    cp = ok(pg.sql(f"ALTER TABLE {p}_t ALTER COLUMN price TYPE numeric(12,3)", token=agent))["checkpoint"]["id"]
    after = snapshot(pg, p)
    undone = ok(rollback(pg, cp, token=agent, mode=mode))
    assert snapshot(pg, p) == before
    redone = ok(rollback(pg, undone["new_checkpoint"], token=agent, mode=mode))
    assert snapshot(pg, p) == after
    ok(rollback(pg, redone["new_checkpoint"], token=agent, mode=mode))
    assert snapshot(pg, p) == before


# --- 2. One definition change undone alone: later definition changes stay ----------------------

def test_one_definition_change_undone_alone_keeps_later_ones(pg: SqlgateServer, agent: str) -> None:
    p = fresh("sm")
    ok(pg.sql(f"CREATE TABLE {p}_t (id int PRIMARY KEY, name text DEFAULT 'anon', price numeric(10,2))",
              token=agent))
    ok(pg.sql(f"INSERT INTO {p}_t VALUES (1, 'a', 1.25), (2, 'b', 2.5)", token=agent))
    cp1 = ok(pg.sql(f"ALTER TABLE {p}_t ALTER COLUMN name DROP DEFAULT", token=agent))["checkpoint"]["id"]
    cp2 = ok(pg.sql(f"ALTER TABLE {p}_t ALTER COLUMN price TYPE numeric(12,4)", token=agent))["checkpoint"]["id"]
    cp3 = ok(pg.sql(f"ALTER TABLE {p}_t RENAME COLUMN name TO label", token=agent))["checkpoint"]["id"]
    ok(pg.sql(f"INSERT INTO {p}_t (id, label, price) VALUES (3, 'c', 3.1234)", token=agent))
    data = table(pg, f"{p}_t")
    undone = ok(rollback(pg, cp1, token=agent, mode="statement"))
    assert undone["undone_checkpoints"] == [cp1]
    assert column_types(pg, f"{p}_t") == [("id", "integer", None), ("label", "text", "'anon'::text"),
                                          ("price", "numeric(12,4)", None)]
    assert table(pg, f"{p}_t") == data
    # The type change cannot be undone alone: row 3's price does not fit numeric(10,2). Nothing changes.
    state = snapshot(pg, p)
    conflict(rollback(pg, cp2, token=agent, mode="statement"))
    assert snapshot(pg, p) == state
    # The rename can: only the name comes back.
    ok(rollback(pg, cp3, token=agent, mode="statement"))
    assert column_types(pg, f"{p}_t") == [("id", "integer", None), ("name", "text", "'anon'::text"),
                                          ("price", "numeric(12,4)", None)]
    assert table(pg, f"{p}_t") == [{"id": r["id"], "name": r["label"], "price": r["price"]} for r in data]


def test_a_definition_change_changed_again_since_is_a_conflict(pg: SqlgateServer, agent: str) -> None:
    """DROP DEFAULT, then a later SET DEFAULT (kept by mode 'statement'): putting the old default back
    would undo the later change too, so it is a conflict, nothing changed. Same for a column renamed twice."""
    p = fresh("sm")
    ok(pg.sql(f"CREATE TABLE {p}_t (id int PRIMARY KEY, name text DEFAULT 'anon', v text)", token=agent))
    cp = ok(pg.sql(f"ALTER TABLE {p}_t ALTER COLUMN name DROP DEFAULT", token=agent))["checkpoint"]["id"]
    ok(pg.sql(f"ALTER TABLE {p}_t ALTER COLUMN name SET DEFAULT 'later'", token=agent))
    ren = ok(pg.sql(f"ALTER TABLE {p}_t RENAME COLUMN v TO w", token=agent))["checkpoint"]["id"]
    ok(pg.sql(f"ALTER TABLE {p}_t RENAME COLUMN w TO x", token=agent))
    state = snapshot(pg, p)
    [c] = conflict(rollback(pg, cp, token=agent, mode="statement"))
    assert c["column"] == "name", c
    [c] = conflict(rollback(pg, ren, token=agent, mode="statement"))
    assert c["column"] == "v", c
    assert snapshot(pg, p) == state


def test_several_definition_changes_rolled_back_and_undone(pg: SqlgateServer, agent: str) -> None:
    """Mode 'all' across four definition changes and later rows, then its undo: exactly as before it."""
    p = fresh("sm")
    make_tables(pg, p, agent)
    first = ok(pg.sql(f"ALTER TABLE {p}_t ALTER COLUMN name DROP DEFAULT", token=agent))["checkpoint"]["id"]
    for q in ("ALTER TABLE {p}_t RENAME COLUMN name TO nm", "ALTER TABLE {p}_t ALTER COLUMN price TYPE numeric(12,3)",
              "ALTER TABLE {p}_t RENAME TO {p}_t2"):
        ok(pg.sql(q.format(p=p), token=agent))
    ok(pg.sql(f"INSERT INTO {p}_t2 (nm, qty, price) VALUES ('z', 9, 1.234)", token=agent))
    ok(pg.sql(f"UPDATE {p}_t2 SET qty = 1 WHERE id = 1", token=agent))
    after = snapshot(pg, p)
    # An agent's mode 'all' is planned by a dry run first: it must run the statements again too.
    undone = ok(rollback(pg, first, token=agent))
    ok(rollback(pg, undone["new_checkpoint"], token=agent))
    assert snapshot(pg, p) == after


# --- 3. Undoing a mode-'all' rollback that crossed a DROP COLUMN ------------------------------

LATER = ["INSERT INTO {p}_t (name, price) VALUES ('x', 2)", "UPDATE {p}_t SET price = 9 WHERE id < 5",
         "DELETE FROM {p}_t WHERE id = 60"]


@pytest.mark.parametrize("mode", ["all", "statement"])
def test_undoing_a_rollback_across_a_drop_column_restores_the_later_rows(
        pg: SqlgateServer, agent: str, mode: str) -> None:
    p = fresh("sm")
    make_tables(pg, p, agent)
    before = snapshot(pg, p, sequences=False)
    cp = ok(pg.sql(f"ALTER TABLE {p}_t DROP COLUMN qty CASCADE", token=agent))["checkpoint"]["id"]
    for q in LATER:
        ok(pg.sql(q.format(p=p), token=agent))
    after = snapshot(pg, p, sequences=False)
    undone = ok(rollback(pg, cp, token=agent))
    assert snapshot(pg, p, sequences=False) == before
    redone = ok(rollback(pg, undone["new_checkpoint"], token=agent, mode=mode))
    assert redone["rows_restored"] > 0, redone
    assert snapshot(pg, p, sequences=False) == after


@pytest.mark.parametrize("first,later", [
    ("DELETE FROM {p}_t WHERE id > 50", ["INSERT INTO {p}_t (name, qty) VALUES ('x', 2)",
                                         "UPDATE {p}_t SET price = 9 WHERE id < 5"]),
    ("ALTER TABLE {p}_t ALTER COLUMN name DROP DEFAULT", ["INSERT INTO {p}_t (name, qty) VALUES ('x', 2)",
                                                          "UPDATE {p}_t SET price = 9 WHERE id < 5"]),
    ("ALTER TABLE {p}_c DROP COLUMN note", ["INSERT INTO {p}_c VALUES (100, 41)",
                                            "UPDATE {p}_c SET t_id = 42 WHERE id < 5"]),
], ids=["delete", "drop_default", "drop_last_column"])
def test_rollback_all_then_undo_it_alone(pg: SqlgateServer, agent: str, first: str, later: list[str]) -> None:
    p = fresh("sm")
    make_tables(pg, p, agent)
    cp = ok(pg.sql(first.format(p=p), token=agent))["checkpoint"]["id"]
    for q in later:
        ok(pg.sql(q.format(p=p), token=agent))
    after = snapshot(pg, p, sequences=False)
    undone = ok(rollback(pg, cp, token=agent))
    restored = snapshot(pg, p, sequences=False)
    r = rollback(pg, undone["new_checkpoint"], token=agent, mode="statement")
    if r.status_code == 409:
        assert snapshot(pg, p, sequences=False) == restored, r.text
        return
    ok(r)
    assert snapshot(pg, p, sequences=False) == after


def test_type_undo_never_touches_a_table_named_like_its_scratch_table(pg: SqlgateServer, agent: str) -> None:
    """The undo's scratch table is named in pg_temp: an admin's public table of the same name survives
    an agent's rollback (the unqualified DROP IF EXISTS used to reach it, run with sqlgate's rights)."""
    ok(pg.sql("CREATE TABLE IF NOT EXISTS public.sqlgate_retype (v text)"))
    ok(pg.sql("INSERT INTO public.sqlgate_retype VALUES ('admin data')"))
    p = fresh("sm")
    ok(pg.sql(f"CREATE TABLE {p}_t (id int PRIMARY KEY, q int)", token=agent))
    ok(pg.sql(f"INSERT INTO {p}_t VALUES (1, 10)", token=agent))
    cp = ok(pg.sql(f"ALTER TABLE {p}_t ALTER COLUMN q TYPE bigint", token=agent))["checkpoint"]["id"]
    ok(rollback(pg, cp, token=agent, mode="statement"))
    assert column_types(pg, f"{p}_t")[1][1] == "integer"
    assert rows(pg, "SELECT v FROM public.sqlgate_retype") == [{"v": "admin data"}]


# --- 3. Undoing a mode-'all' rollback whose checkpoint came before one or more DROP COLUMNs -------


@pytest.mark.parametrize("mode", ["all", "statement"])
@pytest.mark.parametrize("drops,tail", [(1, False), (1, True), (2, False), (2, True)])
def test_undoing_a_rollback_from_before_drop_columns_is_exact(
        pg: SqlgateServer, agent: str, drops: int, tail: bool, mode: str) -> None:
    """The rollback changed rows in two shapes (without b before b came back, with it after): its undo
    reverses them in the reverse order, each in its own shape, around the DROP run again."""
    p = fresh("sm")
    ok(pg.sql(f"CREATE TABLE {p}_t (id int PRIMARY KEY, a int, b text, c int)", token=agent))
    ok(pg.sql(f"INSERT INTO {p}_t VALUES (1, 1, 'x', 1), (2, 2, 'y', 2)", token=agent))
    before = snapshot(pg, p)
    cp = ok(pg.sql(f"UPDATE {p}_t SET a = 10 WHERE id = 1", token=agent))["checkpoint"]["id"]
    ok(pg.sql(f"INSERT INTO {p}_t VALUES (3, 3, 'z', 3)", token=agent))
    ok(pg.sql(f"ALTER TABLE {p}_t DROP COLUMN b", token=agent))
    ok(pg.sql(f"INSERT INTO {p}_t VALUES (4, 4, 4)", token=agent))
    if drops == 2:
        ok(pg.sql(f"UPDATE {p}_t SET a = 20 WHERE id = 2", token=agent))
        ok(pg.sql(f"ALTER TABLE {p}_t DROP COLUMN c", token=agent))
        if tail:
            ok(pg.sql(f"INSERT INTO {p}_t VALUES (5, 5)", token=agent))
    if tail:
        ok(pg.sql(f"DELETE FROM {p}_t WHERE id = 3", token=agent))
    after = snapshot(pg, p)
    undone = ok(rollback(pg, cp, token=agent, mode="all"))
    assert snapshot(pg, p) == before
    ok(rollback(pg, undone["new_checkpoint"], token=agent, mode=mode))
    assert snapshot(pg, p) == after


@pytest.mark.parametrize("mode", ["all", "statement"])
@pytest.mark.parametrize("drops", [1, 2])
def test_a_rollback_across_drop_columns_undone_and_redone_twice(
        pg: SqlgateServer, agent: str, drops: int, mode: str) -> None:
    """Each undo is a rollback of its own: undoing the undo (mode 'statement' too: the rows it wrote
    after running a DROP again go first), and again, then mode 'all' over a later write."""
    p = fresh("sm")
    ok(pg.sql(f"CREATE TABLE {p}_t (id int PRIMARY KEY, a int, b text, c int)", token=agent))
    ok(pg.sql(f"INSERT INTO {p}_t VALUES (1, 1, 'x', 1), (2, 2, 'y', 2)", token=agent))
    before = snapshot(pg, p)
    cp = ok(pg.sql(f"UPDATE {p}_t SET a = 10 WHERE id = 1", token=agent))["checkpoint"]["id"]
    later = [f"INSERT INTO {p}_t VALUES (3, 3, 'z', 3)", f"ALTER TABLE {p}_t DROP COLUMN b",
             f"INSERT INTO {p}_t VALUES (4, 4, 4)"]
    if drops == 2:
        later += [f"UPDATE {p}_t SET a = 20 WHERE id = 2", f"ALTER TABLE {p}_t DROP COLUMN c",
                  f"INSERT INTO {p}_t VALUES (5, 5)"]
    for q in [*later, f"DELETE FROM {p}_t WHERE id = 3"]:
        ok(pg.sql(q, token=agent))
    after = snapshot(pg, p)
    last = ok(rollback(pg, cp, token=agent))
    for expected in (after, before, after):
        last = ok(rollback(pg, last["new_checkpoint"], token=agent, mode=mode))
        assert snapshot(pg, p) == expected
    ok(pg.sql(f"INSERT INTO {p}_t VALUES (7, 7{', 7' if drops == 1 else ''})", token=agent))
    ok(rollback(pg, last["new_checkpoint"], token=agent))
    assert snapshot(pg, p) == before


# --- 4. Mode 'all' from a DROP INDEX / CREATE OR REPLACE VIEW undoes the later rows too ---------


DEFINITIONS = [
    ("drop_index", "DROP INDEX {p}_t_price"),
    ("drop_unique_index", "DROP INDEX {p}_t_code"),
    ("replace_view", "CREATE OR REPLACE VIEW {p}_v AS SELECT id, name FROM {p}_t WHERE qty > 10"),
]


@pytest.mark.parametrize("statement", DEFINITIONS, ids=lambda d: d[0])
def test_mode_all_from_a_dropped_index_or_replaced_view_undoes_later_rows(
        pg: SqlgateServer, agent: str, statement: tuple[str, str]) -> None:
    """The indexed table (a view: the tables it reads) is captured from the statement on: mode 'all'
    puts its rows back too, before the index (a unique one a later row would break) comes back; undoing
    that rollback is exact as well."""
    p = fresh("sm")
    make_tables(pg, p, agent)
    ok(pg.sql(f"CREATE UNIQUE INDEX {p}_t_code ON {p}_t (price)", token=agent))
    before = snapshot(pg, p)
    cp = ok(pg.sql(statement[1].format(p=p), token=agent))["checkpoint"]["id"]
    price = 1.5 if statement[0] == "drop_unique_index" else 999  # 1.5: a price taken, once unique no more
    for q in (f"INSERT INTO {p}_t (name, qty, price) VALUES ('later', 70, {price})",
              f"UPDATE {p}_t SET qty = qty + 100 WHERE id < 4", f"DELETE FROM {p}_c WHERE id = 2",
              f"DELETE FROM {p}_t WHERE id = 60"):
        ok(pg.sql(q, token=agent))
    after = snapshot(pg, p)
    undone = ok(rollback(pg, cp, token=agent, mode="all"))
    assert snapshot(pg, p) == before
    assert undone["rows_restored"] > 0, undone
    ok(rollback(pg, undone["new_checkpoint"], token=agent, mode="all"))
    assert snapshot(pg, p) == after
