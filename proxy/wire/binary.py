"""Binary format: PostgreSQL's text output of a value to its binary send
format (results), and a binary parameter back to text (Bind), per type OID.

The pipeline speaks text; clients that ask for binary (asyncpg, psycopg with
binary=True, pgJDBC for some types) get it converted here.
"""

from __future__ import annotations

import re
import struct
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from proxy import pgtypes as t

_EPOCH_DATE = date(2000, 1, 1)
_EPOCH_ORDINAL = _EPOCH_DATE.toordinal()
_EPOCH = datetime(2000, 1, 1)
_EPOCH_TZ = datetime(2000, 1, 1, tzinfo=UTC)
_INF_DATE, _NINF_DATE = 0x7FFFFFFF, -0x80000000
_INF_TS, _NINF_TS = 0x7FFFFFFFFFFFFFFF, -0x8000000000000000
_I16, _I32, _I64, _U32 = struct.Struct("!h"), struct.Struct("!i"), struct.Struct("!q"), struct.Struct("!I")
_F4, _F8 = struct.Struct("!f"), struct.Struct("!d")


class BinaryFormatError(Exception):
    """A value that cannot be converted (SQLSTATE 22P03 for parameters)."""


# --- text -> binary ------------------------------------------------------------

def _bool_to(s: str) -> bytes:
    return b"\x01" if s in ("t", "true") else b"\x00"


def _bytea_to(s: str) -> bytes:
    if s.startswith("\\x"):
        return bytes.fromhex(s[2:])
    return s.encode("latin-1")  # escape format is never produced with bytea_output = hex


def _date_days(s: str) -> int:
    if s == "infinity":
        return _INF_DATE
    if s == "-infinity":
        return _NINF_DATE
    bc = s.endswith(" BC")
    if bc:
        s = s[:-3]
    y, m, d = (int(x) for x in s.split("-"))
    if bc or y > 9999:
        return _julian(-(y - 1) if bc else y, m, d) - _julian(2000, 1, 1)
    return date(y, m, d).toordinal() - _EPOCH_ORDINAL


def _julian(y: int, m: int, d: int) -> int:
    """PostgreSQL's date2j (proleptic Gregorian, any year)."""
    if m > 2:
        m += 1
        y += 4800
    else:
        m += 13
        y += 4799
    century = y // 100
    julian = y * 365 - 32167 + y // 4 - century + century // 4 + 7834 * m // 256 + d
    return julian


_TIME = re.compile(r"(\d+):(\d\d):(\d\d)(?:\.(\d{1,6}))?")
_TZ = re.compile(r"([+-])(\d\d)(?::?(\d\d))?(?::?(\d\d))?$")


def _time_us(s: str) -> int:
    m = _TIME.match(s)
    if not m:
        raise BinaryFormatError(f"invalid time {s!r}")
    frac = (m.group(4) or "").ljust(6, "0")
    return ((int(m.group(1)) * 60 + int(m.group(2))) * 60 + int(m.group(3))) * 1_000_000 + int(frac or 0)


def _timestamp_us(s: str, with_tz: bool) -> int:
    if s == "infinity":
        return _INF_TS
    if s == "-infinity":
        return _NINF_TS
    bc = s.endswith(" BC")
    if bc:
        s = s[:-3]
    day, _, rest = s.partition(" ")
    offset = 0
    if with_tz:
        m = _TZ.search(rest)
        if m:
            offset = (int(m.group(2)) * 3600 + int(m.group(3) or 0) * 60 + int(m.group(4) or 0))
            offset = -offset if m.group(1) == "-" else offset
            rest = rest[: m.start()]
    days = _date_days(day + (" BC" if bc else ""))
    return days * 86_400_000_000 + _time_us(rest) - offset * 1_000_000


def _timetz_to(s: str) -> bytes:
    """Microseconds of the local time, then the zone's offset in seconds west of UTC."""
    m = _TZ.search(s)
    if not m:
        raise BinaryFormatError(f"invalid time with time zone {s!r}")
    east = int(m.group(2)) * 3600 + int(m.group(3) or 0) * 60 + int(m.group(4) or 0)
    return struct.pack("!qi", _time_us(s[: m.start()]), east if m.group(1) == "-" else -east)


def _uuid_to(s: str) -> bytes:
    return uuid.UUID(s).bytes


def _numeric_to(s: str) -> bytes:
    if s == "NaN":
        return struct.pack("!hhHh", 0, 0, 0xC000, 0)
    if s in ("Infinity", "-Infinity"):
        return struct.pack("!hhHh", 0, 0, 0xD000 if s[0] == "I" else 0xF000, 0)
    sign = 0x4000 if s.startswith("-") else 0
    s = s.lstrip("+-")
    if "e" in s or "E" in s:
        s = format(Decimal(s), "f")
    whole, _, frac = s.partition(".")
    dscale = len(frac)
    whole = whole.lstrip("0")
    # group into base-10000 digits aligned on the decimal point
    pad_whole = (-len(whole)) % 4
    whole = "0" * pad_whole + whole
    frac_padded = frac + "0" * ((-len(frac)) % 4)
    digits = [int(whole[i: i + 4]) for i in range(0, len(whole), 4)]
    weight = len(digits) - 1
    digits += [int(frac_padded[i: i + 4]) for i in range(0, len(frac_padded), 4)]
    while digits and digits[0] == 0:
        digits.pop(0)
        weight -= 1
    while digits and digits[-1] == 0:
        digits.pop()
    if not digits:
        weight, sign = 0, 0
    return struct.pack(f"!hhHh{len(digits)}h", len(digits), weight, sign, dscale, *digits)


_IV_PART = re.compile(r"([+-]?\d+) (year|mon|day)s?")


def _interval_to(s: str) -> bytes:
    months = days = 0
    us = 0
    for m in _IV_PART.finditer(s):
        n, unit = int(m.group(1)), m.group(2)
        if unit == "year":
            months += 12 * n
        elif unit == "mon":
            months += n
        else:
            days += n
    tm = re.search(r"([+-])?(\d+):(\d\d):(\d\d)(?:\.(\d{1,6}))?", s)
    if tm:
        us = ((int(tm.group(2)) * 60 + int(tm.group(3))) * 60 + int(tm.group(4))) * 1_000_000
        us += int((tm.group(5) or "").ljust(6, "0") or 0)
        if tm.group(1) == "-":
            us = -us
    if s.endswith(" ago"):
        months, days, us = -months, -days, -us
    return struct.pack("!qii", us, days, months)


def _float_to(fmt: struct.Struct) -> Callable[[str], bytes]:
    return lambda s: fmt.pack(float(s))


TO_BINARY: dict[int, Callable[[str], bytes]] = {
    t.BOOL: _bool_to,
    t.INT2: lambda s: _I16.pack(int(s)),
    t.INT4: lambda s: _I32.pack(int(s)),
    t.INT8: lambda s: _I64.pack(int(s)),
    t.OID: lambda s: _U32.pack(int(s)),
    t.FLOAT4: _float_to(_F4),
    t.FLOAT8: _float_to(_F8),
    t.BYTEA: _bytea_to,
    t.DATE: lambda s: _I32.pack(_date_days(s)),
    t.TIME: lambda s: _I64.pack(_time_us(s)),
    t.TIMETZ: _timetz_to,
    t.TIMESTAMP: lambda s: _I64.pack(_timestamp_us(s, False)),
    t.TIMESTAMPTZ: lambda s: _I64.pack(_timestamp_us(s, True)),
    t.INTERVAL: _interval_to,
    t.UUID: _uuid_to,
    t.NUMERIC: _numeric_to,
    t.JSONB: lambda s: b"\x01" + s.encode(),
}
_TEXTLIKE = {t.TEXT, t.VARCHAR, t.BPCHAR, t.NAME, t.CHAR, t.JSON, t.XML, t.UNKNOWN, 3769, 2205, 2206}  # + regclass..


def has_binary(oid: int) -> bool:
    return oid in TO_BINARY or oid in _TEXTLIKE or (oid in t.ELEMENT_OF and has_binary(t.ELEMENT_OF[oid]))


def to_binary(oid: int, text: str) -> bytes:
    """The binary send format of a value given as PostgreSQL's text output."""
    conv = TO_BINARY.get(oid)
    if conv is not None:
        return conv(text)
    if oid in _TEXTLIKE:
        return text.encode()
    element = t.ELEMENT_OF.get(oid)
    if element is not None:
        return _array_to(element, text)
    raise BinaryFormatError(f"no binary output function available for type {oid}")


def _array_to(element: int, text: str) -> bytes:
    dims, values = parse_array(text)
    nulls = any(v is None for v in values)
    out = [struct.pack("!iiI", len(dims), 1 if nulls else 0, element)]
    for d in dims:
        out.append(struct.pack("!ii", d, 1))
    for v in values:
        if v is None:
            out.append(b"\xff\xff\xff\xff")
        else:
            b = to_binary(element, v)
            out.append(_I32.pack(len(b)) + b)
    return b"".join(out)


def parse_array(text: str) -> tuple[list[int], list[str | None]]:
    """An array's text output as (dimensions, flat values); NULL items are None."""
    if text.startswith("["):  # explicit bounds: "[0:1]={...}"
        text = text[text.index("=") + 1:]
    values: list[str | None] = []
    dims: list[int] = []
    counts: list[int] = []
    depth = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "{":
            depth += 1
            if len(dims) < depth:
                dims.append(0)
            while len(counts) < depth:
                counts.append(0)
            counts[depth - 1] = 0
            i += 1
        elif c == "}":
            if text[i - 1] != "{" or depth == len(dims):
                pass
            dims[depth - 1] = max(dims[depth - 1], counts[depth - 1])
            depth -= 1
            if depth:
                counts[depth - 1] += 1
            i += 1
        elif c == ",":
            i += 1
        elif c == '"':
            j, buf = i + 1, []
            while text[j] != '"':
                if text[j] == "\\":
                    j += 1
                buf.append(text[j])
                j += 1
            values.append("".join(buf))
            counts[depth - 1] += 1
            i = j + 1
        else:
            j = i
            while text[j] not in ",}":
                j += 1
            item = text[i:j].strip()
            values.append(None if item == "NULL" else item)
            counts[depth - 1] += 1
            i = j
    if not values:
        return [], []
    return dims, values


# --- binary -> text (parameters) ----------------------------------------------

def _numeric_from(b: bytes) -> str:
    """Exact, digit by digit (Decimal arithmetic would round past its 28-digit context)."""
    ndigits, weight, sign, dscale = struct.unpack_from("!hhHh", b)
    if sign == 0xC000:
        return "NaN"
    if sign in (0xD000, 0xF000):
        return "Infinity" if sign == 0xD000 else "-Infinity"
    digits = struct.unpack_from(f"!{ndigits}h", b, 8)
    if sign not in (0, 0x4000) or dscale < 0 or any(not 0 <= d <= 9999 for d in digits):
        raise ValueError("invalid numeric")
    groups = "".join(f"{d:04d}" for d in digits)
    point = (weight + 1) * 4  # decimal digits before the point, counted from the first group
    if point <= 0:
        whole, frac = "0", "0" * -point + groups
    else:
        whole, frac = (groups + "0" * max(0, point - len(groups)))[:point], groups[point:]
    whole = whole.lstrip("0") or "0"
    frac = (frac + "0" * dscale)[:dscale]
    text = whole + ("." + frac if dscale else "")
    return "-" + text if sign == 0x4000 and text.strip("0.") else text


def _date_from(b: bytes) -> str:
    (days,) = _I32.unpack(b)
    if days == _INF_DATE:
        return "infinity"
    if days == _NINF_DATE:
        return "-infinity"
    return date.fromordinal(_EPOCH_ORDINAL + days).isoformat()


def _ts_from(b: bytes, with_tz: bool) -> str:
    (us,) = _I64.unpack(b)
    if us == _INF_TS:
        return "infinity"
    if us == _NINF_TS:
        return "-infinity"
    value = (_EPOCH_TZ if with_tz else _EPOCH) + timedelta(microseconds=us)
    return value.isoformat(sep=" ")


def _time_from(b: bytes) -> str:
    (us,) = _I64.unpack(b)
    s, us = divmod(us, 1_000_000)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return f"{h:02d}:{m:02d}:{s:02d}.{us:06d}"


def _timetz_from(b: bytes) -> str:
    us, west = struct.unpack("!qi", b)
    east = -west
    sign = "-" if east < 0 else "+"
    h, rem = divmod(abs(east), 3600)
    return _time_from(struct.pack("!q", us)) + f"{sign}{h:02d}:{rem // 60:02d}:{rem % 60:02d}"


def _interval_from(b: bytes) -> str:
    us, days, months = struct.unpack("!qii", b)
    return f"{months} mons {days} days {us} microseconds"


def _bytea_from(b: bytes) -> str:
    return "\\x" + b.hex()


FROM_BINARY: dict[int, Callable[[bytes], str]] = {
    t.BOOL: lambda b: "t" if b == b"\x01" else "f",
    t.INT2: lambda b: str(_I16.unpack(b)[0]),
    t.INT4: lambda b: str(_I32.unpack(b)[0]),
    t.INT8: lambda b: str(_I64.unpack(b)[0]),
    t.OID: lambda b: str(_U32.unpack(b)[0]),
    t.FLOAT4: lambda b: repr(_F4.unpack(b)[0]).replace("inf", "Infinity").replace("nan", "NaN"),
    t.FLOAT8: lambda b: repr(_F8.unpack(b)[0]).replace("inf", "Infinity").replace("nan", "NaN"),
    t.BYTEA: _bytea_from,
    t.DATE: _date_from,
    t.TIME: _time_from,
    t.TIMETZ: _timetz_from,
    t.TIMESTAMP: lambda b: _ts_from(b, False),
    t.TIMESTAMPTZ: lambda b: _ts_from(b, True),
    t.INTERVAL: _interval_from,
    t.UUID: lambda b: str(uuid.UUID(bytes=b)),
    t.NUMERIC: _numeric_from,
    t.JSONB: lambda b: b[1:].decode(),
}


def from_binary(oid: int, data: bytes) -> str:
    """A binary parameter as text PostgreSQL (or DuckDB) accepts for its type."""
    try:
        conv = FROM_BINARY.get(oid)
        if conv is not None:
            return conv(data)
        if oid in _TEXTLIKE or oid == 0:
            return data.decode()
        element = t.ELEMENT_OF.get(oid)
        if element is not None:
            return _array_from(data)
    except (struct.error, ValueError, ArithmeticError, IndexError) as exc:
        raise BinaryFormatError(f"incorrect binary data format in bind parameter ({exc})") from None
    raise BinaryFormatError(f"no binary input function available for type {oid}")


def _array_from(data: bytes) -> str:
    ndim, _flags, element = struct.unpack_from("!iiI", data)
    if ndim < 0 or ndim > 6:
        raise ValueError("wrong number of array dimensions")
    pos = 12
    dims = []
    for _ in range(ndim):
        size, _lower = struct.unpack_from("!ii", data, pos)
        dims.append(size)
        pos += 8
    items: list[str] = []
    total = 1
    for d in dims:
        total *= d
    if ndim == 0:
        return "{}"
    for _ in range(total):
        (length,) = _I32.unpack_from(data, pos)
        pos += 4
        if length == -1:
            items.append("NULL")
            continue
        value = from_binary(element, data[pos: pos + length])
        pos += length
        items.append('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"')

    def nest(level: int, flat: list[str]) -> str:
        if level == len(dims) - 1:
            return "{" + ",".join(flat) + "}"
        step = len(flat) // dims[level]
        return "{" + ",".join(nest(level + 1, flat[i: i + step]) for i in range(0, len(flat), step)) + "}"

    return nest(0, items)
