"""Parameters for DuckDB. The pipeline carries parameters as PostgreSQL text;
DuckDB binds a str as a VARCHAR literal, whose casts differ from PostgreSQL's
(bytea hex '\\x00ff' is read as escapes, '{1,2}' is no array, `$1 + 1` is
ambiguous). So a value whose type is known goes to DuckDB as a Python value:
  - `Typed` text carries the OID the client declared (Parse, the Describe
    answer it encoded by, or a COPY target column's type);
  - otherwise `$n::type[]` and `$n::bytea` casts in the statement say so.
`infer_types` guesses parameter types from where the statement puts them, for
Describe (DuckDB's prepared statements report every parameter as UNKNOWN)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from functools import lru_cache
from typing import Any

import sqlglot
from sqlglot import exp

from proxy import pgtypes as t
from proxy.jsonvalues import parse_array

_BINARY = {exp.DataType.Type.VARBINARY, exp.DataType.Type.BINARY, exp.DataType.Type.BLOB}


class Typed(str):
    """A parameter's PostgreSQL text with its type OID."""

    oid: int

    def __new__(cls, text: str, oid: int) -> Typed:
        self = super().__new__(cls, text)
        self.oid = oid
        return self


# --- PostgreSQL text -> Python value, by type OID --------------------------------

_BOOLS = {"t": True, "true": True, "y": True, "yes": True, "on": True, "1": True,
          "f": False, "false": False, "n": False, "no": False, "off": False, "0": False}
_DATE = re.compile(r"\d{4}-\d\d-\d\d")
_TIME = r"\d\d:\d\d(:\d\d(\.\d{1,6})?)?"
_TIMESTAMP = re.compile(rf"\d{{4}}-\d\d-\d\d[ T]{_TIME}")
_TIMESTAMPTZ = re.compile(rf"\d{{4}}-\d\d-\d\d[ T]{_TIME}(Z|[+-]\d\d(:?\d\d(:?\d\d)?)?)")
_OCTAL = re.compile(rb"\\([0-3][0-7]{2}|\\)")
_ESCAPED = re.compile(rb"(?:[^\\]|\\[0-3][0-7]{2}|\\\\)*", re.S)


def _numeric(s: str) -> Decimal:
    d = Decimal(s)
    if not d.is_finite() or len(d.as_tuple().digits) > 38:  # DuckDB would make it a lossy DOUBLE
        raise ValueError(s)
    return d


def _bytea(s: str) -> bytes:
    if s.startswith("\\x"):
        return bytes.fromhex(s[2:])
    raw = s.encode()  # escape format: \\ and \ooo, other bytes as they are
    if not _ESCAPED.fullmatch(raw):
        raise ValueError(s)
    return _OCTAL.sub(lambda m: b"\\" if m.group(1) == b"\\" else bytes([int(m.group(1), 8)]), raw)


def _matching(pattern: re.Pattern[str], parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(s: str) -> Any:
        if not pattern.fullmatch(s):
            raise ValueError(s)  # infinity, BC, odd spellings: DuckDB casts the text
        return parse(s)
    return convert


_CONVERT: dict[int, Callable[[str], Any]] = {
    t.INT2: int, t.INT4: int, t.INT8: int, t.OID: int, t.FLOAT4: float, t.FLOAT8: float,
    t.NUMERIC: _numeric, t.BOOL: lambda s: _BOOLS[s.strip().lower()], t.BYTEA: _bytea,
    t.DATE: _matching(_DATE, date.fromisoformat), t.TIME: _matching(re.compile(_TIME), time.fromisoformat),
    t.TIMESTAMP: _matching(_TIMESTAMP, datetime.fromisoformat),
    t.TIMESTAMPTZ: _matching(_TIMESTAMPTZ, datetime.fromisoformat), t.UUID: uuid.UUID,
}


def converts(oid: int) -> bool:
    """Whether a value of this type goes to DuckDB as a Python value rather than text."""
    return oid in _CONVERT or oid in t.ELEMENT_OF


def typed(text: str, oid: int) -> str:
    return Typed(text, oid) if converts(oid) else text


def from_text(oid: int, text: str) -> Any:
    """The Python value for PostgreSQL text of type `oid`; the text if that fails."""
    element = t.ELEMENT_OF.get(oid)
    try:
        if element is None:
            return _CONVERT[oid](text) if oid in _CONVERT else text
        convert = _CONVERT.get(element)
        if convert is not None:
            try:
                return parse_array(text, convert)
            except (ValueError, KeyError, ArithmeticError):
                pass
        return parse_array(text)  # DuckDB casts the element strings
    except (ValueError, KeyError, ArithmeticError):
        return text  # DuckDB gets the text and says what is wrong


_SAMPLES = {t.INT2: "0", t.INT4: "0", t.INT8: str(2**40), t.FLOAT4: "0", t.FLOAT8: "0", t.NUMERIC: "0",
            t.BOOL: "t", t.BYTEA: "\\x", t.DATE: "2000-01-01", t.TIME: "00:00:00", t.TIMESTAMP: "2000-01-01 00:00:00",
            t.TIMESTAMPTZ: "2000-01-01 00:00:00+00", t.UUID: str(uuid.UUID(int=0))}


def sample(oid: int) -> Any:
    """A value of the Python type a parameter of type `oid` is bound as (for Describe), or None."""
    return from_text(oid, _SAMPLES[oid]) if oid in _SAMPLES else None


# --- binding ---------------------------------------------------------------------

def spaced(sql: str) -> str:
    return re.sub(r"\$(\d+)", r"$\1 ", sql)  # sqlglot misreads `$1,$2` as a dollar quote


def _parse(sql: str) -> list[Any]:
    return [tree for tree in sqlglot.parse(spaced(sql), read="duckdb") if tree is not None]


def _number(node: exp.Expression) -> int | None:
    return int(node.this) if isinstance(node, exp.Placeholder) and str(node.this).isdigit() else None


@lru_cache(maxsize=4096)
def param_casts(sql: str) -> dict[int, str]:
    """{parameter number: 'array' | 'binary'} for `$n::type[]` and `$n::bytea` casts."""
    try:
        trees = _parse(sql)
    except sqlglot.errors.SqlglotError:
        return {}
    casts: dict[int, str] = {}
    for tree in trees:
        for cast in tree.find_all(exp.Cast):
            number = _number(cast.this)
            if number is None:
                continue
            if cast.to.is_type(exp.DataType.Type.ARRAY) or cast.to.this is exp.DataType.Type.ARRAY:
                casts[number] = "array"
            elif cast.to.this in _BINARY:
                casts[number] = "binary"
    return casts


def adapt_params(sql: str, params: Sequence[str | None], conn: Any = None, version: int | None = None) -> list[Any]:
    """The values to bind: typed ones converted; untyped bytea or array text by the statement's
    casts; else, given the DuckDB connection, untyped values by where the statement puts them, as
    PostgreSQL types an unknown parameter (`n + $1` with '10' adds 10). `version`: the catalog
    version the inference may be cached under."""
    untyped = [p for p in params if p and not (isinstance(p, Typed) and converts(p.oid))]
    placed = _inferred(conn, sql, version) if untyped and conn is not None else {}  # casts included
    looks = conn is None and any(p[:1] in ("{", "\\") for p in untyped)
    casts = param_casts(sql) if looks else {}  # without a connection, casts are all there is
    adapted: list[Any] = []
    for number, value in enumerate(params, start=1):
        if isinstance(value, Typed) and converts(value.oid):
            adapted.append(from_text(value.oid, str(value)))
        elif isinstance(value, str) and number in casts:
            kind = casts[number]
            if kind == "array" and value.startswith("{"):
                adapted.append(from_text(t.ARRAY_OF[t.TEXT], value))
            elif kind == "binary" and value.startswith("\\x"):
                adapted.append(from_text(t.BYTEA, value))
            else:
                adapted.append(str(value))
        elif isinstance(value, str) and converts(placed.get(number, 0)):
            adapted.append(from_text(placed[number], value))
        else:
            adapted.append(str(value) if isinstance(value, str) else value)
    return adapted


# --- inferring parameter types (Describe) -----------------------------------------

Columns = Callable[[str], dict[str, str]]  # table SQL -> {lower-case column name: DuckDB type}
_COMPARES = (exp.Binary, exp.Like, exp.ILike)


def infer_types(sql: str, columns_of: Columns) -> dict[int, str]:
    """{parameter number: DuckDB type} from casts, INSERT targets, comparisons with
    columns or literals (=, IN, BETWEEN, ANY, SET col =) and LIMIT/OFFSET."""
    try:
        trees = _parse(sql)
    except sqlglot.errors.SqlglotError:
        return {}
    found: dict[int, str] = {}
    for tree in trees:
        guess = _Guess(tree, columns_of)
        for node in tree.find_all(exp.Placeholder):
            number = _number(node)
            if number is not None and number not in found:
                duck_type = guess.placed(node)
                if duck_type:
                    found[number] = duck_type
    return found


class _Guess:
    def __init__(self, tree: exp.Expression, columns_of: Columns) -> None:
        self.columns_of = columns_of
        self.tables: dict[str, str] = {}  # alias or name -> table SQL
        for table in tree.find_all(exp.Table):
            if table.name:
                full = exp.table_name(table, dialect="duckdb", identify=True)
                self.tables.setdefault(table.alias_or_name.lower(), full)
        self.cache: dict[str, dict[str, str]] = {}

    def columns(self, table: str) -> dict[str, str]:
        if table not in self.cache:
            try:
                self.cache[table] = self.columns_of(table)
            except Exception:  # noqa: BLE001 - a CTE, a function...: nothing known
                self.cache[table] = {}
        return self.cache[table]

    def column_type(self, column: exp.Column) -> str | None:
        name = column.name.lower()
        qualifier = column.table.lower()
        candidates = [self.tables[qualifier]] if qualifier in self.tables else list(self.tables.values())
        for table in candidates:
            found = self.columns(table).get(name)
            if found:
                return found
        return None

    def type_of(self, node: exp.Expression) -> str | None:
        while isinstance(node, exp.Paren):
            node = node.this
        if isinstance(node, exp.Column):
            return self.column_type(node)
        if isinstance(node, exp.Cast):
            return node.to.sql("duckdb")
        if isinstance(node, exp.Literal):
            if node.is_string:
                return "VARCHAR"
            return "INTEGER" if node.this.lstrip("-").isdigit() and abs(int(node.this)) < 2**31 else "DECIMAL(38,10)"
        return None

    def placed(self, node: exp.Expression) -> str | None:
        while isinstance(node.parent, exp.Paren):
            node = node.parent
        parent = node.parent
        if isinstance(parent, exp.Cast):
            return parent.to.sql("duckdb")
        if isinstance(parent, (exp.Limit, exp.Offset)):
            return "BIGINT"
        if isinstance(parent, exp.Any) and isinstance(parent.parent, _COMPARES):
            other = parent.parent.this if parent.parent.expression is parent else parent.parent.expression
            element = self.type_of(other)
            return element + "[]" if element else None
        if isinstance(parent, (exp.In, exp.Between)) and parent.this is not node:
            return self.type_of(parent.this)
        if isinstance(parent, _COMPARES) and not isinstance(parent, exp.Connector):
            return self.type_of(parent.expression if parent.this is node else parent.this)
        if isinstance(parent, (exp.Tuple, exp.Select)):
            return self.insert_target(parent, node)
        return None

    def insert_target(self, row: exp.Expression, node: exp.Expression) -> str | None:
        """The target column's type for a value of INSERT ... VALUES / SELECT."""
        body = row.parent if isinstance(row, exp.Tuple) else row
        if isinstance(row, exp.Tuple) and not isinstance(body, exp.Values):
            return None
        holder = body.parent if body is not None else None
        if not isinstance(holder, exp.Insert) or holder.expression is not body:
            return None
        target = holder.this
        table = target.this if isinstance(target, exp.Schema) else target
        if not isinstance(table, exp.Table):
            return None
        columns = self.columns(exp.table_name(table, dialect="duckdb", identify=True))
        names = [c.name.lower() for c in target.expressions] if isinstance(target, exp.Schema) else list(columns)
        position = next((i for i, e in enumerate(row.expressions) if e is node), None)
        if position is None or position >= len(names):
            return None
        return columns.get(names[position])


_INFERRED: dict[tuple[str, int], dict[int, int]] = {}  # by statement and catalog version
_INFERRED_MAX = 1024


def _inferred(conn: Any, sql: str, version: int | None) -> dict[int, int]:
    if version is None:
        return parameter_oids(conn, sql)
    found = _INFERRED.get((sql, version))
    if found is None:
        found = parameter_oids(conn, sql)
        if len(_INFERRED) >= _INFERRED_MAX:
            _INFERRED.clear()
        _INFERRED[(sql, version)] = found
    return found


def parameter_oids(conn: Any, sql: str) -> dict[int, int]:
    """{parameter number: PostgreSQL type OID} inferred with `conn`'s catalog (DuckDB reports none)."""
    import duckdb

    from proxy.pgtypes import pg_type_for_duckdb

    def columns_of(table: str) -> dict[str, str]:
        relation = conn.sql(f"SELECT * FROM {table} LIMIT 0")
        return {name.lower(): str(typ) for name, typ in zip(relation.columns, relation.types, strict=True)}

    found = {}
    for number, spelled in infer_types(sql, columns_of).items():
        try:
            found[number] = pg_type_for_duckdb(duckdb.sqltype(spelled)).oid
        except Exception:  # noqa: BLE001 - a type DuckDB cannot spell: the parameter stays text
            continue
    return found
