"""POST /sql: Neon's protocol in, the pipeline, Neon's JSON out (plus
sqlgate's `trace_id`, `checkpoint` and, on errors, `reason` and `next`)."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response

from proxy import errors
from proxy.http.context import AppContext, authenticate, json_response, read_body
from proxy.http.neon import BodyBuilder, ResponseTooLarge, parse_connection_string, parse_request
from proxy.pipeline import Request as PipelineRequest

CORS_HEADERS = {
    "Allow": "OPTIONS, POST",
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Authorization, Neon-Connection-String, Neon-Raw-Text-Output, Neon-Array-Mode, "
    "Neon-Pool-Opt-In, Neon-Batch-Read-Only, Neon-Batch-Isolation-Level, Neon-Batch-Deferrable",
    "Access-Control-Max-Age": "86400",
}


async def sql_options(request: Request) -> Response:
    return Response(status_code=200, headers=CORS_HEADERS)


async def sql(request: Request) -> Response:
    ctx: AppContext = request.app.state.ctx
    body = await read_body(request, ctx.settings.max_request_bytes)
    conn = None
    if "neon-connection-string" in request.headers:
        conn = parse_connection_string(request.headers["neon-connection-string"])
    parsed = parse_request(body, request.headers)
    identity = await authenticate(request, conn)
    branch = parsed.branch or (conn.database if conn and conn.database else None) or "main"
    pipeline_request = PipelineRequest(
        identity=identity, queries=parsed.queries, branch=branch, front_door="http", tx=parsed.tx,
        dry_run=parsed.dry_run,
    )
    response = await ctx.pipeline.run(pipeline_request)
    if response.plan is not None:
        return json_response({"dry_run": True, "request_id": response.request_id, "plan": response.plan})
    builder = BodyBuilder(ctx.settings.max_response_bytes)
    try:
        if parsed.batch:
            parts = []
            for index, mode in enumerate(parsed.array_mode):
                steps = response.results_for(index)
                # A batch item is one statement; an item holding several answers with its last.
                parts.append(builder.result(steps[-1], mode, parsed.raw_text) if steps else _empty(mode))
            text = '{"results":[' + ",".join(parts) + "]}"
            headers = _batch_headers(request)
        else:
            text = _single(builder, response.steps, parsed.array_mode[0], parsed.raw_text)
            headers = {}
    except ResponseTooLarge:
        raise errors.response_too_large(ctx.settings.max_response_bytes) from None
    return Response(text, media_type="application/json",
                    headers={"Access-Control-Allow-Origin": "*", **headers})


def _single(builder: BodyBuilder, steps: list, array_mode: bool, raw_text: bool) -> str:  # type: ignore[type-arg]
    if not steps:
        return _empty(array_mode)
    if len(steps) == 1:
        return builder.result(steps[0], array_mode, raw_text)
    # Several statements in one string (a curl user's script): answer with the
    # last one, as psql shows it, and every statement's result under "results".
    each = [builder.result(step, array_mode, raw_text) for step in steps]
    checkpoints = [step.checkpoint.public() for step in steps if step.checkpoint is not None]
    return each[-1][:-1] + ',"results":[' + ",".join(each) + '],"checkpoints":' + json.dumps(checkpoints) + "}"


def _empty(array_mode: bool) -> str:
    return json.dumps({"fields": [], "rows": [], "command": "", "rowCount": None, "rowAsArray": array_mode})


def _batch_headers(request: Request) -> dict[str, str]:
    headers = {}
    level = request.headers.get("neon-batch-isolation-level")
    if level:
        headers["Neon-Batch-Isolation-Level"] = level
    for name in ("Neon-Batch-Read-Only", "Neon-Batch-Deferrable"):
        if request.headers.get(name.lower()) == "true":
            headers[name] = "true"
    return headers
