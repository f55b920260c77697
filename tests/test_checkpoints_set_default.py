"""SET DEFAULT, on both backends: classed safe_ddl (it removes no data), but it replaces the old
default, so it is checkpointed like DROP DEFAULT. Mode 'statement' puts back the old default only
(rows written since keep the values they got); mode 'all' goes back to before it, and undoes it
when it came after the checkpoint rolled back to."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.sqlgate_server import SqlgateServer
from tests.test_checkpoints import back_and_forth, num, ok, pair_table, rollback, rows, snapshot

SET_B = "ALTER TABLE {t} ALTER COLUMN b SET DEFAULT 'e'"
DELETE = "DELETE FROM {t} WHERE id % 2 = 0"
DROP_B = "ALTER TABLE {t} DROP COLUMN b"
RENAME_B = "ALTER TABLE {t} RENAME COLUMN b TO b2"
DROP_DEFAULT = "ALTER TABLE {t} ALTER COLUMN b DROP DEFAULT"
INSERT = "INSERT INTO {t} (id, a) VALUES (100, 100)"


def _table(server: SqlgateServer) -> tuple[str, str]:
    return pair_table(server, "setdef")


def _default(server: SqlgateServer, t: str, column: str) -> Any:
    if server.backend == "postgres":
        query = (f"SELECT pg_get_expr(d.adbin, d.adrelid) AS v FROM pg_attribute a LEFT JOIN pg_attrdef d"
                 f" ON d.adrelid = a.attrelid AND d.adnum = a.attnum WHERE a.attrelid = '{t}'::regclass"
                 f" AND a.attname = '{column}'")
    else:
        query = (f"SELECT column_default AS v FROM duckdb_columns() WHERE table_name = '{t}'"
                 f" AND column_name = '{column}'")
    [row] = rows(server, query)
    return row["v"]


def test_set_default_is_checkpointed_but_stays_safe_ddl(sqlgate: SqlgateServer) -> None:
    _, t = _table(sqlgate)
    reader = sqlgate.token("read", "set-default-reader")["token"]
    r = sqlgate.sql(SET_B.format(t=t), token=reader)
    assert r.status_code == 403 and r.json()["reason"] == "policy.denied", r.text  # still DDL to a reader
    answer = ok(sqlgate.sql(SET_B.format(t=t)))
    assert answer["checkpoint"]["id"].startswith("cp_") and answer["checkpoint"]["tables"] == [t]
    with sqlgate.client() as c:
        traces = ok(c.get("/traces", params={"limit": "20"}))["traces"]
    [trace] = [x for x in traces if x["id"] == answer["trace_id"]]
    assert trace["class"] == "safe_ddl" and trace["checkpoint_id"] == answer["checkpoint"]["id"]


def test_statement_mode_puts_the_old_default_back_and_keeps_rows_written_since(sqlgate: SqlgateServer) -> None:
    p, t = _table(sqlgate)
    cp = ok(sqlgate.sql(SET_B.format(t=t)))["checkpoint"]["id"]
    ok(sqlgate.sql(INSERT.format(t=t)))  # b takes the new default
    assert "'e'" in str(_default(sqlgate, t, "b"))
    after = snapshot(sqlgate, p)
    undo = ok(rollback(sqlgate, cp, mode="statement"))["new_checkpoint"]
    assert "'d'" in str(_default(sqlgate, t, "b"))
    assert rows(sqlgate, f"SELECT b FROM {t} WHERE id = 100") == [{"b": "e"}]  # the row keeps its value
    ok(rollback(sqlgate, undo))  # and undoing the rollback sets the new default again
    assert snapshot(sqlgate, p) == after


def test_mode_all_goes_back_to_before_it(sqlgate: SqlgateServer) -> None:
    p, t = _table(sqlgate)
    before = snapshot(sqlgate, p)
    cp = ok(sqlgate.sql(SET_B.format(t=t)))["checkpoint"]["id"]
    ok(sqlgate.sql(INSERT.format(t=t)))
    after = snapshot(sqlgate, p)
    undo = ok(rollback(sqlgate, cp))["new_checkpoint"]
    assert snapshot(sqlgate, p) == before
    assert num(sqlgate, f"SELECT count(*) AS n FROM {t} WHERE id = 100") == 0
    ok(rollback(sqlgate, undo))
    assert snapshot(sqlgate, p) == after


def test_a_column_without_a_default_gets_none_back(sqlgate: SqlgateServer) -> None:
    p, t = _table(sqlgate)
    before = snapshot(sqlgate, p)
    cp = ok(sqlgate.sql(f"ALTER TABLE {t} ALTER COLUMN c SET DEFAULT 7"))["checkpoint"]["id"]
    assert _default(sqlgate, t, "c") is not None
    ok(rollback(sqlgate, cp, mode="statement"))
    assert _default(sqlgate, t, "c") is None
    assert snapshot(sqlgate, p) == before


def test_a_default_set_again_since_is_a_conflict_in_statement_mode(sqlgate: SqlgateServer) -> None:
    p, t = _table(sqlgate)
    first = ok(sqlgate.sql(SET_B.format(t=t)))["checkpoint"]["id"]
    second = ok(sqlgate.sql(f"ALTER TABLE {t} ALTER COLUMN b SET DEFAULT 'f'"))["checkpoint"]["id"]
    state = snapshot(sqlgate, p)
    r = rollback(sqlgate, first, mode="statement")
    assert r.status_code == 409, r.text
    assert [c["conflict"] for c in r.json()["conflicts"]] == ["its default was set again since"]
    assert snapshot(sqlgate, p) == state  # nothing changed
    ok(rollback(sqlgate, second, mode="statement"))
    assert "'e'" in str(_default(sqlgate, t, "b"))
    ok(rollback(sqlgate, first, mode="statement"))  # in order, each undoes its own
    assert "'d'" in str(_default(sqlgate, t, "b"))


@pytest.mark.parametrize(("first", "second"), [
    # Mode 'all' to before the first: the SET DEFAULT after it is undone too (it used to stay).
    (DELETE, SET_B), (DROP_DEFAULT, SET_B), (INSERT, SET_B),
    # The SET DEFAULT first: what follows it is undone before its default comes back.
    (SET_B, DELETE), (SET_B, DROP_B), (SET_B, RENAME_B), (SET_B, DROP_DEFAULT),
], ids=["delete-set", "dropdefault-set", "insert-set", "set-delete", "set-dropb", "set-rename", "set-dropdefault"])
def test_pairs_mode_all_and_undo(sqlgate: SqlgateServer, first: str, second: str) -> None:
    p, t = _table(sqlgate)
    if first == INSERT:  # a write takes no checkpoint: roll back to the SET DEFAULT's, mode all
        ok(sqlgate.sql(first.format(t=t)))
        before = snapshot(sqlgate, p)
        cp = ok(sqlgate.sql(second.format(t=t)))["checkpoint"]["id"]
    else:
        before = snapshot(sqlgate, p)
        cp = ok(sqlgate.sql(first.format(t=t)))["checkpoint"]["id"]
        ok(sqlgate.sql(second.format(t=t)))
    back_and_forth(sqlgate, p, cp, before)


def test_several_defaults_in_one_alter(pg: SqlgateServer) -> None:
    """PostgreSQL takes several SET/DROP DEFAULTs in one ALTER TABLE: one checkpoint keeps them all, and
    mode 'statement' puts each back (DuckDB's ALTER takes one action)."""
    p, t = _table(pg)
    before = snapshot(pg, p)
    cp = ok(pg.sql(f"ALTER TABLE {t} ALTER COLUMN b SET DEFAULT 'x', ALTER COLUMN c SET DEFAULT 3,"
                   f" ALTER COLUMN a SET DEFAULT 1"))["checkpoint"]["id"]
    ok(pg.sql(f"ALTER TABLE {t} ALTER COLUMN b DROP DEFAULT, ALTER COLUMN c SET DEFAULT 4"))
    r = rollback(pg, cp, mode="statement")  # b and c were changed again since
    assert r.status_code == 409, r.text
    assert {c["column"] for c in r.json()["conflicts"]} == {"b"}  # the first conflict stops the undo
    ok(rollback(pg, cp, mode="all"))
    assert snapshot(pg, p) == before
