"""DuckDB row checkpoints name rows by row id; a rollback that builds a table
again (DROP COLUMN of a column that is not last, a table copied back by DROP
TABLE or DROP SCHEMA) renumbers them. Rolling back an older row checkpoint
afterwards must restore exactly, or refuse (409) and change nothing; never
restore the wrong rows. Real DuckDB files through a real `sqlgate serve`."""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.support.sqlgate_server import SqlgateServer
from tests.test_checkpoints import ok, rollback, rows

_names = itertools.count()
ORIGINAL = [{"id": i, "a": f"a{i}", "b": f"b{i}", "c": f"c{i}"} for i in range(10)]


def _table(duck: SqlgateServer) -> str:
    t = f"rb{next(_names)}"
    ok(duck.sql(f"CREATE TABLE {t} (id int, a text, b text, c text)"))
    ok(duck.sql(f"INSERT INTO {t} SELECT i, 'a'||i, 'b'||i, 'c'||i FROM range(10) r(i)"))
    return t


def _all(duck: SqlgateServer, t: str) -> list[dict[str, Any]]:
    return rows(duck, f"SELECT * FROM {t} ORDER BY id")


def _cp(answer: dict[str, Any]) -> str:
    return answer["checkpoint"]["id"]  # type: ignore[no-any-return]


def test_older_checkpoint_after_a_rebuild_rolled_back_is_exact(duck: SqlgateServer) -> None:
    t = _table(duck)
    cp1 = _cp(ok(duck.sql(f"DELETE FROM {t} WHERE id IN (2, 5)")))
    ok(duck.sql(f"DELETE FROM {t} WHERE id = 7"))
    cp2 = _cp(ok(duck.sql(f"ALTER TABLE {t} DROP COLUMN b")))
    ok(rollback(duck, cp2))  # rebuilds the table: row ids renumbered
    ok(duck.sql(f"UPDATE {t} SET a = 'x' WHERE id = 9"))
    ok(duck.sql(f"INSERT INTO {t} VALUES (100, 'n', 'n', 'n')"))
    undone = ok(rollback(duck, cp1))
    assert _all(duck, t) == ORIGINAL
    ok(rollback(duck, undone["new_checkpoint"]))  # undoing that rollback (mode all) crosses its own rebuild
    assert [r["id"] for r in _all(duck, t)] == [0, 1, 3, 4, 6, 8, 9, 100]
    assert _all(duck, t)[-2]["a"] == "x"


def test_mode_all_across_a_later_drop_column_puts_the_column_back_first(duck: SqlgateServer) -> None:
    t = _table(duck)
    cp1 = _cp(ok(duck.sql(f"DELETE FROM {t} WHERE id IN (2, 5)")))
    ok(duck.sql(f"UPDATE {t} SET a = 'x' WHERE id = 9"))
    ok(duck.sql(f"ALTER TABLE {t} DROP COLUMN b"))
    ok(duck.sql(f"UPDATE {t} SET a = 'y' WHERE id = 8"))
    ok(duck.sql(f"DELETE FROM {t} WHERE id = 3"))
    ok(rollback(duck, cp1))
    assert _all(duck, t) == ORIGINAL


def test_statement_mode_of_an_older_checkpoint_after_a_rebuild(duck: SqlgateServer) -> None:
    t = _table(duck)
    cp1 = _cp(ok(duck.sql(f"DELETE FROM {t} WHERE id IN (2, 5)")))
    ok(duck.sql(f"DELETE FROM {t} WHERE id = 7"))
    cp2 = _cp(ok(duck.sql(f"ALTER TABLE {t} DROP COLUMN b")))
    ok(rollback(duck, cp2, mode="statement"))
    ok(rollback(duck, cp1, mode="statement"))
    assert _all(duck, t) == [r for r in ORIGINAL if r["id"] != 7]


def test_older_checkpoint_after_a_later_rollback_put_rows_back_is_refused(duck: SqlgateServer) -> None:
    """Rows a rollback puts back get new row ids: an older mode 'all' cannot tell them apart."""
    t = _table(duck)
    cp0 = _cp(ok(duck.sql(f"DELETE FROM {t} WHERE id = 1")))
    cp1 = _cp(ok(duck.sql(f"DELETE FROM {t} WHERE id = 3")))
    ok(rollback(duck, cp1))
    before = _all(duck, t)
    r = rollback(duck, cp0)
    assert r.status_code == 409, r.text
    assert r.json()["reason"] == "branching.rollback_conflict" and "statement" in r.json()["next"]
    assert _all(duck, t) == before  # changed nothing
    ok(rollback(duck, cp0, mode="statement"))
    assert _all(duck, t) == ORIGINAL


@pytest.mark.parametrize("mode", ["all", "statement"])
def test_drop_table_with_foreign_keys_then_an_older_row_checkpoint(duck: SqlgateServer, mode: str) -> None:
    n = next(_names)
    parent, t = f"rbp{n}", f"rbc{n}"
    ok(duck.sql(f"CREATE TABLE {parent} (id int PRIMARY KEY)"))
    ok(duck.sql(f"INSERT INTO {parent} SELECT i FROM range(10) r(i)"))
    ok(duck.sql(f"CREATE TABLE {t} (id int REFERENCES {parent}(id), a text, b text, c text)"))
    ok(duck.sql(f"INSERT INTO {t} SELECT i, 'a'||i, 'b'||i, 'c'||i FROM range(10) r(i)"))
    cp1 = _cp(ok(duck.sql(f"DELETE FROM {t} WHERE id IN (2, 5)")))
    ok(duck.sql(f"DELETE FROM {t} WHERE id = 7"))
    cp2 = _cp(ok(duck.sql(f"DROP TABLE {t}")))  # copied aside: its foreign key holds the parent
    ok(rollback(duck, cp2))  # copied back: row ids renumbered
    ok(duck.sql(f"UPDATE {t} SET a = 'x' WHERE id = 9"))
    ok(rollback(duck, cp1, mode=mode))
    expected = ORIGINAL if mode == "all" else [
        {**r, "a": "x"} if r["id"] == 9 else r for r in ORIGINAL if r["id"] != 7]
    assert _all(duck, t) == expected


@pytest.mark.parametrize("mode", ["all", "statement"])
def test_drop_schema_then_an_older_row_checkpoint(duck: SqlgateServer, mode: str) -> None:
    s = f"rbs{next(_names)}"
    ok(duck.sql(f"CREATE SCHEMA {s}"))
    t = f"{s}.t"
    ok(duck.sql(f"CREATE TABLE {t} (id int, a text, b text, c text)"))
    ok(duck.sql(f"INSERT INTO {t} SELECT i, 'a'||i, 'b'||i, 'c'||i FROM range(10) r(i)"))
    cp1 = _cp(ok(duck.sql(f"DELETE FROM {t} WHERE id IN (2, 5)")))
    ok(duck.sql(f"DELETE FROM {t} WHERE id = 7"))
    cp2 = _cp(ok(duck.sql(f"DROP SCHEMA {s} CASCADE")))
    ok(rollback(duck, cp2))
    ok(duck.sql(f"UPDATE {t} SET a = 'x' WHERE id = 9"))
    ok(rollback(duck, cp1, mode=mode))
    expected = ORIGINAL if mode == "all" else [
        {**r, "a": "x"} if r["id"] == 9 else r for r in ORIGINAL if r["id"] != 7]
    assert _all(duck, t) == expected


# --- property: random DELETE / UPDATE / INSERT / DROP COLUMN (middle) / rollbacks -------------------

op = st.one_of(
    st.tuples(st.just("insert"), st.integers(0, 9)),
    st.tuples(st.just("delete"), st.integers(0, 2)),
    st.tuples(st.just("update"), st.integers(0, 1), st.integers(1, 5)),
    st.tuples(st.just("drop"), st.sampled_from(["b", "c"])),
    st.tuples(st.just("rollback"), st.integers(0, 100), st.sampled_from(["all", "statement"])),
)


def _shape(duck: SqlgateServer, t: str) -> Counter[tuple[Any, ...]]:
    return Counter(tuple(r.values()) for r in rows(duck, f"SELECT * FROM {t}"))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(op, min_size=1, max_size=7), pick=st.integers(0, 100))
# Mode 'all' across a statement-mode rollback that brought a column back (it must be refused).
@example(steps=[("drop", "c"), ("delete", 0), ("rollback", 0, "statement"), ("drop", "c")], pick=0)
def test_rollbacks_across_rebuilds_are_exact_or_refused(duck: SqlgateServer, steps: list[Any], pick: int) -> None:
    """After any mix of writes, DROP COLUMNs of middle columns and rollbacks, rolling back any
    checkpoint (mode all) gives the table as it was just before it, or a 409 that changed nothing."""
    t = f"rbh{next(_names)}"
    ok(duck.sql(f"CREATE TABLE {t} (id int, a int, b int, c int, d int)"))
    ok(duck.sql(f"INSERT INTO {t} SELECT i, i, 10 + i, 20 + i, 30 + i FROM range(6) r(i)"))
    taken: list[tuple[str, Counter[tuple[Any, ...]], list[str]]] = []
    cols = ["id", "a", "b", "c", "d"]
    for step in steps:
        before, cols_before = _shape(duck, t), list(cols)
        kind = step[0]
        if kind == "insert":
            values = ", ".join([str(step[1])] * len(cols))
            answer = ok(duck.sql(f"INSERT INTO {t} ({', '.join(cols)}) VALUES ({values})"))
        elif kind == "delete":
            answer = ok(duck.sql(f"DELETE FROM {t} WHERE id % 3 = {step[1]}"))
        elif kind == "update":
            answer = ok(duck.sql(f"UPDATE {t} SET a = a + {step[2]} WHERE id % 2 = {step[1]}"))
        elif kind == "drop":
            if step[1] not in cols:
                continue
            answer = ok(duck.sql(f"ALTER TABLE {t} DROP COLUMN {step[1]}"))
        else:
            open_ = [c for c in taken if c[0] not in _undone(duck)]
            if not open_:
                continue
            cp, then, then_cols = open_[step[1] % len(open_)]
            r = rollback(duck, cp, mode=step[2])
            if r.status_code == 409:
                assert _shape(duck, t) == before
                continue
            answer = ok(r)
            if step[2] == "all":
                assert _shape(duck, t) == then
                cols = then_cols
            else:
                cols = [c["name"] for c in _columns(duck, t)]
            if answer.get("new_checkpoint") and cols == cols_before:  # undoing a rollback undoes its rows, not columns
                taken.append((answer["new_checkpoint"], before, cols_before))
            continue
        if answer.get("checkpoint"):
            taken.append((_cp(answer), before, list(cols)))
        if kind == "drop":
            cols = [c for c in cols if c != step[1]]
    open_ = [c for c in taken if c[0] not in _undone(duck)]
    if not open_:
        return
    cp, then, _ = open_[pick % len(open_)]
    before = _shape(duck, t)
    r = rollback(duck, cp)
    if r.status_code == 409:
        assert _shape(duck, t) == before
        return
    ok(r)
    assert _shape(duck, t) == then


def _undone(duck: SqlgateServer) -> set[str]:
    with duck.client() as c:
        return {x["id"] for x in ok(c.get("/checkpoints", params={"limit": "1000"}))["checkpoints"] if x["undone_by"]}


def _columns(duck: SqlgateServer, t: str) -> list[dict[str, Any]]:
    return [{"name": r["column_name"]} for r in rows(
        duck, f"SELECT column_name FROM duckdb_columns() WHERE table_name = '{t}' ORDER BY column_index")]


def test_duckdb_never_renumbers_row_ids_behind_a_checkpoint(duck: SqlgateServer) -> None:
    """Row checkpoints name rows by row id. DuckDB's storage checkpoint vacuums row groups that are
    mostly deleted and renumbers the rows after them, unless vacuum tasks are off (the backend does so)."""
    t = "rn_" + uuid.uuid4().hex[:8]
    ok(duck.sql(f"CREATE TABLE {t} AS SELECT i AS id FROM range(500000) r(i)"))
    ok(duck.sql(f"DELETE FROM {t} WHERE id BETWEEN 10 AND 399999"))
    [before] = rows(duck, f"SELECT rowid AS r FROM {t} WHERE id = 450000")
    ok(duck.sql("CHECKPOINT"))
    [after] = rows(duck, f"SELECT rowid AS r FROM {t} WHERE id = 450000")
    assert after == before


def test_the_watermark_survives_dropped_row_groups(duck: SqlgateServer) -> None:
    """A storage checkpoint drops row groups whose rows are all deleted, and DuckDB's estimated_size
    then counts fewer slots than the row ids in use: mode 'all' must still keep every row that was there."""
    t = "wm_" + uuid.uuid4().hex[:8]
    ok(duck.sql(f"CREATE TABLE {t} AS SELECT i AS id FROM range(300000) r(i)"))
    ok(duck.sql(f"DELETE FROM {t} WHERE id < 250000"))
    ok(duck.sql("CHECKPOINT"))
    answer = ok(duck.sql(f"DELETE FROM {t} WHERE id = 299999"))
    ok(duck.sql(f"INSERT INTO {t} VALUES (-1)"))
    ok(rollback(duck, answer["checkpoint"]["id"]))
    [row] = rows(duck, f"SELECT count(*) AS n, min(id) AS lo, max(id) AS hi FROM {t}")
    assert row == {"n": "50000", "lo": "250000", "hi": "299999"}
