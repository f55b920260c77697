"""The statement pipeline every front door shares.

    classify -> policy -> checkpoint (destructive only) -> execute -> trace

`Pipeline.run` reads as those steps. A request is one transaction: it commits
with its traces, or rolls back and its traces are written on their own with
the outcome. Front doors only translate their protocol to a `Request` and the
`Response` back.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from branching.checkpoint import Checkpoint, CheckpointContext, Checkpointer
from policy.classify import classify_cached
from policy.decide import Allow, CheckpointThenAllow, Decision, Deny, decide
from policy.identity import Identity, Role
from proxy import errors
from proxy.backends.base import Backend, BackendRole, Session, TxOptions
from proxy.client_session import ClientSession
from proxy.result import Result
from proxy.sql_functions import Call, CallContext, SqlFunctions
from proxy.statement import Part, Statement, StatementClass
from proxy.trace import Trace, new_id
from proxy.trace_sink import TraceSink
from proxy.txcontrol import TxVerb, begin_options, transaction_verb

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


@dataclass
class Pipeline:
    backend: Backend
    traces: TraceSink
    checkpointer: Checkpointer | None = None
    functions: SqlFunctions = field(default_factory=SqlFunctions)
    role_logins: dict[Role, BackendRole] = field(default_factory=lambda: {
        Role.READ: BackendRole.READ, Role.WRITE: BackendRole.WRITE, Role.ADMIN: BackendRole.OWNER,
    })

    async def run(self, request: Request, client: ClientSession | None = None) -> Response:
        """One request: HTTP's (its own transaction) or, with `client`, a wire session's."""
        request_id = new_id("rq")
        steps = self.classify(request, request_id)
        self.enforce_policy(steps)
        if request.dry_run:
            return Response(request_id, steps, await self.plan(steps))
        if client is None:
            await self.execute(request, steps)
        else:
            await self.execute_in_session(request, steps, client)
        return Response(request_id, steps)

    # --- classify ---------------------------------------------------------

    def classify(self, request: Request, request_id: str) -> list[Step]:
        steps: list[Step] = []
        identity = request.identity
        for index, query in enumerate(request.queries):
            statement = classify_cached(query.sql, self.backend.dialect)
            if statement.klass is C.UNPARSEABLE:
                error = errors.unparseable(statement.error or "invalid SQL", statement.error_position)
                self._refuse_whole(request, request_id, statement, error)
            if query.params and len(statement.parts) > 1:
                self._refuse_whole(request, request_id, statement, errors.params_with_many_statements())
            for part in statement.parts:
                trace = Trace(
                    request_id=request_id, actor=identity.actor, token_id=identity.token.id, branch=request.branch,
                    front_door=request.front_door, sql=part.sql, params=list(query.params) if query.params else None,
                    klass=part.klass.label, tables=list(part.tables), command=part.command,
                )
                call = self.functions.match(part.sql, self.backend.dialect) if part.touches_meta else None
                # A sqlgate.* call is allowed here: its handler applies its own rules.
                decision = Allow() if call is not None else decide(identity.role, part)
                steps.append(Step(index, part, query.params, decision, trace, call=call))
        return steps

    def _refuse_whole(self, request: Request, request_id: str, statement: Statement, error: errors.SqlgateError) -> None:
        identity = request.identity
        trace = Trace(
            request_id=request_id, actor=identity.actor, token_id=identity.token.id, branch=request.branch,
            front_door=request.front_door, sql=statement.sql, params=None, klass=statement.klass.label,
            tables=list(statement.tables), outcome="refused", error_code=error.reason, error_message=error.message,
        )
        self.traces.add([trace])
        error.extra["trace_id"] = trace.id
        raise error

    # --- policy -----------------------------------------------------------

    def enforce_policy(self, steps: list[Step]) -> None:
        denied = [s for s in steps if isinstance(s.decision, Deny)]
        if not denied:
            return
        for step in steps:
            step.trace.outcome = "refused" if isinstance(step.decision, Deny) else "skipped"
            if isinstance(step.decision, Deny):
                step.trace.error_code = step.decision.error.reason
                step.trace.error_message = step.decision.error.message
        self.traces.add([s.trace for s in steps])
        first = denied[0]
        assert isinstance(first.decision, Deny)
        error = first.decision.error
        error.extra["trace_id"] = first.trace.id
        raise error

    # --- dry run ----------------------------------------------------------

    async def plan(self, steps: list[Step]) -> list[dict[str, Any]]:
        plan = []
        for step in steps:
            part = step.part
            cost = None
            if part.klass in (C.READ, C.WRITE, C.DESTRUCTIVE_DML) and part.command != "COPY":
                cost = await self.backend.explain_cost(part.sql, step.params)
            plan.append({
                "sql": part.sql, "class": part.klass.label, "command": part.command, "tables": list(part.tables),
                "decision": "checkpoint_then_allow" if isinstance(step.decision, CheckpointThenAllow) else "allow",
                "checkpoint": (
                    {"tables": list(part.tables), "targets": [t.__dict__ for t in part.targets]}
                    if isinstance(step.decision, CheckpointThenAllow) else None
                ),
                "cost_estimate": cost,
                "reason": part.reason or None,
            })
        return plan

    # --- execute and trace ------------------------------------------------

    def login_for(self, identity: Identity, steps: Sequence[Step]) -> BackendRole:
        login = self.role_logins[identity.role]
        if login is BackendRole.WRITE and any(s.part.klass in (C.SAFE_DDL, C.DESTRUCTIVE_DDL) for s in steps):
            return BackendRole.DDL
        return login

    async def execute(self, request: Request, steps: list[Step]) -> None:
        if any(s.call for s in steps):
            await self._run_calls(request, steps)
            return
        rollback_at_end = self._absorb_transaction_control(steps)
        if steps and steps[0].absorbed is TxVerb.BEGIN:  # its options (READ ONLY...) become the request's
            isolation, read_only, deferrable = begin_options(steps[0].part.sql, self.backend.dialect)
            request = replace(request, tx=TxOptions(isolation or request.tx.isolation,
                                                    read_only or request.tx.read_only,
                                                    deferrable or request.tx.deferrable))
        writes = any(s.part.klass >= C.WRITE for s in steps)
        login = self.login_for(request.identity, steps)
        async with self.backend.session(login, request.branch, writes) as session:
            if len(steps) == 1 and _runs_alone(steps[0]) and not request.tx.read_only:
                await self._run_autocommit(session, steps[0])
                return
            await self._run_transaction(request, session, steps, rollback_at_end)

    def _absorb_transaction_control(self, steps: list[Step]) -> bool:
        """HTTP requests are one transaction each: a leading BEGIN and a closing
        COMMIT or ROLLBACK are that transaction; savepoints run inside it;
        anything else would end sqlgate's transaction early (SECURITY.md 14)."""
        rollback_at_end = False
        for i, step in enumerate(steps):
            if step.part.klass is not C.TRANSACTION:
                continue
            verb = transaction_verb(step.part.sql, self.backend.dialect)
            if verb in (TxVerb.SAVEPOINT, TxVerb.RELEASE, TxVerb.ROLLBACK_TO):
                continue
            if verb is TxVerb.BEGIN and i == 0:
                step.absorbed = verb
            elif verb in (TxVerb.COMMIT, TxVerb.ROLLBACK) and i == len(steps) - 1:
                step.absorbed = verb
                rollback_at_end = verb is TxVerb.ROLLBACK
            else:
                error = errors.transaction_control(step.part.command or verb.value)
                step.trace.outcome, step.trace.error_code = "refused", error.reason
                for other in steps:
                    if other is not step:
                        other.trace.outcome = "skipped"
                self.traces.add([s.trace for s in steps])
                error.extra["trace_id"] = step.trace.id
                raise error
        return rollback_at_end

    async def _run_calls(self, request: Request, steps: list[Step]) -> None:
        if not all(s.call for s in steps):
            error = errors.bad_request(
                "sqlgate.* calls must be sent on their own",
                "They are answered by sqlgate, outside any database transaction.",
                "send the sqlgate.* call in its own request, then the rest",
            )
            self._trace_failure(steps, next(s for s in steps if s.call), error)
            raise error
        for i, step in enumerate(steps):
            assert step.call is not None
            started = time.perf_counter()
            context = CallContext(step.call, request.identity, request.branch, step.trace)
            try:
                await self._run_alone(step, started, self.functions.run(context))
            except errors.SqlgateError:
                for later in steps[i + 1:]:
                    later.trace.outcome = "skipped"
                self.traces.add([s.trace for s in steps[i + 1:]])
                raise

    async def _run_autocommit(self, session: Session, step: Step) -> None:
        _note_session_state(session, step.part)
        started = time.perf_counter()
        await self._run_alone(step, started, session.execute(step.part.sql, step.params, step.part.command))

    async def _run_alone(self, step: Step, started: float, work: Awaitable[Result]) -> None:
        """A statement with no transaction to commit with: traced through the sink."""
        try:
            step.result = await work
        except errors.SqlgateError as error:
            self._finish(step, started, "failed", error)
            self.traces.add([step.trace])
            error.extra["trace_id"] = step.trace.id
            raise
        if not step.trace.stored:  # else it committed with the work (e.g. a rollback from SQL)
            self._finish(step, started, "ok")
            self.traces.add([step.trace])

    async def _run_transaction(self, request: Request, session: Session, steps: list[Step], rollback_at_end: bool) -> None:
        await session.begin(request.tx)
        current: Step | None = None
        try:
            for step in steps:
                current = step
                await self._run_step(request, session, step)
            current = None
            if rollback_at_end:
                await session.rollback()
                for step in steps:
                    step.trace.outcome = "rolled_back"
                self.traces.add([s.trace for s in steps])
                return
            if request.tx.read_only:  # nothing can commit here, the traces included
                await session.commit()
                self.traces.add([s.trace for s in steps])
                return
            await session.record_traces([s.trace for s in steps])
            await session.commit()
        except errors.SqlgateError as error:
            await session.rollback()
            self._trace_failure(steps, current, error)
            raise
        except BaseException:
            await session.rollback()
            self._trace_failure(steps, current, errors.internal("the request was interrupted"))
            raise

    async def _run_step(self, request: Request, session: Session, step: Step) -> None:
        part = step.part
        started = time.perf_counter()
        if step.absorbed is not None:
            step.result = Result(command_tag=step.absorbed.value)
            self._finish(step, started, "ok")
            return
        if request.tx.read_only and part.klass >= C.WRITE:
            raise errors.read_only(part.command or part.klass.label)
        _note_session_state(session, part)
        if isinstance(step.decision, CheckpointThenAllow):
            step.checkpoint = await self._take_checkpoint(session, request, step)
            step.trace.checkpoint_id = step.checkpoint.id
        if step.checkpoint is not None and step.checkpoint.run is not None:
            # The checkpoint decides how the statement runs (a DROP becomes a move, say).
            step.result = await step.checkpoint.run(
                lambda: session.execute(part.sql, step.params, part.command), step.params)
        else:
            step.result = await session.execute(part.sql, step.params, part.command)
        self._finish(step, started, "ok")

    async def _take_checkpoint(self, session: Session, request: Request, step: Step) -> Checkpoint:
        if self.checkpointer is None:
            raise errors.SqlgateError(
                "checkpoint.unavailable", "0A000",
                f"{step.part.command} destroys data and this server cannot checkpoint it yet",
                "sqlgate never runs a destructive statement it cannot undo.",
                "rewrite it as a non-destructive change (for example INSERT into a new table)", status=403,
            )
        context = CheckpointContext(request.identity.actor, request.identity.token.id, request.branch, step.trace.id)
        return await self.checkpointer.take(session, step.part, context)

    @staticmethod
    def _finish(step: Step, started: float, outcome: str, error: errors.SqlgateError | None = None) -> None:
        trace = step.trace
        trace.duration_ms = (time.perf_counter() - started) * 1000
        trace.cost = trace.duration_ms
        trace.outcome = outcome
        if step.result is not None:
            trace.rows = step.result.row_count if step.result.row_count is not None else len(step.result.rows)
        if error is not None:
            trace.error_code, trace.error_message = error.reason, error.message

    def _trace_failure(self, steps: list[Step], failed: Step | None, error: errors.SqlgateError) -> None:
        seen_failed = False
        for step in steps:
            if step is failed:
                seen_failed = True
                step.trace.outcome = "failed"
                step.trace.error_code, step.trace.error_message = error.reason, error.message
                error.extra["trace_id"] = step.trace.id
            elif seen_failed or step.result is None:
                step.trace.outcome = "skipped"
            else:
                step.trace.outcome = "rolled_back"
        if failed is None:  # the COMMIT itself failed
            for step in steps:
                step.trace.outcome = "failed"
                step.trace.error_code, step.trace.error_message = error.reason, error.message
        self.traces.add([s.trace for s in steps])

    # --- lasting sessions (wire protocol) ---------------------------------

    async def execute_in_session(self, request: Request, steps: list[Step], client: ClientSession) -> None:
        """Statements outside a transaction run as they would over HTTP (several
        at once form one implicit transaction, as in PostgreSQL's simple query);
        BEGIN/COMMIT/ROLLBACK/SAVEPOINT from the client are real here."""
        if any(s.call for s in steps):
            await self._run_calls(request, steps)
            return
        login = self.login_for(request.identity, steps)
        has_tx_control = any(s.part.klass is C.TRANSACTION for s in steps)
        if not client.in_transaction and not has_tx_control:
            session = await client.source.session_for(login)
            if len(steps) == 1 and _runs_alone(steps[0]):
                await self._run_autocommit(session, steps[0])
            else:
                await self._run_transaction(request, session, steps, rollback_at_end=False)
            return
        for step in steps:
            await self._run_session_step(request, step, client, login)

    async def _run_session_step(self, request: Request, step: Step, client: ClientSession, login: BackendRole) -> None:
        part = step.part
        if part.klass is C.TRANSACTION:
            await self._run_tx_control(step, client, login)
            return
        if not client.in_transaction:
            session = await client.source.session_for(login)
            if part.klass is C.READ:
                await self._run_autocommit(session, step)
            else:
                await self._run_transaction(request, session, [step], rollback_at_end=False)
            return
        session = client.active
        assert session is not None
        started = time.perf_counter()
        try:
            await self._run_step(request, session, step)
        except errors.SqlgateError as error:
            self._finish(step, started, "failed", error)
            error.extra["trace_id"] = step.trace.id
            client.pending.append(step.trace)  # the transaction is now aborted; ROLLBACK settles it
            raise
        client.pending.append(step.trace)

    async def _run_tx_control(self, step: Step, client: ClientSession, login: BackendRole) -> None:
        verb = transaction_verb(step.part.sql, self.backend.dialect)
        started = time.perf_counter()
        session = client.active or await client.source.session_for(login)
        was_open = client.in_transaction
        try:
            if verb is TxVerb.COMMIT and was_open:
                self._finish(step, started, "ok")
                traces = [*client.pending, step.trace]
                if any(t.outcome == "failed" for t in client.pending):  # PostgreSQL answers ROLLBACK
                    step.result = await session.execute(step.part.sql, None, step.part.command)
                    self._settle(client, "rolled_back", step)
                    return
                await session.record_traces(traces)
                step.result = await session.execute(step.part.sql, None, step.part.command)
                client.pending.clear()
                client.savepoints.clear()
                client.active = None
                return
            step.result = await session.execute(step.part.sql, None, step.part.command)
        except errors.SqlgateError as error:
            self._finish(step, started, "failed", error)
            error.extra["trace_id"] = step.trace.id
            if client.in_transaction:
                client.pending.append(step.trace)
            else:
                self._settle(client, "rolled_back", None)
                self.traces.add([step.trace])
            raise
        self._finish(step, started, "ok")
        if verb is TxVerb.BEGIN and not was_open:
            client.active = session
            client.pending.append(step.trace)
        elif verb is TxVerb.ROLLBACK and was_open:
            self._settle(client, "rolled_back", step)
        elif verb is TxVerb.SAVEPOINT and was_open:
            client.savepoints.append((_savepoint_name(step.part.sql), len(client.pending)))
            client.pending.append(step.trace)
        elif verb is TxVerb.ROLLBACK_TO and was_open:
            name = _savepoint_name(step.part.sql)
            mark = next((n for s, n in reversed(client.savepoints) if s == name), len(client.pending))
            undone, client.pending = client.pending[mark + 1:], client.pending[: mark + 1]
            for trace in undone:
                trace.outcome = "rolled_back"
            self.traces.add(undone)
            client.pending.append(step.trace)
        elif was_open:
            client.pending.append(step.trace)
        else:  # COMMIT/ROLLBACK with no transaction open: PostgreSQL warns and goes on
            self.traces.add([step.trace])

    def end_session(self, client: ClientSession) -> None:
        """The client went away (or was ended): an open transaction rolls back, and
        the statements it held are traced as such."""
        if client.pending:
            self._settle(client, "rolled_back", None)

    def _settle(self, client: ClientSession, outcome: str, closing: Step | None) -> None:
        for trace in client.pending:
            if trace.outcome == "ok":
                trace.outcome = outcome
        if closing is not None:
            client.pending.append(closing.trace)
        self.traces.add(client.pending)
        client.pending = []
        client.savepoints.clear()
        client.active = None


# Statements PostgreSQL refuses inside a transaction block; they change no rows
# a checkpoint would keep, so they run on their own.
NO_TRANSACTION_BLOCK = frozenset({"VACUUM", "CREATE DATABASE", "DROP DATABASE", "ALTER SYSTEM"})


# Classes whose statements may leave state on the connection (SET and set_config,
# SELECT INTO TEMP and other DDL, whatever an admin's dangerous statement does).
_STATEFUL = frozenset({C.SESSION, C.SAFE_DDL, C.DESTRUCTIVE_DDL, C.DANGEROUS})


def _note_session_state(session: Session, part: Part) -> None:
    """Decided by the classification, never by the command tag (a SELECT can set state)."""
    if part.klass in _STATEFUL:
        session.dirty = True


def _runs_alone(step: Step) -> bool:
    """Run without a transaction of sqlgate's: plain reads, and what cannot run in one."""
    return step.part.klass is C.READ or step.part.command in NO_TRANSACTION_BLOCK


def _savepoint_name(sql: str) -> str:
    """The savepoint a SAVEPOINT / RELEASE / ROLLBACK TO statement names (last identifier)."""
    import sqlglot

    tokens = sqlglot.tokenize(sql, read="postgres")
    words = [t.text for t in tokens if t.text not in (";",)]
    return words[-1].lower() if words else ""
