"""A DuckDB row checkpoint of a table whose catalog facts are cached reads no
catalog table (branching.duck_catalog.Catalog.mark): its schema, oid and the
sequences its defaults use come from the cache, valid while the backend's
catalog version is unchanged, and the current schema of an unqualified name
is checked in the same read. Whatever ran in between (DDL, SET schema in one
session while another checkpoints, sequences used), the checkpoint must keep
what the table is now and a rollback must restore it exactly. In process, on
a real DuckDB file, through the backend's own sessions."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from branching.checkpoint import CheckpointContext
from branching.setup import install
from policy.classify import classify
from proxy.backends.base import BackendRole
from proxy.backends.duckdb import DuckDBBackend, DuckDBSession

CTX = CheckpointContext("cost-cache", None, "main", "tr_cost_cache")


async def _statement(backend: Any, cp: Any, session: Any, sql: str, params: list[str] | None = None) -> str | None:
    """As the pipeline runs a statement: begin, checkpoint when destructive, run, commit. The checkpoint id."""
    part = classify(sql, "duckdb").parts[0]
    await session.begin()
    taken = await cp.take(session, part, CTX) if part.targets and part.command in ("DELETE", "UPDATE") else None
    if taken is not None and taken.run is not None:
        await taken.run(lambda: session.execute(part.sql, params, part.command), params)
    else:
        await session.execute(sql, params, part.command)
    await session.commit()
    return taken.id if taken is not None else None


async def _rows(backend: Any, sql: str) -> list[tuple[Any, ...]]:
    return await backend.run_read(lambda c: c.execute(sql).fetchall())  # type: ignore[no-any-return]


def _run(tmp_path: Path, scenario: Any) -> None:
    async def main() -> None:
        backend = DuckDBBackend(tmp_path / "cost_cache.duckdb", 60.0)
        await backend.start()
        cp = await install(backend)
        try:
            await scenario(backend, cp)
        finally:
            cp.purger.cancel()
            await backend.close()

    asyncio.run(main())


async def _one(backend: Any, cp: Any, sql: str, params: list[str] | None = None) -> str | None:
    async with backend.session(BackendRole.OWNER, "main", True) as session:
        return await _statement(backend, cp, session, sql, params)


async def _objects(backend: Any, cp_id: str | None) -> list[dict[str, Any]]:
    assert cp_id is not None
    [(objects,)] = await _rows(backend, f"SELECT objects FROM sqlgate.checkpoints WHERE id = '{cp_id}'")
    return json.loads(objects)  # type: ignore[no-any-return]


def test_table_dropped_and_created_again_between_checkpoints(tmp_path: Path) -> None:
    """Two checkpoints fill the cache; the table is then dropped and created again with another shape and
    a default drawing from a sequence: the next checkpoint keeps that sequence, and rollbacks are exact."""
    async def scenario(backend: Any, cp: Any) -> None:
        await _one(backend, cp, "CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR)")
        await _one(backend, cp, "INSERT INTO t SELECT i, 'v' || i FROM range(100) r(i)")
        before = await _rows(backend, "SELECT * FROM t ORDER BY id")
        first = await _one(backend, cp, "DELETE FROM t WHERE id < 10")
        second = await _one(backend, cp, "DELETE FROM t WHERE id BETWEEN 50 AND 59")
        assert (await _objects(backend, second))[0]["watermark"] == 99
        await cp.rollback(first, "all")  # the second too
        assert await _rows(backend, "SELECT * FROM t ORDER BY id") == before
        await _one(backend, cp, "DROP TABLE t")
        await _one(backend, cp, "CREATE SEQUENCE ids START 1000")
        await _one(backend, cp, "CREATE TABLE t (id INTEGER DEFAULT nextval('ids'), v VARCHAR, w INTEGER DEFAULT 7)")
        await _one(backend, cp, "INSERT INTO t (v) SELECT 'n' || i FROM range(20) r(i)")
        again = await _rows(backend, "SELECT * FROM t ORDER BY id")
        third = await _one(backend, cp, "DELETE FROM t WHERE id % 2 = 0")
        [obj] = await _objects(backend, third)
        assert obj["sequences"] == {"main.ids": 1019} and obj["watermark"] == 19 and obj["live_rows"] == 20
        await _one(backend, cp, "INSERT INTO t (v) VALUES ('later')")  # draws 1020
        fourth = await _one(backend, cp, "UPDATE t SET v = 'u' WHERE id < 1010")  # the cache is warm again
        assert (await _objects(backend, fourth))[0]["sequences"] == {"main.ids": 1020}
        await cp.rollback(third, "all")
        assert await _rows(backend, "SELECT * FROM t ORDER BY id") == again
        assert await _rows(backend, "SELECT nextval('ids')") == [(1020,)]

    _run(tmp_path, scenario)


def test_a_session_whose_current_schema_differs_from_the_cached_one(tmp_path: Path) -> None:
    """Session b fills the cache for `t` as main.t; session a, which ran SET schema before, deletes from
    `t`, its s.t: the checkpoint keeps s.t (not main.t), and rolling back restores s.t exactly."""
    async def scenario(backend: Any, cp: Any) -> None:
        for sql in ("CREATE SCHEMA s", "CREATE TABLE main.t (id INTEGER, v VARCHAR)",
                    "CREATE TABLE s.t (id INTEGER, v VARCHAR)",
                    "INSERT INTO main.t SELECT i, 'main' || i FROM range(50) r(i)",
                    "INSERT INTO s.t SELECT i, 's' || i FROM range(30) r(i)"):
            await _one(backend, cp, sql)
        main_before = await _rows(backend, "SELECT * FROM main.t ORDER BY id")
        s_before = await _rows(backend, "SELECT * FROM s.t ORDER BY id")
        a = DuckDBSession(backend, backend.writer, read_only=False)
        b = DuckDBSession(backend, backend.writer, read_only=False)
        await a.open()
        await b.open()
        try:
            await a.execute("SET schema = 's'", None, "SET")
            in_main = [await _statement(backend, cp, b, "DELETE FROM t WHERE id < 5") for _ in range(2)]
            in_s = await _statement(backend, cp, a, "DELETE FROM t WHERE id >= 25")
            [obj] = await _objects(backend, in_s)
            assert (obj["schema"], obj["live_rows"], obj["watermark"]) == ("s", 30, 29)
            assert await _rows(backend, "SELECT count(*) FROM s.t") == [(25,)]
            assert await _rows(backend, "SELECT count(*) FROM main.t") == [(45,)]
            again = await _statement(backend, cp, a, "DELETE FROM t WHERE id = 0")  # cached as s.t now
            assert (await _objects(backend, again))[0]["schema"] == "s"
            back_in_main = await _statement(backend, cp, b, "DELETE FROM t WHERE id = 49")
            assert (await _objects(backend, back_in_main))[0]["schema"] == "main"
        finally:
            await a.close()
            await b.close()
        for cp_id in (back_in_main, again, in_s, *reversed(in_main)):
            await cp.rollback(cp_id, "statement")
        assert await _rows(backend, "SELECT * FROM main.t ORDER BY id") == main_before
        assert await _rows(backend, "SELECT * FROM s.t ORDER BY id") == s_before

    _run(tmp_path, scenario)


def test_watermark_from_a_stale_hint(tmp_path: Path) -> None:
    """The watermark's read starts from the table's previous watermark: rows added (many) or a deleted
    tail since give the same watermark and live count as a fresh catalog read, and mode 'all' is exact."""
    async def scenario(backend: Any, cp: Any) -> None:
        await _one(backend, cp, "CREATE TABLE t (id INTEGER, v VARCHAR)")
        await _one(backend, cp, "INSERT INTO t SELECT i, 'v' || i FROM range(10) r(i)")
        await _one(backend, cp, "DELETE FROM t WHERE id = 0")  # the cache and hint: watermark 9
        await _one(backend, cp, "INSERT INTO t SELECT i, 'v' || i FROM range(10, 100000) r(i)")
        grown = await _one(backend, cp, "DELETE FROM t WHERE id = 1")
        assert [(o["watermark"], o["live_rows"]) for o in await _objects(backend, grown)] == [(99999, 99999)]
        await _one(backend, cp, "DELETE FROM t WHERE id >= 20")  # a deleted tail far below the hint
        before = await _rows(backend, "SELECT * FROM t ORDER BY id")
        tail = await _one(backend, cp, "UPDATE t SET v = 'x' WHERE id = 5")
        assert [(o["watermark"], o["live_rows"]) for o in await _objects(backend, tail)] == [(19, 18)]
        await _one(backend, cp, "INSERT INTO t VALUES (-1, 'later')")
        await cp.rollback(tail, "all")
        assert await _rows(backend, "SELECT * FROM t ORDER BY id") == before

    _run(tmp_path, scenario)


def test_update_keeps_old_rows_by_its_own_where(tmp_path: Path) -> None:
    """An UPDATE naming no other table keeps its old rows by its own WHERE (alias, parameters); one with
    FROM by row ids. All roll back exactly, latest first."""
    async def scenario(backend: Any, cp: Any) -> None:
        await _one(backend, cp, "CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR, n INTEGER)")
        await _one(backend, cp, "CREATE TABLE o (id INTEGER, w VARCHAR)")
        await _one(backend, cp, "INSERT INTO t SELECT i, 'v' || i, i FROM range(40) r(i)")
        await _one(backend, cp, "INSERT INTO o SELECT i, 'o' || i FROM range(0, 40, 3) r(i)")
        before = await _rows(backend, "SELECT * FROM t ORDER BY id")
        plain = await _one(backend, cp, "UPDATE t AS x SET v = $1, n = x.n * 2 WHERE x.id BETWEEN $2 AND $3",
                           ["changed", "5", "14"])
        [obj] = await _objects(backend, plain)
        assert await _rows(backend, f"SELECT count(*), min(id), max(id) FROM {obj['old']}") == [(10, 5, 14)]
        joined = await _one(backend, cp, "UPDATE t SET v = o.w FROM o WHERE t.id = o.id AND t.id > $1", ["10"])
        [obj] = await _objects(backend, joined)
        assert await _rows(backend, f"SELECT count(*) FROM {obj['old']}") == [(10,)]
        key = await _one(backend, cp, "UPDATE t SET id = id + 1000 WHERE id >= 35")  # an indexed column
        await cp.rollback(key, "all")
        await cp.rollback(joined, "statement")
        await cp.rollback(plain, "statement")
        assert await _rows(backend, "SELECT * FROM t ORDER BY id") == before

    _run(tmp_path, scenario)
