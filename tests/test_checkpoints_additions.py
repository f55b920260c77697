"""Additions to an existing table (ADD COLUMN, SET NOT NULL, ADD CONSTRAINT, CREATE INDEX) destroy
nothing, so they stay safe_ddl, but they take a checkpoint all the same: a rollback to an earlier
checkpoint of the table (mode 'all') must take them away to give the table back exactly as it was,
and one of them can be undone alone (mode 'statement'). Both backends; where one cannot keep it
(DuckDB cannot drop a constraint), the statement runs unrecorded rather than refused."""

from __future__ import annotations

import pytest

from policy.classify import classify
from tests.support.sqlgate_server import SqlgateServer
from tests.test_checkpoints import back_and_forth, num, ok, pair_table, refused_rollback, rollback, snapshot

DELETE = "DELETE FROM {t} WHERE id % 2 = 0"
ADD_COLUMN = "ALTER TABLE {t} ADD COLUMN d int DEFAULT 7"
SET_NOT_NULL = "ALTER TABLE {t} ALTER COLUMN c SET NOT NULL"
CREATE_INDEX = "CREATE INDEX {t}_ci ON {t} (c)"
ADD_CHECK = "ALTER TABLE {t} ADD CONSTRAINT {t}_chk CHECK (c > 0)"
ADD_UNIQUE = "ALTER TABLE {t} ADD UNIQUE (c)"  # PostgreSQL names it
BOTH = [ADD_COLUMN, SET_NOT_NULL, CREATE_INDEX]
PG_ONLY = [ADD_CHECK, ADD_UNIQUE]  # DuckDB adds no CHECK by ALTER, and cannot drop a constraint
IDS = {ADD_COLUMN: "add-column", SET_NOT_NULL: "set-not-null", CREATE_INDEX: "create-index", ADD_CHECK: "add-check",
       ADD_UNIQUE: "add-unique"}


def _table(server: SqlgateServer) -> tuple[str, str]:
    return pair_table(server, "addn")


def _mode_all_takes_it_away(server: SqlgateServer, addition: str) -> None:
    p, t = _table(server)
    before = snapshot(server, p)
    cp = ok(server.sql(DELETE.format(t=t)))["checkpoint"]["id"]
    answer = ok(server.sql(addition.format(t=t)))
    assert answer["checkpoint"]["tables"] == [t]
    undone = back_and_forth(server, p, cp, before)  # undoing the rollback makes the addition again
    assert answer["trace_id"] in undone["undone_traces"]


def _undone_alone(server: SqlgateServer, addition: str) -> None:
    p, t = _table(server)
    ok(server.sql(DELETE.format(t=t)))
    before = snapshot(server, p)
    answer = ok(server.sql(addition.format(t=t)))
    back_and_forth(server, p, answer["checkpoint"]["id"], before, mode="statement")  # the DELETE before stays


@pytest.mark.parametrize("addition", BOTH, ids=IDS.get)
def test_mode_all_takes_a_later_addition_away(sqlgate: SqlgateServer, addition: str) -> None:
    _mode_all_takes_it_away(sqlgate, addition)


@pytest.mark.parametrize("addition", PG_ONLY, ids=IDS.get)
def test_mode_all_takes_a_later_constraint_away(pg: SqlgateServer, addition: str) -> None:
    _mode_all_takes_it_away(pg, addition)


@pytest.mark.parametrize("addition", BOTH, ids=IDS.get)
def test_an_addition_undone_alone(sqlgate: SqlgateServer, addition: str) -> None:
    _undone_alone(sqlgate, addition)


@pytest.mark.parametrize("addition", PG_ONLY, ids=IDS.get)
def test_a_constraint_undone_alone(pg: SqlgateServer, addition: str) -> None:
    _undone_alone(pg, addition)


def test_an_added_column_with_rows_written_since_is_a_conflict(sqlgate: SqlgateServer) -> None:
    p, t = _table(sqlgate)
    cp = ok(sqlgate.sql(ADD_COLUMN.format(t=t)))["checkpoint"]["id"]
    ok(sqlgate.sql(f"INSERT INTO {t} (id, a, d) VALUES (100, 100, 42)"))
    state = snapshot(sqlgate, p)
    r = rollback(sqlgate, cp, mode="statement")
    assert r.status_code == 409, r.text
    assert r.json()["conflicts"] == [{"table": r.json()["conflicts"][0]["table"], "column": "d",
                                      "conflict": "rows were written since; they may hold values in the column"}]
    assert snapshot(sqlgate, p) == state  # nothing changed: the 42 is still there
    assert num(sqlgate, f"SELECT d AS n FROM {t} WHERE id = 100") == 42
    ok(rollback(sqlgate, cp))  # mode 'all' takes the row away with the column
    assert num(sqlgate, f"SELECT count(*) AS n FROM {t}") == 10


def test_add_column_if_not_exists_that_added_nothing_undoes_nothing(sqlgate: SqlgateServer) -> None:
    p, t = _table(sqlgate)
    before = snapshot(sqlgate, p)
    answer = ok(sqlgate.sql(f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS c int"))
    ok(rollback(sqlgate, answer["checkpoint"]["id"], mode="statement"))
    assert snapshot(sqlgate, p) == before  # c, which it did not add, stays


def test_additions_stay_safe_ddl_for_policy(sqlgate: SqlgateServer) -> None:
    _, t = _table(sqlgate)
    reader = sqlgate.token("read", "additions-reader")["token"]
    r = sqlgate.sql(ADD_COLUMN.format(t=t), token=reader)
    assert r.status_code == 403 and r.json()["reason"] == "policy.denied", r.text
    answer = ok(sqlgate.sql(CREATE_INDEX.format(t=t)))
    with sqlgate.client() as c:
        traces = ok(c.get("/traces", params={"limit": "20"}))["traces"]
    [trace] = [x for x in traces if x["id"] == answer["trace_id"]]
    assert trace["class"] == "safe_ddl" and trace["checkpoint_id"] == answer["checkpoint"]["id"]


def test_an_addition_postgres_cannot_keep_runs_unrecorded(pg: SqlgateServer) -> None:
    """A partitioned or temporary table takes no capture triggers: ADD COLUMN destroys nothing, so it runs
    without a checkpoint rather than being refused. CREATE INDEX CONCURRENTLY cannot run in the transaction a
    checkpoint needs: it takes none."""
    p, _ = _table(pg)
    ok(pg.sql(f"CREATE TABLE {p}_parts (id int, k int) PARTITION BY RANGE (k)"))
    answer = ok(pg.sql(f"ALTER TABLE {p}_parts ADD COLUMN extra text"))
    assert "checkpoint" not in answer
    assert num(pg, f"SELECT count(*) AS n FROM pg_attribute WHERE attrelid = '{p}_parts'::regclass"
                   " AND attname = 'extra'") == 1
    answer = ok(pg.sql(f"CREATE TEMP TABLE {p}_tmp (x int); ALTER TABLE {p}_tmp ADD COLUMN y int;"
                       f" INSERT INTO {p}_tmp VALUES (1, 2)"))
    assert answer["checkpoints"] == [] and answer["rowCount"] == 1  # a temporary table takes none either
    assert not classify(f"CREATE INDEX CONCURRENTLY i ON {p}_parts (k)", "postgres").parts[0].checkpointed_anyway
    assert classify(f"CREATE INDEX i ON {p}_parts (k)", "postgres").parts[0].checkpointed_anyway


def test_an_addition_duckdb_cannot_keep_runs_unrecorded(duck: SqlgateServer) -> None:
    p, t = _table(duck)
    answer = ok(duck.sql(ADD_UNIQUE.format(t=t)))  # DuckDB has no DROP CONSTRAINT to take it away with
    assert "checkpoint" not in answer
    r = duck.sql(f"INSERT INTO {t} (id, a, c) VALUES (100, 100, 2)")
    assert r.status_code != 200  # the constraint is there


def test_a_view_made_since_on_an_added_column_stops_mode_all_clearly(pg: SqlgateServer) -> None:
    """Taking an added column away drops nothing else: a view made since on it is named (409, not a 500),
    and nothing changes; the same when that column's own checkpoint is undone alone."""
    p, t = _table(pg)
    cp = ok(pg.sql(DELETE.format(t=t)))["checkpoint"]["id"]
    added = ok(pg.sql(ADD_COLUMN.format(t=t)))["checkpoint"]["id"]
    ok(pg.sql(f"CREATE VIEW {p}_v AS SELECT id, d FROM {t}"))
    body = refused_rollback(pg, p, cp)
    assert body["reason"] == "branching.rollback_failed" and body["code"] == "2BP01"
    assert f"view public.{p}_v depends on column d" in body["message"]
    assert "drop the objects named above" in body["next"]
    body = refused_rollback(pg, p, added, mode="statement")
    assert f"view public.{p}_v depends on column d" in body["conflicts"][0]["conflict"]


def test_an_unnamed_index_undone_alone_on_a_table_with_a_key(pg: SqlgateServer) -> None:
    """The index PostgreSQL names is found by comparing index lists; a key's index is not one of them."""
    p, t = _table(pg)
    before = snapshot(pg, p)
    cp = ok(pg.sql(f"CREATE INDEX ON {t} (c)"))["checkpoint"]["id"]
    ok(rollback(pg, cp, mode="statement"))
    assert snapshot(pg, p) == before


def test_an_added_column_with_a_later_index_is_not_undone_alone(pg: SqlgateServer) -> None:
    """Dropping the column would take the index a later statement made on it: a 409, nothing changed."""
    p, t = _table(pg)
    cp = ok(pg.sql(ADD_COLUMN.format(t=t)))["checkpoint"]["id"]
    ok(pg.sql(f"CREATE INDEX {t}_di ON {t} (d)"))
    body = refused_rollback(pg, p, cp, mode="statement")
    assert body["conflicts"][0]["conflict"] == "the table was changed again since; undo that first"


def test_an_inherited_table_runs_its_additions_unrecorded(pg: SqlgateServer) -> None:
    """A column dropped from a parent goes from its children, whose rows are not captured."""
    p, t = _table(pg)
    ok(pg.sql(f"CREATE TABLE {p}_child () INHERITS ({t})"))
    assert "checkpoint" not in ok(pg.sql(ADD_COLUMN.format(t=t)))
    assert "checkpoint" not in ok(pg.sql(f"ALTER TABLE {p}_child ADD COLUMN e int"))


def test_a_column_added_to_an_indexed_duckdb_table_is_taken_away(duck: SqlgateServer) -> None:
    """DuckDB refuses DROP COLUMN while the table has an index: the restore drops it and makes it again."""
    for mode in ("statement", "all"):
        p, t = _table(duck)
        ok(duck.sql(f"CREATE INDEX {t}_ai ON {t} (a)"))
        before = snapshot(duck, p)
        cp = ok(duck.sql(ADD_COLUMN.format(t=t)))["checkpoint"]["id"]
        if mode == "all":
            ok(duck.sql(f"DELETE FROM {t} WHERE id < 3"))  # undone with it
        after = snapshot(duck, p)
        undone = ok(rollback(duck, cp, mode=mode))
        assert snapshot(duck, p) == before, mode
        ok(rollback(duck, undone["new_checkpoint"]))
        assert snapshot(duck, p) == after, mode
