"""The per-connection protocol state, with no I/O: what start-up answers,
which prepared statements and portals exist, whether the extended protocol
is skipping to the next Sync after an error, the ReadyForQuery status, and
the conversion of one statement's Result into backend messages."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from proxy import errors
from proxy.backends.duckdb_params import typed
from proxy.result import Field, Result
from proxy.statement import Statement
from proxy.wire import binary
from proxy.wire.messages_extended import Bind
from proxy.wire.messages_query import (
    CommandComplete,
    DataRow,
    DataRows,
    NoticeResponse,
    RowDescription,
    error_fields,
)
from proxy.wire.messages_startup import AuthenticationOk, BackendKeyData, ParameterStatus

SERVER_VERSION = "15.8 (sqlgate)"

# Start-up parameters a client may set; everything else is refused or ignored.
_REFUSED_PARAMETERS = {
    "options": "startup options (-c settings) are not accepted: they could switch off safeguards",
    "replication": "replication connections are not supported",
}


class Phase(enum.Enum):
    STARTUP = "startup"  # waiting for SSLRequest / StartupMessage
    AUTHENTICATING = "authenticating"  # AuthenticationSASL sent
    READY = "ready"
    CLOSED = "closed"


@dataclass
class PreparedStatement:
    name: str
    query: str
    parameter_types: tuple[int, ...]  # as Parse declared them (0 = unspecified)
    statement: Statement
    described: tuple[tuple[int, ...], list[Field] | None] | None = None  # parameter types, row fields


@dataclass
class Portal:
    name: str
    statement: PreparedStatement
    parameters: tuple[str | None, ...]
    result_formats: tuple[int, ...]
    result: Result | None = None
    sent: int = 0  # rows already sent by earlier Executes
    notices: list[bytes] = field(default_factory=list)


def startup_problem(parameters: dict[str, str]) -> str | None:
    """Why these start-up parameters are refused (a FATAL), or None."""
    for name, why in _REFUSED_PARAMETERS.items():
        if name in parameters and not (name == "replication" and parameters[name] in ("false", "0", "off", "no")):
            return why
    encoding = parameters.get("client_encoding", "UTF8").upper().replace("-", "").replace("'", "")
    if encoding not in ("UTF8", "UNICODE", "SQL_ASCII"):
        return f"client_encoding {parameters['client_encoding']!r} is not supported: sqlgate speaks UTF8 only"
    return None


def branch_for(parameters: dict[str, str]) -> str:
    """The database name is the branch; libpq's default (the user name) and
    the usual defaults mean the main branch."""
    database = parameters.get("database", "")
    if database in ("", "postgres", "main", parameters.get("user", "")):
        return "main"
    return database


def startup_complete(parameters: dict[str, str], process_id: int, secret_key: int) -> bytes:
    """AuthenticationOk, the ParameterStatus set clients read, BackendKeyData."""
    status = {
        "server_version": SERVER_VERSION,
        "server_encoding": "UTF8",
        "client_encoding": "UTF8",
        "DateStyle": "ISO, MDY",
        "IntervalStyle": "postgres",
        "integer_datetimes": "on",
        "standard_conforming_strings": "on",
        "TimeZone": "UTC",
        "application_name": parameters.get("application_name", ""),
        "is_superuser": "off",
        "session_authorization": parameters.get("user", ""),
    }
    return (AuthenticationOk() + b"".join(ParameterStatus(k, v) for k, v in status.items())
            + BackendKeyData(process_id, secret_key))


def error_response_fields(error: errors.SqlgateError) -> dict[str, str]:
    return error.wire_fields()


def fatal_fields(sqlstate: str, message: str, hint: str = "") -> dict[str, str]:
    return error_fields(sqlstate, message, "FATAL", hint)


def checkpoint_notice(checkpoint_id: str) -> bytes:
    return NoticeResponse({
        "S": "NOTICE", "V": "NOTICE", "C": "00000",
        "M": f"sqlgate: checkpoint {checkpoint_id} taken; undo with SELECT sqlgate.rollback('{checkpoint_id}')",
    })


def notice(text: str) -> bytes:
    return NoticeResponse({"S": "NOTICE", "V": "NOTICE", "C": "00000", "M": text})


# --- parameters and results --------------------------------------------------

def bind_parameters(bind: Bind, types: Sequence[int]) -> tuple[str | None, ...]:
    """Bind's values as text; binary ones converted by their parameter type. A value
    of a known type is `Typed` text, so DuckDB binds it as that type (see duckdb_params)."""
    formats = bind.parameter_formats
    out: list[str | None] = []
    for i, raw in enumerate(bind.parameters):
        if raw is None:
            out.append(None)
            continue
        fmt = formats[0] if len(formats) == 1 else (formats[i] if formats else 0)
        oid = types[i] if i < len(types) else 0
        if fmt == 1:
            try:
                out.append(binary.from_binary(oid, raw))
            except binary.BinaryFormatError as exc:
                raise errors.binary_parameter(str(exc)) from None
        else:
            try:
                out.append(raw.decode())
            except UnicodeDecodeError:
                raise errors.invalid_encoding() from None
        if "\0" in (out[-1] or ""):
            raise errors.invalid_encoding(nul=True)
        out[-1] = typed(out[-1] or "", oid)
    return tuple(out)


def needs_types(bind: Bind) -> bool:
    return any(f == 1 for f in bind.parameter_formats)


def column_formats(result_formats: Sequence[int], n: int) -> list[int]:
    if not result_formats:
        return [0] * n
    if len(result_formats) == 1:
        return [result_formats[0]] * n
    return list(result_formats[:n]) + [0] * (n - len(result_formats))


def check_formats(fields: Sequence[Field], result_formats: Sequence[int]) -> None:
    if len(result_formats) > 1 and len(result_formats) != len(fields):
        raise errors.result_formats_mismatch(len(result_formats), len(fields))
    for f, fmt in zip(fields, column_formats(result_formats, len(fields)), strict=True):
        if fmt == 1 and not binary.has_binary(f.type_oid):
            raise errors.no_binary_output(f.type_oid)


def row_description(fields: Sequence[Field], result_formats: Sequence[int] = ()) -> bytes:
    return RowDescription(fields, column_formats(result_formats, len(fields)))


def data_rows(fields: Sequence[Field], rows: Sequence[Sequence[str | None]],
              result_formats: Sequence[int] = ()) -> bytes:
    formats = column_formats(result_formats, len(fields))
    if not any(formats):
        return DataRows(rows)
    oids = [f.type_oid for f in fields]
    out = []
    for row in rows:
        values: list[bytes | None] = []
        for v, fmt, oid in zip(row, formats, oids, strict=False):
            if v is None:
                values.append(None)
            elif fmt == 1:
                values.append(binary.to_binary(oid, v))
            else:
                values.append(v.encode())
        out.append(DataRow(values))
    return b"".join(out)


def command_complete(result: Result, command: str) -> bytes:
    return CommandComplete(result.command_tag or command or "SELECT 0")


def simple_result(result: Result, command: str) -> bytes:
    """RowDescription + DataRows (when the statement returns rows) + CommandComplete."""
    if result.fields:
        return row_description(result.fields) + DataRows(result.rows) + command_complete(result, command)
    return command_complete(result, command)


class ConnectionState:
    """Bookkeeping of one connection's protocol state (no I/O)."""

    def __init__(self) -> None:
        self.phase = Phase.STARTUP
        self.parameters: dict[str, str] = {}
        self.statements: dict[str, PreparedStatement] = {}
        self.portals: dict[str, Portal] = {}
        self.skipping = False  # an extended-protocol error: discard messages until Sync
        self.failed = False  # an error inside a transaction block: status E until it ends

    def ready_status(self, in_transaction: bool) -> str:
        if not in_transaction:
            self.failed = False
            return "I"
        return "E" if self.failed else "T"

    def add_statement(self, entry: PreparedStatement) -> None:
        if entry.name and entry.name in self.statements:
            raise errors.duplicate_prepared(entry.name)
        self.statements[entry.name] = entry

    def statement(self, name: str) -> PreparedStatement:
        entry = self.statements.get(name)
        if entry is None:
            raise errors.no_prepared(name)
        return entry

    def add_portal(self, portal: Portal) -> None:
        if portal.name and portal.name in self.portals:
            raise errors.duplicate_portal(portal.name)
        self.portals[portal.name] = portal

    def portal(self, name: str) -> Portal:
        portal = self.portals.get(name)
        if portal is None:
            raise errors.no_portal(name)
        return portal

    def close(self, kind: str, name: str) -> None:
        if kind == "S":
            self.statements.pop(name, None)
        else:
            self.portals.pop(name, None)

    def end_of_transaction(self) -> None:
        """Portals live until their transaction ends (PostgreSQL drops them then)."""
        self.portals.clear()
