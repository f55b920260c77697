"""Database errors as the agent sees them: each driver's exception becomes the
SqlgateError PostgreSQL's own answer would carry (SQLSTATE, fields), plus a
hint and the next step. One place, for the backends and for branching."""

from __future__ import annotations

import re

import duckdb
import psycopg

from proxy import errors

# Diagnostics passed through to Neon's error body, by its field names.
_DIAG_FIELDS = {
    "internalPosition": "internal_position", "internalQuery": "internal_query", "where": "context",
    "table": "table_name", "column": "column_name", "schema": "schema_name", "dataType": "datatype_name",
    "constraint": "constraint_name", "file": "source_file", "line": "source_line", "routine": "source_function",
}


def postgres_error(exc: psycopg.Error) -> errors.SqlgateError:
    """A PostgreSQL error as the client would have seen it, plus hint and next step."""
    diag = exc.diag
    extra = {name: getattr(diag, attr) for name, attr in _DIAG_FIELDS.items()}
    extra["severity"] = diag.severity or "ERROR"
    position = int(diag.statement_position) if diag.statement_position else None
    return _postgres(diag.sqlstate or "XX000", diag.message_primary or str(exc).strip(), diag.message_hint or "",
                     diag.message_detail, position, extra)


# ErrorResponse field codes -> the same diagnostics, for errors read off the wire (the relay).
_WIRE_FIELDS = {"internalPosition": "p", "internalQuery": "q", "where": "W", "table": "t", "column": "c",
                "schema": "s", "dataType": "d", "constraint": "n", "file": "F", "line": "L", "routine": "R"}


def postgres_error_from_fields(fields: dict[str, str]) -> errors.SqlgateError:
    """The same, from an ErrorResponse's fields (keyed by their one-letter codes)."""
    extra: dict[str, str | None] = {name: fields.get(code) for name, code in _WIRE_FIELDS.items()}
    extra["severity"] = fields.get("V") or fields.get("S") or "ERROR"
    position = int(fields["P"]) if fields.get("P", "").isdigit() else None
    return _postgres(fields.get("C") or "XX000", fields.get("M", ""), fields.get("H", ""), fields.get("D"),
                     position, extra)


def _postgres(sqlstate: str, message: str, hint: str, detail: str | None, position: int | None,
              extra: dict[str, str | None]) -> errors.SqlgateError:
    if sqlstate == "42501":
        hint = hint or "The agent logins have DML rights on application tables and own only what they created."
        next_step = "ask an admin token to run it, or change only tables your token's role may change"
    elif sqlstate.startswith("40"):
        next_step = "retry the request"
    elif sqlstate == "57014":
        next_step = "make the statement cheaper (add a WHERE or LIMIT), or ask an admin for a longer timeout"
    else:
        next_step = "fix the statement and send it again; nothing from this request was committed"
    return errors.SqlgateError("sql.error", sqlstate, message, hint, next_step, detail=detail, position=position,
                               extra=extra)


# DuckDB exception class -> the SQLSTATE PostgreSQL would give for the same mistake.
_SQLSTATES: list[tuple[type[Exception], str]] = [
    (duckdb.ParserException, "42601"),
    (duckdb.CatalogException, "42P01"),
    (duckdb.BinderException, "42703"),
    (duckdb.ConstraintException, "23505"),
    (duckdb.ConversionException, "22P02"),
    (duckdb.OutOfRangeException, "22003"),
    (duckdb.TransactionException, "40001"),
    (duckdb.PermissionException, "42501"),
    (duckdb.InterruptException, "57014"),
    (duckdb.NotImplementedException, "0A000"),
    (duckdb.InvalidInputException, "22023"),
]
_CONSTRAINT_STATES = (("NOT NULL", "23502"), ("foreign key", "23503"), ("CHECK", "23514"))
_PREFIX = re.compile(r"^[A-Za-z ]+ Error: ")


def duckdb_error(exc: duckdb.Error) -> errors.SqlgateError:
    text = str(exc)
    sqlstate = next((state for cls, state in _SQLSTATES if isinstance(exc, cls)), "XX000")
    if sqlstate == "23505":
        sqlstate = next((s for word, s in _CONSTRAINT_STATES if word in text), sqlstate)
    if sqlstate == "42P01" and "Table with name" not in text and "does not exist" not in text:
        sqlstate = "42704"
    first, _, rest = _PREFIX.sub("", text).partition("\n")
    hint = " ".join(line.strip() for line in rest.splitlines()
                    if line.strip(" ^") and not line.startswith("LINE"))  # drop the echoed SQL and its caret
    next_step = ("retry the request" if sqlstate == "40001"
                 else "fix the statement and send it again; nothing from this request was committed")
    return errors.SqlgateError("sql.error", sqlstate, first.strip(), hint, next_step)



def database_error(exc: Exception) -> errors.SqlgateError:
    """Either driver's error (psycopg or duckdb)."""
    if isinstance(exc, psycopg.Error):
        return postgres_error(exc)
    if isinstance(exc, duckdb.Error):
        return duckdb_error(exc)
    return errors.internal(type(exc).__name__)
