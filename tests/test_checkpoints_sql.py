"""`SELECT sqlgate.rollback('cp_...')` and `SELECT * FROM sqlgate.checkpoints`, and the
`Checkpoint.run` contract, through the pipeline in process (DuckDB), with branching's
functions registered as proxy.server registers them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from branching.setup import install
from policy.identity import Identity, Role, Token
from proxy.backends.duckdb import DuckDBBackend
from proxy.http.checkpoint_endpoints import register_checkpoint_functions
from proxy.pipeline import Pipeline, Query, Request
from proxy.sql_functions import SqlFunctions
from proxy.trace_sink import TraceSink


async def start_pipeline(tmp_path: Path) -> tuple[DuckDBBackend, TraceSink, Pipeline]:
    """A DuckDB pipeline with checkpoints and the sqlgate.* functions, as proxy.server builds it."""
    backend = DuckDBBackend(tmp_path / "db.duckdb")
    await backend.start()
    checkpointer = await install(backend, retention_days=7.0)
    traces = TraceSink(backend.meta)
    traces.start()
    functions = SqlFunctions()
    pipeline = Pipeline(backend, traces, checkpointer=checkpointer, functions=functions)
    register_checkpoint_functions(functions, pipeline, traces)
    return backend, traces, pipeline


def test_rollback_from_sql(tmp_path: Path) -> None:
    async def scenario() -> None:
        backend, traces, pipeline = await start_pipeline(tmp_path)
        writer = Identity(Token("tok_w", "w", Role.WRITE, "h", datetime.now(UTC), None), "agent")
        other = Identity(Token("tok_o", "o", Role.WRITE, "h2", datetime.now(UTC), None), "other")

        async def run(identity: Identity, sql: str):  # type: ignore[no-untyped-def]
            return (await pipeline.run(Request(identity, (Query(sql),)))).steps[0]

        try:
            await run(writer, "CREATE TABLE s (a int)")
            await run(writer, "INSERT INTO s SELECT * FROM range(10)")
            step = await run(writer, "DELETE FROM s WHERE a < 4")
            cp = step.checkpoint.id
            listed = await run(writer, "SELECT * FROM sqlgate.checkpoints")
            assert cp in [row[0] for row in listed.result.rows]
            assert (await run(other, "SELECT * FROM sqlgate.checkpoints")).result.rows == []
            try:
                await run(other, f"SELECT sqlgate.rollback('{cp}')")
                raise AssertionError("another token rolled back")
            except Exception as exc:  # noqa: BLE001
                assert getattr(exc, "reason", "") == "branching.not_allowed"
            answer = await run(writer, f"SELECT sqlgate.rollback('{cp}', 'statement')")
            assert answer.result.fields[0].name == "checkpoint" and answer.result.rows[0][4] == "4"
            count = await run(writer, "SELECT count(*) FROM s")
            assert count.result.rows == [["10"]]
        finally:
            pipeline.checkpointer.purger.cancel()  # type: ignore[union-attr]
            await traces.close()
            await backend.close()

    asyncio.run(scenario())


def test_checkpoint_run_contract(tmp_path: Path) -> None:
    """Checkpoint.run: the pipeline runs the statement once, through the checkpoint, and it stays undoable."""
    async def scenario() -> None:
        backend, traces, pipeline = await start_pipeline(tmp_path)
        admin = Identity(Token("tok_a", "a", Role.ADMIN, "h", datetime.now(UTC), None), "admin")

        async def run(*sql: str):  # type: ignore[no-untyped-def]
            return (await pipeline.run(Request(admin, tuple(Query(s) for s in sql)))).steps

        try:
            await run("CREATE TABLE r (a int, b varchar)")
            await run("INSERT INTO r SELECT i, i::varchar FROM range(10) t(i)")
            [delete] = await run("DELETE FROM r WHERE a % 2 = 0")
            assert delete.result.command_tag == "DELETE 5"
            steps = await run("UPDATE r SET b = 'x' WHERE a > 5", "DROP TABLE r")
            assert steps[0].result.command_tag == "UPDATE 2"
            await pipeline.checkpointer.rollback(  # type: ignore[union-attr]
                delete.checkpoint.id, "all")
            [count] = await run("SELECT count(*), count(*) FILTER (WHERE b = 'x') FROM r")
            assert count.result.rows == [["10", "0"]]
        finally:
            pipeline.checkpointer.purger.cancel()  # type: ignore[union-attr]
            await traces.close()
            await backend.close()

    asyncio.run(scenario())
