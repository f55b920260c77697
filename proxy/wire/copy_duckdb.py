"""COPY ... FROM STDIN and COPY ... TO STDOUT on DuckDB, which has no COPY
sub-protocol of its own (and no file access: enable_external_access is off).

The COPY statement is read with PostgreSQL's parser; TO STDOUT runs the
table's (or the inner query's) SELECT and writes PostgreSQL's text or CSV
COPY format; FROM STDIN parses the client's rows and inserts them in
batches of parameterised INSERTs, inside the statement's transaction.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from proxy import errors
from proxy.backends.duckdb_params import typed
from proxy.pgtypes import BYTEA, ELEMENT_OF
from proxy.result import Result

BATCH_ROWS = 500
MAX_CSV_BYTES = 256 * 1024 * 1024


@dataclass
class CopyPlan:
    is_from: bool
    table: str | None = None  # quoted, possibly schema-qualified
    columns: list[str] = field(default_factory=list)  # quoted
    query: str | None = None  # COPY (query) TO STDOUT
    csv: bool = False
    delimiter: str = "\t"
    null: str = "\\N"
    header: bool = False
    quote: str = '"'


def _refuse(message: str) -> errors.SqlgateError:
    return errors.copy_refused(message)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def plan_copy(sql: str) -> CopyPlan:
    from pglast import parse_sql, parser
    from pglast.stream import RawStream

    try:
        stmt = json.loads(parser.parse_sql_json(sql))["stmts"][0]["stmt"]["CopyStmt"]
    except Exception as exc:  # noqa: BLE001
        raise _refuse(f"cannot read this COPY statement: {exc}") from None
    if stmt.get("filename") or stmt.get("is_program"):
        raise _refuse("COPY to or from a server file or program is not available")
    plan = CopyPlan(is_from=bool(stmt.get("is_from")))
    relation = stmt.get("relation")
    if relation:
        parts = [relation[k] for k in ("catalogname", "schemaname", "relname") if relation.get(k)]
        plan.table = ".".join(_ident(p) for p in parts)
    plan.columns = [_ident(c["String"]["sval"]) for c in stmt.get("attlist", [])]
    if "query" in stmt:
        plan.query = RawStream()(parse_sql(sql)[0].stmt.query)  # type: ignore[union-attr]
    for option in stmt.get("options", []):
        d = option["DefElem"]
        name = d["defname"]
        arg = d.get("arg", {})
        value = arg.get("String", {}).get("sval") if isinstance(arg, dict) else None
        if name == "format":
            if value not in ("text", "csv"):
                raise _refuse(f"COPY format {value} is not available on DuckDB (text and csv are)")
            plan.csv = value == "csv"
            if plan.csv:
                plan.delimiter, plan.null = ",", ""
        elif name == "delimiter" and value:
            plan.delimiter = value
        elif name == "null" and value is not None:
            plan.null = value
        elif name == "header":
            plan.header = value is None or value.lower() in ("true", "on", "1")
        elif name == "quote" and value:
            plan.quote = value
        elif name not in ("encoding",):
            raise _refuse(f"COPY option {name} is not available on DuckDB")
    return plan


# --- text format ---------------------------------------------------------------

_ESCAPE_OUT = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f",
                             "\v": "\\v"})
_ESCAPE_IN = re.compile(r"\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|.)")
_SIMPLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "v": "\v"}


def _unescape(match: re.Match[str]) -> str:
    s = match.group(1)
    if s in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[s]
    if s[0] == "x" and len(s) > 1:
        return chr(int(s[1:], 16))
    if s[0].isdigit():
        return chr(int(s, 8))
    return s


def format_rows(plan: CopyPlan, names: Sequence[str], rows: Sequence[Sequence[str | None]]) -> bytes:
    if plan.csv:
        special = (plan.delimiter, plan.quote, "\n", "\r")

        def field_(v: str | None) -> str:
            if v is None:
                return plan.null
            if v == "" or v == plan.null or any(c in v for c in special):  # quoted: not NULL, delimiters kept
                return plan.quote + v.replace(plan.quote, plan.quote * 2) + plan.quote
            return v

        lines = [plan.delimiter.join(field_(n) for n in names)] if plan.header else []
        lines += [plan.delimiter.join(field_(v) for v in row) for row in rows]
    else:
        lines = [plan.delimiter.join(names)] if plan.header else []
        lines += [plan.delimiter.join(plan.null if v is None else v.translate(_ESCAPE_OUT) for v in row)
                  for row in rows]
    return ("\n".join(lines) + "\n").encode() if lines else b""


def parse_text_line(plan: CopyPlan, line: str) -> list[str | None]:
    return [None if field_ == plan.null else _ESCAPE_IN.sub(_unescape, field_) for field_ in line.split(plan.delimiter)]


# --- running it ----------------------------------------------------------------

Execute = Callable[[str, Sequence[str | None] | None, str], Awaitable[Result]]


async def copy_to(plan: CopyPlan, execute: Execute, start: Callable[[int], None],
                  data: Callable[[bytes], None], done: Callable[[], None]) -> Result:
    columns = ", ".join(plan.columns) or "*"
    select = plan.query or f"SELECT {columns} FROM {plan.table}"
    result = await execute(select, None, "SELECT")
    names = [f.name for f in result.fields]
    start(len(names))
    rows = result.rows
    body_only = CopyPlan(**{**plan.__dict__, "header": False})
    if plan.header:
        data(format_rows(plan, names, []))
    for row in rows:  # one CopyData per row, as PostgreSQL sends them (clients parse them so)
        data(format_rows(body_only, names, [row]))
    done()
    return Result(command_tag=f"COPY {len(rows)}")


async def copy_from(plan: CopyPlan, execute: Execute, chunks: Callable[[int], AsyncIterator[bytes]]) -> Result:
    columns = plan.columns
    described = await execute(f"SELECT {', '.join(columns) or '*'} FROM {plan.table} LIMIT 0", None, "SELECT")
    columns = columns or [_ident(f.name) for f in described.fields]
    # bytea and arrays: DuckDB reads their text otherwise than PostgreSQL, so the values are decoded
    oids = [f.type_oid if f.type_oid == BYTEA or f.type_oid in ELEMENT_OF else 0 for f in described.fields]
    ncols = len(columns)
    total = 0
    incoming = chunks(ncols)
    batch: list[list[str | None]] = []

    async def flush() -> None:
        nonlocal total
        if not batch:
            return
        values: list[str] = []
        params: list[str | None] = []
        for row in batch:
            if len(row) != ncols:
                raise errors.copy_bad_row(len(row), ncols)
            base = len(params)
            values.append("(" + ", ".join(f"${base + i + 1}" for i in range(ncols)) + ")")
            params.extend(v if v is None or not oid else typed(v, oid) for v, oid in zip(row, oids, strict=False))
        await execute(f"INSERT INTO {plan.table} ({', '.join(columns)}) VALUES {', '.join(values)}", params, "INSERT")
        total += len(batch)
        batch.clear()

    if plan.csv:
        buffer = bytearray()
        async for chunk in incoming:
            buffer += chunk
            if len(buffer) > MAX_CSV_BYTES:
                raise errors.copy_too_large(MAX_CSV_BYTES // (1024 * 1024))
        reader = csv.reader(io.StringIO(buffer.decode()), delimiter=plan.delimiter, quotechar=plan.quote)
        first = True
        for record in reader:
            if first and plan.header:
                first = False
                continue
            first = False
            if record == ["\\."]:
                break
            batch.append([None if v == plan.null else v for v in record])
            if len(batch) >= BATCH_ROWS:
                await flush()
        await flush()
        return Result(command_tag=f"COPY {total}")
    pending = ""
    skip_header = plan.header
    ended = False
    async for chunk in incoming:
        if ended:
            continue
        pending += chunk.decode()
        *lines, pending = pending.split("\n")
        for line in lines:
            line = line.removesuffix("\r")
            if skip_header:
                skip_header = False
                continue
            if line == "\\.":
                ended = True
                break
            batch.append(parse_text_line(plan, line))
            if len(batch) >= BATCH_ROWS:
                await flush()
    if pending and pending != "\\." and not ended:
        batch.append(parse_text_line(plan, pending))
    await flush()
    return Result(command_tag=f"COPY {total}")
