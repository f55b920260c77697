"""The embedded DuckDB backend.

One database file; every session is its own DuckDB connection (a cursor),
so session settings and temp tables never leak between requests. Sessions
that may write run on a single writer thread, one at a time; reads run on a
small pool of threads beside it. Nothing blocks the event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import duckdb

from proxy import errors
from proxy.backends.base import BackendRole, TxOptions
from proxy.backends.duckdb_meta import DuckDBMeta, create_schema
from proxy.backends.duckdb_params import adapt_params
from proxy.backends.duckdb_result import run_for_result
from proxy.db_errors import duckdb_error as sql_error
from proxy.result import Result
from proxy.trace import Trace
from proxy.txcontrol import TxVerb, transaction_verb

T = TypeVar("T")

_TX_COMMANDS = frozenset({"BEGIN", "START TRANSACTION", "COMMIT", "END", "ROLLBACK", "ABORT"})
# Statements that cannot change the catalog; any other one makes cached catalog facts stale
# (branching.duck_catalog), when it runs and again when its transaction ends.
_CATALOG_SAFE = _TX_COMMANDS | {"SELECT", "VALUES", "TABLE", "FROM", "WITH", "INSERT", "UPDATE", "DELETE", "MERGE",
                                "SHOW", "DESCRIBE", "SUMMARIZE"}


class DuckDBSession:
    dialect = "duckdb"

    def __init__(self, backend: DuckDBBackend, executor: ThreadPoolExecutor, read_only: bool) -> None:
        self.backend = backend
        self.executor = executor
        self.read_only = read_only  # a read token: every transaction is rolled back
        self.conn: duckdb.DuckDBPyConnection | None = None
        self._in_tx = False
        self.dirty = False  # each session has its own DuckDB connection, closed at the end
        self._catalog_changed = False  # this transaction may have changed the catalog

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn)

    async def open(self) -> None:
        self.conn = await self._run(self.backend.db.cursor)
        if self.read_only:
            await self._run(lambda: self._conn.execute("BEGIN TRANSACTION"))
            self._in_tx = True

    @property
    def _conn(self) -> duckdb.DuckDBPyConnection:
        assert self.conn is not None
        return self.conn

    @property
    def in_transaction(self) -> bool:
        return self._in_tx

    async def execute(self, sql: str, params: Sequence[str | None] | None = None, command: str = "") -> Result:
        def run() -> Result:
            cur = self._conn
            if command not in _CATALOG_SAFE:
                self.catalog_changed()
            values = adapt_params(sql, params, cur, self.backend.catalog_version) if params else None
            return run_for_result(cur, sql, values, command)

        future = asyncio.get_running_loop().run_in_executor(self.executor, run)
        try:
            result = await asyncio.wait_for(asyncio.shield(future), self.backend.statement_timeout)
            self._track_transaction(sql, command)
            return result
        except TimeoutError:
            self._conn.interrupt()  # DuckDB has no statement_timeout: interrupt it ourselves
            try:
                await future
            except duckdb.Error:
                pass
            raise errors.SqlgateError(
                "sql.timeout", "57014", "canceling statement due to statement timeout",
                f"Statements may run for {self.backend.statement_timeout:g} s.",
                "make the statement cheaper (add a WHERE or LIMIT)",
            ) from None
        except duckdb.Error as exc:
            raise sql_error(exc) from exc

    def _track_transaction(self, sql: str, command: str) -> None:
        """DuckDB has no transaction-status call: follow the client's own BEGIN/COMMIT/ROLLBACK."""
        if command not in _TX_COMMANDS:
            return
        verb = transaction_verb(sql, "duckdb")
        if verb is TxVerb.BEGIN:
            self._in_tx = True
        elif verb in (TxVerb.COMMIT, TxVerb.ROLLBACK):
            self._in_tx = False
            self._transaction_ended()

    def catalog_changed(self) -> None:
        """The catalog may change in this transaction: cached catalog facts go stale now and at its end."""
        self._catalog_changed = True
        self.backend.catalog_changed()

    def _transaction_ended(self) -> None:
        if self._catalog_changed:
            self._catalog_changed = False
            self.backend.catalog_changed()

    async def begin(self, options: TxOptions | None = None) -> None:
        if not self._in_tx:
            await self.execute("BEGIN TRANSACTION", command="BEGIN")
        self._in_tx = True

    async def commit(self) -> None:
        if self._in_tx and not self.read_only:
            await self.execute("COMMIT", command="COMMIT")
            self._in_tx = False

    async def rollback(self) -> None:
        if self._in_tx:
            try:
                await self._run(lambda: self._conn.execute("ROLLBACK"))
            except duckdb.Error:
                pass  # already aborted by the failing statement
            self._in_tx = False
            self._transaction_ended()

    async def commit_with_traces(self, traces: Sequence[Trace], statement: str = "COMMIT",
                                 command: str = "COMMIT") -> Result:
        if traces:
            await self._run(lambda: self.backend.meta.write_traces(self._conn, traces))
        if statement == "COMMIT" and command == "COMMIT":  # sqlgate's own commit, not a client's
            await self.commit()
            return Result(command_tag="COMMIT")
        return await self.execute(statement, None, command)

    async def close(self) -> None:
        if self.conn is not None:
            await self.rollback()
            await self._run(self._conn.close)


class DuckDBBackend:
    dialect = "duckdb"

    def __init__(self, path: Path, statement_timeout: float = 30.0) -> None:
        self.path = path
        self.statement_timeout = statement_timeout
        self._catalog_versions = itertools.count(1)
        self.catalog_version = 0  # changes whenever the catalog may have (see DuckDBSession.catalog_changed)
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="duckdb-writer")
        self.readers = ThreadPoolExecutor(4, thread_name_prefix="duckdb-reader")
        self.write_lock = asyncio.Lock()

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        self.db = await loop.run_in_executor(self.writer, self._open)
        self.meta = DuckDBMeta(self)

    def _open(self) -> duckdb.DuckDBPyConnection:
        db = duckdb.connect(str(self.path), config={
            "autoinstall_known_extensions": False, "autoload_known_extensions": False,
        })
        create_schema(db)
        # SECURITY.md defence 6: no files, network, extensions or settings from SQL.
        db.execute("SET enable_external_access = false")
        # Row checkpoints name rows by row id: DuckDB's vacuum of mostly-deleted row groups (at a storage
        # checkpoint) renumbers the rows after them. Off: the space of deleted rows is not compacted.
        db.execute("SET GLOBAL max_vacuum_tasks = 0")
        db.execute("SET lock_configuration = true")
        return db

    def catalog_changed(self) -> None:
        self.catalog_version = next(self._catalog_versions)  # atomic: sessions on several threads call it

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.writer, self.db.close)
        self.writer.shutdown(wait=False)
        self.readers.shutdown(wait=False)

    @asynccontextmanager
    async def session(self, role: BackendRole, branch: str, writes: bool) -> AsyncIterator[DuckDBSession]:
        if branch != "main":
            raise errors.branch_not_found(branch)
        read_only = role is BackendRole.READ
        if writes and not read_only:
            async with self.write_lock:
                session = DuckDBSession(self, self.writer, read_only=False)
                await session.open()
                try:
                    yield session
                finally:
                    await session.close()
        else:
            session = DuckDBSession(self, self.readers, read_only=read_only)
            await session.open()
            try:
                yield session
            finally:
                await session.close()

    async def explain_cost(self, sql: str, params: Sequence[str | None] | None,
                           login: BackendRole = BackendRole.READ) -> float | None:
        """DuckDB's planner gives row estimates, not costs: report the top estimate."""
        def run(cur: duckdb.DuckDBPyConnection) -> float | None:
            try:
                values = adapt_params(sql, params, cur, self.catalog_version) if params else None
                rows = cur.execute(f"EXPLAIN {sql}", values).fetchall()
            except duckdb.Error:
                return None
            match = re.search(r"~\s*([\d,]+)\s+rows?", "\n".join(str(r[-1]) for r in rows))
            return float(match.group(1).replace(",", "")) if match else None

        return await self.run_read(run)

    async def run_write(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """Run `fn` with a fresh connection on the writer thread (metadata writes)."""
        async with self.write_lock:
            return await asyncio.get_running_loop().run_in_executor(self.writer, self._with_cursor, fn)

    async def run_read(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.readers, self._with_cursor, fn)

    def _with_cursor(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        cur = self.db.cursor()
        try:
            return fn(cur)
        finally:
            cur.close()
