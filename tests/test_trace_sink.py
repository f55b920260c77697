"""The trace sink writes in batches: a flush takes what is pending when it begins, so under load it
writes one batch per delay rather than chasing every trace that arrives during its own write (which
made one small COPY after another: a sixth of the wire relay's CPU). Real DuckDB metadata store."""

from __future__ import annotations

import asyncio
from pathlib import Path

from proxy.backends.duckdb import DuckDBBackend
from proxy.trace import Trace, TraceFilter
from proxy.trace_sink import TraceSink


def _trace(n: int) -> Trace:
    return Trace(f"rq_{n}", "agent", None, "main", "http", f"SELECT {n}", None, "read", [])


def test_a_flush_writes_what_was_pending_when_it_began(tmp_path: Path) -> None:
    async def scenario() -> None:
        backend = DuckDBBackend(tmp_path / "db.duckdb")
        await backend.start()
        try:
            sink = TraceSink(backend.meta)
            sink.add([_trace(n) for n in range(5)])
            flushing = asyncio.create_task(sink.flush())
            await asyncio.sleep(0)  # the flush has taken the five and is writing them
            sink.add([_trace(n) for n in range(5, 8)])
            await flushing
            assert [t.sql for t in sink.pending] == ["SELECT 5", "SELECT 6", "SELECT 7"]
            stored = await backend.meta.list_traces(TraceFilter(limit=100))
            assert sorted(t.sql for t in stored) == [f"SELECT {n}" for n in range(5)]
            await sink.flush()  # the next flush takes the rest
            assert not sink.pending
            assert len(await backend.meta.list_traces(TraceFilter(limit=100))) == 8
        finally:
            await backend.close()

    asyncio.run(scenario())
