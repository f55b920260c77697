"""Assembles the HTTP app: routes, and the one place errors become JSON.

No exception ever reaches a client as a stack trace: sqlgate's own errors
render as Neon's error body plus `reason` and `next`; anything else is
logged here and answered as an internal error.
"""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy import errors
from proxy.http import admin_endpoints as admin
from proxy.http import checkpoint_endpoints as checkpoints
from proxy.http import docs
from proxy.http.context import AppContext, json_response
from proxy.http.sql_endpoint import sql, sql_options

log = logging.getLogger("sqlgate.http")

ROUTES = [
    Route("/", docs.quickstart, methods=["GET"]),
    Route("/llms.txt", docs.quickstart, methods=["GET"]),
    Route("/openapi.json", docs.openapi, methods=["GET"]),
    Route("/health", admin.health, methods=["GET"]),
    Route("/sql", sql, methods=["POST"]),
    Route("/sql", sql_options, methods=["OPTIONS"]),
    Route("/tokens", admin.create_token, methods=["POST"]),
    Route("/tokens", admin.list_tokens, methods=["GET"]),
    Route("/tokens/{token_id}", admin.revoke_token, methods=["DELETE"]),
    Route("/traces", admin.list_traces, methods=["GET"]),
    Route("/rollback", checkpoints.rollback, methods=["POST"]),
    Route("/checkpoints", checkpoints.list_checkpoints, methods=["GET"]),
]


def endpoint_list() -> list[str]:
    seen: dict[str, list[str]] = {}
    for route in ROUTES:
        seen.setdefault(route.path, []).extend(m for m in sorted(route.methods or ()) if m != "HEAD")
    return [f"{' '.join(methods)} {path}" for path, methods in seen.items()]


async def sqlgate_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.SqlgateError)
    status = exc.status
    if status in (401, 403) and "neon-connection-string" in request.headers:
        # Neon's driver reads the error body (code, hint, ...) only from a 400,
        # and Neon itself answers the caller's auth mistakes with 400.
        status = 400
    return json_response(exc.to_json(), status=status)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        error = errors.not_found(request.url.path, endpoint_list())
    elif exc.status_code == 405:
        error = errors.method_not_allowed(request.method, request.url.path)
    else:
        error = errors.bad_request(str(exc.detail), "See GET /openapi.json.", "GET /openapi.json")
        error.status = exc.status_code
    return json_response(error.to_json(), status=error.status)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    error = errors.internal(type(exc).__name__)
    return json_response(error.to_json(), status=500)


def build_app(ctx: AppContext) -> Starlette:
    app = Starlette(
        routes=ROUTES,
        exception_handlers={
            errors.SqlgateError: sqlgate_error,
            HTTPException: http_error,
            Exception: unexpected_error,
        },
    )
    app.state.ctx = ctx
    return app
