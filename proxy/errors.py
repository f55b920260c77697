"""The one error type every front door renders.

Each situation has a named constructor carrying a stable code (`reason`),
the SQLSTATE PostgreSQL would give, a message, a hint and the next step.
HTTP renders it as Neon's JSON error body plus `reason` and `next`; the wire
protocol renders the same fields as an ErrorResponse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Neon's error body fields, in the order Neon writes them (neon-http.md §3).
NEON_FIELDS = (
    "message", "code", "detail", "hint", "position", "internalPosition", "internalQuery",
    "severity", "where", "table", "column", "schema", "dataType", "constraint",
    "file", "line", "routine",
)


@dataclass
class SqlgateError(Exception):
    reason: str  # stable sqlgate code, e.g. "policy.denied"
    sqlstate: str  # five-character SQLSTATE
    message: str
    hint: str = ""
    next: str = ""  # the concrete step that fixes it
    status: int = 400
    detail: str | None = None
    position: int | None = None  # 1-based character position in the SQL
    extra: dict[str, Any] = field(default_factory=dict)  # PG diagnostics passed through
    # The request's statements that ran before this error; the wire protocol sends
    # their results first, as PostgreSQL does. Never rendered into a body.
    completed: list[Any] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {name: None for name in NEON_FIELDS}
        body.update(self.extra)
        body.update(
            message=self.message,
            code=self.sqlstate,
            detail=self.detail,
            hint=self.hint or None,
            position=str(self.position) if self.position is not None else body.get("position"),
            severity=body.get("severity") or "ERROR",
        )
        body["reason"] = self.reason
        body["next"] = self.next
        return body

    def wire_fields(self) -> dict[str, str]:
        """ErrorResponse fields keyed by their one-letter protocol codes."""
        fields = {"S": "ERROR", "V": "ERROR", "C": self.sqlstate, "M": self.message}
        if self.detail:
            fields["D"] = self.detail
        hint = " ".join(part for part in (self.hint, f"Next: {self.next}" if self.next else "") if part)
        if hint:
            fields["H"] = hint
        if self.position is not None:
            fields["P"] = str(self.position)
        return fields


# --- requests ---------------------------------------------------------------

def bad_request(message: str, hint: str, next_step: str) -> SqlgateError:
    return SqlgateError("request.invalid", "08P01", message, hint, next_step)


def body_not_json(problem: str) -> SqlgateError:
    return bad_request(
        f"could not parse the HTTP request body: {problem}",
        'The body must be JSON: {"query": "SELECT 1", "params": []} or {"queries": [{"query": "...", "params": []}]}.',
        'POST /sql with a body like {"query": "SELECT 1"}',
    )


def request_too_large(limit: int) -> SqlgateError:
    return SqlgateError(
        "request.too_large", "54000", f"request is too large (max is {limit} bytes)",
        "Send fewer or smaller statements per request.", "split the request into several POST /sql calls",
        status=413,
    )


def response_too_large(limit: int) -> SqlgateError:
    return SqlgateError(
        "response.too_large", "54000", f"response is too large (max is {limit} bytes)",
        "Select fewer rows or columns.", "add a LIMIT (and OFFSET to page) to the query",
        status=507,
    )


def not_found(path: str, endpoints: list[str]) -> SqlgateError:
    return SqlgateError(
        "http.not_found", "42704", f"no endpoint {path}",
        "Endpoints: " + ", ".join(endpoints), "GET / for the quickstart, GET /openapi.json for the whole API",
        status=404,
    )


def method_not_allowed(method: str, path: str) -> SqlgateError:
    return SqlgateError(
        "http.method_not_allowed", "42704", f"{method} is not allowed on {path}",
        "See GET /openapi.json for the methods each endpoint takes.", "GET /openapi.json", status=405,
    )


def invalid_isolation_level(value: str) -> SqlgateError:
    return bad_request(
        "invalid isolation level",
        f"Neon-Batch-Isolation-Level was {value!r};"
        " it takes ReadUncommitted, ReadCommitted, RepeatableRead or Serializable.",
        "send the header with one of those values, or leave it out",
    )


# --- authentication ---------------------------------------------------------

def auth_missing() -> SqlgateError:
    return SqlgateError(
        "auth.missing", "28000", "missing authentication credentials: required password",
        "Send 'Authorization: Bearer <token>', or the token as the password of the Neon-Connection-String header.",
        "retry with the header 'Authorization: Bearer $SQLGATE_TOKEN'", status=401,
    )


def auth_invalid() -> SqlgateError:
    return SqlgateError(
        "auth.invalid", "28P01", "the token is not valid (unknown, expired or revoked)",
        "Tokens are created by POST /tokens or `sqlgate token create`; the admin token is in DATA/admin.token.",
        "ask the token's owner for a new token", status=401,
    )


def connection_string_invalid(problem: str) -> SqlgateError:
    return bad_request(
        f"invalid header: neon-connection-string: {problem}",
        "It must read postgresql://ACTOR:TOKEN@HOST/BRANCH.",
        "send Neon-Connection-String: postgresql://agent:$SQLGATE_TOKEN@127.0.0.1/main",
    )


# --- policy -----------------------------------------------------------------

def policy_denied(what: str, role: str, hint: str, next_step: str) -> SqlgateError:
    return SqlgateError(
        "policy.denied", "42501", f"sqlgate refused this statement: {what} is not allowed for a {role} token",
        hint, next_step, status=403,
    )


def meta_denied(role: str) -> SqlgateError:
    return SqlgateError(
        "policy.metadata", "42501", f"sqlgate's own schema (sqlgate.*) cannot be used by a {role} token",
        "Traces and checkpoints are read through the HTTP API.", "GET /traces or GET /checkpoints", status=403,
    )


def unparseable(problem: str, position: int | None = None) -> SqlgateError:
    return SqlgateError(
        "sql.unparseable", "42601", problem if problem.startswith("syntax error") else f"syntax error: {problem}",
        "The database would reject this text, so nothing was run.",
        'fix the syntax; POST /sql with "dry_run": true checks a statement without running it',
        position=position,
    )


def transaction_control(command: str) -> SqlgateError:
    return bad_request(
        f"{command} in the middle of a request is not allowed",
        "Each HTTP request is one transaction: statements run in order and commit together.",
        "remove the BEGIN/COMMIT statements, or split the work into several requests",
    )


def params_with_many_statements() -> SqlgateError:
    return SqlgateError(
        "request.params_multi", "42601", "cannot insert multiple commands into a prepared statement",
        "Parameters ($1, $2, ...) bind to one statement.",
        'send {"queries": [{"query": "...", "params": [...]}, ...]} to run several statements with parameters',
    )


def read_only(command: str) -> SqlgateError:
    return SqlgateError(
        "policy.read_only", "25006", f"cannot execute {command} in a read-only transaction",
        "The batch asked for Neon-Batch-Read-Only: true.", "drop the header or the statement",
    )


def branch_not_found(name: str) -> SqlgateError:
    return SqlgateError(
        "branching.branch_not_found", "3D000", f'branch "{name}" does not exist',
        "This server has the branch main.", 'use the database name "main" (or leave "branch" out)', status=404,
    )


def token_not_found(token_id: str) -> SqlgateError:
    return SqlgateError(
        "auth.token_not_found", "42704", f"no token {token_id}",
        "Token ids look like tok_... and are listed by GET /tokens.", "GET /tokens", status=404,
    )


def token_scope(problem: str) -> SqlgateError:
    return SqlgateError(
        "auth.scope", "42501", problem,
        "A token can only create tokens with its own role or a lesser one, expiring no later than itself.",
        'POST /tokens with {"role": "read"}', status=403,
    )


# --- backend ----------------------------------------------------------------

def backend_unavailable(problem: str) -> SqlgateError:
    return SqlgateError(
        "backend.unavailable", "08006", f"the database is not reachable: {problem}",
        "sqlgate could not get a connection to its database.", "retry in a few seconds; GET /health shows status",
        status=503,
    )


def internal(problem: str) -> SqlgateError:
    return SqlgateError(
        "internal", "XX000", f"internal error: {problem}",
        "This is a bug in sqlgate; the statement's transaction was rolled back.",
        "retry once; if it persists, report it with the trace id", status=500,
    )


# --- PostgreSQL wire protocol -------------------------------------------------

def in_failed_transaction() -> SqlgateError:
    return SqlgateError(
        "sql.in_failed_transaction", "25P02",
        "current transaction is aborted, commands ignored until end of transaction block",
        "An earlier statement in this transaction failed.", "send ROLLBACK, then run the transaction again",
    )


def ddl_in_transaction(command: str, why: str) -> SqlgateError:
    return SqlgateError(
        "sql.ddl_in_transaction", "25001", f"{command} cannot run in this transaction: {why}",
        "A write token's DDL runs as sqlgate's ddl login, and a transaction is one connection: it moves "
        "there only while moving loses nothing (plain reads under READ COMMITTED).",
        "ROLLBACK, then run the transaction again with its DDL first (or the DDL in a transaction of its own)",
    )


def prepared_multiple_statements() -> SqlgateError:
    return SqlgateError(
        "sql.prepared_multi", "42601", "cannot insert multiple commands into a prepared statement",
        "A Parse message holds one statement.", "send one statement per Parse, or use the simple query protocol",
    )


def copy_refused(message: str) -> SqlgateError:
    return SqlgateError(
        "wire.copy", "0A000", message, "DuckDB has no server files for COPY here.",
        "use COPY ... FROM STDIN or COPY ... TO STDOUT (psql: \\copy)",
    )


def copy_bad_row(found: int, expected: int) -> SqlgateError:
    return SqlgateError(
        "sql.error", "22P04", f"COPY row has {found} columns, expected {expected}",
        "Each line of COPY data is one row, with one value per column.", "send one value per column on every line",
    )


def copy_too_large(limit_mib: int) -> SqlgateError:
    return SqlgateError(
        "wire.copy", "54000", f"COPY CSV data over {limit_mib} MiB in one statement",
        "sqlgate buffers CSV COPY data to parse it.", "split the data into several COPY statements",
    )


def copy_failed(reason: str) -> SqlgateError:
    return SqlgateError(
        "sql.error", "57014", f"COPY from stdin failed: {reason}", "The client ended the COPY with CopyFail.",
        "fix the data and run the COPY again",
    )


def binary_parameter(problem: str) -> SqlgateError:
    return SqlgateError(
        "wire.binary_format", "22P03", problem, "sqlgate could not read this parameter's binary format.",
        "send this parameter in text format",
    )


def no_binary_output(type_oid: int) -> SqlgateError:
    return SqlgateError(
        "wire.binary_format", "42883", f"no binary output function available for type {type_oid}",
        "sqlgate sends this type only as text.", "ask for this column in text format",
    )


def invalid_encoding(nul: bool = False) -> SqlgateError:
    return SqlgateError(
        "wire.encoding", "22021", 'invalid byte sequence for encoding "UTF8"' + (": 0x00" if nul else ""),
        "Text must be UTF-8, without NUL characters.",
        "remove NUL characters from the parameter" if nul else "send UTF-8 text",
    )


def result_formats_mismatch(formats: int, columns: int) -> SqlgateError:
    return SqlgateError(
        "wire.protocol", "08P01", f"bind message has {formats} result formats but query has {columns} columns",
        "Bind takes no result format, one for all columns, or one per column.", "send one result format per column",
    )


def duplicate_prepared(name: str) -> SqlgateError:
    return SqlgateError(
        "wire.duplicate_statement", "42P05", f'prepared statement "{name}" already exists',
        "Named prepared statements live until closed.", "Close it first, or use another name",
    )


def no_prepared(name: str) -> SqlgateError:
    message = f'prepared statement "{name}" does not exist' if name else "unnamed prepared statement does not exist"
    return SqlgateError("wire.no_statement", "26000", message, "Bind and Describe name a statement Parse created.",
                        "send Parse first")


def duplicate_portal(name: str) -> SqlgateError:
    return SqlgateError(
        "wire.duplicate_portal", "42P03", f'portal "{name}" already exists', "Named portals live until closed.",
        "Close it first, or use another name",
    )


def no_portal(name: str) -> SqlgateError:
    return SqlgateError("wire.no_portal", "34000", f'portal "{name}" does not exist',
                        "Execute and Describe name a portal Bind created.", "send Bind first")
