"""What an agent reads first: GET / and /llms.txt (a quickstart short enough
to keep in context) and GET /openapi.json (the whole API)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from proxy.http.context import json_response

QUICKSTART = """\
# sqlgate quickstart (for agents)

sqlgate is a SQL gateway. Every statement you send is classified, checked
against your token's role, checkpointed if it destroys data, run, and traced.

## Authenticate
Send your token as `Authorization: Bearer $SQLGATE_TOKEN`.
Roles: `read` (SELECT, SHOW, EXPLAIN, SET), `write` (also INSERT/UPDATE/DELETE
and DDL; destructive statements get a checkpoint first), `admin` (everything).

## First query
    curl -s {base}/sql -H "Authorization: Bearer $SQLGATE_TOKEN" \\
      -d '{{"query": "SELECT $1::int + 1 AS answer", "params": ["41"]}}'
Answer: `{{"fields": [...], "rows": [{{"answer": 42}}], "command": "SELECT",
"rowCount": 1, "rowAsArray": false, "trace_id": "tr_..."}}`.
- Several statements in one "query" string (no params) run in order, in one
  transaction; the answer is the last one's, and "results" holds each.
- `{{"queries": [{{"query": "...", "params": [...]}}, ...]}}` runs a batch as one
  transaction and answers `{{"results": [...]}}`.
- Params are `$1, $2, ...`; send them as strings (or JSON values).
- Headers `Neon-Array-Mode: true` (rows as arrays) and
  `Neon-Raw-Text-Output: true` (values as PostgreSQL text) work as on Neon;
  the `@neondatabase/serverless` driver works with
  `neonConfig.fetchEndpoint = '{base}/sql'` and the connection string
  `postgresql://AGENT_NAME:TOKEN@{host}/main`.

## Check before you run
Add `"dry_run": true` to the body: nothing runs; you get each statement's
class, the tables it changes, the policy decision, the checkpoint that
would be taken and a cost estimate.

## Statement classes
read, write, destructive_dml (DELETE, UPDATE, TRUNCATE, MERGE),
safe_ddl (CREATE ...), destructive_ddl (DROP, ALTER ... DROP/TYPE, RENAME),
transaction, session, dangerous (DO blocks, GRANT, extensions, file and
program access, safeguard settings: admin only), unparseable (refused).

## Undo
A destructive statement's answer carries `"checkpoint": {{"id": "cp_...",
"undo": {{...}}}}`: POST that `undo` request to put the data back. ALTERs that
add to a table (ADD COLUMN, SET NOT NULL, CREATE INDEX, SET DEFAULT) get one
too, so going back to an earlier checkpoint takes them away.

## Traces
    curl -s '{base}/traces?limit=20' -H "Authorization: Bearer $SQLGATE_TOKEN"
Each statement you sent, with its class, tables, rows, duration and outcome.

## Tokens
Give a sub-agent less than you have:
    curl -s {base}/tokens -H "Authorization: Bearer $SQLGATE_TOKEN" \\
      -d '{{"name": "helper", "role": "read", "expires_in": 3600}}'
Revoke with `DELETE /tokens/tok_...`.

## Errors
Errors are JSON with `message`, `code` (SQLSTATE), `hint`, `reason` (a
stable code such as `policy.denied`) and `next` (what to do instead).
Read `next`; do not retry a refused statement unchanged.

The whole API: GET /openapi.json
"""


async def quickstart(request: Request) -> Response:
    host = request.headers.get("host", "127.0.0.1:8080")
    base = f"{request.url.scheme}://{host}"
    return PlainTextResponse(QUICKSTART.format(base=base, host=host))


async def openapi(request: Request) -> Response:
    return json_response(OPENAPI)


def _op(summary: str, body: dict[str, Any] | None = None, params: list[dict[str, Any]] | None = None,
        auth: bool = True) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {}}},
            "400": {"$ref": "#/components/responses/Error"},
            "401": {"$ref": "#/components/responses/Error"},
            "403": {"$ref": "#/components/responses/Error"},
            "404": {"$ref": "#/components/responses/Error"},
        },
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = params
    if not auth:
        op["security"] = []
    return op


_QUERY = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "description": "SQL; `sql` is accepted too"},
        "params": {"type": "array", "items": {}, "description": "values for $1, $2, ..."},
        "arrayMode": {"type": "boolean"},
    },
    "required": ["query"],
}
_SQL_BODY = {
    "oneOf": [
        {"allOf": [_QUERY, {"properties": {"branch": {"type": "string"}, "dry_run": {"type": "boolean"}}}]},
        {"type": "object", "required": ["queries"], "properties": {
            "queries": {"type": "array", "items": _QUERY, "minItems": 1},
            "branch": {"type": "string"}, "dry_run": {"type": "boolean"}}},
    ]
}
_ERROR = {
    "type": "object",
    "properties": {
        "message": {"type": "string"}, "code": {"type": "string", "description": "SQLSTATE"},
        "detail": {"type": ["string", "null"]}, "hint": {"type": ["string", "null"]},
        "position": {"type": ["string", "null"]}, "severity": {"type": "string"},
        "reason": {"type": "string", "description": "stable sqlgate code, e.g. policy.denied"},
        "next": {"type": "string", "description": "the step that fixes it"},
        "trace_id": {"type": "string"},
    },
    "required": ["message", "code", "reason", "next"],
}
_TRACE_FILTERS = [
    {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
    for name in ("actor", "branch", "class", "since", "outcome", "limit")
]

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "sqlgate", "version": "0.1.0",
             "description": "A SQL proxy for AI agents: classified, checkpointed and traced statements."},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {"Error": _ERROR},
        "responses": {"Error": {"description": "error", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
    },
    "security": [{"bearer": []}],
    "paths": {
        "/": {"get": _op("Quickstart for agents (text)", auth=False)},
        "/llms.txt": {"get": _op("Quickstart for agents (text)", auth=False)},
        "/openapi.json": {"get": _op("This document", auth=False)},
        "/health": {"get": _op("Liveness", auth=False)},
        "/sql": {
            "post": _op("Run SQL (Neon SQL-over-HTTP compatible); dry_run answers the plan", _SQL_BODY),
            "options": _op("CORS preflight", auth=False),
        },
        "/tokens": {
            "post": _op("Create a token (role defaults to read, expiry to 7 days)", {
                "type": "object", "properties": {
                    "name": {"type": "string"}, "role": {"enum": ["read", "write", "admin"]},
                    "expires_in": {"type": ["number", "null"], "description": "seconds"}}}),
            "get": _op("List tokens (admin: all; others: their own)"),
        },
        "/tokens/{token_id}": {"delete": _op("Revoke a token", params=[
            {"name": "token_id", "in": "path", "required": True, "schema": {"type": "string"}}])},
        "/traces": {"get": _op("Traces, newest first", params=_TRACE_FILTERS)},
        "/checkpoints": {"get": _op("Checkpoints with size, age and expiry", params=[
            {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
            for name in ("actor", "branch", "since", "limit")])},
        "/rollback": {"post": _op("Undo a destructive statement: back to just before it (mode all), or only it", {
            "type": "object", "required": ["checkpoint"], "properties": {
                "checkpoint": {"type": "string", "description": "cp_..."},
                "mode": {"enum": ["all", "statement"]}, "dry_run": {"type": "boolean"}}})},
    },
}
