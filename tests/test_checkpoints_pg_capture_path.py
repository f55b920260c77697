"""The capture triggers (sqlgate.capture_delete, capture_insert, capture_update) run after every write to a
captured table, SECURITY DEFINER, and without a SET search_path clause (on a trigger it cost as much as the
rest of the trigger's fixed work): every name in them resolves under the agent's search_path, so each is
schema-qualified. An agent that may create in `public` plants lookalikes of everything they call (functions,
aggregates, operators, a type), puts `public` before the catalog, and writes: none may run (it would run as
sqlgate's owner), the changes are filed under the right checkpoints, and the rows come back."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.support.sqlgate_server import SqlgateServer
from tests.test_checkpoints import batch, fresh, ok, rollback, rows


def _lookalikes(p: str) -> list[tuple[str, str]]:
    """(CREATE, DROP) pairs: each lookalike matches the trigger's call at least as exactly as the
    built-in, so an unqualified name would pick it once `public` comes first; each notes its call."""
    spy = f"public.{p}_spy"
    return [
        (f"CREATE FUNCTION {spy}(fn text) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN"
         f" INSERT INTO public.{p}_calls VALUES (current_user, fn); RETURN true; END $$", f"DROP FUNCTION {spy}(text)"),
        ("CREATE FUNCTION public.current_setting(n text, missing_ok boolean) RETURNS text LANGUAGE plpgsql"
         f" AS $$ BEGIN PERFORM {spy}('current_setting'); RETURN NULL; END $$",
         "DROP FUNCTION public.current_setting(text, boolean)"),
        ("CREATE FUNCTION public.txid_current() RETURNS bigint LANGUAGE plpgsql"
         f" AS $$ BEGIN PERFORM {spy}('txid_current'); RETURN 0; END $$", "DROP FUNCTION public.txid_current()"),
        (f"CREATE FUNCTION public.{p}_jagg(s json, v anyelement) RETURNS json LANGUAGE plpgsql"
         f" AS $$ BEGIN PERFORM {spy}('json_agg'); RETURN '[]'; END $$",
         f"DROP FUNCTION public.{p}_jagg(json, anyelement)"),
        (f"CREATE AGGREGATE public.json_agg(anyelement) (SFUNC = public.{p}_jagg, STYPE = json)",
         "DROP AGGREGATE public.json_agg(anyelement)"),
        (f"CREATE FUNCTION public.{p}_cnt(s bigint) RETURNS bigint LANGUAGE plpgsql"
         f" AS $$ BEGIN PERFORM {spy}('count'); RETURN s + 1; END $$", f"DROP FUNCTION public.{p}_cnt(bigint)"),
        (f"CREATE AGGREGATE public.count(*) (SFUNC = public.{p}_cnt, STYPE = bigint, INITCOND = '0')",
         "DROP AGGREGATE public.count(*)"),
        (f"CREATE FUNCTION public.{p}_eq(a text, b text) RETURNS boolean LANGUAGE plpgsql"
         f" AS $$ BEGIN PERFORM {spy}('text = text'); RETURN a IS NOT DISTINCT FROM b; END $$",
         f"DROP FUNCTION public.{p}_eq(text, text)"),
        (f"CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.{p}_eq)",
         "DROP OPERATOR public.= (text, text)"),
        (f"CREATE FUNCTION public.{p}_eq8(a bigint, b bigint) RETURNS boolean LANGUAGE plpgsql"
         f" AS $$ BEGIN PERFORM {spy}('bigint = bigint'); RETURN a IS NOT DISTINCT FROM b; END $$",
         f"DROP FUNCTION public.{p}_eq8(bigint, bigint)"),
        (f"CREATE OPERATOR public.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = public.{p}_eq8)",
         "DROP OPERATOR public.= (bigint, bigint)"),
        (f"CREATE FUNCTION public.{p}_gt(a bigint, b integer) RETURNS boolean LANGUAGE plpgsql"
         f" AS $$ BEGIN PERFORM {spy}('bigint > integer'); RETURN true; END $$",
         f"DROP FUNCTION public.{p}_gt(bigint, integer)"),
        (f"CREATE OPERATOR public.> (LEFTARG = bigint, RIGHTARG = integer, FUNCTION = public.{p}_gt)",
         "DROP OPERATOR public.> (bigint, integer)"),
        # a type named like the one the UPDATE trigger names: a domain whose CHECK calls the spy
        (f'CREATE DOMAIN public."char" AS pg_catalog."char" CHECK ({spy}(\'"char"\'))', 'DROP DOMAIN public."char"'),
    ]


@pytest.fixture
def planted(pg: SqlgateServer) -> Any:
    token = pg.token("write", "capture-lookalikes")["token"]
    p = fresh("cpl")
    ok(pg.sql(f"CREATE TABLE public.{p}_calls (who text, fn text)", token=token))
    made = []
    try:
        for create, drop in _lookalikes(p):
            ok(pg.sql(create, token=token))
            made.append(drop)
        yield token, p
    finally:
        assert pg.database is not None
        with psycopg.connect(pg.database, autocommit=True) as conn:  # other tests must not meet them
            for drop in reversed(made):
                conn.execute(drop)


def test_no_lookalike_runs_in_the_capture_triggers(pg: SqlgateServer, planted: Any) -> None:
    token, p = planted
    t = f"{p}_t"
    ok(pg.sql(f"CREATE TABLE {t} (id int PRIMARY KEY, v int, note text)", token=token))
    ok(pg.sql(f"INSERT INTO {t} SELECT i, i, 'n' || i FROM generate_series(1, 10) i", token=token))
    before = rows(pg, f"SELECT id, v, note FROM {t} ORDER BY id", token=token)
    # Capture triggers go on at the table's first checkpoint, taken here without the lookalikes in the path.
    first = ok(pg.sql(f"DELETE FROM {t} WHERE id = 10", token=token))["checkpoint"]["id"]
    answer = ok(batch(pg, [
        "BEGIN",
        "SET LOCAL search_path = public, pg_catalog",
        f"DELETE FROM {t} WHERE id BETWEEN 8 AND 9",      # capture_delete, under a checkpoint
        f"UPDATE {t} SET v = v + 100 WHERE id <= 2",      # capture_update: D then I, one checkpoint
        f"INSERT INTO {t} VALUES (50, 50, 'new')",        # capture_insert, no checkpoint of its own
        "COMMIT",
    ], token=token))
    ids = [r["checkpoint"]["id"] for r in answer["results"] if r.get("checkpoint")]
    assert len(ids) == 2
    assert rows(pg, f"SELECT who, fn FROM public.{p}_calls", token=token) == []
    assert pg.database is not None
    with psycopg.connect(pg.database) as conn:  # sqlgate's own records, as the owner
        filed = conn.execute(
            "SELECT cp, op, json_array_length(rows) FROM sqlgate.changes WHERE tbl = %s::regclass"
            " AND cp IS DISTINCT FROM %s ORDER BY seq", (t, first)).fetchall()
    assert filed == [(ids[0], "D", 2), (ids[1], "D", 2), (ids[1], "I", 2), (None, "I", 1)]
    ok(rollback(pg, ids[1], token=token, mode="statement"))   # the UPDATE alone
    assert rows(pg, f"SELECT v FROM {t} WHERE id <= 2 ORDER BY id", token=token) == [{"v": 1}, {"v": 2}]
    ok(rollback(pg, first, token=token, mode="all"))          # everything since the first checkpoint
    assert rows(pg, f"SELECT id, v, note FROM {t} ORDER BY id", token=token) == before
    assert rows(pg, f"SELECT who, fn FROM public.{p}_calls", token=token) == []
