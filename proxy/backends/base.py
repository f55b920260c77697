"""The contract between the pipeline and a backend.

A Session is one database connection acting for one backend role, used by
one request (HTTP) or one client session (wire). Checkpoint adapters get the
same Session, so whatever they do shares the statement's transaction.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from policy.identity import Token
from proxy.result import Result
from proxy.trace import Trace, TraceFilter


class BackendRole(enum.Enum):
    """The database login a statement runs as (PostgreSQL); DuckDB has one."""

    READ = "read"  # SELECT grants only
    WRITE = "write"  # DML grants only
    DDL = "ddl"  # owns the objects it creates; used only for DDL the classifier understood
    OWNER = "owner"  # the connection sqlgate was given: admin tokens and sqlgate itself


@dataclass(frozen=True)
class TxOptions:
    isolation: str | None = None  # "READ COMMITTED", "SERIALIZABLE", ...
    read_only: bool = False
    deferrable: bool = False

    def begin_sql(self) -> str:
        words = ["BEGIN"]
        if self.isolation:
            words += ["ISOLATION LEVEL", self.isolation]
        if self.read_only:
            words.append("READ ONLY")
        if self.deferrable:
            words.append("DEFERRABLE")
        return " ".join(words)


class Session(Protocol):
    dialect: str
    dirty: bool  # it may hold session state (settings, temp tables): never reuse it for another caller

    @property
    def in_transaction(self) -> bool: ...

    async def execute(self, sql: str, params: Sequence[str | None] | None = None, command: str = "") -> Result:
        """Run one statement; `command` is the classifier's verb (DuckDB needs it for tags)."""

    async def begin(self, options: TxOptions | None = None) -> None: ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...

    async def commit_with_traces(self, traces: Sequence[Trace], statement: str = "COMMIT",
                                 command: str = "COMMIT") -> Result:
        """Store traces inside the open transaction, then commit it with `statement`
        (a client's own COMMIT or END), so the traces commit with the work."""


class MetaStore(Protocol):
    """sqlgate's own records, kept in the backend (never in proxy memory)."""

    async def find_token(self, secret_hash: str) -> Token | None: ...

    async def get_token(self, token_id: str) -> Token | None: ...

    async def insert_token(self, token: Token) -> None: ...

    async def revoke_token(self, token_id: str) -> Token | None: ...

    async def list_tokens(self) -> list[Token]: ...

    async def scram_tokens(self) -> list[Token]:
        """Valid tokens that have a SCRAM verifier (wire protocol logins)."""

    async def set_token_scram(self, token_id: str, scram: str) -> None:
        """Store the SCRAM verifier of a token made before verifiers existed."""

    async def insert_traces(self, traces: Sequence[Trace]) -> None:
        """Store traces outside any agent transaction (reads, refusals, failures)."""

    async def list_traces(self, filters: TraceFilter) -> list[Trace]: ...


class Backend(Protocol):
    dialect: str
    meta: MetaStore

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def session(self, role: BackendRole, branch: str, writes: bool) -> AbstractAsyncContextManager[Session]:
        """A session for `role` on `branch`; `writes` is False when the classifier
        found nothing that changes data (DuckDB runs those off the writer thread)."""

    async def explain_cost(self, sql: str, params: Sequence[str | None] | None,
                           login: BackendRole = BackendRole.READ) -> float | None:
        """The planner's cost estimate for one statement, planned as `login`, or None if it has none."""
