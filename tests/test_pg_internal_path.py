"""sqlgate's own SQL runs as the owner on connections whose search_path is the
catalog alone: an agent that may create in `public` puts there overloads that
match sqlgate's calls more exactly than the built-ins (CVE-2018-1058), and none
of them may ever run, let alone as the owner. A dry run plans an agent's
statement as the agent's login, never as the owner."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.support.sqlgate_server import SqlgateServer
from tests.test_checkpoints import checkpoints, fresh, ok, rollback, rows

# Built-ins sqlgate calls with argument types that an overload in public would match exactly.
LOOKALIKES = {
    "pg_total_relation_size(r oid) RETURNS bigint": "0::bigint",
    "format(f text, a name, b name) RETURNS text": "'x'",
    "nextval(s text) RETURNS bigint": "0::bigint",
    "unnest(a oid[]) RETURNS SETOF oid": "NULL::oid",
}


@pytest.fixture
def planted(pg: SqlgateServer) -> Any:
    """A write token's lookalikes in public, each noting who called it in a table the agent reads."""
    token = pg.token("write", "lookalikes")["token"]
    p = fresh("lk")
    ok(pg.sql(f"CREATE TABLE public.{p}_calls (who text, fn text)", token=token))
    for signature, result in LOOKALIKES.items():
        name = signature.split("(")[0]
        ok(pg.sql(f"CREATE FUNCTION public.{signature} LANGUAGE plpgsql AS $$ BEGIN"
                  f" INSERT INTO public.{p}_calls VALUES (current_user, '{name}'); RETURN {result}; END $$"
                  if "SETOF" not in signature else
                  f"CREATE FUNCTION public.{signature} LANGUAGE plpgsql AS $$ BEGIN"
                  f" INSERT INTO public.{p}_calls VALUES (current_user, '{name}'); RETURN; END $$", token=token))
    yield token, p
    with psycopg.connect(pg.database, autocommit=True) as conn:  # other tests' rollbacks must not see them
        for signature in LOOKALIKES:
            conn.execute(f"DROP FUNCTION IF EXISTS public.{signature.split(' RETURNS')[0]}")


def test_no_lookalike_runs_in_checkpoints_rollbacks_or_lists(pg: SqlgateServer, planted: Any) -> None:
    token, p = planted
    ok(pg.sql(f"CREATE TABLE {p}_t (id int PRIMARY KEY)", token=token))
    ok(pg.sql(f"INSERT INTO {p}_t SELECT generate_series(1, 10)", token=token))
    deleted = ok(pg.sql(f"DELETE FROM {p}_t WHERE id > 5", token=token))["checkpoint"]["id"]
    dropped = ok(pg.sql(f"DROP TABLE {p}_t", token=token))["checkpoint"]["id"]
    assert {c["id"] for c in checkpoints(pg, token)} >= {deleted, dropped}
    ok(rollback(pg, deleted, token=token))
    assert rows(pg, f"SELECT count(*) AS n FROM {p}_t", token=token) == [{"n": "10"}]  # int8 as text, as Neon
    with pg.client() as http:  # the purge and the admin's list run the same SQL
        assert http.get("/checkpoints").status_code == 200
    assert rows(pg, f"SELECT who, fn FROM public.{p}_calls", token=token) == []


def test_a_dry_run_plans_as_the_agent(pg: SqlgateServer) -> None:
    """The planner folds an IMMUTABLE function: it must run as the agent's login, whose name it sees."""
    token = pg.token("write", "planner")["token"]
    p = fresh("dr")
    ok(pg.sql(f"CREATE FUNCTION public.{p}_rows() RETURNS int LANGUAGE sql IMMUTABLE"
              " AS $$ SELECT CASE WHEN current_user LIKE 'sqlgate%' THEN 10 ELSE 1000 END $$", token=token))
    plan = ok(pg.sql(f"SELECT * FROM generate_series(1, public.{p}_rows())", token=token, dry_run=True))
    cost = plan["plan"][0]["cost_estimate"] if "plan" in plan else plan["steps"][0]["cost_estimate"]
    assert cost is not None and cost < 1  # 10 rows (0.1), not 1,000 (10): planned as the agent's login
