"""sqlgate's own API beside /sql: health, tokens and traces."""

from __future__ import annotations

import json
from datetime import timedelta

from starlette.requests import Request
from starlette.responses import Response

from policy.identity import DEFAULT_TOKEN_LIFETIME, Role
from proxy import errors
from proxy.http.context import AppContext, authenticate, json_response, read_body, since_and_limit
from proxy.trace import OUTCOMES, TraceFilter
from proxy.trace_sink import TraceWriteError

TOKEN_SHAPE = '{"name": "agent-1", "role": "read", "expires_in": 86400}'


async def health(request: Request) -> Response:
    ctx: AppContext = request.app.state.ctx
    return json_response({"status": "ok", "backend": ctx.backend.dialect})


async def create_token(request: Request) -> Response:
    ctx: AppContext = request.app.state.ctx
    identity = await authenticate(request)
    body = await read_body(request, 64 * 1024)
    try:
        payload = json.loads(body or b"{}")
    except ValueError as exc:
        raise errors.bad_request(f"could not parse the HTTP request body: {exc}", f"Send {TOKEN_SHAPE}.",
                                 f"POST /tokens with {TOKEN_SHAPE}") from None
    if not isinstance(payload, dict):
        raise errors.bad_request("the body must be a JSON object", f"Send {TOKEN_SHAPE}.",
                                 f"POST /tokens with {TOKEN_SHAPE}")
    try:
        role = Role.parse(str(payload.get("role", "read")))  # least privilege unless asked
    except KeyError:
        raise errors.bad_request(f"unknown role {payload.get('role')!r}", "Roles are read, write and admin.",
                                 f"POST /tokens with {TOKEN_SHAPE}") from None
    expires_in = payload.get("expires_in", DEFAULT_TOKEN_LIFETIME.total_seconds())
    if expires_in is not None and (not isinstance(expires_in, (int, float)) or isinstance(expires_in, bool)
                                   or expires_in <= 0):
        raise errors.bad_request('"expires_in" must be a positive number of seconds (or null: never, admin only)',
                                 f"Send {TOKEN_SHAPE}.", f"POST /tokens with {TOKEN_SHAPE}")
    name = payload.get("name") or f"{role.label}-token"
    if not isinstance(name, str) or len(name) > 200:
        raise errors.bad_request('"name" must be a short string', f"Send {TOKEN_SHAPE}.",
                                 f"POST /tokens with {TOKEN_SHAPE}")
    lifetime = timedelta(seconds=expires_in) if expires_in is not None else None
    if lifetime is None and identity.role is not Role.ADMIN:
        raise errors.token_scope("only an admin token can create a token that never expires")
    token, secret = await ctx.auth.create_token(identity, name, role, lifetime)
    return json_response({**token.public(), "token": secret}, status=201)


async def list_tokens(request: Request) -> Response:
    ctx: AppContext = request.app.state.ctx
    identity = await authenticate(request)
    tokens = await ctx.backend.meta.list_tokens()
    if identity.role is not Role.ADMIN:
        tokens = [t for t in tokens if t.id == identity.token.id or t.created_by == identity.token.id]
    return json_response({"tokens": [t.public() for t in tokens]})


async def revoke_token(request: Request) -> Response:
    ctx: AppContext = request.app.state.ctx
    identity = await authenticate(request)
    token_id = request.path_params["token_id"]
    target = await ctx.backend.meta.get_token(token_id)
    if target is None:
        raise errors.token_not_found(token_id)
    if identity.role is not Role.ADMIN and target.created_by != identity.token.id and target.id != identity.token.id:
        raise errors.token_scope("a token can only revoke itself and the tokens it created")
    token = await ctx.auth.revoke(token_id)
    return json_response(token.public())


async def list_traces(request: Request) -> Response:
    ctx: AppContext = request.app.state.ctx
    identity = await authenticate(request)
    q = request.query_params
    since, limit = since_and_limit(q, "/traces")
    outcome = q.get("outcome")
    if outcome is not None and outcome not in OUTCOMES:
        raise errors.bad_request(f"unknown outcome {outcome!r}", "Outcomes: " + ", ".join(OUTCOMES), "GET /traces")
    filters = TraceFilter(actor=q.get("actor"), branch=q.get("branch"), klass=q.get("class"), since=since,
                          outcome=outcome, limit=limit)
    try:
        await ctx.traces.flush()
    except TraceWriteError:
        pass  # the newest few may be missing from this answer; they are retried
    traces = await ctx.backend.meta.list_traces(filters)
    if identity.role is not Role.ADMIN:  # a non-admin token sees only its own statements
        traces = [t for t in traces if t.token_id == identity.token.id]
    return json_response({"traces": [t.public() for t in traces]})

