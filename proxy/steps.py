"""The values a request becomes on its way through the pipeline (queries,
steps, responses), and the small rules about them every execution path shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlglot

from branching.checkpoint import Checkpoint
from policy.decide import Decision
from policy.identity import Identity
from proxy.backends.base import Session, TxOptions
from proxy.result import Result
from proxy.sql_functions import Call
from proxy.statement import Part, StatementClass
from proxy.trace import Trace
from proxy.txcontrol import TxVerb

C = StatementClass


@dataclass(frozen=True)
class Query:
    sql: str
    params: tuple[str | None, ...] | None = None


@dataclass(frozen=True)
class Request:
    identity: Identity
    queries: tuple[Query, ...]
    branch: str = "main"
    front_door: str = "http"
    tx: TxOptions = TxOptions()
    dry_run: bool = False


@dataclass
class Step:
    """One statement of a request on its way through the pipeline."""

    query_index: int
    part: Part
    params: tuple[str | None, ...] | None
    decision: Decision
    trace: Trace
    result: Result | None = None
    checkpoint: Checkpoint | None = None
    absorbed: TxVerb | None = None  # BEGIN/COMMIT/ROLLBACK the request's own transaction stands for
    call: Call | None = None  # a `sqlgate.*` call, answered by sqlgate rather than the database


@dataclass
class Response:
    request_id: str
    steps: list[Step]
    plan: list[dict[str, Any]] | None = None  # dry runs only

    def results_for(self, query_index: int) -> list[Step]:
        return [s for s in self.steps if s.query_index == query_index]


# Statements PostgreSQL refuses inside a transaction block; they change no rows
# a checkpoint would keep, so they run on their own.
NO_TRANSACTION_BLOCK = frozenset({"VACUUM", "CREATE DATABASE", "DROP DATABASE", "ALTER SYSTEM"})


# Classes whose statements may leave state on the connection (SET and set_config,
# SELECT INTO TEMP and other DDL, whatever an admin's dangerous statement does) ...
_STATEFUL = frozenset({C.SESSION, C.SAFE_DDL, C.DESTRUCTIVE_DDL, C.DANGEROUS})
# ... and reads or writes that do (PREPARE of a SELECT, DECLARE ... WITH HOLD).
STATEFUL_COMMANDS = frozenset({"PREPARE", "DECLARE CURSOR", "DECLARE"})


def note_session_state(session: Session, part: Part) -> None:
    """The one rule for whether a connection may go back to the pool: decided by
    the classification (a SELECT can set state), never by the command tag alone."""
    if part.klass in _STATEFUL or part.command in STATEFUL_COMMANDS:
        session.dirty = True


def runs_alone(step: Step) -> bool:
    """Run without a transaction of sqlgate's: plain reads, and what cannot run in one."""
    return step.part.klass is C.READ or step.part.command in NO_TRANSACTION_BLOCK


def savepoint_name(sql: str) -> str:
    """The savepoint a SAVEPOINT / RELEASE / ROLLBACK TO statement names (last identifier)."""
    tokens = sqlglot.tokenize(sql, read="postgres")
    words = [t.text for t in tokens if t.text not in (";",)]
    return words[-1].lower() if words else ""
