"""Traces that have no transaction of their own to commit with: autocommit
reads, refusals, failures and rolled-back requests. They are written in
batches up to 100 ms later, so a busy read path costs one metadata write per
batch rather than per statement (measured: `POST /sql` 0.60 -> 0.65 of a bare
pass-through). Committed work never waits here: its trace commits with it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from proxy.backends.base import MetaStore
from proxy.trace import Trace

log = logging.getLogger("sqlgate.traces")
MAX_ATTEMPTS = 5


class TraceWriteError(Exception):
    """Some traces could not be written this time; they stay pending."""


class TraceSink:
    def __init__(self, meta: MetaStore, delay: float = 0.1, batch: int = 1000) -> None:
        self.meta = meta
        self.delay = delay
        self.batch = batch
        self.pending: list[Trace] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._attempts: dict[str, int] = {}

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sqlgate-trace-sink")

    def add(self, traces: Sequence[Trace]) -> None:
        self.pending.extend(traces)
        self._wake.set()

    def add_one(self, trace: Trace) -> None:
        """`add([trace])`, for the wire relay's hot path (no list, no call when the writer is already woken)."""
        self.pending.append(trace)
        wake = self._wake
        if not wake._value:  # noqa: SLF001 - Event.is_set() without the call
            wake.set()

    async def flush(self) -> None:
        """Write everything pending now (GET /traces calls this first)."""
        async with self._lock:
            # What is pending now, not what arrives meanwhile: under load, traces arrive
            # during every write, and chasing them made one small COPY after another.
            taken, self.pending = self.pending, []
            try:
                for start in range(0, len(taken), self.batch):
                    chunk = taken[start:start + self.batch]
                    try:
                        await self.meta.insert_traces(chunk)
                    except Exception:
                        await self._write_one_by_one(chunk)
            except BaseException:
                self.pending[:0] = taken[start + self.batch:]  # not written yet: kept for the next flush
                raise

    async def _write_one_by_one(self, chunk: list[Trace]) -> None:
        """A failed batch: write its traces singly, so one bad row cannot hold back
        the rest. What still fails is retried on later flushes, then logged whole."""
        retry = []
        for trace in chunk:
            try:
                await self.meta.insert_traces([trace])
            except Exception as exc:
                attempts = self._attempts.get(trace.id, 0) + 1
                if attempts < MAX_ATTEMPTS:
                    self._attempts[trace.id] = attempts
                    retry.append(trace)
                else:
                    self._attempts.pop(trace.id, None)
                    log.error("dropping trace after %d attempts (%s): %r", attempts, exc, trace.public())
        if retry:
            self.pending[:0] = retry
            raise TraceWriteError(f"{len(retry)} traces could not be written yet")

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self.delay)
            try:
                await self.flush()
            except Exception:
                await asyncio.sleep(1.0)
                self._wake.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.flush()
