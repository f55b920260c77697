"""The pipeline's lasting-session half (the wire protocol's): a client's own
BEGIN/COMMIT/ROLLBACK/SAVEPOINT run for real, and the traces of statements
inside its transaction commit with it or are written as rolled back."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from proxy import errors
from proxy.backends.base import BackendRole, Session
from proxy.client_session import ClientSession
from proxy.statement import StatementClass
from proxy.steps import Request, Step, runs_alone, savepoint_name
from proxy.txcontrol import TxVerb, transaction_verb

if TYPE_CHECKING:
    from proxy.pipeline import Pipeline

C = StatementClass


class LastingSessions:
    """Mixed into Pipeline: its methods run with the pipeline's own steps."""

    async def execute_in_session(self: Pipeline, request: Request, steps: list[Step], client: ClientSession) -> None:
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
            if len(steps) == 1 and runs_alone(steps[0]):
                await self._run_autocommit(session, steps[0])
            else:
                await self._run_transaction(request, session, steps, rollback_at_end=False)
            return
        for i, step in enumerate(steps):
            try:
                await self._run_session_step(request, step, client, login)
            except errors.SqlgateError as error:
                error.completed = steps[:i]
                raise

    async def _run_session_step(self: Pipeline, request: Request, step: Step, client: ClientSession,
                                login: BackendRole) -> None:
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
        if (client.active_login is BackendRole.WRITE and self.backend.dialect == "postgres"
                and self.login_for(request.identity, [step]) is BackendRole.DDL):
            session = await self._move_to_ddl_login(client, step)
        started = time.perf_counter()
        try:
            await self._run_step(request, session, step)
        except errors.SqlgateError as error:
            self._finish(step, started, "failed", error)
            error.extra["trace_id"] = step.trace.id
            client.pending.append(step.trace)  # the transaction is now aborted; ROLLBACK settles it
            raise
        client.pending.append(step.trace)

    async def _move_to_ddl_login(self: Pipeline, client: ClientSession, step: Step) -> Session:
        """A write token's DDL runs on the ddl login, and a transaction is one connection: it
        moves there (ROLLBACK on one, BEGIN on the other) only while that loses nothing, as
        PostgreSQL itself reports: as an HTTP request with DDL runs there whole."""
        from proxy.backends.postgres_logins import why_not_movable

        assert client.active is not None
        begin, *since = client.pending
        why = next((f"it ran {t.command or t.klass}" for t in since
                    if (t.klass != C.READ.label and t.command != "SHOW") or t.outcome != "ok"), None)
        why = why or ("it has savepoints" if client.savepoints else None)
        why = why or await why_not_movable(client.active.conn)
        if why:
            raise errors.ddl_in_transaction(step.part.command or "DDL", why)
        await client.active.execute("ROLLBACK", None, "ROLLBACK")
        session = await client.source.session_for(BackendRole.DDL)
        await session.execute(begin.sql, None, "BEGIN")
        client.active, client.active_login = session, BackendRole.DDL
        return session

    async def _run_tx_control(self: Pipeline, step: Step, client: ClientSession, login: BackendRole) -> None:
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
                step.result = await session.commit_with_traces(traces, step.part.sql, step.part.command)
                client.pending.clear()
                client.savepoints.clear()
                client.active = client.active_login = None
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
            client.active, client.active_login = session, client.active_login if client.active else login
            client.pending.append(step.trace)
        elif verb is TxVerb.ROLLBACK and was_open:
            self._settle(client, "rolled_back", step)
        elif verb is TxVerb.SAVEPOINT and was_open:
            client.savepoints.append((savepoint_name(step.part.sql), len(client.pending)))
            client.pending.append(step.trace)
        elif verb is TxVerb.ROLLBACK_TO and was_open:
            name = savepoint_name(step.part.sql)
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

    def end_session(self: Pipeline, client: ClientSession) -> None:
        """The client went away (or was ended): an open transaction rolls back, and
        the statements it held are traced as such."""
        if client.pending:
            self._settle(client, "rolled_back", None)

    def _settle(self: Pipeline, client: ClientSession, outcome: str, closing: Step | None) -> None:
        for trace in client.pending:
            if trace.outcome == "ok":
                trace.outcome = outcome
        if closing is not None:
            client.pending.append(closing.trace)
        self.traces.add(client.pending)
        client.pending = []
        client.savepoints.clear()
        client.active = client.active_login = None


