"""sqlgate's own records inside the DuckDB file: schema `sqlgate`.

DuckDB has no roles, so what keeps agents out of these tables is the
classifier (any `sqlgate.*` reference is refused to non-admin tokens).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import duckdb

from policy.identity import Role, Token
from proxy.trace import Trace, TraceFilter

if TYPE_CHECKING:
    from proxy.backends.duckdb import DuckDBBackend

SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS sqlgate;
CREATE TABLE IF NOT EXISTS sqlgate.tokens (
    id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, role VARCHAR NOT NULL, secret_hash VARCHAR NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL, expires_at TIMESTAMPTZ, revoked_at TIMESTAMPTZ, created_by VARCHAR);
ALTER TABLE sqlgate.tokens ADD COLUMN IF NOT EXISTS scram VARCHAR;
CREATE TABLE IF NOT EXISTS sqlgate.traces (
    id VARCHAR PRIMARY KEY, "at" TIMESTAMPTZ NOT NULL, request_id VARCHAR NOT NULL, actor VARCHAR NOT NULL,
    token_id VARCHAR, branch VARCHAR NOT NULL, front_door VARCHAR NOT NULL, sql VARCHAR NOT NULL,
    params VARCHAR, class VARCHAR NOT NULL, tables VARCHAR NOT NULL, command VARCHAR, rows BIGINT,
    duration_ms DOUBLE, cost DOUBLE, checkpoint_id VARCHAR, outcome VARCHAR NOT NULL, error_code VARCHAR,
    error_message VARCHAR);
"""

_TOKEN_COLUMNS = "id, name, role, secret_hash, created_at, expires_at, revoked_at, created_by, scram"
_TRACE_COLUMNS = (
    'id, "at", request_id, actor, token_id, branch, front_door, sql, params, class, tables, command, rows,'
    " duration_ms, cost, checkpoint_id, outcome, error_code, error_message"
)


def create_schema(db: duckdb.DuckDBPyConnection) -> None:
    db.execute(SCHEMA_SQL)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _token(row: Sequence[Any]) -> Token:
    return Token(
        id=row[0], name=row[1], role=Role.parse(row[2]), secret_hash=row[3], created_at=_utc(row[4]),  # type: ignore[arg-type]
        expires_at=_utc(row[5]), revoked_at=_utc(row[6]), created_by=row[7], scram=row[8],
    )


def _trace_row(t: Trace) -> tuple[Any, ...]:
    return (
        t.id, t.at, t.request_id, t.actor, t.token_id, t.branch, t.front_door, t.sql,
        json.dumps(t.params) if t.params is not None else None, t.klass, json.dumps(t.tables), t.command, t.rows,
        t.duration_ms, t.cost, t.checkpoint_id, t.outcome, t.error_code, t.error_message,
    )


def _trace(r: Sequence[Any]) -> Trace:
    return Trace(
        id=r[0], at=_utc(r[1]), request_id=r[2], actor=r[3], token_id=r[4], branch=r[5], front_door=r[6],  # type: ignore[arg-type]
        sql=r[7], params=json.loads(r[8]) if r[8] else None, klass=r[9], tables=json.loads(r[10]),
        command=r[11] or "", rows=r[12], duration_ms=r[13] or 0.0, cost=r[14], checkpoint_id=r[15],
        outcome=r[16], error_code=r[17], error_message=r[18],
    )


class DuckDBMeta:
    def __init__(self, backend: DuckDBBackend) -> None:
        self.backend = backend

    @staticmethod
    def write_traces(conn: duckdb.DuckDBPyConnection, traces: Sequence[Trace]) -> None:
        placeholders = ", ".join(["?"] * 19)
        conn.executemany(f"INSERT INTO sqlgate.traces ({_TRACE_COLUMNS}) VALUES ({placeholders})",
                         [_trace_row(t) for t in traces])

    async def find_token(self, secret_hash: str) -> Token | None:
        rows = await self.backend.run_read(lambda c: c.execute(
            f"SELECT {_TOKEN_COLUMNS} FROM sqlgate.tokens WHERE secret_hash = ?", [secret_hash]).fetchall())
        return _token(rows[0]) if rows else None

    async def get_token(self, token_id: str) -> Token | None:
        rows = await self.backend.run_read(lambda c: c.execute(
            f"SELECT {_TOKEN_COLUMNS} FROM sqlgate.tokens WHERE id = ?", [token_id]).fetchall())
        return _token(rows[0]) if rows else None

    async def insert_token(self, token: Token) -> None:
        await self.backend.run_write(lambda c: c.execute(
            f"INSERT INTO sqlgate.tokens ({_TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [token.id, token.name, token.role.label, token.secret_hash, token.created_at, token.expires_at,
             token.revoked_at, token.created_by, token.scram]))

    async def set_token_scram(self, token_id: str, scram: str) -> None:
        """Give a token made before SCRAM its verifier (computed where its secret was seen)."""
        await self.backend.run_write(lambda c: c.execute(
            "UPDATE sqlgate.tokens SET scram = ? WHERE id = ? AND scram IS NULL", [scram, token_id]))

    async def scram_tokens(self) -> list[Token]:
        """The tokens that can log in with SCRAM: valid, with a verifier."""
        rows = await self.backend.run_read(lambda c: c.execute(
            f"SELECT {_TOKEN_COLUMNS} FROM sqlgate.tokens WHERE scram IS NOT NULL AND revoked_at IS NULL"
            " AND (expires_at IS NULL OR expires_at > now())").fetchall())
        return [_token(r) for r in rows]

    async def revoke_token(self, token_id: str) -> Token | None:
        def revoke(c: duckdb.DuckDBPyConnection) -> list[Any]:
            c.execute("UPDATE sqlgate.tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = ?", [token_id])
            return c.execute(f"SELECT {_TOKEN_COLUMNS} FROM sqlgate.tokens WHERE id = ?", [token_id]).fetchall()

        rows = await self.backend.run_write(revoke)
        return _token(rows[0]) if rows else None

    async def list_tokens(self) -> list[Token]:
        rows = await self.backend.run_read(lambda c: c.execute(
            f"SELECT {_TOKEN_COLUMNS} FROM sqlgate.tokens ORDER BY created_at").fetchall())
        return [_token(r) for r in rows]

    async def insert_traces(self, traces: Sequence[Trace]) -> None:
        if traces:
            await self.backend.run_write(lambda c: self.write_traces(c, traces))

    async def list_traces(self, filters: TraceFilter) -> list[Trace]:
        where, args = filters.where("?")
        query = (f"SELECT {_TRACE_COLUMNS} FROM sqlgate.traces WHERE {where}"
                 f' ORDER BY "at" DESC, id DESC LIMIT {int(filters.limit)}')
        rows = await self.backend.run_read(lambda c: c.execute(query, args).fetchall())
        return [_trace(r) for r in rows]
