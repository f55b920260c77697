"""sqlgate on DuckDB as psql and drivers see PostgreSQL 15: constraints in
pg_catalog (\\d, \\di, pg_constraint) and errors with PostgreSQL's SQLSTATE and position."""

from __future__ import annotations

import subprocess

import duckdb
import psycopg
import pytest

from proxy.db_errors import duckdb_error, duckdb_syntax
from tests.support.wire import PSQL, Wire

duckdb_only = pytest.mark.parametrize("wire", ["duckdb"], indirect=True)

_TABLES = (
    "CREATE TABLE cat_items (id int PRIMARY KEY, code text UNIQUE, price numeric CHECK (price > 0),"
    " qty int CHECK (qty >= 0 AND qty < 1000))",
    "CREATE TABLE cat_child (id int PRIMARY KEY, item_id int REFERENCES cat_items(id), a int, b int,"
    " UNIQUE (a, b), CHECK (a <> b), CHECK (a > 0), CHECK (a < 100))",
    "CREATE INDEX cat_items_qty ON cat_items (qty)",
)


def psql(w: Wire, command: str) -> str:
    result = subprocess.run([PSQL, "-X", "-c", command], env=w.psql_env(), text=True, capture_output=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def tables(wire: Wire) -> Wire:
    with psycopg.connect(wire.dsn(), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM duckdb_tables() WHERE table_name = 'cat_items'").fetchall():
            for sql in _TABLES:
                conn.execute(sql)
    return wire


@duckdb_only
def test_psql_describe_shows_checks_and_foreign_keys(tables: Wire) -> None:
    out = psql(tables, r"\d cat_items")
    assert '"cat_items_pkey" PRIMARY KEY, btree (id)' in out
    assert "Check constraints:\n" in out
    assert '    "cat_items_price_check" CHECK (price > 0)\n' in out
    assert '    "cat_items_qty_check" CHECK ((qty >= 0) AND (qty < 1000))\n' in out
    assert ('Referenced by:\n    TABLE "cat_child" CONSTRAINT "cat_child_item_id_fkey" FOREIGN KEY (item_id)'
            " REFERENCES cat_items(id)") in out
    out = psql(tables, r"\d cat_child")
    checks = out.split("Check constraints:\n")[1].split("Foreign-key")[0]
    assert checks.split("\n")[:3] == [  # the names PostgreSQL would have given them
        '    "cat_child_a_check" CHECK (a > 0)', '    "cat_child_a_check1" CHECK (a < 100)',
        '    "cat_child_check" CHECK (a <> b)']
    assert ('Foreign-key constraints:\n    "cat_child_item_id_fkey" FOREIGN KEY (item_id)'
            " REFERENCES cat_items(id)") in out


@duckdb_only
def test_psql_di_lists_the_key_indexes(tables: Wire) -> None:
    out = psql(tables, r"\di")
    for name, table in (("cat_child_a_b_key", "cat_child"), ("cat_child_pkey", "cat_child"),
                        ("cat_items_code_key", "cat_items"), ("cat_items_pkey", "cat_items"),
                        ("cat_items_qty", "cat_items")):
        assert f" {name} " in out and out.split(f" {name} ")[1].split("\n")[0].rstrip().endswith(table), name
    out = psql(tables, r"\d cat_items_pkey")
    assert 'Index "main.cat_items_pkey"' in out and " id     | integer | yes  | id" in out
    assert 'primary key, btree, for table "main.cat_items"' in out
    assert 'btree, for table "main.cat_items"' in psql(tables, r"\d cat_items_qty")


@duckdb_only
def test_pg_constraint_rows(tables: Wire) -> None:
    with psycopg.connect(tables.dsn(), autocommit=True) as conn:
        cur = conn.execute("SELECT conname, contype, conrelid::regclass, pg_get_constraintdef(oid) FROM pg_constraint"
                           " WHERE conrelid = 'cat_items'::regclass ORDER BY 1")
        assert [c.name for c in cur.description] == ["conname", "contype", "conrelid", "pg_get_constraintdef"]
        assert cur.fetchall() == [
            ("cat_items_code_key", "u", "cat_items", "UNIQUE (code)"),
            ("cat_items_pkey", "p", "cat_items", "PRIMARY KEY (id)"),
            ("cat_items_price_check", "c", "cat_items", "CHECK (price > 0)"),
            ("cat_items_qty_check", "c", "cat_items", "CHECK ((qty >= 0) AND (qty < 1000))"),
        ]
        row = conn.execute("SELECT c.conname, c.confrelid = 'cat_items'::regclass, c.conkey"
                           " FROM pg_catalog.pg_constraint c JOIN pg_class t ON t.oid = c.conrelid"
                           " WHERE t.relname = 'cat_child' AND contype = 'f'").fetchall()
        assert row == [("cat_child_item_id_fkey", True, [2])]


@pytest.mark.parametrize("sql, sqlstate, position", [
    ("SELECT nosuchfunc(1)", "42883", 8),
    ("SELECT lower(1, 2, 3)", "42883", 8),
    ("SELECT 32768::int2", "22003", None),
    ("SELECT '99999'::smallint", "22003", None),
    ("SELECT '2024-13-01'::date", "22008", None),
    ("SELECT 'abc'::int", "22P02", None),
    ("SELECT * FROM cat_no_such_table", "42P01", 15),
])
@duckdb_only
def test_errors_have_postgresql_sqlstates(wire: Wire, sql: str, sqlstate: str, position: int | None) -> None:
    with psycopg.connect(wire.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as info:
            conn.execute(sql)
    diag = info.value.diag
    assert diag.sqlstate == sqlstate, diag.message_primary
    assert "LINE 1" not in (diag.message_primary or "") and "Error:" not in (diag.message_primary or "")
    assert "Next: fix the statement" in (diag.message_hint or "")  # sqlgate's next step stays
    if position is not None:
        assert diag.statement_position == str(position)


def _duck_error(sql: str) -> duckdb.Error:
    conn = duckdb.connect()
    conn.execute("CREATE TABLE t (a int)")
    with pytest.raises(duckdb.Error) as info:
        conn.execute(sql)
    return info.value


@pytest.mark.parametrize("sql, message, position", [
    ("SELECT 1; SELEC oops", 'syntax error at or near "SELEC"', 11),  # PostgreSQL: the same
    ("SELECT 1,\n  2 FRO\n  t", 'syntax error at or near "t"', 21),
    ("SELECT '日本語' FRO t", 'syntax error at or near "t"', 18),
])
def test_syntax_error_message_and_position(sql: str, message: str, position: int) -> None:
    text = str(_duck_error(sql))
    assert duckdb_syntax(text, sql) == (message, position)
    assert sql[position - 1] in "St"


def test_position_past_the_first_line_needs_the_sql() -> None:
    sql = "SELECT a\n  FROM t WHERE " + "a = 1 AND " * 10 + "nosuch = 2"
    error = duckdb_error(_duck_error(sql), sql)
    assert (error.sqlstate, error.position) == ("42703", sql.index("nosuch") + 1)
    assert duckdb_error(_duck_error(sql)).position is None
    assert error.next and "LINE" not in error.message and "LINE" not in error.hint
