"""DuckDB values rendered by proxy.pgtext/pgtypes must match real PostgreSQL 15:
same OID, size, modifier and text for each case; plus Neon's typed JSON values
(proxy.jsonvalues) and an array-literal render/parse round trip."""

from __future__ import annotations

import datetime as dt
import importlib.util
import math
import random
import struct
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, NamedTuple

import duckdb
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy import pgtypes
from proxy.jsonvalues import json_row_converters, json_value, parse_array
from proxy.pgtext import float4_text, float8_text, render_rows, text_renderer_for
from proxy.pgtypes import field_for_duckdb, varchar_fetch_cast
from proxy.result import Field

HAVE_PYTZ = importlib.util.find_spec("pytz") is not None


class Case(NamedTuple):
    pg: str
    duck: str | None = None  # None: same spelling in both
    native: str | None = None  # documented text when duckdb's Python value loses information


UUID_LIT = "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'"
CASES: list[Case] = [
    # integers of every width
    Case("1::int2", "1::SMALLINT"), Case("(-128)::int2", "(-128)::TINYINT"),
    Case("(-32768)::int2", "(-32768)::SMALLINT"), Case("255::int2", "255::UTINYINT"),
    Case("2147483647"), Case("(-2147483648)::int4", "(-2147483648)::INTEGER"),
    Case("65535::int4", "65535::USMALLINT"),
    Case("9223372036854775807::int8", "9223372036854775807::BIGINT"),
    Case("(-9223372036854775808)::int8", "(-9223372036854775808)::BIGINT"),
    Case("4294967295::int8", "4294967295::UINTEGER"),
    Case("18446744073709551615::numeric", "18446744073709551615::UBIGINT"),
    Case("(-170141183460469231731687303715884105728)::numeric",
         "(-170141183460469231731687303715884105728)::HUGEINT"),
    # floats
    Case("0.1::float8", "0.1::DOUBLE"), Case("1.5::float8", "1.5::DOUBLE"),
    Case("1e20::float8", "1e20::DOUBLE"), Case("1e-5::float8", "1e-5::DOUBLE"),
    Case("1e15::float8", "1e15::DOUBLE"), Case("1e14::float8", "1e14::DOUBLE"),
    Case("1.2345678901234567e-05::float8", "1.2345678901234567e-05::DOUBLE"),
    Case("(1/3.0)::float8", "(1/3.0)::DOUBLE"), Case("123456789.125::float8", "123456789.125::DOUBLE"),
    Case("'-0'::float8", "'-0'::DOUBLE"), Case("'NaN'::float8", "'NaN'::DOUBLE"),
    Case("'Infinity'::float8", "'Infinity'::DOUBLE"), Case("'-Infinity'::float8", "'-Infinity'::DOUBLE"),
    Case("0.1::float4", "0.1::FLOAT"), Case("1e6::float4", "1e6::FLOAT"),
    Case("1234567::float4", "1234567::FLOAT"), Case("1.5e-4::float4", "1.5e-4::FLOAT"),
    Case("3.4028235e38::float4", "3.4028235e38::FLOAT"), Case("'NaN'::float4", "'NaN'::FLOAT"),
    Case("'-Infinity'::float4", "'-Infinity'::FLOAT"),
    # numerics with scales
    Case("1.5::numeric(10,2)", "1.5::DECIMAL(10,2)"), Case("(-123.456)::numeric(18,3)", "(-123.456)::DECIMAL(18,3)"),
    Case("0::numeric(20,10)", "0::DECIMAL(20,10)"), Case("(-0.001)::numeric(5,2)", "(-0.001)::DECIMAL(5,2)"),
    Case("12345678901234567890.123456::numeric(38,6)", "12345678901234567890.123456::DECIMAL(38,6)"),
    # bool, text, NULL
    Case("true"), Case("false"), Case("'héllo wörld ✓ 日本'"), Case("'it''s \"quoted\" \\ back'"),
    Case("E'line1\\nline2'", "'line1' || chr(10) || 'line2'"), Case("''"), Case("NULL"),
    Case("NULL::int4", "NULL::INTEGER"),
    # dates and times
    Case("'2024-01-02'::date", "DATE '2024-01-02'"), Case("'0044-03-15 BC'::date", "DATE '0044-03-15 (BC)'"),
    Case("'infinity'::date", "DATE 'infinity'", native="9999-12-31"),
    Case("'2024-01-02 03:04:05'::timestamp", "TIMESTAMP '2024-01-02 03:04:05'"),
    Case("'2024-01-02 03:04:05.678'::timestamp", "TIMESTAMP '2024-01-02 03:04:05.678'"),
    Case("'2024-01-02 03:04:05.000001'::timestamp", "TIMESTAMP '2024-01-02 03:04:05.000001'"),
    Case("'2024-01-02 03:04:05'::timestamp(0)", "TIMESTAMP_S '2024-01-02 03:04:05'"),
    Case("'0044-03-15 01:00:00 BC'::timestamp", "DATE '0044-03-15 (BC)' + INTERVAL 1 hour"),
    Case("'-infinity'::timestamp", "TIMESTAMP '-infinity'", native="0001-01-01 00:00:00"),
    Case("'2024-01-02 03:04:05.678+00'::timestamptz", "TIMESTAMPTZ '2024-01-02 03:04:05.678+00'"),
    Case("'2024-06-01 12:00:00-07'::timestamptz", "TIMESTAMPTZ '2024-06-01 12:00:00-07'"),
    Case("'01:02:03'::time", "TIME '01:02:03'"), Case("'01:02:03.5'::time", "TIME '01:02:03.5'"),
    Case("'23:59:59.999999'::time", "TIME '23:59:59.999999'"),
    Case("'01:02:03+05:30'::timetz", "TIMETZ '01:02:03+05:30'"),
    Case("'01:02:03.25-08'::timetz", "TIMETZ '01:02:03.25-08'"),
    Case("interval '1 day 02:03:04'", "INTERVAL '1 day 02:03:04'"),
    Case("interval '3 days'", "INTERVAL '3 days'"), Case("interval '1.5 seconds'", "INTERVAL '1.5 seconds'"),
    Case("interval '-2 hours'", "INTERVAL '-2 hours'"), Case("interval '0'", "INTERVAL '0 seconds'"),
    Case("interval '1 year 2 months'", "INTERVAL '1 year 2 months'", native="420 days"),
    Case("interval '-1 days +02:00:00'", "INTERVAL '-1 day 2 hours'", native="-22:00:00"),
    Case("interval '100 hours'", "INTERVAL '100 hours'", native="4 days 04:00:00"),
    Case("interval '-14 months 3 days'", "INTERVAL '-14 months 3 days'", native="-417 days"),
    # uuid, bytea, json
    Case(f"{UUID_LIT}::uuid", f"{UUID_LIT}::UUID"),
    Case("'\\xdead00ff'::bytea", "'\\xDE\\xAD\\x00\\xFF'::BLOB"), Case("''::bytea", "''::BLOB"),
    Case("'{\"a\":[1, 2], \"b\": null}'::json", "'{\"a\":[1, 2], \"b\": null}'::JSON"),
    # arrays
    Case("ARRAY[1,2,3]", "[1,2,3]"), Case("ARRAY[1,2,3]", "[1,2,3]::INTEGER[3]"),
    Case("ARRAY[1,NULL,3]::int8[]", "[1,NULL,3]::BIGINT[]"), Case("'{}'::int4[]", "[]::INTEGER[]"),
    Case("ARRAY['a','b c',NULL,'with \"quote\"','','NULL','null','back\\slash','{br}','com,ma','tab\t']",
         "['a','b c',NULL,'with \"quote\"','','NULL','null','back\\slash','{br}','com,ma','tab\t']"),
    Case("ARRAY[1.5,0.1,1e20,'NaN',-0.0]::float8[]", "[1.5,0.1,1e20,'NaN',-0.0]::DOUBLE[]"),
    Case("ARRAY[0.1::float4, 1e6::float4]", "[0.1::FLOAT, 1e6::FLOAT]"),
    Case("ARRAY[true,false,NULL]", "[true,false,NULL]"),
    Case("ARRAY[[1,2],[3,4]]", "[[1,2],[3,4]]"), Case("ARRAY[['a','b'],['c d',NULL]]", "[['a','b'],['c d',NULL]]"),
    Case("ARRAY[1.5::numeric(10,2)]", "[1.5::DECIMAL(10,2)]"),
    Case("ARRAY['2024-01-02 03:04:05'::timestamp]", "[TIMESTAMP '2024-01-02 03:04:05']"),
    Case("ARRAY['2024-01-02'::date, NULL]", "[DATE '2024-01-02', NULL]"),
    Case("ARRAY['2024-01-02 03:04:05+00'::timestamptz]", "[TIMESTAMPTZ '2024-01-02 03:04:05+00']"),
    Case("ARRAY[interval '1 day', interval '1 year']", "[INTERVAL '1 day', INTERVAL '1 year']",
         native='{"1 day","360 days"}'),
    Case("ARRAY['\\x00ff'::bytea]", "['\\x00\\xFF'::BLOB]"),
    Case(f"ARRAY[{UUID_LIT}::uuid]", f"[{UUID_LIT}::UUID]"),
    Case("ARRAY['{\"a\":1}'::json]", "['{\"a\":1}'::JSON]"),
    Case("ARRAY['01:02:03.5'::time]", "[TIME '01:02:03.5']"),
]


@pytest.fixture(scope="module")
def pg_cursor(pg_server: Any) -> Iterator[psycopg.Cursor[Any]]:
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute("SET TimeZone='UTC'")
        yield cur


@pytest.fixture(scope="module")
def duck() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    yield con
    con.close()


def pg_text(cur: psycopg.Cursor[Any], sql: str) -> tuple[tuple[int, int, int], str | None]:
    cur.execute(sql)
    res = cur.pgresult
    assert res is not None
    raw = res.get_value(0, 0)
    return (res.ftype(0), res.fsize(0), res.fmod(0)), None if raw is None else raw.decode()


@pytest.mark.parametrize("case", CASES, ids=[c.pg[:40] for c in CASES])
def test_duckdb_matches_postgres(case: Case, pg_cursor: psycopg.Cursor[Any],
                                 duck: duckdb.DuckDBPyConnection) -> None:
    (oid, size, mod), expected = pg_text(pg_cursor, f"SELECT {case.pg} AS v")
    duck_sql = f"SELECT {case.duck or case.pg} AS v"
    desc = duck.execute(duck_sql).description
    assert desc is not None
    f = field_for_duckdb(desc[0][0], desc[0][1])
    assert (f.type_oid, f.type_size, f.type_modifier) == (oid, size, mod)

    cast = varchar_fetch_cast(desc[0][1])
    if cast is not None:  # the exact path: DuckDB's own text, translated
        rows = duck.execute(f"SELECT CAST(v AS {cast}) FROM ({duck_sql})").fetchall()
        assert render_rows(desc, rows) == [[expected]]
    needs_pytz = "TIMESTAMPTZ" in (case.duck or "")
    if needs_pytz and not HAVE_PYTZ:  # duckdb cannot build aware datetimes without pytz
        return
    native = render_rows(desc, duck.execute(duck_sql).fetchall())
    assert native == [[case.native if case.native is not None else expected]]


def test_case_matrix_is_broad() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata", "America/Los_Angeles", "Europe/Amsterdam"])
@pytest.mark.parametrize("stamp", ["2024-01-02 03:04:05.678+00", "2024-07-01 00:00:00+00", "1900-01-02 03:04:05+00"])
def test_timestamptz_session_zone(zone: str, stamp: str, pg_server: Any) -> None:
    """Aware datetimes (duckdb's native TIMESTAMPTZ value) render in the session zone like PG."""
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute(f"SET TimeZone='{zone}'")
        _, expected = pg_text(cur, f"SELECT '{stamp}'::timestamptz")
    value = dt.datetime.fromisoformat(stamp)
    assert text_renderer_for("TIMESTAMP WITH TIME ZONE", zone)(value) == expected


def test_field_mapping_of_other_duckdb_types() -> None:
    def oid(t: str) -> tuple[int, int, int]:
        f = field_for_duckdb("c", t)
        return f.type_oid, f.type_size, f.type_modifier

    assert oid("DECIMAL(10,2)") == (1700, -1, (10 << 16 | 2) + 4)
    assert oid("INTEGER[]") == (1007, -1, -1)
    assert oid("INTEGER[][]") == (1007, -1, -1)
    assert oid("STRUCT(a INTEGER)") == (25, -1, -1)
    assert oid("STRUCT(a INTEGER)[]") == (1009, -1, -1)
    assert oid("MAP(VARCHAR, INTEGER)") == (25, -1, -1)
    assert oid("ENUM('x', 'y')") == (25, -1, -1)
    assert oid("UNION(a INTEGER)") == (25, -1, -1)
    assert oid("BIT") == (25, -1, -1)
    assert oid("JSON[]") == (199, -1, -1)
    assert oid("TIME WITH TIME ZONE") == (1266, 12, -1)
    assert oid("TIMESTAMP_NS") == (1114, 8, -1)
    assert oid("UHUGEINT") == (1700, -1, -1)
    assert oid("SOMETHING NEW(1)") == (25, -1, -1)
    assert oid("") == (25, -1, -1)
    assert varchar_fetch_cast("INTERVAL[3]") == "VARCHAR[]"
    assert varchar_fetch_cast("DATE[][]") == "VARCHAR[][]"
    assert varchar_fetch_cast("INTEGER[]") is None
    assert varchar_fetch_cast("STRUCT(a INTEGER[])[]") == "VARCHAR[]"
    assert pgtypes.type_size(pgtypes.INTERVAL) == 16


def test_nested_duckdb_types_render_as_duckdb_text(duck: duckdb.DuckDBPyConnection) -> None:
    sql = ("SELECT {'a': 1, 'b': 'x'} AS s, MAP {1: 2} AS m, '101'::BIT AS b, "
           "'x'::ENUM('x', 'y') AS e, 1::BIGNUM AS n")
    cur = duck.execute(sql)
    desc = cur.description
    assert desc is not None
    assert [field_for_duckdb(d[0], d[1]).type_oid for d in desc] == [25, 25, 25, 25, 1700]
    # native values: Python's str() of the dict
    assert render_rows(desc, cur.fetchall()) == [["{'a': 1, 'b': 'x'}", "{1: 2}", "101", "x", "1"]]
    # the VARCHAR fetch path gives DuckDB's own notation
    casts = [varchar_fetch_cast(d[1]) for d in desc]
    assert casts == ["VARCHAR", "VARCHAR", "VARCHAR", None, None]
    cols = ", ".join(f"CAST(#{i + 1} AS {c})" if c else f"#{i + 1}" for i, c in enumerate(casts))
    rows = duck.execute(f"SELECT {cols} FROM ({sql})").fetchall()
    assert render_rows(desc, rows) == [["{'a': 1, 'b': x}", "{1=2}", "101", "x", "1"]]


def test_renderers_handle_null_and_float_edges() -> None:
    render = text_renderer_for("INTEGER[]")
    assert render(None) is None
    assert render([1, None, [2]]) == "{1,NULL,{2}}"
    assert float8_text(1e15) == "1e+15" and float8_text(-1.5e300) == "-1.5e+300"
    assert float8_text(5e-324) == "5e-324" and float8_text(0.0001) == "0.0001"
    assert float4_text(-0.0) == "-0" and float4_text(0.0) == "0"
    assert float4_text(16777216.0) == "1.6777216e+07"
    assert render_rows([("a", "VARCHAR"), ("b", "BLOB")], []) == []
    tz = text_renderer_for("TIMESTAMP WITH TIME ZONE", "Asia/Kolkata")
    assert (tz(dt.datetime.max), tz(dt.datetime.min)) == ("infinity", "-infinity")  # duckdb's naive infinities
    assert tz("0044-03-15 (BC) 01:00:00+00") == "0044-03-15 01:00:00+00 BC"
    assert text_renderer_for("INTERVAL")("1 day -00:00:00.000001") == "1 day -00:00:00.000001"
    assert text_renderer_for("TIMESTAMP", "No/Such_Zone")(dt.datetime(2024, 1, 2)) == "2024-01-02 00:00:00"


def test_random_floats_match_postgres(pg_cursor: psycopg.Cursor[Any]) -> None:
    """Random bit patterns as float8 and float4: our shortest output equals PG's."""
    rng = random.Random(1234)
    doubles = [struct.unpack("d", rng.randbytes(8))[0] for _ in range(400)]
    doubles += [rng.uniform(-1e6, 1e6) for _ in range(200)] + [10.0**e for e in range(-20, 25)]
    doubles += [1e23, 2.0**60, 1.7976931348623157e308, 5e-324, 2.2250738585072014e-308]
    doubles += [float(f"{rng.randrange(1, 99999)}e{rng.randrange(15, 30)}") for _ in range(300)]  # bound cases
    doubles += [float(rng.randrange(2**53, 2**70)) for _ in range(100)]
    doubles = [d for d in doubles if math.isfinite(d)]
    singles = [struct.unpack("f", rng.randbytes(4))[0] for _ in range(400)]
    singles += [struct.unpack("f", struct.pack("f", rng.uniform(-1e4, 1e4)))[0] for _ in range(200)]
    singles += [3.4028234663852886e38, 1.401298464324817e-45, 1.1754943508222875e-38]
    singles += [float(f"{rng.randrange(1, 9999999)}e{rng.randrange(-3, 12)}") for _ in range(300)]
    singles = [f for f in singles if math.isfinite(f)]
    pg_cursor.execute("SELECT array_agg(v::text ORDER BY i) FROM unnest(%s::float8[]) WITH ORDINALITY u(v, i)",
                      (doubles,))
    assert [float8_text(d) for d in doubles] == pg_cursor.fetchone()[0]  # type: ignore[index]
    pg_cursor.execute("SELECT array_agg(v::float4::text ORDER BY i) FROM unnest(%s::float8[]) "
                      "WITH ORDINALITY u(v, i)", (singles,))
    assert [float4_text(f) for f in singles] == pg_cursor.fetchone()[0]  # type: ignore[index]


# --- Neon's non-raw JSON values --------------------------------------------------------

def test_json_value_scalars() -> None:
    assert json_value("t", 16) is True and json_value("f", 16) is False
    assert json_value("42", 23) == 42 and json_value("-7", 21) == -7
    assert json_value("9007199254740993", 20) == "9007199254740993"
    assert json_value("1.5", 701) == 1.5 and json_value("1e+20", 700) == 1e20
    assert [json_value(s, 701) for s in ("NaN", "Infinity", "-Infinity")] == ["NaN", "Infinity", "-Infinity"]
    assert json_value('{"a": [1, 2]}', 3802) == {"a": [1, 2]}
    assert json_value("1.50", 1700) == "1.50"
    assert json_value("2024-01-02", 1082) == "2024-01-02"
    assert json_value(None, 23) is None and json_value(None, 1007) is None
    assert json_value("not json", 114) == "not json"  # malformed input falls back to its text


def test_json_value_arrays() -> None:
    assert json_value("{1,2,3}", 1007) == [1, 2, 3]
    assert json_value("{{1,2},{3,NULL}}", 1007) == [[1, 2], [3, None]]
    assert json_value("[2:3]={1,2}", 1007) == [1, 2]
    assert json_value("{}", 1009) == []
    assert json_value('{a,"b c",NULL,"NULL","with \\"quote\\"","back\\\\slash",""}', 1009) == [
        "a", "b c", None, "NULL", 'with "quote"', "back\\slash", ""]
    assert json_value("{ a , b\\ ,c\\,d}", 1009) == ["a", "b ", "c,d"]
    assert json_value("{t,f,NULL}", 1000) == [True, False, None]
    assert json_value("{1.5,NaN,-Infinity}", 1022) == [1.5, "NaN", "-Infinity"]
    assert json_value('{"{\\"a\\":1}",NULL}', 199) == [{"a": 1}, None]
    assert json_value("{9007199254740993}", 1016) == ["9007199254740993"]
    assert json_value('{"2024-01-02 03:04:05"}', 1115) == ["2024-01-02 03:04:05"]
    assert json_value("{1,2", 1007) == "{1,2"  # malformed: left as text
    with pytest.raises(ValueError):
        parse_array("{a}x{")


def test_json_row_converters() -> None:
    fields = [Field("a", 23), Field("b", 25), Field("c", 1007), Field("d", 16)]
    convert = json_row_converters(fields)
    row = ["1", "x", "{1,NULL}", None]
    assert [c(v) for c, v in zip(convert, row)] == [1, "x", [1, None], None]


# --- array literal round trip ---------------------------------------------------------

ELEMENT_TEXT = st.text(alphabet=st.sampled_from(list('ab \t\n"\\,{}NULnul€😀=[]:')), max_size=8) | st.sampled_from(
    ["", "NULL", "null", " NULL ", "a b", '"', "\\", "{}", ",", "é"])
STRING_LISTS = st.lists(st.none() | ELEMENT_TEXT, max_size=8)
INT_LISTS = st.lists(st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=8)


@settings(max_examples=300, deadline=None)
@given(STRING_LISTS)
def test_text_array_round_trip(values: list[str | None]) -> None:
    text = text_renderer_for("VARCHAR[]")(values)
    assert text is not None
    assert parse_array(text) == values
    assert json_value(text, 1009) == values


@settings(max_examples=200, deadline=None)
@given(INT_LISTS)
def test_int_array_round_trip(values: list[int | None]) -> None:
    text = text_renderer_for("BIGINT[]")(values)
    assert text is not None
    assert parse_array(text, int) == values


@settings(max_examples=60, deadline=None)
@given(STRING_LISTS)
def test_array_rendering_agrees_with_postgres(pg_cursor: psycopg.Cursor[Any], values: list[str | None]) -> None:
    """PG parses our rendering to the same list, and prints the list exactly as we do."""
    ours = text_renderer_for("VARCHAR[]")(values)
    pg_cursor.execute("SELECT %s::text[], (%s::text[])::text", (ours, values))
    assert pg_cursor.fetchone() == (values, ours)


def test_array_rendering_agrees_with_postgres_on_edges(pg_cursor: psycopg.Cursor[Any]) -> None:
    values = ["", "NULL", "null", " x ", 'q"', "b\\s", "{", "}", ",", "é😀", None, "\t\n", "a=b", "[1]"]
    ours = text_renderer_for("VARCHAR[]")(values)
    pg_cursor.execute("SELECT %s::text[], (%s::text[])::text", (ours, values))
    assert pg_cursor.fetchone() == (values, ours)


def test_render_rows_keeps_decimal_scale_and_nulls() -> None:
    desc = [("n", "DECIMAL(10,2)"), ("s", "VARCHAR"), ("i", "INTEGER")]
    rows = [(Decimal("1.50"), "x", None), (None, None, 3)]
    assert render_rows(desc, rows) == [["1.50", "x", None], [None, None, "3"]]
