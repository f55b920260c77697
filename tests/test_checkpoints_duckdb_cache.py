"""DuckDB checkpoints keep catalog facts between statements (branching.duck_catalog):
whatever DDL runs through sqlgate in between, a checkpoint must act on the catalog
as it is, and its rollback must be exact. And sequences: rollback mode 'all' puts a
sequence never used before the checkpoint back to "never used". Through the real
`sqlgate serve` on a DuckDB file."""

from __future__ import annotations

import pytest

from tests.support.sqlgate_server import SqlgateServer
from tests.test_checkpoints import batch, fresh, num, ok, rollback, rows, snapshot


@pytest.fixture(scope="module")
def agent(duck: SqlgateServer) -> str:
    return duck.token("write", "duck-cache-agent")["token"]  # type: ignore[no-any-return]


def run(server: SqlgateServer, token: str, *statements: str) -> None:
    for statement in statements:
        ok(server.sql(statement, token=token))


# --- sequences never used before the checkpoint -------------------------------------------

def test_mode_all_puts_back_a_sequence_never_used_before(duck: SqlgateServer, agent: str) -> None:
    """Two tables draw from one sequence (one by its qualified name), nothing called nextval before the
    checkpoint; rows inserted since used it. After the rollback it is as created: nextval gives START."""
    p = fresh("seqn")
    run(duck, agent,
        f"CREATE SEQUENCE {p}_ids",  # START 1 is also its MINVALUE: setval cannot go back before it
        f"CREATE TABLE {p}_a (id INTEGER PRIMARY KEY DEFAULT nextval('{p}_ids'), v VARCHAR)",
        f"CREATE INDEX {p}_a_v ON {p}_a (v)",
        f"CREATE TABLE {p}_b (id INTEGER DEFAULT nextval('main.{p}_ids'), w INTEGER DEFAULT 7)",
        f"INSERT INTO {p}_a VALUES (100, 'x'), (101, 'y'), (102, 'z')",
        f"INSERT INTO {p}_b VALUES (1, 1)")
    before = snapshot(duck, p)
    assert ("seq", f"{p}_ids") in {(k, t) for k, t, v in before["schema"] if v.endswith(":null")}
    answer = ok(duck.sql(f"DELETE FROM {p}_a WHERE id = 101", token=agent))
    run(duck, agent, f"INSERT INTO {p}_a (v) VALUES ('n1'), ('n2')", f"INSERT INTO {p}_b (w) VALUES (3)")
    assert num(duck, f"SELECT max(id) AS n FROM {p}_b") == 3
    ok(rollback(duck, answer["checkpoint"]["id"], token=agent))
    assert snapshot(duck, p)["schema"] == before["schema"]  # last value null again, same definition
    assert snapshot(duck, p)["data"][f"{p}_a"] == before["data"][f"{p}_a"]
    run(duck, agent, f"DELETE FROM {p}_b WHERE id = 3")
    assert snapshot(duck, p) == before
    assert num(duck, f"SELECT nextval('{p}_ids') AS n") == 1


def test_mode_all_sequence_of_another_schema_with_a_start(duck: SqlgateServer, agent: str) -> None:
    s = fresh("seqs")
    run(duck, agent,
        f"CREATE SCHEMA {s}",
        f"CREATE SEQUENCE {s}.ids START 50 INCREMENT BY 5",
        f"CREATE TABLE {s}.t (id INTEGER DEFAULT nextval('{s}.ids'), v INTEGER)",
        f"INSERT INTO {s}.t VALUES (1, 1), (2, 2)")
    answer = ok(duck.sql(f"UPDATE {s}.t SET v = 10 WHERE id = 1", token=agent))
    run(duck, agent, f"INSERT INTO {s}.t (v) VALUES (3), (4)")
    ok(rollback(duck, answer["checkpoint"]["id"], token=agent))
    got = rows(duck, f"SELECT id, v FROM {s}.t ORDER BY id")
    assert [(int(r["id"]), int(r["v"])) for r in got] == [(1, 1), (2, 2)]
    assert rows(duck, f"SELECT last_value FROM duckdb_sequences() WHERE schema_name = '{s}'")[0]["last_value"] is None
    assert num(duck, f"SELECT nextval('{s}.ids') AS n") == 50


def test_statement_mode_leaves_sequences_alone(duck: SqlgateServer, agent: str) -> None:
    p = fresh("seqm")
    run(duck, agent, f"CREATE SEQUENCE {p}_ids",
        f"CREATE TABLE {p}_t (id INTEGER DEFAULT nextval('{p}_ids'), v INTEGER)",
        f"INSERT INTO {p}_t VALUES (10, 1), (11, 2)")
    answer = ok(duck.sql(f"DELETE FROM {p}_t WHERE id = 10", token=agent))
    run(duck, agent, f"INSERT INTO {p}_t (v) VALUES (3)")
    ok(rollback(duck, answer["checkpoint"]["id"], token=agent, mode="statement"))
    assert num(duck, f"SELECT count(*) AS n FROM {p}_t") == 3  # the later row stays, and so does its number
    assert num(duck, f"SELECT nextval('{p}_ids') AS n") == 2


# --- cached catalog facts go stale with DDL ---------------------------------------------

def test_default_added_after_a_checkpoint_is_seen_by_the_next(duck: SqlgateServer, agent: str) -> None:
    """The first checkpoint caches the table's DDL (no sequence); a default drawing from a sequence is
    added through sqlgate; the next checkpoint must keep that sequence's value for mode 'all'."""
    p = fresh("cdef")
    run(duck, agent, f"CREATE TABLE {p}_t (id INTEGER, v INTEGER)",
        f"INSERT INTO {p}_t SELECT i, i FROM range(1, 21) r(i)",
        f"CREATE SEQUENCE {p}_ids START 100", f"SELECT nextval('{p}_ids')")  # used: last value 100
    first = ok(duck.sql(f"DELETE FROM {p}_t WHERE id = 1", token=agent))
    run(duck, agent, f"ALTER TABLE {p}_t ALTER COLUMN id SET DEFAULT nextval('{p}_ids')")
    before = snapshot(duck, p)
    answer = ok(duck.sql(f"DELETE FROM {p}_t WHERE id = 2", token=agent))
    run(duck, agent, f"INSERT INTO {p}_t (v) VALUES (0), (0)")
    ok(rollback(duck, answer["checkpoint"]["id"], token=agent))
    assert snapshot(duck, p) == before
    assert num(duck, f"SELECT nextval('{p}_ids') AS n") == 101
    ok(rollback(duck, first["checkpoint"]["id"], token=agent, mode="statement"))
    assert num(duck, f"SELECT count(*) AS n FROM {p}_t WHERE id = 1") == 1


def test_index_created_after_facts_were_cached_is_dropped_and_restored(duck: SqlgateServer, agent: str) -> None:
    """A DROP TABLE rolled back by the client leaves the table's facts cached (no index); an index is
    created since: the next DROP TABLE must see it (DuckDB cannot rename an indexed table) and the
    rollback must bring it back."""
    p = fresh("cidx")
    run(duck, agent, f"CREATE TABLE {p}_t (id INTEGER PRIMARY KEY, v VARCHAR)",
        f"INSERT INTO {p}_t SELECT i, 'v' || i FROM range(1, 31) r(i)")
    ok(batch(duck, ["BEGIN", f"DROP TABLE {p}_t", "ROLLBACK"], token=agent))
    run(duck, agent, f"CREATE INDEX {p}_t_v ON {p}_t (v)")
    before = snapshot(duck, p)
    answer = ok(duck.sql(f"DROP TABLE {p}_t", token=agent))
    assert duck.sql(f"SELECT 1 FROM {p}_t").status_code == 400
    ok(rollback(duck, answer["checkpoint"]["id"], token=agent))
    assert snapshot(duck, p) == before


def test_facts_read_inside_a_transaction_that_rolls_back_are_forgotten(duck: SqlgateServer, agent: str) -> None:
    """An index created and a DROP TABLE checkpointed in one transaction the client rolls back: the
    index never existed, so the next DROP TABLE must not try to drop it."""
    p = fresh("ctx")
    run(duck, agent, f"CREATE TABLE {p}_t (id INTEGER, v VARCHAR)", f"INSERT INTO {p}_t VALUES (1, 'a'), (2, 'b')")
    ok(batch(duck, ["BEGIN", f"CREATE INDEX {p}_t_v ON {p}_t (v)", f"DROP TABLE {p}_t", "ROLLBACK"], token=agent))
    before = snapshot(duck, p)
    assert not any(k == "idx" for k, _, _ in before["schema"])
    answer = ok(duck.sql(f"DROP TABLE {p}_t", token=agent))
    ok(rollback(duck, answer["checkpoint"]["id"], token=agent))
    assert snapshot(duck, p) == before


def test_table_replaced_under_the_same_name(duck: SqlgateServer, agent: str) -> None:
    """Facts are cached for a table; it is dropped (kept aside) and another one takes its name, with a
    default from a sequence: a row checkpoint of the new one keeps that sequence, and both roll back."""
    p = fresh("crep")
    run(duck, agent, f"CREATE TABLE {p}_t (id INTEGER, v INTEGER)", f"INSERT INTO {p}_t VALUES (1, 1), (2, 2)")
    ok(duck.sql(f"DELETE FROM {p}_t WHERE id = 1", token=agent))
    dropped = ok(duck.sql(f"DROP TABLE {p}_t", token=agent))
    run(duck, agent, f"CREATE SEQUENCE {p}_ids",
        f"CREATE TABLE {p}_t (id INTEGER DEFAULT nextval('{p}_ids'), v INTEGER)",
        f"INSERT INTO {p}_t (v) VALUES (5), (6)")
    before = snapshot(duck, p)
    answer = ok(duck.sql(f"DELETE FROM {p}_t WHERE v = 5", token=agent))
    run(duck, agent, f"INSERT INTO {p}_t (v) VALUES (7)")
    ok(rollback(duck, answer["checkpoint"]["id"], token=agent))
    assert snapshot(duck, p) == before
    assert num(duck, f"SELECT nextval('{p}_ids') AS n") == 3
    run(duck, agent, f"DROP TABLE {p}_t")
    r = rollback(duck, dropped["checkpoint"]["id"], token=agent, mode="statement")
    assert r.status_code == 200, r.text
    assert [int(x["id"]) for x in rows(duck, f"SELECT id FROM {p}_t ORDER BY id")] == [2]


def test_referenced_table_is_refused_with_nothing_changed(duck: SqlgateServer, agent: str) -> None:
    p = fresh("cref")
    run(duck, agent, f"CREATE TABLE {p}_p (id INTEGER PRIMARY KEY, v VARCHAR)",
        f"CREATE INDEX {p}_p_v ON {p}_p (v)",
        f"CREATE TABLE {p}_c (id INTEGER, p_id INTEGER REFERENCES {p}_p (id))",
        f"INSERT INTO {p}_p VALUES (1, 'a')", f"INSERT INTO {p}_c VALUES (1, 1)")
    before = snapshot(duck, p)
    r = duck.sql(f"DROP TABLE {p}_p", token=agent)
    assert r.status_code == 400 and r.json()["code"] == "2BP01", r.text
    assert snapshot(duck, p) == before
    # The child has a foreign key: it is kept as a copy, and comes back.
    answer = ok(duck.sql(f"DROP TABLE {p}_c", token=agent))
    ok(rollback(duck, answer["checkpoint"]["id"], token=agent))
    assert snapshot(duck, p) == before


def test_facts_of_uncommitted_ddl_are_forgotten_when_it_rolls_back(duck: SqlgateServer, agent: str) -> None:
    """A default drawing from a sequence is set, a row checkpoint read (and cached) the table's DDL with
    it, and the client rolls all that back: the next checkpoint must not take that sequence for one the
    table draws from (its rollback would set back a sequence the table does not use)."""
    p = fresh("cunc")
    run(duck, agent, f"CREATE TABLE {p}_t (id INTEGER, v INTEGER)",
        f"INSERT INTO {p}_t SELECT i, i FROM range(1, 6) r(i)",
        f"CREATE SEQUENCE {p}_other", f"SELECT nextval('{p}_other')")
    ok(batch(duck, ["BEGIN", f"ALTER TABLE {p}_t ALTER COLUMN id SET DEFAULT nextval('{p}_other')",
                    f"DELETE FROM {p}_t WHERE id = 1", "ROLLBACK"], token=agent))
    answer = ok(duck.sql(f"DELETE FROM {p}_t WHERE id = 2", token=agent))
    assert num(duck, f"SELECT nextval('{p}_other') AS n") == 2  # used by someone else since
    ok(rollback(duck, answer["checkpoint"]["id"], token=agent))
    assert num(duck, f"SELECT count(*) AS n FROM {p}_t") == 5
    assert num(duck, f"SELECT nextval('{p}_other') AS n") == 3
