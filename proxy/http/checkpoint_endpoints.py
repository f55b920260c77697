"""Checkpoints over HTTP: list them, roll back to one (issue #3)."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from branching import common
from policy.identity import Role
from proxy import errors
from proxy.http.context import AppContext, authenticate, json_response, read_body, since_and_limit
from proxy.result import Result
from proxy.rollback import LIST_COLUMNS, OUTCOME_COLUMNS, checkpointer_of, perform_rollback
from proxy.sql_functions import CallContext, rows_result

ROLLBACK_SHAPE = '{"checkpoint": "cp_...", "mode": "all", "dry_run": false}'


def _checkpointer(ctx: AppContext) -> Any:
    return checkpointer_of(ctx.pipeline)


def _bad(message: str) -> errors.SqlgateError:
    return errors.bad_request(message, f"Send {ROLLBACK_SHAPE}.", f"POST /rollback with {ROLLBACK_SHAPE}")


async def rollback(request: Request) -> Response:
    ctx: AppContext = request.app.state.ctx
    identity = await authenticate(request)
    checkpointer = _checkpointer(ctx)
    try:
        payload = json.loads(await read_body(request, 64 * 1024) or b"{}")
    except ValueError as exc:
        raise _bad(f"could not parse the HTTP request body: {exc}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("checkpoint"), str):
        raise _bad('the body must be a JSON object with "checkpoint"')
    cp_id = payload["checkpoint"]
    mode = payload.get("mode", "all")
    if mode not in common.MODES:
        raise common.bad_mode(mode)
    dry_run = payload.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise _bad('"dry_run" must be true or false')
    branch = payload.get("branch", "main")
    if not isinstance(branch, str):
        raise _bad('"branch" must be a string')
    outcome = await perform_rollback(checkpointer, ctx.traces, identity, cp_id, mode, dry_run, branch)
    return json_response({**outcome.public(), "trace_id": outcome.trace_id})


async def list_checkpoints(request: Request) -> Response:
    ctx: AppContext = request.app.state.ctx
    identity = await authenticate(request)
    checkpointer = _checkpointer(ctx)
    q = request.query_params
    since, limit = since_and_limit(q, "/checkpoints")
    token_id = None if identity.role is Role.ADMIN else identity.token.id
    items = await checkpointer.list(actor=q.get("actor"), branch=q.get("branch"), since=since, token_id=token_id,
                                    limit=limit)
    for item in items:
        item["undo"] = {"method": "POST", "path": "/rollback", "body": {"checkpoint": item["id"]}}
    return json_response({"checkpoints": items})


# `sqlgate.*` from SQL, for proxy.server to register beside the builtins (see the issue #3 report).
def register_checkpoint_functions(functions: Any, pipeline: Any, traces: Any) -> None:
    """`SELECT sqlgate.rollback('cp_...' [, 'statement' [, true]])` and `SELECT * FROM sqlgate.checkpoints`."""
    async def rollback(ctx: CallContext) -> Result:
        args = list(ctx.call.args)
        if not args or not isinstance(args[0], str):
            raise errors.bad_request("sqlgate.rollback takes a checkpoint id", "SELECT sqlgate.rollback('cp_...')",
                                     "SELECT * FROM sqlgate.checkpoints to find one")
        mode = args[1] if len(args) > 1 else "all"
        dry_run = bool(args[2]) if len(args) > 2 else False
        outcome = await perform_rollback(checkpointer_of(pipeline), traces, ctx.identity, args[0], str(mode),
                                         dry_run, ctx.branch, trace=ctx.trace)
        return rows_result([outcome.public()], OUTCOME_COLUMNS)

    async def list_checkpoints(ctx: CallContext) -> Result:
        token_id = None if ctx.identity.role is Role.ADMIN else ctx.identity.token.id
        items = await checkpointer_of(pipeline).list(token_id=token_id, limit=min(ctx.call.limit or 100, 10_000))
        return rows_result(items, LIST_COLUMNS)

    functions.register("rollback", rollback)
    functions.register("checkpoints", list_checkpoints)
