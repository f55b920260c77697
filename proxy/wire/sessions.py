"""The backend sessions a wire client keeps for its lifetime (its
SessionSource), one per backend login, each wrapped so that COPY streams to
and from the client and a CancelRequest can reach the running statement."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from proxy import errors
from proxy.backends.base import BackendRole, Session, TxOptions
from proxy.backends.postgres_logins import custom_names
from proxy.result import Field, Result, result_from_pgresult
from proxy.trace import Trace


class CopyIO(Protocol):
    """The client side of COPY, provided by the connection handler."""

    def copy_in(self, column_count: int, binary: bool) -> AsyncIterator[bytes]:
        """Send CopyInResponse, then yield CopyData until CopyDone (CopyFail raises)."""

    def copy_out_start(self, column_count: int, binary: bool) -> None: ...

    def copy_out_data(self, data: bytes) -> None: ...

    def copy_out_done(self) -> None: ...


class WireSession:
    """A backend Session as the pipeline sees it, for one wire client."""

    def __init__(self, inner: Any, copy_io: CopyIO | None, custom_settings: set[str] | None = None) -> None:
        self.inner = inner
        self.custom_settings = custom_settings  # where the custom settings the client names are noted
        self.dialect = inner.dialect
        self.copy_io = copy_io
        self.busy = False
        self.client_tx = False  # DuckDB read-only sessions: the client's BEGIN (the snapshot is always open)
        # Fixed with the session (asked several times per statement, so not a property).
        self.read_only_duckdb = self.dialect == "duckdb" and bool(getattr(inner, "read_only", False))

    def __getattr__(self, name: str) -> Any:  # checkpoint adapters may reach the connection
        return getattr(self.inner, name)

    @property
    def dirty(self) -> bool:  # the state is the backend connection's, so is the flag
        return bool(self.inner.dirty)

    @dirty.setter
    def dirty(self, value: bool) -> None:
        self.inner.dirty = value

    @property
    def in_transaction(self) -> bool:
        if self.read_only_duckdb:
            return self.client_tx
        return bool(self.inner.in_transaction)

    async def execute(self, sql: str, params: Sequence[str | None] | None = None, command: str = "") -> Result:
        self.busy = True
        try:
            if self.read_only_duckdb and command in _TX_TAGS:
                return await self._read_only_tx(sql, command)
            if command == "COPY" and self.copy_io is not None:
                if self.dialect == "postgres":
                    return await self._copy_postgres(sql, params)
                return await self._copy_duckdb(sql)
            if self.custom_settings is not None and (command in ("SET", "RESET") or "set_config" in sql.lower()):
                self.custom_settings |= custom_names(sql)
            return await self.inner.execute(sql, params, command)  # type: ignore[no-any-return]
        finally:
            self.busy = False

    async def _read_only_tx(self, sql: str, command: str) -> Result:
        from proxy.txcontrol import TxVerb, transaction_verb

        verb = transaction_verb(sql, "duckdb")
        if verb is TxVerb.BEGIN:
            self.client_tx = True
            return Result(command_tag="BEGIN")
        if verb in (TxVerb.COMMIT, TxVerb.ROLLBACK):
            self.client_tx = False
            await self.fresh_snapshot()
            return Result(command_tag="COMMIT" if verb is TxVerb.COMMIT else "ROLLBACK")
        return await self.inner.execute(sql, None, command)  # type: ignore[no-any-return]

    async def fresh_snapshot(self) -> None:
        """A DuckDB read-only session holds one transaction; renew it between statements."""
        inner = self.inner
        await inner.rollback()
        await inner._run(lambda: inner._conn.execute("BEGIN TRANSACTION"))
        inner._in_tx = True

    async def _copy_postgres(self, sql: str, params: Sequence[str | None] | None) -> Result:
        import psycopg

        from proxy.db_errors import postgres_error as sql_error

        assert self.copy_io is not None
        conn = self.inner.conn
        cur = conn.cursor()
        try:
            async with cur.copy(sql, params or None) as copy:
                res = cur.pgresult
                ncols = res.nfields if res is not None else 0
                is_binary = bool(res is not None and res.binary_tuples)
                if res is not None and res.status == psycopg.pq.ExecStatus.COPY_IN:
                    async for chunk in self.copy_io.copy_in(ncols, is_binary):
                        await copy.write(chunk)
                else:
                    self.copy_io.copy_out_start(ncols, is_binary)
                    async for chunk in copy:
                        self.copy_io.copy_out_data(bytes(chunk))
                    self.copy_io.copy_out_done()
        except psycopg.Error as exc:
            raise sql_error(exc) from exc
        status = cur.pgresult.command_status if cur.pgresult is not None else None
        return Result(command_tag=(status or b"COPY").decode() if status else f"COPY {max(cur.rowcount, 0)}")

    async def _copy_duckdb(self, sql: str) -> Result:
        from proxy.wire import copy_duckdb

        io = self.copy_io
        assert io is not None
        plan = copy_duckdb.plan_copy(sql)
        if plan.is_from:
            return await copy_duckdb.copy_from(plan, self.inner.execute, lambda n: io.copy_in(n, False))
        return await copy_duckdb.copy_to(plan, self.inner.execute, lambda n: io.copy_out_start(n, False),
                                         io.copy_out_data, io.copy_out_done)

    async def begin(self, options: TxOptions | None = None) -> None:
        await self.inner.begin(options)

    async def commit(self) -> None:
        await self.inner.commit()

    async def rollback(self) -> None:
        await self.inner.rollback()

    async def commit_with_traces(self, traces: Sequence[Trace], statement: str = "COMMIT",
                                 command: str = "COMMIT") -> Result:
        return await self.inner.commit_with_traces(traces, statement, command)  # type: ignore[no-any-return]

    async def cancel(self) -> None:
        if not self.busy:
            return
        if self.dialect == "postgres":
            await self.inner.conn.cancel_safe()
        elif self.inner.conn is not None:
            self.inner.conn.interrupt()


_TX_TAGS = frozenset({"BEGIN", "START TRANSACTION", "COMMIT", "END", "ROLLBACK", "ABORT"})


class WireSessions:
    """One wire client's SessionSource: a backend session per login, kept
    until the client goes; returned to the pool (reset) when it does."""

    def __init__(self, backend: Any, branch: str, copy_io: CopyIO | None) -> None:
        self.backend = backend
        self.branch = branch
        self.copy_io = copy_io
        self.held: dict[BackendRole, WireSession] = {}
        self.client: Any = None  # the ClientSession, to know which session holds a transaction
        self.last: WireSession | None = None  # the session the previous statement ran on
        self.custom_settings: set[str] = set()  # app.tenant...: names pg_settings does not list

    async def session_for(self, login: BackendRole) -> Session:
        if self.branch != "main":
            raise errors.branch_not_found(self.branch)
        if self.backend.dialect == "duckdb" and login is BackendRole.DDL:
            login = BackendRole.WRITE  # no privileges to separate: one connection keeps SET and temp state whole
        session = self.held.get(login)
        if session is None:
            session = WireSession(await self._open(login), self.copy_io,
                                  self.custom_settings if self.backend.dialect == "postgres" else None)
            self.held[login] = session
        elif session.read_only_duckdb and not session.client_tx:
            await session.fresh_snapshot()
        last = self.last
        if last is not None and last is not session and last.dirty and self.backend.dialect == "postgres":
            await self._carry_settings(last, session)
        self.last = session
        return session  # type: ignore[return-value]

    async def _carry_settings(self, source: WireSession, target: WireSession) -> None:
        """What the client SET on one login's connection holds on the next login's too (and what it
        RESET is reset), so `SET search_path` governs a write token's DDL as on a direct connection."""
        import psycopg

        from proxy.backends.postgres_logins import carry_settings
        from proxy.db_errors import postgres_error

        if source.in_transaction or target.in_transaction:
            return  # inside a transaction every statement uses its one connection
        try:
            await carry_settings(source.inner.conn, target.inner.conn, self.custom_settings)
        except psycopg.Error as exc:
            raise postgres_error(exc) from exc
        target.dirty = True

    async def _open(self, login: BackendRole) -> Any:
        if self.backend.dialect == "postgres":
            from proxy.backends.postgres import PostgresSession

            try:
                conn = await self.backend.pools[login].getconn(timeout=30)
            except Exception as exc:  # PoolTimeout, OperationalError
                raise errors.backend_unavailable(f"{type(exc).__name__}: {exc}") from exc
            return PostgresSession(conn)
        from proxy.backends.duckdb import DuckDBSession

        read_only = login is BackendRole.READ
        backend = self.backend
        session = DuckDBSession(backend, backend.readers if read_only else backend.writer, read_only=read_only)
        await session.open()
        return session

    async def release_idle(self) -> None:
        """Between transactions, give back PostgreSQL connections that carry no
        session state (no SET, PREPARE, temp table... ran on them): transaction
        pooling for clients that need no more, a pinned session for those that do."""
        if self.backend.dialect != "postgres" or not self.held:
            return
        for login, session in list(self.held.items()):
            inner = session.inner
            if inner.dirty or inner.in_transaction or session.busy or session is getattr(self.client, "active", None):
                continue
            del self.held[login]
            if self.last is session:
                self.last = None
            await self.backend.pools[login].putconn(inner.conn)

    async def cancel(self) -> None:
        for session in list(self.held.values()):
            try:
                await session.cancel()
            except Exception:  # noqa: BLE001 - a cancel is best effort, as in PostgreSQL
                pass

    async def close(self) -> None:
        held, self.held, self.last = self.held, {}, None
        for login, session in held.items():
            inner = session.inner
            if self.backend.dialect == "postgres":
                import psycopg

                conn = inner.conn
                try:
                    await inner.rollback()
                    if inner.dirty:  # session state must not reach the pool's next user; as the
                        await conn.close()  # backend does, close rather than DISCARD ALL behind psycopg
                except psycopg.Error:
                    pass  # the pool discards a broken connection
                finally:  # even when interrupted again: a connection neither returned nor closed leaks
                    await self.backend.pools[login].putconn(conn)
            else:
                try:
                    await inner.close()
                except Exception:  # noqa: BLE001
                    pass


# --- Describe without executing ------------------------------------------------

async def describe(session: WireSession, sql: str, parameter_types: tuple[int, ...],
                   is_read: bool) -> tuple[tuple[int, ...], list[Field] | None]:
    """Parameter types and row fields of a statement, as PostgreSQL's Describe
    gives them, without running it."""
    if session.dialect == "postgres":
        return await _describe_postgres(session.inner.conn, sql, parameter_types)
    return await _describe_duckdb(session.inner, sql, parameter_types, is_read)


async def _describe_postgres(conn: Any, sql: str,
                             parameter_types: tuple[int, ...]) -> tuple[tuple[int, ...], list[Field] | None]:
    import psycopg
    from psycopg import generators

    from proxy.backends.pg_wait import wait
    from proxy.db_errors import postgres_error as sql_error

    pgconn = conn.pgconn
    async with conn.lock:
        pgconn.send_prepare(b"", sql.encode(), list(parameter_types) or None)
        (res,) = await wait(conn, generators.execute(pgconn))
        if res.status != psycopg.pq.ExecStatus.COMMAND_OK:
            raise sql_error(psycopg.errors.error_from_result(res, encoding="utf-8"))
        pgconn.send_describe_prepared(b"")
        (res,) = await wait(conn, generators.execute(pgconn))
        if res.status != psycopg.pq.ExecStatus.COMMAND_OK:
            raise sql_error(psycopg.errors.error_from_result(res, encoding="utf-8"))
    types = tuple(res.param_type(i) for i in range(res.nparams))
    if res.nfields == 0:
        return types, None
    return types, result_from_pgresult(res).fields  # a described statement has no rows


_PARAM = re.compile(r"\$(\d+)")


async def _describe_duckdb(inner: Any, sql: str, parameter_types: tuple[int, ...],
                           is_read: bool) -> tuple[tuple[int, ...], list[Field] | None]:
    import duckdb
    import sqlglot
    from sqlglot.tokens import TokenType

    from proxy.backends.duckdb_names import pg_column_names
    from proxy.backends.duckdb_params import parameter_oids, sample, spaced
    from proxy.db_errors import duckdb_error as sql_error
    from proxy.pgtypes import TEXT, field_for_duckdb

    tokens = sqlglot.tokenize(spaced(sql), read="postgres")
    count = 0
    for i, tok in enumerate(tokens):
        if tok.token_type is TokenType.PARAMETER and i + 1 < len(tokens) and tokens[i + 1].text.isdigit():
            count = max(count, int(tokens[i + 1].text))

    def run() -> tuple[tuple[int, ...], list[Field] | None]:
        declared = [parameter_types[i] if i < len(parameter_types) else 0 for i in range(count)]
        inferred = parameter_oids(inner._conn, sql) if not all(declared) else {}  # DuckDB tells none
        types = tuple(oid or inferred.get(i + 1, TEXT) for i, oid in enumerate(declared))
        if not is_read:
            return types, None
        values = [sample(oid) for oid in types]  # bound as a client's value of that type would be
        try:
            relation = inner._conn.sql(sql, params=values if count else None)
        except duckdb.Error:
            if not any(v is not None for v in values):
                raise
            relation = inner._conn.sql(sql, params=[None] * count)
        names = pg_column_names(sql, relation.columns)  # PostgreSQL's names, as DuckDBSession.execute gives them
        return types, [field_for_duckdb(name, typ) for name, typ in zip(names, relation.types, strict=True)]

    try:
        return await inner._run(run)
    except duckdb.Error as exc:
        raise sql_error(exc) from exc
