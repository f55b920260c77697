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
from datetime import UTC, datetime
from typing import Any, NoReturn

from branching.checkpoint import Checkpoint, CheckpointContext, Checkpointer
from policy.classify import classify_cached
from policy.decide import Allow, CheckpointThenAllow, Deny, decide
from policy.identity import Identity, Role
from proxy import errors
from proxy.backends.base import Backend, BackendRole, Session, TxOptions
from proxy.client_session import ClientSession
from proxy.result import Result
from proxy.session_steps import LastingSessions
from proxy.sql_functions import CallContext, SqlFunctions
from proxy.statement import Part, Statement, StatementClass
from proxy.steps import STATEFUL_COMMANDS, Query, Request, Response, Step, note_session_state, runs_alone
from proxy.trace import Trace, new_id
from proxy.trace_sink import TraceSink
from proxy.txcontrol import TxVerb, begin_options, transaction_verb

__all__ = ["Pipeline", "Query", "Request", "Response", "Step"]  # the step types live in proxy.steps

C = StatementClass


def _trace(identity: Identity, request_id: str, branch: str, front_door: str, part: Part,
           params: tuple[str | None, ...] | None) -> Trace:
    return Trace(request_id=request_id, actor=identity.actor, token_id=identity.token.id, branch=branch,
                 front_door=front_door, sql=part.sql, params=list(params) if params else None,
                 klass=part.klass.label, tables=list(part.tables), command=part.command)


def _end_trace(trace: Trace, started: float, outcome: str, rows: int | None,
               error: errors.SqlgateError | None) -> None:
    """A step's trace once it ran: its time (the cost budgets spend), outcome, rows (None: left as is)."""
    trace.duration_ms = trace.cost = (time.perf_counter() - started) * 1000
    trace.outcome = outcome
    if rows is not None:
        trace.rows = rows
    if error is not None:
        trace.error_code, trace.error_message = error.reason, error.message


def _session_only(part: Part) -> bool:
    """DDL that creates only temporary objects: it runs on the token's own login, where the session's
    later statements (which are DML, on that login) will see them."""
    return part.klass is C.SAFE_DDL and bool(part.targets) and all(
        t.action == "create" and t.detail.split()[:1] == ["temp"] for t in part.targets)


@dataclass
class Pipeline(LastingSessions):
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
            return Response(request_id, steps, await self.plan(steps, self.login_for(request.identity, steps)))
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
                trace = _trace(identity, request_id, request.branch, request.front_door, part, query.params)
                call = self.functions.match(part.sql, self.backend.dialect) if part.touches_meta else None
                # A sqlgate.* call is allowed here: its handler applies its own rules.
                decision = Allow() if call is not None else decide(identity.role, part)
                steps.append(Step(index, part, query.params, decision, trace, call=call))
        return steps

    def _refuse_whole(self, request: Request, request_id: str, statement: Statement,
                      error: errors.SqlgateError) -> None:
        identity = request.identity
        trace = Trace(
            request_id=request_id, actor=identity.actor, token_id=identity.token.id, branch=request.branch,
            front_door=request.front_door, sql=statement.sql, params=None, klass=statement.klass.label,
            tables=list(statement.tables), outcome="refused", error_code=error.reason, error_message=error.message,
        )
        self.traces.add([trace])
        error.extra["trace_id"] = trace.id
        raise error

    def relay_step(self, identity: Identity, sql: str, params: tuple[str | None, ...] | None, branch: str,
                   statement: Statement | None = None) -> tuple[Trace, BackendRole] | None:
        """A statement the wire front door may relay to PostgreSQL as bytes: its
        trace (started now) and the login to relay it as. Only one plain read the
        policy allows, with nothing for sqlgate to add (no checkpoint, no sqlgate.*
        call, no session state); anything else gets None and takes `run`. Its trace
        is finished by `relayed`, as any statement run alone. (The hot path of the
        wire front door: written for speed, with `classify` and `decide` as for any step.)"""
        if branch != "main" or self.backend.dialect != "postgres":
            return None
        statement = statement or classify_cached(sql, "postgres")
        parts = statement.parts
        if len(parts) != 1:
            return None
        part = parts[0]
        if part.klass is not C.READ or part.touches_meta or part.command in STATEFUL_COMMANDS:
            return None
        if decide(identity.role, part).__class__ is not Allow:
            return None
        trace_id = new_id("tr")  # the request is this one statement: its id is the trace's, as rq_
        trace = Trace("rq" + trace_id[2:], identity.actor, identity.token.id, branch, "wire", part.sql,
                      list(params) if params else None, "read", list(part.tables), part.command,
                      id=trace_id, at=datetime.now(UTC))
        return trace, self.role_logins[identity.role]  # what login_for answers for a read

    def relayed(self, trace: Trace, started: float, tag: str, error: errors.SqlgateError | None) -> None:
        """A relayed statement's answer came back: traced as any statement run alone
        (`_trace_alone` with a result of that command tag and no rows of its own)."""
        words = tag.split()
        _end_trace(trace, started, "failed" if error else "ok",
                   int(words[-1]) if len(words) >= 2 and words[-1].isdigit() else 0, error)
        if error is not None:
            error.extra["trace_id"] = trace.id
        self.traces.add_one(trace)

    # --- policy -----------------------------------------------------------

    def enforce_policy(self, steps: list[Step]) -> None:
        denied = [(s, s.decision.error) for s in steps if isinstance(s.decision, Deny)]
        if denied:
            self._refuse(steps, denied)

    def _refuse(self, steps: list[Step], refused: list[tuple[Step, errors.SqlgateError]]) -> NoReturn:
        """Nothing runs: refused statements are traced as such, the others as skipped;
        the first refusal is the answer."""
        reasons = {id(step): error for step, error in refused}
        for step in steps:
            error = reasons.get(id(step))
            step.trace.outcome = "refused" if error else "skipped"
            if error:
                step.trace.error_code, step.trace.error_message = error.reason, error.message
        self.traces.add([s.trace for s in steps])
        first, error = refused[0]
        error.extra["trace_id"] = first.trace.id
        raise error

    # --- dry run ----------------------------------------------------------

    async def plan(self, steps: list[Step], login: BackendRole) -> list[dict[str, Any]]:
        """The dry run: each statement's class, decision and planner cost, planned as `login`."""
        plan = []
        for step in steps:
            part = step.part
            cost = None
            if part.klass in (C.READ, C.WRITE, C.DESTRUCTIVE_DML) and part.command != "COPY":
                cost = await self.backend.explain_cost(part.sql, step.params, login)
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
        if login is BackendRole.WRITE and any(s.part.klass in (C.SAFE_DDL, C.DESTRUCTIVE_DDL)
                                              and not _session_only(s.part) for s in steps):
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
            if len(steps) == 1 and runs_alone(steps[0]) and not request.tx.read_only:
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
                self._refuse(steps, [(step, errors.transaction_control(step.part.command or verb.value))])
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
        note_session_state(session, step.part)
        started = time.perf_counter()
        await self._run_alone(step, started, session.execute(step.part.sql, step.params, step.part.command))

    async def _run_alone(self, step: Step, started: float, work: Awaitable[Result]) -> None:
        """A statement with no transaction to commit with: traced through the sink."""
        try:
            step.result = await work
        except errors.SqlgateError as error:
            self._trace_alone(step, started, error)
            raise
        if not step.trace.stored:  # else it committed with the work (e.g. a rollback from SQL)
            self._trace_alone(step, started, None)

    def _trace_alone(self, step: Step, started: float, error: errors.SqlgateError | None) -> None:
        self._finish(step, started, "failed" if error else "ok", error)
        if error is not None:
            error.extra["trace_id"] = step.trace.id
        self.traces.add([step.trace])

    async def _run_transaction(self, request: Request, session: Session, steps: list[Step],
                               rollback_at_end: bool) -> None:
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
            await session.commit_with_traces([s.trace for s in steps])
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
        note_session_state(session, part)
        if isinstance(step.decision, CheckpointThenAllow):
            step.checkpoint = await self._take_checkpoint(session, request, step)
            step.trace.checkpoint_id = step.checkpoint.id if step.checkpoint is not None else None
        if step.checkpoint is not None and step.checkpoint.run is not None:
            # The checkpoint decides how the statement runs (a DROP becomes a move, say).
            step.result = await step.checkpoint.run(
                lambda: session.execute(part.sql, step.params, part.command), step.params)
        else:
            step.result = await session.execute(part.sql, step.params, part.command)
        self._finish(step, started, "ok")

    async def _take_checkpoint(self, session: Session, request: Request, step: Step) -> Checkpoint | None:
        try:
            return await self._checkpoint(session, request, step)
        except errors.SqlgateError as exc:
            # An addition (safe_ddl: ADD COLUMN, CREATE INDEX...) is checkpointed so a rollback can take it
            # away; where it cannot be (a partitioned table, an ALTER DuckDB cannot keep), it destroys
            # nothing, so it runs unrecorded rather than refused.
            if exc.reason == "checkpoint.unavailable" and step.part.klass is C.SAFE_DDL:
                return None
            raise

    async def _checkpoint(self, session: Session, request: Request, step: Step) -> Checkpoint:
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
        result = step.result
        rows = None if result is None else result.row_count if result.row_count is not None else len(result.rows)
        _end_trace(step.trace, started, outcome, rows, error)

    def _trace_failure(self, steps: list[Step], failed: Step | None, error: errors.SqlgateError) -> None:
        if failed is not None:
            error.completed = steps[: steps.index(failed)]
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
        if failed is None:  # the COMMIT itself failed: every statement did, and the answer names the last
            for step in steps:
                step.trace.outcome = "failed"
                step.trace.error_code, step.trace.error_message = error.reason, error.message
            if steps:
                error.extra.setdefault("trace_id", steps[-1].trace.id)
        self.traces.add([s.trace for s in steps])
