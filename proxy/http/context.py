"""What every HTTP endpoint shares: the app's context, authentication from
headers, bounded body reading and JSON responses."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from policy.identity import Identity
from proxy import errors
from proxy.auth import Authenticator
from proxy.backends.base import Backend
from proxy.config import Settings
from proxy.http.neon import ConnectionString, parse_connection_string
from proxy.pipeline import Pipeline
from proxy.trace_sink import TraceSink


@dataclass
class AppContext:
    settings: Settings
    backend: Backend
    pipeline: Pipeline
    auth: Authenticator
    traces: TraceSink


def json_response(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, default=str), status_code=status, media_type="application/json",
                    headers={"Access-Control-Allow-Origin": "*"})


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise errors.request_too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise errors.request_too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def authenticate(request: Request, conn: ConnectionString | None = None) -> Identity:
    ctx: AppContext = request.app.state.ctx
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    secret = credentials.strip() if scheme.lower() == "bearer" else None
    if conn is None and "neon-connection-string" in request.headers:
        conn = parse_connection_string(request.headers["neon-connection-string"])
    if not secret and conn is not None:
        secret = conn.password
    actor = request.headers.get("x-sqlgate-actor") or (conn.user if conn else None)
    return await ctx.auth.authenticate(secret, actor)


def since_and_limit(query: Mapping[str, str], path: str) -> tuple[datetime | None, int]:
    """The `since` and `limit` filters the list endpoints share, checked."""
    try:
        since = datetime.fromisoformat(query["since"]) if "since" in query else None
        limit = min(int(query.get("limit", "100")), 10_000)
    except ValueError:
        raise errors.bad_request("since must be an ISO-8601 time and limit a whole number",
                                 "For example ?since=2026-01-01T00:00:00Z&limit=50.", f"GET {path}?limit=50") from None
    return since, limit
