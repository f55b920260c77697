"""The PostgreSQL backend: pooled psycopg connections, one pool per login.

Results are read straight from libpq's PGresult as PostgreSQL's text output,
so no value is parsed into Python and printed back. Parameters are sent as
untyped text, as Neon does, so PostgreSQL infers their types.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool

from policy.identity import Role, Token
from proxy import errors
from proxy.backends.base import BackendRole, TxOptions
from proxy.backends.pg_prepared import prepared
from proxy.backends.pg_simple import direct, pipelined, simple_query
from proxy.backends.pg_wait import WatchedConnection
from proxy.backends.postgres_setup import INTERNAL_OPTIONS, AgentLogins, set_up
from proxy.db_errors import postgres_error as sql_error
from proxy.result import Result, result_from_pgresult
from proxy.trace import COPY_COLUMNS, Trace, TraceFilter, traces_copy, traces_json

_IDLE = psycopg.pq.TransactionStatus.IDLE


class PostgresSession:
    dialect = "postgres"

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn
        self.dirty = False  # set by the pipeline (proxy.steps.note_session_state): then never reused

    @property
    def in_transaction(self) -> bool:
        # pgconn's int, not conn.info's enum: this is asked several times per statement.
        return self.conn.pgconn.transaction_status != _IDLE

    async def execute(self, sql: str, params: Sequence[str | None] | None = None, command: str = "") -> Result:
        try:
            if not params:
                return result_from_pgresult((await simple_query(self.conn, sql))[0])
            if direct(self.conn, params):
                if not self.in_transaction:  # parsed and planned once per connection
                    return result_from_pgresult(await prepared(self.conn, sql, params))
                return result_from_pgresult((await pipelined(self.conn, [(sql, params)]))[0])
            cur = psycopg.AsyncRawCursor(self.conn)  # $1-style placeholders, as clients send them
            await cur.execute(sql, params)  # type: ignore[arg-type]
        except psycopg.Error as exc:
            raise sql_error(exc) from exc
        return result_from_pgresult(cur.pgresult)

    async def begin(self, options: TxOptions | None = None) -> None:
        await self.execute((options or TxOptions()).begin_sql(), command="BEGIN")

    async def commit(self) -> None:
        await self.execute("COMMIT", command="COMMIT")

    async def rollback(self) -> None:
        if self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            await self.conn.execute("ROLLBACK")

    async def commit_with_traces(self, traces: Sequence[Trace], statement: str = "COMMIT",
                                 command: str = "COMMIT") -> Result:
        if not traces:
            return await self.execute(statement, None, command)
        # One message, one round trip. If recording fails, PostgreSQL skips the COMMIT and the
        # transaction stays open and aborted, as when the two were sent apart.
        batch = sql.Literal(traces_json(traces)).as_bytes(self.conn)
        record = b"SELECT sqlgate.record_traces(" + batch + b"::pg_catalog.jsonb);\n"  # the agent's path
        try:
            results = await simple_query(self.conn, record + statement.encode())
        except psycopg.Error as exc:
            raise sql_error(exc) from exc
        return result_from_pgresult(results[1] if len(results) > 1 else results[0])


def _row_to_token(row: Sequence[Any]) -> Token:
    return Token(
        id=row[0], name=row[1], role=Role.parse(row[2]), secret_hash=row[3],
        created_at=row[4], expires_at=row[5], revoked_at=row[6], created_by=row[7], scram=row[8],
    )


_TOKEN_COLUMNS = "id, name, role, secret_hash, created_at, expires_at, revoked_at, created_by, scram"
_TRACE_COLUMNS = (
    "id, at, request_id, actor, token_id, branch, front_door, sql, params, class, tables, command, rows,"
    " duration_ms, cost, checkpoint_id, outcome, error_code, error_message"
)


class PostgresMeta:
    """Tokens and traces in the `sqlgate` schema, through the owner's pool."""

    def __init__(self, pool: AsyncConnectionPool[WatchedConnection]) -> None:
        self.pool = pool

    async def find_token(self, secret_hash: str) -> Token | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(f"SELECT {_TOKEN_COLUMNS} FROM sqlgate.tokens WHERE secret_hash = %s",
                                     (secret_hash,))
            row = await cur.fetchone()
        return _row_to_token(row) if row else None

    async def get_token(self, token_id: str) -> Token | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(f"SELECT {_TOKEN_COLUMNS} FROM sqlgate.tokens WHERE id = %s", (token_id,))
            row = await cur.fetchone()
        return _row_to_token(row) if row else None

    async def insert_token(self, token: Token) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                f"INSERT INTO sqlgate.tokens ({_TOKEN_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (token.id, token.name, token.role.label, token.secret_hash, token.created_at, token.expires_at,
                 token.revoked_at, token.created_by, token.scram),
            )

    async def set_token_scram(self, token_id: str, scram: str) -> None:
        """Give a token made before SCRAM its verifier (computed where its secret was seen)."""
        async with self.pool.connection() as conn:
            await conn.execute("UPDATE sqlgate.tokens SET scram = %s WHERE id = %s AND scram IS NULL",
                               (scram, token_id))

    async def scram_tokens(self) -> list[Token]:
        """The tokens that can log in with SCRAM: valid, with a verifier."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_TOKEN_COLUMNS} FROM sqlgate.tokens WHERE scram IS NOT NULL AND revoked_at IS NULL"
                " AND (expires_at IS NULL OR expires_at > now())")
            return [_row_to_token(r) for r in await cur.fetchall()]

    async def revoke_token(self, token_id: str) -> Token | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"UPDATE sqlgate.tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s"
                f" RETURNING {_TOKEN_COLUMNS}", (token_id,),
            )
            row = await cur.fetchone()
            if row:
                await conn.execute("SELECT pg_notify('sqlgate_revoked', %s)", (token_id,))
        return _row_to_token(row) if row else None

    async def list_tokens(self) -> list[Token]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(f"SELECT {_TOKEN_COLUMNS} FROM sqlgate.tokens ORDER BY created_at")
            return [_row_to_token(r) for r in await cur.fetchall()]

    async def insert_traces(self, traces: Sequence[Trace]) -> None:
        if not traces:
            return
        async with self.pool.connection() as conn:
            cur = conn.cursor()
            async with cur.copy(f"COPY sqlgate.traces ({', '.join(COPY_COLUMNS)}) FROM STDIN") as copy:
                await copy.write(traces_copy(traces))

    async def list_traces(self, filters: TraceFilter) -> list[Trace]:
        where, args = filters.where("%s")
        query = f'SELECT {_TRACE_COLUMNS} FROM sqlgate.traces WHERE {where} ORDER BY "at" DESC, id DESC LIMIT %s'
        async with self.pool.connection() as conn:
            cur = await conn.execute(query, (*args, filters.limit))
            rows = await cur.fetchall()
        return [_row_to_trace(r) for r in rows]


def _row_to_trace(r: Sequence[Any]) -> Trace:
    at: datetime = r[1]
    return Trace(
        id=r[0], at=at, request_id=r[2], actor=r[3], token_id=r[4], branch=r[5], front_door=r[6], sql=r[7],
        params=r[8], klass=r[9], tables=list(r[10] or []), command=r[11] or "", rows=r[12],
        duration_ms=r[13] or 0.0, cost=r[14], checkpoint_id=r[15], outcome=r[16], error_code=r[17],
        error_message=r[18],
    )


class _DeliberateCloses(logging.Filter):
    """sqlgate closes connections that hold session state on purpose; the pool
    need not warn about each one it then discards."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("discarding closed connection")


logging.getLogger("psycopg.pool").addFilter(_DeliberateCloses())


class PostgresBackend:
    dialect = "postgres"

    def __init__(self, dsn: str, pool_size: int = 10, statement_timeout: str = "30s",
                 idle_timeout: str = "60s") -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self.statement_timeout = statement_timeout
        self.idle_timeout = idle_timeout
        self.pools: dict[BackendRole, AsyncConnectionPool[WatchedConnection]] = {}
        # sqlgate's own work, on a pinned search_path
        self.internal: AsyncConnectionPool[WatchedConnection] | None = None
        self.logins: AgentLogins | None = None

    async def start(self) -> None:
        self.logins = await asyncio.to_thread(set_up, self.dsn, self.statement_timeout, self.idle_timeout)
        params = conninfo_to_dict(self.dsn)
        # Clients' startup options never reach the server (SECURITY.md vector 13).
        params.pop("options", None)
        for role in (BackendRole.OWNER, *self.logins.names):
            conninfo = make_conninfo(**params)  # type: ignore[arg-type]
            if role is not BackendRole.OWNER:
                conninfo = make_conninfo(conninfo, user=self.logins.names[role], password=self.logins.passwords[role])
            # No reset callback: with one, the pool hands every returned connection to
            # a worker task (a loop hop per request); session() already rolls back.
            pool = AsyncConnectionPool(
                conninfo, connection_class=WatchedConnection, min_size=1, max_size=self.pool_size, open=False,
                kwargs={"autocommit": True, "application_name": f"sqlgate-{role.value}"},
                name=f"sqlgate-{role.value}",
            )
            await pool.open(wait=True, timeout=30)
            self.pools[role] = pool
        # sqlgate's own work (metadata, checkpoint lists, rollbacks, purges) runs as the owner with the
        # catalog alone on its path: an agent's overload in public cannot stand in for a built-in there.
        self.internal = AsyncConnectionPool(
            make_conninfo(**params, options=INTERNAL_OPTIONS),  # type: ignore[arg-type]
            connection_class=WatchedConnection, min_size=1, max_size=max(2, self.pool_size // 2), open=False,
            kwargs={"autocommit": True, "application_name": "sqlgate-internal"}, name="sqlgate-internal",
        )
        await self.internal.open(wait=True, timeout=30)
        self.meta = PostgresMeta(self.internal)

    async def relay_logins(self) -> dict[BackendRole, dict[str, str]]:
        """Each login's connection parameters as libpq resolved them on a live connection
        (environment, service and password files included), for the wire relay's own connections."""
        logins = {}
        for role, pool in self.pools.items():
            async with pool.connection() as conn:
                info = conn.info
                logins[role] = {
                    "host": info.hostaddr or info.host, "port": str(info.port), "dbname": info.dbname,
                    "user": info.user, "password": info.password or "",
                    "sslmode": conninfo_to_dict(pool.conninfo).get("sslmode") or "prefer",
                }
        return logins

    async def watch_revocations(self, on_revoked: Callable[[str], Awaitable[None]]) -> None:
        """Follow revocations made through any proxy on this database (LISTEN),
        so a token revoked elsewhere stops working here at once too."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
                    await conn.execute("LISTEN sqlgate_revoked")
                    async for note in conn.notifies():
                        await on_revoked(note.payload)
            except psycopg.Error:
                await asyncio.sleep(1.0)  # the server went away: listen again when it is back

    async def close(self) -> None:
        for pool in (*self.pools.values(), *([self.internal] if self.internal is not None else [])):
            await pool.close()

    @asynccontextmanager
    async def session(self, role: BackendRole, branch: str, writes: bool) -> AsyncIterator[PostgresSession]:
        if branch != "main":
            raise errors.branch_not_found(branch)
        try:
            conn_cm = self.pools[role].connection(timeout=30)
            conn = await conn_cm.__aenter__()
        except psycopg.OperationalError as exc:
            raise errors.backend_unavailable(str(exc).strip()) from exc
        except Exception as exc:  # psycopg_pool.PoolTimeout and friends
            raise errors.backend_unavailable(f"{type(exc).__name__}: {exc}") from exc
        session = PostgresSession(conn)
        try:
            yield session
        finally:
            try:
                await session.rollback()
                if session.dirty:
                    # Session state (SET, temp tables, PREPARE) must not reach the next
                    # request. Closing beats DISCARD ALL, which would also drop psycopg's
                    # own prepared statements behind its back; the pool opens a new one.
                    await conn.close()
            except psycopg.Error:
                pass  # the pool discards a broken connection
            finally:  # even when interrupted again: a connection neither returned nor closed leaks
                await conn_cm.__aexit__(None, None, None)

    async def explain_cost(self, sql: str, params: Sequence[str | None] | None,
                           login: BackendRole = BackendRole.READ) -> float | None:
        """The planner's cost, planned as the login the statement would run as (planning can run
        an agent's functions: never as the owner for an agent)."""
        async with self.pools[login].connection() as conn:
            try:
                async with conn.transaction(force_rollback=True):
                    cur = conn.cursor()
                    await cur.execute(f"EXPLAIN (FORMAT JSON) {sql}", params if params else None)  # type: ignore[arg-type]
                    row = await cur.fetchone()
            except psycopg.Error:
                return None
        plan = row[0] if row else None
        if isinstance(plan, str):
            plan = json.loads(plan)
        return float(plan[0]["Plan"]["Total Cost"]) if plan else None


