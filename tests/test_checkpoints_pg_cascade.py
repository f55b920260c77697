"""What a CASCADE takes from OTHER tables on PostgreSQL (a foreign key of a table that
references the dropped table, schema or column; checks, defaults, indexes) is kept as a
definition, and the checkpoint covers those tables' later writes: mode 'all' undoes them
(and lists their statements) before the definitions are re-applied; mode 'statement' keeps
them, and when one breaks a kept definition, lists it as a conflict and changes nothing.
A failure no capture could prevent names the constraint and the table, with a next step."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.sqlgate_server import SqlgateServer
from tests.test_checkpoints import checkpoints, fresh, ok, rollback, rows
from tests.test_checkpoints_pg_columns import full, same
from tests.test_checkpoints_pg_schema import make_schema, schema_snapshot


@pytest.fixture(scope="module")
def agent(pg: SqlgateServer) -> str:
    return pg.token("write", "pg-cascade-agent")["token"]  # type: ignore[no-any-return]


def parent_child(server: SqlgateServer, p: str, token: str) -> None:
    """p(id PK); c(id PK, p REFERENCES p, v DEFAULT 'd', n serial), with rows."""
    for statement in (
        f"CREATE TABLE {p}_p (id int PRIMARY KEY)",
        f"CREATE TABLE {p}_c (id int PRIMARY KEY, p int REFERENCES {p}_p, v text DEFAULT 'd', n serial)",
        f"INSERT INTO {p}_p VALUES (1), (2)",
        f"INSERT INTO {p}_c (id, p) VALUES (10, 1), (11, 2)",
    ):
        ok(server.sql(statement, token=token))


def fk_of(server: SqlgateServer, table: str) -> list[str]:
    return [r["def"] for r in rows(server, f"SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint"
                                           f" WHERE conrelid = '{table}'::regclass AND contype = 'f'")]


def conflict(r: Any) -> list[dict[str, Any]]:
    assert r.status_code == 409 and r.json()["reason"] == "branching.rollback_conflict", r.text
    return r.json()["conflicts"]  # type: ignore[no-any-return]


def test_drop_table_cascade_mode_all_undoes_the_referencing_tables_later_writes(
        pg: SqlgateServer, agent: str) -> None:
    p = fresh("cas")
    parent_child(pg, p, agent)
    before = full(pg, p)
    cp = ok(pg.sql(f"DROP TABLE {p}_p CASCADE", token=agent))["checkpoint"]["id"]
    assert fk_of(pg, f"{p}_c") == []
    later = [ok(pg.sql(q, token=agent))["trace_id"] for q in (
        f"INSERT INTO {p}_c (id, p) VALUES (12, 99)",  # no foreign key now: allowed, and breaks it
        f"UPDATE {p}_c SET v = 'changed' WHERE id = 10",
    )]
    undone = ok(rollback(pg, cp, token=agent))
    assert set(later) <= set(undone["undone_traces"]), undone
    assert undone["objects_restored"] == [f"public.{p}_p"]
    same(pg, p, before)  # rows, the foreign key, the default, the serial's value
    assert fk_of(pg, f"{p}_c") == [f"FOREIGN KEY (p) REFERENCES {p}_p(id)"]
    # The referencing table stays covered: a later write to it is captured and undone as before.
    cp = ok(pg.sql(f"DELETE FROM {p}_c WHERE id = 11", token=agent))["checkpoint"]["id"]
    ok(rollback(pg, cp, token=agent))
    same(pg, p, before)


def test_drop_table_cascade_mode_statement(pg: SqlgateServer, agent: str) -> None:
    """A later write that breaks the kept foreign key is a conflict and nothing changes; without it the
    foreign key comes back and the referencing table's unrelated later write stays."""
    p = fresh("cas")
    parent_child(pg, p, agent)
    before = full(pg, p)
    cp = ok(pg.sql(f"DROP TABLE {p}_p CASCADE", token=agent))["checkpoint"]["id"]
    ok(pg.sql(f"INSERT INTO {p}_c (id, p) VALUES (12, 99)", token=agent))
    ok(pg.sql(f"UPDATE {p}_c SET v = 'changed' WHERE id = 10", token=agent))
    state = full(pg, p)
    [c] = conflict(rollback(pg, cp, token=agent, mode="statement"))
    assert c["table"] == f"public.{p}_c" and c["constraint"] == f"{p}_c_p_fkey", c
    assert "(p)=(99)" in c["conflict"], c
    assert full(pg, p) == state
    ok(pg.sql(f"DELETE FROM {p}_c WHERE id = 12", token=agent))
    undone = ok(rollback(pg, cp, token=agent, mode="statement"))
    assert undone["undone_checkpoints"] == [cp]
    after = full(pg, p)
    assert after["data"][f"{p}_p"] == before["data"][f"{p}_p"]
    # The serial's value stays where the later insert took it: only the DROP is undone.
    assert [s for s in after["schema"] if s[0] != "seq"] == [s for s in before["schema"] if s[0] != "seq"]
    assert rows(pg, f"SELECT id, p, v FROM {p}_c ORDER BY id") == [
        {"id": 10, "p": 1, "v": "changed"}, {"id": 11, "p": 2, "v": "d"}]


def _no_capture(snap: dict[str, Any]) -> dict[str, Any]:
    """sqlgate's own capture triggers stay once installed: not part of what the agent sees changed."""
    return {**snap, "schema": [s for s in snap["schema"] if not (s[0] == "trg" and s[2].startswith("sqlgate_"))]}


@pytest.mark.parametrize("mode", ["all", "statement"])
def test_drop_schema_cascade_and_later_writes_to_a_table_outside(pg: SqlgateServer, agent: str, mode: str) -> None:
    """{p}_o, outside the schema, references {s}.t and has a default and a check that use the schema."""
    p = fresh("cas")
    s = f"{p}_s"
    make_schema(pg, s, p, agent)
    before = _no_capture(schema_snapshot(pg, s, p))
    [ticket] = rows(pg, f"SELECT ticket FROM {p}_o WHERE id = 1")
    cp = ok(pg.sql(f"DROP SCHEMA {s} CASCADE", token=agent))["checkpoint"]["id"]
    later = [ok(pg.sql(q, token=agent))["trace_id"] for q in (
        f"INSERT INTO {p}_o (id, t_id, ticket, score) VALUES (100, 999, 1, 600)",  # breaks the foreign key, check
        f"UPDATE {p}_o SET ticket = 7 WHERE id = 1",
    )]
    if mode == "statement":
        state = schema_snapshot(pg, s, p)
        found = conflict(rollback(pg, cp, token=agent, mode="statement"))
        assert sorted(c["constraint"] for c in found) == [f"{p}_o_score_check", f"{p}_o_t_id_fkey"], found
        assert {c["table"] for c in found} == {f"public.{p}_o"}
        assert schema_snapshot(pg, s, p) == state
        ok(pg.sql(f"DELETE FROM {p}_o WHERE id = 100", token=agent))
        ok(rollback(pg, cp, token=agent, mode="statement"))
        assert rows(pg, f"SELECT ticket FROM {p}_o WHERE id = 1") == [{"ticket": 7}]  # kept
        ok(pg.sql(f"UPDATE {p}_o SET ticket = {ticket['ticket']} WHERE id = 1", token=agent))  # as before
    else:
        undone = ok(rollback(pg, cp, token=agent))
        assert set(later) <= set(undone["undone_traces"]), undone
    assert _no_capture(schema_snapshot(pg, s, p)) == before


@pytest.mark.parametrize("mode", ["all", "statement"])
def test_drop_column_cascade_and_later_writes_to_the_referencing_table(
        pg: SqlgateServer, agent: str, mode: str) -> None:
    """DROP COLUMN k CASCADE drops {p}_r's foreign key on it; a later write to {p}_r breaks that key."""
    p = fresh("cas")
    for statement in (
        f"CREATE TABLE {p}_t (id int PRIMARY KEY, k int UNIQUE, x text)",
        f"CREATE TABLE {p}_r (id int PRIMARY KEY, t_k int REFERENCES {p}_t (k), note text)",
        f"INSERT INTO {p}_t SELECT i, i * 10, 'x' || i FROM generate_series(1, 5) g(i)",
        f"INSERT INTO {p}_r SELECT i, i * 10, 'n' FROM generate_series(1, 3) g(i)",
    ):
        ok(pg.sql(statement, token=agent))
    before = full(pg, p)
    answer = ok(pg.sql(f"ALTER TABLE {p}_t DROP COLUMN k CASCADE", token=agent))
    cp = answer["checkpoint"]["id"]
    assert fk_of(pg, f"{p}_r") == []
    later = [ok(pg.sql(q, token=agent))["trace_id"] for q in (
        f"INSERT INTO {p}_r VALUES (4, 12345, 'n')",
        f"UPDATE {p}_r SET note = 'later' WHERE id = 1",
    )]
    if mode == "statement":
        state = full(pg, p)
        [c] = conflict(rollback(pg, cp, token=agent, mode="statement"))
        assert c["table"] == f"public.{p}_r" and c["constraint"] == f"{p}_r_t_k_fkey", c
        assert full(pg, p) == state
        ok(pg.sql(f"DELETE FROM {p}_r WHERE id = 4", token=agent))
        ok(rollback(pg, cp, token=agent, mode="statement"))
        after = full(pg, p)
        assert after["schema"] == before["schema"] and after["extra"] == before["extra"]
        assert rows(pg, f"SELECT id, note FROM {p}_r ORDER BY id") == [
            {"id": 1, "note": "later"}, {"id": 2, "note": "n"}, {"id": 3, "note": "n"}]
        assert after["data"][f"{p}_t"] == before["data"][f"{p}_t"]
    else:
        undone = ok(rollback(pg, cp, token=agent))
        assert set(later) <= set(undone["undone_traces"]), undone
        same(pg, p, before)


def test_a_break_no_capture_covers_is_named_with_a_next_step(pg: SqlgateServer, agent: str) -> None:
    """DROP COLUMN code keeps {p}_t's foreign key to {p}_ref; a later delete from {p}_ref (a table the
    statement did not touch, so not covered) breaks it: the rollback names it and says what to do."""
    p = fresh("cas")
    for statement in (
        f"CREATE TABLE {p}_ref (code text PRIMARY KEY)",
        f"CREATE TABLE {p}_t (id int PRIMARY KEY, code text REFERENCES {p}_ref, x int)",
        f"INSERT INTO {p}_ref VALUES ('a'), ('b')",
        f"INSERT INTO {p}_t VALUES (1, 'a', 1), (2, 'b', 2)",
    ):
        ok(pg.sql(statement, token=agent))
    before = full(pg, p)
    cp = ok(pg.sql(f"ALTER TABLE {p}_t DROP COLUMN code", token=agent))["checkpoint"]["id"]
    ok(pg.sql(f"DELETE FROM {p}_ref WHERE code = 'a'", token=agent))
    state = full(pg, p)
    r = rollback(pg, cp, token=agent)
    assert r.status_code == 409 and r.json()["reason"] == "branching.rollback_failed", r.text
    body = r.json()
    assert f"{p}_t_code_fkey" in body["message"] and f"public.{p}_t" in body["message"], body
    assert body["code"] == "23503" and "retry" not in body["next"] and f"{p}_t" in body["next"], body
    assert full(pg, p) == state
    [c] = conflict(rollback(pg, cp, token=agent, mode="statement"))
    assert c["constraint"] == f"{p}_t_code_fkey"
    ok(pg.sql(f"INSERT INTO {p}_ref VALUES ('a')", token=agent))  # the step it named
    ok(rollback(pg, cp, token=agent))
    same(pg, p, before)


@pytest.mark.parametrize("mode", ["all", "statement"])
def test_columns_named_like_the_capture_aliases(pg: SqlgateServer, agent: str, mode: str) -> None:
    """Capture triggers aggregate whole rows (o.*, n.*, x.*): a column named o, n or x is not the row."""
    p = fresh("cas")
    ok(pg.sql(f"CREATE TABLE {p}_t (id int PRIMARY KEY, o int, n text, x int)", token=agent))
    ok(pg.sql(f"INSERT INTO {p}_t SELECT i, i, 'n' || i, i * 2 FROM generate_series(1, 6) g(i)", token=agent))
    before = full(pg, p)
    cp = ok(pg.sql(f"UPDATE {p}_t SET o = o + 100, n = 'changed' WHERE id <= 3", token=agent))["checkpoint"]["id"]
    ok(rollback(pg, cp, token=agent, mode=mode))
    same(pg, p, before)
    cp = ok(pg.sql(f"TRUNCATE {p}_t", token=agent))["checkpoint"]["id"]
    ok(rollback(pg, cp, token=agent, mode=mode))
    same(pg, p, before)


def test_a_kept_not_null_broken_since_is_named(pg: SqlgateServer, agent: str) -> None:
    """DROP NOT NULL, then a later NULL: mode 'statement' keeps that row, so putting NOT NULL back is a
    conflict naming the column and table, nothing changed; mode 'all' undoes the row with the statement
    (the table is captured from the checkpoint on) and puts NOT NULL back."""
    p = fresh("cas")
    ok(pg.sql(f"CREATE TABLE {p}_t (id int PRIMARY KEY, v text NOT NULL)", token=agent))
    ok(pg.sql(f"INSERT INTO {p}_t VALUES (1, 'a')", token=agent))
    before = full(pg, p)
    cp = ok(pg.sql(f"ALTER TABLE {p}_t ALTER COLUMN v DROP NOT NULL", token=agent))["checkpoint"]["id"]
    ok(pg.sql(f"INSERT INTO {p}_t VALUES (2, NULL)", token=agent))
    state = full(pg, p)
    [c] = conflict(rollback(pg, cp, token=agent, mode="statement"))
    assert c["constraint"] == "NOT NULL on v" and c["table"] == f"public.{p}_t", c
    assert full(pg, p) == state
    undone = ok(rollback(pg, cp, token=agent))
    assert undone["rows_removed"] == 1
    same(pg, p, before)


# --- DROP CONSTRAINT ... CASCADE: the foreign keys of other tables that use the dropped key ---------------

def keyed_tables(server: SqlgateServer, p: str, token: str) -> None:
    """{p}_p(id PK, u UNIQUE, up REFERENCES {p}_p): {p}_a references its key, {p}_b its key and u."""
    for statement in (
        f"CREATE TABLE {p}_p (id int PRIMARY KEY, u int UNIQUE, up int REFERENCES {p}_p)",
        f"CREATE TABLE {p}_a (id int PRIMARY KEY, p int REFERENCES {p}_p ON DELETE CASCADE, note text)",
        f"CREATE TABLE {p}_b (id int PRIMARY KEY, p int, pu int REFERENCES {p}_p (u) DEFERRABLE, note text)",
        f"INSERT INTO {p}_p VALUES (1, 10, NULL), (2, 20, 1), (3, 30, 2)",
        f"INSERT INTO {p}_a VALUES (1, 1, 'a'), (2, 3, 'a')",
        f"INSERT INTO {p}_b VALUES (1, 2, 20, 'b'), (2, 3, 30, 'b')",
        f"ALTER TABLE {p}_b ADD CONSTRAINT {p}_b_to_p FOREIGN KEY (p) REFERENCES {p}_p (id) NOT VALID",
        f"COMMENT ON CONSTRAINT {p}_b_to_p ON {p}_b IS 'kept too'",
    ):
        ok(server.sql(statement, token=token))


# (the constraint dropped, a later write that breaks a foreign key it took, that key's table and name)
KEYS = [
    ("pkey", "INSERT INTO {p}_a VALUES (3, 99, 'breaks')", "a", "p_fkey"),
    ("u_key", "INSERT INTO {p}_b VALUES (3, 1, 99, 'breaks')", "b", "pu_fkey"),
]


def constraint_comment(server: SqlgateServer, p: str) -> list[dict[str, Any]]:
    return rows(server, f"SELECT obj_description(oid, 'pg_constraint') AS c FROM pg_constraint"
                        f" WHERE conname = '{p}_b_to_p'")


@pytest.mark.parametrize("key", KEYS, ids=lambda k: k[0])
def test_drop_key_constraint_cascade_mode_all_brings_back_other_tables_foreign_keys(
        pg: SqlgateServer, agent: str, key: Any) -> None:
    p = fresh("cas")
    keyed_tables(pg, p, agent)
    before = full(pg, p)
    suffix, breaks, _, _ = key
    cp = ok(pg.sql(f"ALTER TABLE {p}_p DROP CONSTRAINT {p}_p_{suffix} CASCADE", token=agent))["checkpoint"]["id"]
    dropped = full(pg, p)
    assert dropped["schema"] != before["schema"]
    if suffix == "pkey":
        assert fk_of(pg, f"{p}_a") == [] and fk_of(pg, f"{p}_p") == []
    assert len(fk_of(pg, f"{p}_b")) == 1
    later = [ok(pg.sql(q.format(p=p), token=agent))["trace_id"] for q in (
        breaks, f"UPDATE {p}_b SET note = 'later' WHERE id = 1", f"DELETE FROM {p}_a WHERE id = 2")]
    state = full(pg, p)
    undone = ok(rollback(pg, cp, token=agent))
    assert set(later) <= set(undone["undone_traces"]), undone
    same(pg, p, before)  # the key, the foreign keys of {p}_a, {p}_b and {p}_p itself, every row
    assert constraint_comment(pg, p) == [{"c": "kept too"}]
    # Undoing the rollback runs the DROP again and puts the later rows back: the state it undid.
    redone = ok(rollback(pg, undone["new_checkpoint"], token=agent))
    assert full(pg, p) == state
    ok(rollback(pg, redone["new_checkpoint"], token=agent))
    same(pg, p, before)


@pytest.mark.parametrize("key", KEYS, ids=lambda k: k[0])
def test_drop_key_constraint_cascade_mode_statement(pg: SqlgateServer, agent: str, key: Any) -> None:
    """A later write that breaks a foreign key the CASCADE took is a listed conflict, nothing changed;
    once it is gone, the key and every foreign key come back and unrelated later writes stay."""
    p = fresh("cas")
    keyed_tables(pg, p, agent)
    before = full(pg, p)
    suffix, breaks, table, name = key
    cp = ok(pg.sql(f"ALTER TABLE {p}_p DROP CONSTRAINT {p}_p_{suffix} CASCADE", token=agent))["checkpoint"]["id"]
    ok(pg.sql(breaks.format(p=p), token=agent))
    ok(pg.sql(f"UPDATE {p}_b SET note = 'later' WHERE id = 1", token=agent))
    state = full(pg, p)
    [c] = conflict(rollback(pg, cp, token=agent, mode="statement"))
    assert c["constraint"] == f"{p}_{table}_{name}" and c["table"] == f"public.{p}_{table}", c
    assert "=(99)" in c["conflict"], c
    assert full(pg, p) == state
    ok(pg.sql(f"DELETE FROM {p}_{table} WHERE id = 3", token=agent))
    dropped = full(pg, p)
    undone = ok(rollback(pg, cp, token=agent, mode="statement"))
    assert undone["undone_checkpoints"] == [cp]
    after = full(pg, p)
    assert after["schema"] == before["schema"] and after["extra"] == before["extra"]
    assert constraint_comment(pg, p) == [{"c": "kept too"}]
    assert rows(pg, f"SELECT id, note FROM {p}_b ORDER BY id") == [{"id": 1, "note": "later"}, {"id": 2, "note": "b"}]
    # Undoing that rollback drops the key (and what its CASCADE takes) again.
    ok(rollback(pg, undone["new_checkpoint"], token=agent))
    assert full(pg, p) == dropped


@pytest.mark.parametrize("mode", ["all", "statement"])
def test_drop_check_or_foreign_key_constraint_cascade(pg: SqlgateServer, agent: str, mode: str) -> None:
    """Nothing depends on a check or a foreign key: CASCADE takes only the constraint, which comes back."""
    p = fresh("cas")
    keyed_tables(pg, p, agent)
    ok(pg.sql(f"ALTER TABLE {p}_a ADD CONSTRAINT {p}_a_note CHECK (note <> '')", token=agent))
    before = full(pg, p)
    for statement in (f"ALTER TABLE {p}_a DROP CONSTRAINT {p}_a_note CASCADE",
                      f"ALTER TABLE {p}_a DROP CONSTRAINT {p}_a_p_fkey CASCADE",
                      f"ALTER TABLE {p}_p DROP CONSTRAINT {p}_p_up_fkey CASCADE"):
        cp = ok(pg.sql(statement, token=agent))["checkpoint"]["id"]
        assert full(pg, p) != before, statement
        ok(rollback(pg, cp, token=agent, mode=mode))
        same(pg, p, before)


def test_drop_key_constraint_without_cascade_is_refused_by_postgresql(pg: SqlgateServer, agent: str) -> None:
    p = fresh("cas")
    keyed_tables(pg, p, agent)
    before = full(pg, p)
    known = {c["id"] for c in checkpoints(pg)}
    for suffix in ("pkey", "u_key"):
        r = pg.sql(f"ALTER TABLE {p}_p DROP CONSTRAINT {p}_p_{suffix}", token=agent)
        assert r.status_code == 400 and r.json()["code"] == "2BP01", r.text
    assert full(pg, p) == before
    assert {c["id"] for c in checkpoints(pg)} == known


def test_drop_key_constraint_cascade_that_would_drop_a_view_is_refused(pg: SqlgateServer, agent: str) -> None:
    """A view grouped by the primary key depends on it: sqlgate keeps no such view, so it refuses."""
    p = fresh("cas")
    keyed_tables(pg, p, agent)
    ok(pg.sql(f"CREATE VIEW {p}_v AS SELECT id, u FROM {p}_p GROUP BY id", token=agent))
    before = full(pg, p)
    known = {c["id"] for c in checkpoints(pg)}
    r = pg.sql(f"ALTER TABLE {p}_p DROP CONSTRAINT {p}_p_pkey CASCADE", token=agent)
    assert r.status_code in (400, 403) and r.json()["code"] == "0A000", r.text
    assert f"{p}_v" in r.json()["message"] and r.json()["hint"], r.text
    assert full(pg, p) == before
    assert {c["id"] for c in checkpoints(pg)} == known


def test_several_drop_constraint_cascade_in_one_statement(pg: SqlgateServer, agent: str) -> None:
    """Every DROP CONSTRAINT ... CASCADE of one ALTER TABLE keeps what it takes; IF EXISTS of none, nothing."""
    p = fresh("cas")
    keyed_tables(pg, p, agent)
    before = full(pg, p)
    ok(pg.sql(f"ALTER TABLE {p}_p DROP CONSTRAINT IF EXISTS {p}_nowhere CASCADE", token=agent))
    same(pg, p, before)
    cp = ok(pg.sql(f"ALTER TABLE {p}_p DROP CONSTRAINT {p}_p_u_key CASCADE, DROP CONSTRAINT {p}_p_pkey CASCADE",
                   token=agent))["checkpoint"]["id"]
    assert fk_of(pg, f"{p}_a") == fk_of(pg, f"{p}_b") == fk_of(pg, f"{p}_p") == []
    ok(pg.sql(f"INSERT INTO {p}_b VALUES (3, 99, 99, 'breaks')", token=agent))
    ok(rollback(pg, cp, token=agent))
    same(pg, p, before)
    assert constraint_comment(pg, p) == [{"c": "kept too"}]
