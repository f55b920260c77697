"""Values that lose precision or meaning on the way through sqlgate unless it
takes care: numeric parameters in binary past 28 digits, date and timestamp
+-infinity (which DuckDB's Python values cannot tell from 9999-12-31 and
0001-01-01), and time with time zone in binary. Both backends must answer as
PostgreSQL does."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import asyncpg
import psycopg
from psycopg.adapt import Loader
from psycopg.pq import Format
from psycopg.types.string import TextLoader

from tests.support.wire import Wire


class RawBinary(Loader):
    format = Format.BINARY

    def load(self, data: bytes) -> bytes:  # type: ignore[override]
        return bytes(data)


def test_binary_numeric_parameters_keep_every_digit(wire: Wire) -> None:
    values = [("123456789012345678901234567890123", "numeric(38,0)"),
              ("-123456789012345678901234567890.12", "numeric(38,2)"),
              ("12345678901234567890.123456789012", "numeric(38,12)"), ("-0.50", "numeric(10,2)")]

    async def run() -> list[str]:
        conn = await asyncpg.connect(wire.dsn())
        try:
            return [str(await conn.fetchval(f"SELECT ($1::{t})::text", Decimal(v))) for v, t in values]
        finally:
            await conn.close()

    assert asyncio.run(run()) == [v for v, _ in values]


def test_infinite_dates_and_timestamps_come_back_as_infinity(wire: Wire) -> None:
    with psycopg.connect(wire.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE inf_dates (id int, d date, ts timestamp)")
        conn.execute("INSERT INTO inf_dates VALUES (1, 'infinity', 'infinity'), (2, '-infinity', '-infinity'),"
                     " (3, '9999-12-31', '9999-12-31 23:59:59.999999'), (4, '0001-01-01', '0001-01-01 00:00:00')")
        for name in ("date", "timestamp"):
            conn.adapters.register_loader(name, TextLoader)
            conn.adapters.register_loader(name, RawBinary)
        text = conn.execute("SELECT d, ts FROM inf_dates ORDER BY id").fetchall()
        assert text == [("infinity", "infinity"), ("-infinity", "-infinity"),
                        ("9999-12-31", "9999-12-31 23:59:59.999999"), ("0001-01-01", "0001-01-01 00:00:00")]
        binary = conn.cursor(binary=True).execute("SELECT d, ts FROM inf_dates WHERE id <= 2 ORDER BY id").fetchall()
        assert binary == [(b"\x7f\xff\xff\xff", b"\x7f\xff\xff\xff\xff\xff\xff\xff"),
                          (b"\x80\x00\x00\x00", b"\x80\x00\x00\x00\x00\x00\x00\x00")]


def test_time_with_time_zone_in_binary(wire: Wire) -> None:
    async def run() -> tuple[object, object]:
        conn = await asyncpg.connect(wire.dsn())
        try:
            out = await conn.fetchval("SELECT TIMETZ '01:02:03.5+05:30'")
            echoed = await conn.fetchval("SELECT ($1::timetz)::text", out)
            return out, echoed
        finally:
            await conn.close()

    out, echoed = asyncio.run(run())
    assert (out.hour, out.minute, out.second, out.microsecond) == (1, 2, 3, 500000)  # type: ignore[attr-defined]
    assert out.utcoffset().total_seconds() == 5.5 * 3600  # type: ignore[attr-defined]
    assert echoed == "01:02:03.5+05:30"
