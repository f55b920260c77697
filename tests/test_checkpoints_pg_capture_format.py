"""PostgreSQL's capture triggers keep changed rows as json written under the agent's session settings,
and a rollback reads them back under sqlgate's own. A setting that changes how values are written as text
would make that inexact: extra_float_digits below 1 rounds floats, another IntervalStyle reads back as
another interval (`-1 day -2 hours` written in sql_standard reads back as `-1 day +2 hours`). An agent
may not change them, by SET, set_config() or a function's SET clause; the settings drivers use are
allowed, and under them a rollback is exact to the last digit."""

from __future__ import annotations

import pytest

from tests.support.sqlgate_server import SqlgateServer
from tests.test_checkpoints import batch, fresh, ok, rollback, rows

INEXACT = [
    "SET extra_float_digits = 0",
    "SET extra_float_digits = -15",
    "SET LOCAL IntervalStyle = sql_standard",
    "SET IntervalStyle TO iso_8601",
    "SET lc_monetary = 'C'",
    "SELECT set_config('extra_float_digits', '-3', false)",
    "SELECT set_config('IntervalStyle', 'sql_standard', true)",
    "CREATE FUNCTION {p}_f() RETURNS int LANGUAGE sql SET extra_float_digits = 0 AS 'SELECT 1'",
]

ALLOWED = [
    "SET extra_float_digits = 3",  # what pgJDBC asks for
    "SET extra_float_digits TO 2",
    "RESET extra_float_digits",
    "SET IntervalStyle = postgres",
    "SET IntervalStyle TO DEFAULT",
]


@pytest.mark.parametrize("statement", INEXACT)
def test_a_setting_that_would_make_checkpoints_inexact_is_refused(pg: SqlgateServer, statement: str) -> None:
    token = pg.token("write", "capture-format")["token"]
    r = pg.sql(statement.format(p=fresh("cf")), token=token)
    assert r.status_code == 403, r.text
    body = r.json()
    assert body["reason"] == "policy.denied" and body["code"] == "42501", r.text
    assert "checkpoints" in body["hint"], r.text


def test_the_settings_drivers_use_are_allowed_and_rollback_is_exact(pg: SqlgateServer) -> None:
    token = pg.token("write", "capture-format")["token"]
    t = fresh("cf")
    ok(pg.sql(f"CREATE TABLE {t} (id int PRIMARY KEY, d float8, r real, i interval, n numeric)", token=token))
    ok(pg.sql(f"INSERT INTO {t} VALUES (1, 0.1234567890123456789, 0.123456789, '-1 day -2 hours', 1.5),"
              " (2, 1e-300, 3.4028235e38, '1 year -3 mons 4 days -05:06:07.891011', 0.000000000000001),"
              " (3, 'NaN', '-Infinity', '0', -0.0)", token=token))
    exact = f"SELECT id, d::text AS d, r::text AS r, i::text AS i, n::text AS n FROM {t} ORDER BY id"
    before = rows(pg, exact, token=token)
    for statement in ALLOWED:
        answer = ok(batch(pg, ["BEGIN", statement, f"DELETE FROM {t}", "COMMIT"], token=token))
        cp = next(r["checkpoint"]["id"] for r in answer["results"] if r.get("checkpoint"))
        assert rows(pg, f"SELECT count(*)::int AS n FROM {t}", token=token) == [{"n": 0}]
        ok(rollback(pg, cp, token=token))
        assert rows(pg, exact, token=token) == before, statement
    # The same values, compared as values too (not only as this session's text).
    assert rows(pg, f"SELECT count(*)::int AS n FROM {t} WHERE (id, d) IN ((1, 0.1234567890123456789::float8),"
                    " (2, 1e-300::float8)) AND i IN ('-1 day -2 hours'::interval,"
                    " '1 year -3 mons 4 days -05:06:07.891011'::interval)", token=token) == [{"n": 2}]
