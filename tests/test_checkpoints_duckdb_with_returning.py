"""DuckDB DML with its own WITH clause or an UPDATE's own RETURNING list is checkpointed like any other
(they were refused, or failed on a WITH the checkpoint dropped): the statement answers as it would
without sqlgate, both rollback modes give back exactly the table before it, and their undo the table
after it. Over HTTP and, with parameters, over the wire (psycopg, extended protocol)."""

from __future__ import annotations

import re

import psycopg
import pytest

from tests.support.sqlgate_server import SqlgateServer
from tests.test_checkpoints import back_and_forth, fresh, ok, snapshot

STATEMENTS = [
    ("with-update-from", "WITH w AS (SELECT 3 AS i) UPDATE {t} SET v = 'w' FROM w WHERE {t}.id = w.i"),
    ("with-update-key", "WITH w AS (SELECT 2 AS i) UPDATE {t} SET id = 9 WHERE id IN (SELECT i FROM w)"),
    ("with-delete-using", "WITH w AS (SELECT 2 AS i) DELETE FROM {t} USING w WHERE {t}.id = w.i"),
    ("with-delete-returning", "WITH w AS (SELECT 2 AS i) DELETE FROM {t} WHERE id IN (SELECT i FROM w) RETURNING v"),
    ("with-merge", "WITH w AS (SELECT 2 AS i) MERGE INTO {t} USING w ON {t}.id = w.i WHEN MATCHED THEN DELETE"),
    ("update-returning-star", "UPDATE {t} SET v = v || '?' WHERE id >= 2 RETURNING *"),
    ("update-returning-alias", "UPDATE {t} AS x SET v = 'q' WHERE x.id = 3 RETURNING x.id, upper(x.v) AS up"),
    ("update-returning-key", "UPDATE {t} SET id = id + 10 WHERE id = 1 RETURNING id, iv"),
    ("with-update-returning",
     "WITH w AS (SELECT 2 AS i) UPDATE {t} SET v = 'w' FROM w WHERE {t}.id = w.i RETURNING {t}.v"),
]
ANSWERS = {  # the rows each answers with, as PostgreSQL text
    "with-delete-returning": [{"v": "b"}],
    "update-returning-star": [{"id": 2, "v": "b?", "iv": "1 mon"}, {"id": 3, "v": "c?", "iv": "1 mon"}],
    "update-returning-alias": [{"id": 3, "up": "Q"}],
    "update-returning-key": [{"id": 11, "iv": "1 mon"}],
    "with-update-returning": [{"v": "w"}],
}


def _table(duck: SqlgateServer, key: bool) -> tuple[str, str]:
    p = fresh("dwr")
    t = f"{p}_t"
    ok(duck.sql(f"CREATE TABLE {t} (id int{' PRIMARY KEY' if key else ''}, v text,"
                " iv INTERVAL DEFAULT INTERVAL '1 month')"))
    ok(duck.sql(f"INSERT INTO {t} (id, v) VALUES (1, 'a'), (2, 'b'), (3, 'c')"))
    return p, t


@pytest.mark.parametrize("mode", ["all", "statement"])
@pytest.mark.parametrize("key", [True, False], ids=["key", "no-key"])
@pytest.mark.parametrize(("name", "statement"), STATEMENTS, ids=[s[0] for s in STATEMENTS])
def test_checkpointed_answered_and_rolled_back_exactly(
        duck: SqlgateServer, name: str, statement: str, key: bool, mode: str) -> None:
    p, t = _table(duck, key)
    before = snapshot(duck, p)
    answer = ok(duck.sql(statement.format(t=t)))
    assert answer["rows"] == ANSWERS.get(name, []), answer
    assert answer["rowCount"] == (2 if name == "update-returning-star" else 1), answer
    back_and_forth(duck, p, answer["checkpoint"]["id"], before, mode=mode)


@pytest.mark.parametrize(("returning", "why"), [
    ("o.i", "another table's columns"), ("rowid, id", "a subquery or rowid"),
    ("(SELECT count(*) FROM {t} WHERE v = 'z')", "a subquery or rowid"),
], ids=["other-table", "rowid", "subquery"])
def test_update_returning_what_the_kept_rows_cannot_answer_is_refused_before_it_runs(
        duck: SqlgateServer, returning: str, why: str) -> None:
    p, t = _table(duck, True)
    before = snapshot(duck, p)
    r = duck.sql(f"UPDATE {t} SET v = 'z' FROM (SELECT 1 AS i) o WHERE {t}.id = o.i RETURNING "
                 + returning.format(t=t))
    assert r.status_code == 403 and why in r.json()["message"], r.text
    assert snapshot(duck, p) == before


def test_update_returning_schema_qualified_columns(duck: SqlgateServer) -> None:
    p, t = _table(duck, True)
    before = snapshot(duck, p)
    answer = ok(duck.sql(f"UPDATE main.{t} SET v = 'm' WHERE id = 2 RETURNING main.{t}.v, {t}.id"))
    assert answer["rows"] == [{"v": "m", "id": 2}], answer
    back_and_forth(duck, p, answer["checkpoint"]["id"], before)


def test_update_returning_with_parameters_over_the_wire(duck: SqlgateServer) -> None:
    p, t = _table(duck, True)
    before = snapshot(duck, p)
    dsn = f"postgresql://agent:{duck.admin_token}@127.0.0.1:{duck.pg_port}/main"
    notices: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        cur = conn.execute(f"UPDATE {t} SET v = %s WHERE id >= %s RETURNING id, v", ["p", 2])
        assert [d.name for d in cur.description or []] == ["id", "v"]
        assert cur.fetchall() == [(2, "p"), (3, "p")]
        assert cur.statusmessage == "UPDATE 2"
    [checkpoint] = [m for n in notices for m in re.findall(r"cp_[0-9a-z]+", n)][:1]
    back_and_forth(duck, p, checkpoint, before)
