"""PostgreSQL type facts sqlgate needs (OIDs, typlen, array/element OIDs) and
the mapping of a DuckDB column type onto the PostgreSQL 15 type that would
describe it (`pg_type_for_duckdb`, `field_for_duckdb`). Text rendering of the
values lives in proxy/pgtext.py; Neon's typed JSON in proxy/jsonvalues.py."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from proxy.result import Field

# Scalar type OIDs (pg_type.oid in PostgreSQL 15).
BOOL, BYTEA, CHAR, NAME, INT8, INT2, INT4, TEXT, OID = 16, 17, 18, 19, 20, 21, 23, 25, 26
JSON, XML, FLOAT4, FLOAT8, UNKNOWN = 114, 142, 700, 701, 705
BPCHAR, VARCHAR, DATE, TIME, TIMESTAMP, TIMESTAMPTZ = 1042, 1043, 1082, 1083, 1114, 1184
INTERVAL, TIMETZ, BIT, VARBIT, NUMERIC, UUID, JSONB = 1186, 1266, 1560, 1562, 1700, 2950, 3802

# Array type OIDs, keyed by element OID.
ARRAY_OF: dict[int, int] = {
    BOOL: 1000, BYTEA: 1001, CHAR: 1002, NAME: 1003, INT2: 1005, INT4: 1007, TEXT: 1009,
    OID: 1028, BPCHAR: 1014, VARCHAR: 1015, INT8: 1016, FLOAT4: 1021, FLOAT8: 1022,
    JSON: 199, XML: 143, TIMESTAMP: 1115, DATE: 1182, TIME: 1183, TIMESTAMPTZ: 1185,
    INTERVAL: 1187, NUMERIC: 1231, TIMETZ: 1270, BIT: 1561, VARBIT: 1563, UUID: 2951,
    JSONB: 3807,
}
ELEMENT_OF: dict[int, int] = {arr: elem for elem, arr in ARRAY_OF.items()}

# pg_type.typlen: fixed sizes; everything absent is variable length (-1).
TYPE_SIZE: dict[int, int] = {
    BOOL: 1, CHAR: 1, NAME: 64, INT8: 8, INT2: 2, INT4: 4, OID: 4, FLOAT4: 4, FLOAT8: 8,
    UNKNOWN: -2, DATE: 4, TIME: 8, TIMESTAMP: 8, TIMESTAMPTZ: 8, INTERVAL: 16, TIMETZ: 12,
    UUID: 16,
}


def type_size(oid: int) -> int:
    """PostgreSQL's typlen for `oid` (-1 for variable-length types and arrays)."""
    return TYPE_SIZE.get(oid, -1)


@dataclass(frozen=True)
class PgType:
    """How one DuckDB type shows up in PostgreSQL.

    `kind` picks the text renderer (see proxy/pgtext.py); `element` is set for
    arrays (nested DuckDB lists map to one multi-dimensional PG array)."""

    oid: int
    modifier: int = -1
    kind: str = "text"
    element: PgType | None = None

    @property
    def size(self) -> int:
        return type_size(self.oid)


_TEXT = PgType(TEXT, kind="text")
_NUMERIC_UNBOUNDED = PgType(NUMERIC, kind="int")  # HUGEINT & co: Python ints
_SIMPLE: dict[str, PgType] = {
    "BOOLEAN": PgType(BOOL, kind="bool"),
    "TINYINT": PgType(INT2, kind="int"),
    "SMALLINT": PgType(INT2, kind="int"),
    "UTINYINT": PgType(INT2, kind="int"),
    "INTEGER": PgType(INT4, kind="int"),
    "USMALLINT": PgType(INT4, kind="int"),
    "BIGINT": PgType(INT8, kind="int"),
    "UINTEGER": PgType(INT8, kind="int"),
    "HUGEINT": _NUMERIC_UNBOUNDED,
    "UBIGINT": _NUMERIC_UNBOUNDED,
    "UHUGEINT": _NUMERIC_UNBOUNDED,
    "BIGNUM": PgType(NUMERIC, kind="str"),  # duckdb returns its decimal text
    "VARINT": PgType(NUMERIC, kind="str"),
    "FLOAT": PgType(FLOAT4, kind="float4"),
    "DOUBLE": PgType(FLOAT8, kind="float8"),
    "VARCHAR": _TEXT,
    "BLOB": PgType(BYTEA, kind="bytea"),
    "DATE": PgType(DATE, kind="date"),
    "TIME": PgType(TIME, kind="time"),
    "TIME_NS": PgType(TIME, kind="time"),
    "TIME WITH TIME ZONE": PgType(TIMETZ, kind="timetz"),
    "TIMESTAMP": PgType(TIMESTAMP, kind="timestamp"),
    "TIMESTAMP_S": PgType(TIMESTAMP, 0, "timestamp"),  # like timestamp(0)
    "TIMESTAMP_MS": PgType(TIMESTAMP, 3, "timestamp"),  # like timestamp(3)
    "TIMESTAMP_NS": PgType(TIMESTAMP, kind="timestamp"),
    "TIMESTAMP WITH TIME ZONE": PgType(TIMESTAMPTZ, kind="timestamptz"),
    "INTERVAL": PgType(INTERVAL, kind="interval"),
    "UUID": PgType(UUID, kind="uuid"),
    "JSON": PgType(JSON, kind="text"),
    '"NULL"': _TEXT,  # SELECT NULL: PostgreSQL resolves unknown to text
    "NULL": _TEXT,
}
_DECIMAL = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)$")
_ARRAY_SUFFIX = re.compile(r"\[(\d*)\]$")


@lru_cache(maxsize=1024)
def _pg_type(type_str: str) -> PgType:
    s = type_str.strip()
    simple = _SIMPLE.get(s)
    if simple is not None:
        return simple
    if s.endswith("]"):
        m = _ARRAY_SUFFIX.search(s)
        if m:
            elem = _pg_type(s[: m.start()])
            if elem.kind == "array":  # nested list: same PG array type, one more dimension
                return PgType(elem.oid, elem.modifier, "array", elem.element)
            return PgType(ARRAY_OF.get(elem.oid, ARRAY_OF[TEXT]), elem.modifier, "array", elem)
    m = _DECIMAL.match(s)
    if m:
        precision, scale = int(m.group(1)), int(m.group(2))
        return PgType(NUMERIC, ((precision << 16) | scale) + 4, "decimal")
    if s.startswith("ENUM("):
        return _TEXT
    if s.startswith("VARCHAR"):  # e.g. collated
        return _TEXT
    return PgType(TEXT, kind="duckstr")  # STRUCT, MAP, UNION, BIT and anything new


def pg_type_for_duckdb(duck_type: Any) -> PgType:
    """The PostgreSQL type for a DuckDB type (DuckDBPyType or its str form). Never raises."""
    try:
        return _pg_type(str(duck_type))
    except Exception:  # noqa: BLE001 - a type we cannot read is shown as text
        return PgType(TEXT, kind="duckstr")


def field_for_duckdb(name: str, duck_type: Any) -> Field:
    """The RowDescription entry PostgreSQL 15 would send for this DuckDB column."""
    t = pg_type_for_duckdb(duck_type)
    return Field(name=name, type_oid=t.oid, type_size=t.size, type_modifier=t.modifier)


# Kinds whose Python conversion in duckdb loses information that DuckDB's own
# VARCHAR cast keeps (INTERVAL months and day/time split, infinity dates and
# timestamps, TIMESTAMPTZ needing pytz, STRUCT/MAP in DuckDB's own notation).
_FETCH_AS_VARCHAR = frozenset({"date", "timestamp", "timestamptz", "interval", "duckstr"})


def varchar_fetch_cast(duck_type: Any) -> str | None:
    """The type to CAST a column to before fetching it (e.g. 'VARCHAR', 'VARCHAR[]'),
    or None if duckdb's Python value renders exactly. pgtext's renderers accept
    both the native value and this DuckDB text form."""
    t = pg_type_for_duckdb(duck_type)
    if t.kind == "array" and t.element is not None and t.element.kind in _FETCH_AS_VARCHAR:
        s, dims = str(duck_type).strip(), 0
        while (m := _ARRAY_SUFFIX.search(s)) is not None:
            s, dims = s[: m.start()], dims + 1
        return "VARCHAR" + "[]" * dims
    if t.kind in _FETCH_AS_VARCHAR:
        return "VARCHAR"
    return None
