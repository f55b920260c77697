"""Property: after any sequence of writes and destructive statements, rolling
back to any checkpoint (mode all) gives exactly the rows the model had just
before that statement; and undoing that rollback gives the final rows back.
Runs through the real `sqlgate serve` on both backends."""

from __future__ import annotations

import itertools
import os
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.sqlgate_server import SqlgateServer
from tests.test_checkpoints import ok, rollback, rows

_tables = itertools.count()

row = st.tuples(st.integers(0, 6), st.integers(0, 3))
op = st.one_of(
    st.tuples(st.just("insert"), st.lists(row, min_size=1, max_size=3)),
    st.tuples(st.just("delete"), st.integers(0, 2)),
    st.tuples(st.just("update"), st.integers(0, 1), st.integers(1, 5)),
    st.tuples(st.just("truncate")),
)


def apply(model: list[tuple[int, int]], step: Any) -> tuple[str, list[tuple[int, int]]]:
    kind = step[0]
    if kind == "insert":
        values = ", ".join(f"({i}, {v})" for i, v in step[1])
        return f"INSERT INTO {{t}} VALUES {values}", model + list(step[1])
    if kind == "delete":
        return f"DELETE FROM {{t}} WHERE id % 3 = {step[1]}", [r for r in model if r[0] % 3 != step[1]]
    if kind == "update":
        return (f"UPDATE {{t}} SET v = v + {step[2]} WHERE id % 2 = {step[1]}",
                [(i, v + step[2]) if i % 2 == step[1] else (i, v) for i, v in model])
    return "TRUNCATE {t}", []


def table_rows(server: SqlgateServer, table: str) -> Counter[tuple[int, int]]:
    return Counter((int(r["id"]), int(r["v"])) for r in rows(server, f"SELECT id, v FROM {table}"))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(op, min_size=1, max_size=6), pick=st.integers(0, 100))
def test_rollback_to_any_checkpoint_matches_the_model(sqlgate: SqlgateServer, steps: list[Any], pick: int) -> None:
    table = f"hp{next(_tables)}_{os.getpid()}"
    ok(sqlgate.sql(f"CREATE TABLE {table} (id int, v int)"))
    ok(sqlgate.sql(f"INSERT INTO {table} VALUES (1, 0), (2, 1), (3, 2), (3, 2)"))
    model = [(1, 0), (2, 1), (3, 2), (3, 2)]
    taken: list[tuple[str, list[tuple[int, int]]]] = []
    for step in steps:
        statement, after = apply(model, step)
        answer = ok(sqlgate.sql(statement.format(t=table)))
        if answer.get("checkpoint"):
            taken.append((answer["checkpoint"]["id"], model))
        model = after
        assert table_rows(sqlgate, table) == Counter(model), statement
    if not taken:
        return
    checkpoint, then = taken[pick % len(taken)]
    undone = ok(rollback(sqlgate, checkpoint))
    assert table_rows(sqlgate, table) == Counter(then)
    ok(rollback(sqlgate, undone["new_checkpoint"], mode="statement"))
    assert table_rows(sqlgate, table) == Counter(model)
