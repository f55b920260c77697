"""Database errors as the agent sees them: each driver's exception becomes the
SqlgateError PostgreSQL's own answer would carry (SQLSTATE, fields), plus a
hint and the next step. One place, for the backends and for branching."""

from __future__ import annotations

import re
import unicodedata

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
# Finer states by the message's words, per class default: (default, words, SQLSTATE).
_BY_WORDS = (
    ("23505", "NOT NULL", "23502"), ("23505", "foreign key", "23503"), ("23505", "CHECK", "23514"),
    ("42P01", "Function with name", "42883"), ("42P01", "Type with name", "42704"),
    ("42P01", "Schema with name", "3F000"), ("42703", "No function matches", "42883"),
    ("22P02", "out of range for the destination type", "22003"), ("22P02", "field value out of range", "22008"),
    ("22P02", "field format", "22007"),
)
_NUMBER_AS_INT = re.compile(r"Could not convert string '\s*[+-]?\d+\s*' to U?INT")  # valid but too big: 22003
_PREFIX = re.compile(r"^[A-Za-z ]+ Error: ")
_CARET = re.compile(r"^LINE (\d+): (\.\.\.)?(.*)\n( *)\^", re.M)


def _sqlstate(exc: duckdb.Error, text: str) -> str:
    default = next((state for cls, state in _SQLSTATES if isinstance(exc, cls)), "XX000")
    state = next((s for d, words, s in _BY_WORDS if d == default and words in text), default)
    if state == "22P02" and _NUMBER_AS_INT.search(text):
        return "22003"
    if state == "42P01" and "with name" not in text and "does not exist" not in text:
        return "42704"
    return state


def _width(char: str) -> int:
    """Columns DuckDB's caret line gives a character."""
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def _position(text: str, sql: str | None) -> int | None:
    """PostgreSQL's 1-based character position, from the caret DuckDB draws under
    the statement's line. Past line 1, or on a shortened line, only with `sql`."""
    m = _CARET.search(text)
    if not m:
        return None
    line_no, cut, shown = int(m[1]), bool(m[2]), m[3]
    width = len(m[4]) - len(f"LINE {line_no}: ") - (3 if cut else 0)
    chars = 0
    while chars < len(shown) and width > 0:
        width -= _width(shown[chars])
        chars += 1
    if sql is None:
        return chars + 1 if line_no == 1 and not cut else None
    starts = [0] + [i + 1 for i, c in enumerate(sql) if c in "\r\n"]  # DuckDB counts \r and \n alike
    if line_no > len(starts):
        return None
    line = sql[starts[line_no - 1]:]
    offset = line.find(shown.removesuffix("...")) if cut else 0
    return starts[line_no - 1] + offset + chars + 1 if offset >= 0 else None


def _split(text: str) -> tuple[str, str]:
    """The primary message and the rest as a hint, without the echoed SQL and its caret."""
    first, _, rest = _PREFIX.sub("", text).partition("\n")
    hint = " ".join(line.strip() for line in rest.splitlines()
                    if line.strip(" ^") and not line.startswith("LINE"))
    return first.strip(), hint


def duckdb_syntax(text: str, sql: str) -> tuple[str, int | None]:
    """A DuckDB parser error's message as PostgreSQL words it, and its position in `sql`."""
    return _split(text)[0], _position(text, sql)


def duckdb_error(exc: duckdb.Error, sql: str | None = None) -> errors.SqlgateError:
    """A DuckDB error as PostgreSQL would have reported it; `sql` (the text DuckDB ran)
    places the position past the first line."""
    text = str(exc)
    message, hint = _split(text)
    sqlstate = _sqlstate(exc, message)
    next_step = ("retry the request" if sqlstate == "40001"
                 else "fix the statement and send it again; nothing from this request was committed")
    return errors.SqlgateError("sql.error", sqlstate, message, hint, next_step, position=_position(text, sql))


def database_error(exc: Exception) -> errors.SqlgateError:
    """Either driver's error (psycopg or duckdb)."""
    if isinstance(exc, psycopg.Error):
        return postgres_error(exc)
    if isinstance(exc, duckdb.Error):
        return duckdb_error(exc)
    return errors.internal(type(exc).__name__)
