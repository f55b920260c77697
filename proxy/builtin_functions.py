"""The `sqlgate.*` names sqlgate itself answers: whoami, traces, tokens.
Each applies the same rules as its HTTP endpoint (non-admin tokens see only
their own)."""

from __future__ import annotations

from policy.identity import Role
from proxy import errors
from proxy.backends.base import MetaStore
from proxy.result import Result
from proxy.sql_functions import CallContext, SqlFunctions, rows_result
from proxy.trace import TraceFilter
from proxy.trace_sink import TraceSink, TraceWriteError

TRACE_COLUMNS = ["id", "at", "actor", "branch", "front_door", "class", "command", "tables", "rows", "duration_ms",
                 "checkpoint_id", "outcome", "error_code", "sql"]
TOKEN_COLUMNS = ["id", "name", "role", "created_at", "expires_at", "revoked_at", "created_by"]


def register_builtins(functions: SqlFunctions, meta: MetaStore, traces: TraceSink) -> None:
    async def whoami(ctx: CallContext) -> Result:
        token = ctx.identity.token
        return rows_result([{"actor": ctx.identity.actor, "role": token.role.label, "token_id": token.id,
                             "branch": ctx.branch, "expires_at": token.expires_at}],
                           ["actor", "role", "token_id", "branch", "expires_at"])

    async def list_traces(ctx: CallContext) -> Result:
        try:
            await traces.flush()
        except TraceWriteError:
            pass  # retried later; the answer may miss the newest few
        found = await meta.list_traces(TraceFilter(limit=min(ctx.call.limit or 100, 10_000)))
        if ctx.identity.role is not Role.ADMIN:
            found = [t for t in found if t.token_id == ctx.identity.token.id]
        return rows_result([t.public() for t in found], TRACE_COLUMNS)

    async def list_tokens(ctx: CallContext) -> Result:
        if ctx.identity.role is not Role.ADMIN:
            raise errors.meta_denied(ctx.identity.role.label)
        found = await meta.list_tokens()
        return rows_result([t.public() for t in found][: ctx.call.limit], TOKEN_COLUMNS)

    functions.register("whoami", whoami)
    functions.register("traces", list_traces)
    functions.register("tokens", list_tokens)
