"""DuckDB reuses row ids: a storage CHECKPOINT drops trailing row groups whose rows
are all deleted, and the next INSERT gets the first row id of the first dropped
group (DuckDB 2.0.1: a table of 300000 rows, ids >= 100000 deleted, CHECKPOINT:
the next row gets row id 122880, not 300000; an emptied table starts again at 0).
Row checkpoints name rows by row id, so a mode-'all' rollback must still remove
every row added since, put back exactly what was kept, or refuse (409) and change
nothing. Through the real `sqlgate serve` on a DuckDB file."""

from __future__ import annotations

import pytest

from tests.support.sqlgate_server import SqlgateServer
from tests.test_checkpoints import batch, checkpoints, fresh, num, ok, rollback, rows, snapshot


@pytest.fixture(scope="module")
def agent(duck: SqlgateServer) -> str:
    return duck.token("write", "duck-rowid-reuse-agent")["token"]  # type: ignore[no-any-return]


def run(duck: SqlgateServer, token: str, *statements: str) -> None:
    for statement in statements:
        ok(duck.sql(statement, token=token))


def checkpoint_of(duck: SqlgateServer, token: str, statement: str) -> str:
    return ok(duck.sql(statement, token=token))["checkpoint"]["id"]  # type: ignore[no-any-return]


def rowid_of(duck: SqlgateServer, table: str, id_: int) -> int:
    [row] = rows(duck, f"SELECT rowid AS r FROM {table} WHERE id = {id_}")
    return int(row["r"])


def make(duck: SqlgateServer, token: str, table: str, n: int = 300000) -> None:
    run(duck, token, f"CREATE TABLE {table} AS SELECT i AS id, 'v' || i AS v FROM range({n}) r(i)")


def storage_checkpoint_then_insert(duck: SqlgateServer, token: str, table: str) -> int:
    """CHECKPOINT (drops the all-deleted trailing row groups), then a row: its row id."""
    ok(duck.sql("CHECKPOINT"))  # admin
    run(duck, token, f"INSERT INTO {table} VALUES (-1, 'added after')")
    return rowid_of(duck, table, -1)


def without_the_added_row(duck: SqlgateServer, token: str, p: str) -> dict:
    assert num(duck, f"SELECT count(*) AS n FROM {p}_t WHERE id = -1 AND v = 'added after'") == 1
    run(duck, token, f"DELETE FROM {p}_t WHERE id = -1")
    return snapshot(duck, p)


# --- a dead tail when the checkpoint was taken --------------------------------------------

STATEMENTS = {
    "update": "UPDATE {t} SET v = 'changed' WHERE id = 5",
    "delete": "DELETE FROM {t} WHERE id = 5",
    "update_many": "UPDATE {t} SET v = v || '!' WHERE id % 1000 = 7",
}


@pytest.mark.parametrize("kind", sorted(STATEMENTS))
@pytest.mark.parametrize("mode", ["all", "statement"])
def test_a_row_added_into_a_reused_row_id(duck: SqlgateServer, agent: str, kind: str, mode: str) -> None:
    """The checkpoint sees ids 100000.. deleted (still in their row groups); a storage CHECKPOINT drops
    those groups and a later row gets an id below the highest slot the table had. Mode 'all' removes it;
    mode 'statement' keeps it."""
    p = fresh("ru")
    t = f"{p}_t"
    make(duck, agent, t)
    run(duck, agent, f"DELETE FROM {t} WHERE id >= 100000")
    before = snapshot(duck, p)
    cp = checkpoint_of(duck, agent, STATEMENTS[kind].format(t=t))
    assert storage_checkpoint_then_insert(duck, agent, t) < 300000  # reused: DuckDB went back
    ok(rollback(duck, cp, token=agent, mode=mode))
    if mode == "all":
        assert snapshot(duck, p) == before
    else:
        assert without_the_added_row(duck, agent, p) == before


def test_a_reused_row_changed_again_is_not_put_back(duck: SqlgateServer, agent: str) -> None:
    """A row added into a reused id, then updated (its old version kept by a later checkpoint under an
    id at or below the first checkpoint's slots): mode 'all' must not treat it as a row of the past."""
    p = fresh("ru")
    t = f"{p}_t"
    make(duck, agent, t)
    run(duck, agent, f"DELETE FROM {t} WHERE id >= 100000")
    before = snapshot(duck, p)
    cp = checkpoint_of(duck, agent, f"UPDATE {t} SET v = 'changed' WHERE id = 5")
    storage_checkpoint_then_insert(duck, agent, t)
    run(duck, agent, f"UPDATE {t} SET v = 'changed too' WHERE id = -1", f"INSERT INTO {t} VALUES (-2, 'x')")
    ok(rollback(duck, cp, token=agent, mode="all"))
    assert snapshot(duck, p) == before


def test_an_emptied_table_starts_its_row_ids_again(duck: SqlgateServer, agent: str) -> None:
    """All rows deleted, then a checkpoint of an empty table: after CHECKPOINT DuckDB numbers from 0."""
    p = fresh("ru")
    t = f"{p}_t"
    make(duck, agent, t, 20)
    run(duck, agent, f"DELETE FROM {t}")
    before = snapshot(duck, p)
    cp = checkpoint_of(duck, agent, f"DELETE FROM {t} WHERE id = 3")
    assert storage_checkpoint_then_insert(duck, agent, t) == 0
    ok(rollback(duck, cp, token=agent, mode="all"))
    assert snapshot(duck, p) == before


# --- the deleted rows' own ids reused ---------------------------------------------------

@pytest.mark.parametrize("mode", ["all", "statement"])
def test_a_delete_comes_back_exactly_when_its_row_ids_were_reused(duck: SqlgateServer, agent: str,
                                                                   mode: str) -> None:
    """The DELETE's own row groups are dropped and a new row takes the id of one of its rows."""
    p = fresh("ru")
    t = f"{p}_t"
    make(duck, agent, t)
    before = snapshot(duck, p)
    cp = checkpoint_of(duck, agent, f"DELETE FROM {t} WHERE id >= 100000")
    assert 100000 <= storage_checkpoint_then_insert(duck, agent, t) < 300000  # a deleted row's id
    ok(rollback(duck, cp, token=agent, mode=mode))
    if mode == "all":
        assert snapshot(duck, p) == before
    else:
        assert without_the_added_row(duck, agent, p) == before


@pytest.mark.parametrize("mode", ["all", "statement"])
def test_a_truncate_comes_back_exactly_when_its_row_ids_were_reused(duck: SqlgateServer, agent: str,
                                                                     mode: str) -> None:
    p = fresh("ru")
    t = f"{p}_t"
    make(duck, agent, t, 50)
    before = snapshot(duck, p)
    cp = checkpoint_of(duck, agent, f"TRUNCATE {t}")
    assert storage_checkpoint_then_insert(duck, agent, t) == 0  # the first truncated row's id
    ok(rollback(duck, cp, token=agent, mode=mode))
    if mode == "all":
        assert snapshot(duck, p) == before
    else:
        assert without_the_added_row(duck, agent, p) == before


def test_a_later_delete_whose_row_ids_were_reused(duck: SqlgateServer, agent: str) -> None:
    """An UPDATE checkpoint, then a DELETE of the tail (checkpointed), CHECKPOINT, new rows into the
    DELETE's ids: mode 'all' to the UPDATE gives the table as it was before it."""
    p = fresh("ru")
    t = f"{p}_t"
    make(duck, agent, t)
    before = snapshot(duck, p)
    cp = checkpoint_of(duck, agent, f"UPDATE {t} SET v = 'changed' WHERE id = 5")
    run(duck, agent, f"DELETE FROM {t} WHERE id >= 100000")
    storage_checkpoint_then_insert(duck, agent, t)
    ok(rollback(duck, cp, token=agent, mode="all"))
    assert snapshot(duck, p) == before


# --- ids that were already free when the checkpoint was taken, below a live row ------------

def test_mode_all_refuses_when_a_reused_row_id_cannot_be_told_apart(duck: SqlgateServer, agent: str) -> None:
    """Ids 122880..199999 were deleted before the checkpoint; rows above them were live. A later DELETE
    kills those, CHECKPOINT drops both trailing groups, and a new row takes id 122880, which no checkpoint
    kept: nothing recorded tells it from a row that was there. Mode 'all' refuses and changes nothing;
    statement mode, latest first, still undoes both statements."""
    p = fresh("ru")
    t = f"{p}_t"
    make(duck, agent, t)
    run(duck, agent, f"DELETE FROM {t} WHERE id >= 122880 AND id < 200000")
    before = snapshot(duck, p)
    cp1 = checkpoint_of(duck, agent, f"UPDATE {t} SET v = 'changed' WHERE id = 5")
    cp2 = checkpoint_of(duck, agent, f"DELETE FROM {t} WHERE id >= 200000")
    assert storage_checkpoint_then_insert(duck, agent, t) == 122880
    now = snapshot(duck, p)
    r = rollback(duck, cp1, token=agent, mode="all")
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["reason"] == "branching.rollback_conflict" and "statement" in body["next"], body
    assert "nothing was changed" in body["message"]
    assert snapshot(duck, p) == now
    ok(rollback(duck, cp2, token=agent, mode="statement"))
    ok(rollback(duck, cp1, token=agent, mode="statement"))
    assert without_the_added_row(duck, agent, p) == before


def test_holes_below_a_live_row_that_stays_are_no_reason_to_refuse(duck: SqlgateServer, agent: str) -> None:
    """Deleted ids below the highest live row, which no later statement touches: nothing can reuse them."""
    p = fresh("ru")
    t = f"{p}_t"
    make(duck, agent, t)
    run(duck, agent, f"DELETE FROM {t} WHERE id >= 122880 AND id < 280000")
    before = snapshot(duck, p)
    cp = checkpoint_of(duck, agent, f"UPDATE {t} SET v = 'changed' WHERE id = 5")
    run(duck, agent, f"DELETE FROM {t} WHERE id BETWEEN 7 AND 9")
    assert storage_checkpoint_then_insert(duck, agent, t) == 300000  # no group dropped at the tail
    ok(rollback(duck, cp, token=agent, mode="all"))
    assert snapshot(duck, p) == before


# --- rows the checkpoint's own transaction appended before it ---------------------------
# Until COMMIT DuckDB numbers them from 36028797018960000 (MAX_ROW_ID) up, then renumbers them after
# the table's last row; taken as the watermark, that temporary id hid every row added later.

def in_transaction(duck: SqlgateServer, token: str, *statements: str) -> list[str]:
    """The statements in one transaction; the checkpoints they took."""
    answer = ok(batch(duck, list(statements), token=token))
    return [r["checkpoint"]["id"] for r in answer["results"] if r.get("checkpoint")]


def ids_and_values(duck: SqlgateServer, table: str) -> list[tuple[int, str]]:
    return [(int(r["id"]), r["v"]) for r in rows(duck, f"SELECT id, v FROM {table} ORDER BY id, v")]


def base(n: int = 10) -> list[tuple[int, str]]:
    return [(i, f"v{i}") for i in range(n)]


IN_TRANSACTION = {
    "delete": "DELETE FROM {t} WHERE id = 1",
    "update": "UPDATE {t} SET v = 'changed' WHERE id = 1",
    "truncate": "TRUNCATE {t}",
    "merge": "MERGE INTO {t} t USING (SELECT 1 AS id) s ON t.id = s.id WHEN MATCHED THEN DELETE",  # images
}


@pytest.mark.parametrize("kind", sorted(IN_TRANSACTION))
@pytest.mark.parametrize("mode", ["all", "statement"])
def test_rows_appended_earlier_in_the_checkpoints_transaction(duck: SqlgateServer, agent: str, kind: str,
                                                              mode: str) -> None:
    """BEGIN; INSERT 101; <statement> (checkpoint); COMMIT; INSERT 102. Mode 'all' leaves the table as it
    was at the checkpoint (101 in, 102 out); statement mode undoes the statement alone."""
    p = fresh("rt")
    t = f"{p}_t"
    make(duck, agent, t, 10)
    [cp] = in_transaction(duck, agent, "BEGIN", f"INSERT INTO {t} VALUES (101, 'in the transaction')",
                          IN_TRANSACTION[kind].format(t=t), "COMMIT")
    run(duck, agent, f"INSERT INTO {t} VALUES (102, 'later')")
    ok(rollback(duck, cp, token=agent, mode=mode))
    expected = base() + [(101, "in the transaction")] + ([(102, "later")] if mode == "statement" else [])
    assert ids_and_values(duck, t) == expected


@pytest.mark.parametrize("mode", ["all", "statement"])
def test_rows_appended_before_and_after_the_checkpoint_in_one_transaction(duck: SqlgateServer, agent: str,
                                                                           mode: str) -> None:
    """BEGIN; INSERT 100; UPDATE (checkpoint); INSERT 101; COMMIT; INSERT 102: mode 'all' keeps 100 only."""
    p = fresh("rt")
    t = f"{p}_t"
    make(duck, agent, t, 10)
    [cp] = in_transaction(duck, agent, "BEGIN", f"INSERT INTO {t} VALUES (100, 'before')",
                          f"UPDATE {t} SET v = 'changed' WHERE id = 1",
                          f"INSERT INTO {t} VALUES (101, 'after, same transaction')", "COMMIT")
    run(duck, agent, f"INSERT INTO {t} VALUES (102, 'after, later request')")
    ok(rollback(duck, cp, token=agent, mode=mode))
    later = [(101, "after, same transaction"), (102, "after, later request")]
    assert ids_and_values(duck, t) == base() + [(100, "before")] + (later if mode == "statement" else [])


@pytest.mark.parametrize("mode", ["all", "statement"])
def test_appended_rows_changed_after_the_checkpoint_in_its_transaction(duck: SqlgateServer, agent: str,
                                                                       mode: str) -> None:
    """The checkpoint deletes one of three appended rows; later in the transaction another is updated and a
    fourth appended (DuckDB closes the gap when it renumbers at COMMIT). Mode 'all' puts back all three as
    they were at the checkpoint."""
    p = fresh("rt")
    t = f"{p}_t"
    make(duck, agent, t, 10)
    cps = in_transaction(duck, agent, "BEGIN", f"INSERT INTO {t} VALUES (100, 'a'), (101, 'b'), (102, 'c')",
                         f"DELETE FROM {t} WHERE id = 101", f"UPDATE {t} SET v = 'c!' WHERE id = 102",
                         f"INSERT INTO {t} VALUES (103, 'd')", "COMMIT")
    run(duck, agent, f"INSERT INTO {t} VALUES (104, 'e')")
    if mode == "all":
        ok(rollback(duck, cps[0], token=agent, mode="all"))
        assert ids_and_values(duck, t) == base() + [(100, "a"), (101, "b"), (102, "c")]
    else:
        for cp in reversed(cps):
            ok(rollback(duck, cp, token=agent, mode="statement"))
        assert ids_and_values(duck, t) == base() + [(100, "a"), (101, "b"), (102, "c"), (103, "d"), (104, "e")]


def test_checkpoint_after_an_append_in_a_transaction_that_rolls_back(duck: SqlgateServer, agent: str) -> None:
    """The checkpoint and everything it kept go with the transaction."""
    p = fresh("rt")
    t = f"{p}_t"
    make(duck, agent, t, 10)
    answer = ok(batch(duck, ["BEGIN", f"INSERT INTO {t} VALUES (101, 'x')", f"DELETE FROM {t} WHERE id = 1",
                             "ROLLBACK"], token=agent))
    [cp] = [r["checkpoint"]["id"] for r in answer["results"] if r.get("checkpoint")]
    assert ids_and_values(duck, t) == base()
    assert not [c for c in checkpoints(duck, agent) if c["id"] == cp or t in c["tables"]]
    assert num(duck, f"SELECT count(*) AS n FROM duckdb_tables() WHERE schema_name = 'sqlgate'"
                     f" AND table_name LIKE '%{cp}%'") == 0
    assert rollback(duck, cp, token=agent).status_code == 404
