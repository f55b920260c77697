"""What `sqlgate.cp_take` finds for a row checkpoint on PostgreSQL, on the hot
path of every captured statement: the tables foreign keys reach (at any depth,
through pg_depend, cycles and self-references included), their owned sequences,
and the checkpoint's arguments quoted for the one-message runner (odd table
names, quotes, backslashes, non-ASCII). Through the real `sqlgate serve`:
run, check, roll back, compare."""

from __future__ import annotations

import psycopg
import pytest

from tests.support.sqlgate_server import SqlgateServer
from tests.test_checkpoints import destroy_and_restore, fresh, num, ok, rollback, rows


@pytest.fixture(scope="module")
def agent(pg: SqlgateServer) -> str:
    return pg.token("write", "pg-capture-agent")["token"]  # type: ignore[no-any-return]


def _catalog(server: SqlgateServer, query: str, *args: object) -> set[str]:
    """sqlgate's own records, read as the owner (agents do not see sqlgate.checkpoints' internals)."""
    with psycopg.connect(server.database) as conn:
        return {r[0] for r in conn.execute(query, args).fetchall()}


def test_cascades_at_any_depth_are_captured_and_undone(pg: SqlgateServer, agent: str) -> None:
    p = fresh("cap")
    for statement in (
        f"CREATE TABLE {p}_a (id int PRIMARY KEY, v text)",
        f"CREATE TABLE {p}_b (id serial PRIMARY KEY, a int REFERENCES {p}_a ON DELETE CASCADE,"
        f" parent int REFERENCES {p}_b ON DELETE CASCADE)",
        f"CREATE TABLE {p}_c (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
        f" b int REFERENCES {p}_b ON DELETE CASCADE, note text)",
        # A cycle back to the top: c -> a (SET NULL), a -> c would loop a naive walk.
        f"ALTER TABLE {p}_a ADD COLUMN c int REFERENCES {p}_c ON DELETE SET NULL",
        f"CREATE TABLE {p}_other (id int PRIMARY KEY)",
        f"INSERT INTO {p}_a SELECT i, 'v' || i FROM generate_series(1, 20) g(i)",
        f"INSERT INTO {p}_b (a, parent) SELECT i, NULL FROM generate_series(1, 20) g(i)",
        f"INSERT INTO {p}_b (a, parent) SELECT i, i FROM generate_series(1, 20) g(i)",
        f"INSERT INTO {p}_c (b, note) SELECT i, 'n' || i FROM generate_series(1, 40) g(i)",
        f"UPDATE {p}_a SET c = id + 20",
    ):
        ok(pg.sql(statement, token=agent))
    before_seq = num(pg, f"SELECT last_value AS n FROM {p}_b_id_seq")
    answer = ok(pg.sql(f"DELETE FROM {p}_a WHERE id <= 5", token=agent))
    cp_id = answer["checkpoint"]["id"]
    assert _catalog(pg, "SELECT unnest(relids)::regclass::text FROM sqlgate.checkpoints WHERE id = %s",
                    cp_id) == {f"{p}_a", f"{p}_b", f"{p}_c"}
    assert _catalog(pg, "SELECT jsonb_object_keys(seqs)::oid::regclass::text FROM sqlgate.checkpoints WHERE id = %s",
                    cp_id) == {f"{p}_b_id_seq", f"{p}_c_id_seq"}
    assert num(pg, f"SELECT count(*) AS n FROM {p}_c") == 30  # 5 a -> 10 b -> 10 c gone
    ok(pg.sql(f"INSERT INTO {p}_b (a) VALUES (6)", token=agent))  # a later write mode 'all' undoes, with its id
    ok(rollback(pg, cp_id, token=agent, mode="all"))
    assert num(pg, f"SELECT count(*) AS n FROM {p}_a") == 20
    assert num(pg, f"SELECT count(*) AS n FROM {p}_b") == 40
    assert num(pg, f"SELECT count(*) AS n FROM {p}_c") == 40
    assert num(pg, f"SELECT count(*) AS n FROM {p}_a WHERE c = id + 20") == 20
    assert num(pg, f"SELECT last_value AS n FROM {p}_b_id_seq") == before_seq


@pytest.mark.parametrize("name", ['"we\'ird ""t"" é"', '"back\\slash {a,b}"'])
def test_odd_table_names_go_through_the_one_message_runner(pg: SqlgateServer, agent: str, name: str) -> None:
    p = fresh("capq")
    table = name[:-1] + f' {p}"'
    ok(pg.sql(f"CREATE TABLE {table} (id int PRIMARY KEY, v text, n numeric, at timestamptz, j jsonb, b bytea)",
              token=agent))
    ok(pg.sql(f"INSERT INTO {table} SELECT i, E'q\\'s\\\\' || i, i / 3.0,"
              f" '2024-01-01 00:00+02'::timestamptz + i * interval '1h', json_build_object('k', i),"
              f" decode(md5(i::text), 'hex') FROM generate_series(1, 30) g(i)", token=agent))
    digest = (f"SELECT md5(string_agg(x::text, ',' ORDER BY id)) AS h FROM {table} x")
    before = rows(pg, digest)[0]["h"]
    answer = ok(pg.sql(f"DELETE FROM {table} WHERE id % 2 = 0 -- a trailing comment", token=agent))
    assert num(pg, f"SELECT count(*) AS n FROM {table}") == 15
    ok(rollback(pg, answer["checkpoint"]["id"], token=agent, mode="statement"))
    assert rows(pg, digest)[0]["h"] == before


def test_delete_through_a_checkpointed_table_without_references(pg: SqlgateServer, agent: str) -> None:
    p = fresh("capd")
    ok(pg.sql(f"CREATE TABLE {p}_t (id int PRIMARY KEY, v text)", token=agent))
    ok(pg.sql(f"INSERT INTO {p}_t SELECT i, 'v' || i FROM generate_series(1, 50) g(i)", token=agent))
    destroy_and_restore(pg, agent, p, f"DELETE FROM {p}_t WHERE id BETWEEN 10 AND 30",
                        f"SELECT count(*) AS n FROM {p}_t", 29, mode="statement")


def test_json_text_comes_back_byte_for_byte(pg: SqlgateServer, agent: str) -> None:
    p = fresh("capj")
    ok(pg.sql(f"CREATE TABLE {p}_t (id int PRIMARY KEY, j json)", token=agent))
    ok(pg.sql(f"""INSERT INTO {p}_t VALUES (1, '{{"b" : 1,  "a":2}}')""", token=agent))
    answer = ok(pg.sql(f"DELETE FROM {p}_t", token=agent))
    ok(rollback(pg, answer["checkpoint"]["id"], token=agent, mode="statement"))
    assert rows(pg, f"SELECT j::text AS j FROM {p}_t")[0]["j"] == '{"b" : 1,  "a":2}'
    # An UPDATE is undone in place (a D/I pair with the same key): the old text comes back too.
    answer = ok(pg.sql(f"""UPDATE {p}_t SET j = '{{"a":3}}'""", token=agent))
    ok(rollback(pg, answer["checkpoint"]["id"], token=agent))
    assert rows(pg, f"SELECT j::text AS j FROM {p}_t")[0]["j"] == '{"b" : 1,  "a":2}'
    # An UPDATE that changes only the text (equal as jsonb) is undone too, keyed or not.
    ok(pg.sql(f"CREATE TABLE {p}_n (j json)", token=agent))
    ok(pg.sql(f"""INSERT INTO {p}_n VALUES ('{{"k":1,"k":2}}'), ('{{"k": 2}}')""", token=agent))
    for table in (f"{p}_t", f"{p}_n"):
        before = rows(pg, f"SELECT j::text AS j FROM {table} ORDER BY j::text")
        answer = ok(pg.sql(f"""UPDATE {table} SET j = '{{"k":2, "b":1, "a":2}}'::jsonb::json""", token=agent))
        ok(pg.sql(f"""UPDATE {table} SET j = j::jsonb::text::json""", token=agent))
        ok(rollback(pg, answer["checkpoint"]["id"], token=agent))
        assert rows(pg, f"SELECT j::text AS j FROM {table} ORDER BY j::text") == before
