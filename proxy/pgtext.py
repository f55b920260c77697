"""PostgreSQL 15 text output for the Python values duckdb returns.

`text_renderer_for(duck_type)` picks one plain function per column (no per-value
type dispatch); `render_rows` applies them column by column. Renderers accept
duckdb's native Python value and, for temporal/nested kinds, DuckDB's own VARCHAR
text (see pgtypes.varchar_fetch_cast), which is the exact path."""

from __future__ import annotations

import datetime as dt
import math
import re
import struct
from collections.abc import Callable, Sequence
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from proxy.pgtypes import PgType, pg_type_for_duckdb

Renderer = Callable[[Any], str]
_INF = float("inf")
_TWO53 = 2.0**53
_UTC = dt.UTC
_DAY_US = 86_400_000_000


# --- numbers ---------------------------------------------------------------

def _pg_sci(neg: bool, digits: str, exp10: int, fixed_below: int) -> str:
    """Shortest digits d.ddd x 10^exp10 in PG's %g-like form (fixed for -4 <= e < fixed_below)."""
    sign = "-" if neg else ""
    if -4 <= exp10 < fixed_below:
        if exp10 < 0:
            return f"{sign}0.{'0' * (-exp10 - 1)}{digits}"
        whole = digits[: exp10 + 1].ljust(exp10 + 1, "0")
        frac = digits[exp10 + 1:]
        return f"{sign}{whole}.{frac}" if frac else sign + whole
    mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{mant}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"


def _special(x: float) -> str:
    return "NaN" if x != x else ("Infinity" if x > 0 else "-Infinity")


def _from_repr(s: str, fixed_below: int) -> str:
    """Re-lay a Python shortest repr/%e string ('1.5e-05', '1234.5') in PG's form."""
    neg = s.startswith("-")
    if neg:
        s = s[1:]
    mant, _, e = s.partition("e")
    exp10 = int(e) if e else 0
    whole, _, frac = mant.partition(".")
    digits = (whole + frac).lstrip("0")
    if not digits:
        return "-0" if neg else "0"
    exp10 += len(whole) - 1 - (len(whole + frac) - len(digits))
    return _pg_sci(neg, digits.rstrip("0"), exp10, fixed_below)


def _strictly_shortest(a: float, lo: float, hi: float | None, max_digits: int, guess: str = "") -> str:
    """Shortest '%e' digits strictly inside a's rounding interval (PG's ryu never
    accepts the bounds, unlike Python's repr). 0 < lo < a < hi (hi None: a is the largest finite)."""
    fa, flo = Fraction(a), Fraction(lo)
    low = (fa + flo) / 2
    high = (fa + Fraction(hi)) / 2 if hi is not None else fa + (fa - flo) / 2
    if guess and low < Fraction(guess) < high:
        return guess
    for prec in range(1, max_digits + 1):
        s = f"{a:.{prec - 1}e}"
        if low < Fraction(s) < high:
            return s
    return f"{a:.{max_digits - 1}e}"


def float8_text(x: float) -> str:
    """float8out with extra_float_digits=1 (PG 12+ default): shortest round-trip digits."""
    s = repr(x)  # shortest digits; exponent form for e < -4 or e >= 16, laid out as PG does
    if -1e15 < x < 1e15:
        if "e" in s:
            return s
        return s[:-2] if s[-2:] == ".0" else s
    if x != x or x in (_INF, -_INF):
        return _special(x)
    if x >= _TWO53 or x <= -_TWO53:  # only here can repr's digits sit exactly on a bound
        a = abs(x)
        hi = math.nextafter(a, _INF)
        s = _strictly_shortest(a, math.nextafter(a, 0.0), None if hi == _INF else hi, 17, s.lstrip("-"))
        s = "-" + s if x < 0 else s
    return _from_repr(s, 15)  # PG switches to exponent form one decade earlier


def float4_text(x: float) -> str:
    """float4out: the shortest digits strictly inside the float32's rounding interval."""
    if x == 0:
        return "-0" if str(x)[0] == "-" else "0"
    return _float4_nonzero(x)


@lru_cache(maxsize=4096)
def _float4_nonzero(x: float) -> str:
    if x != x or x in (_INF, -_INF):
        return _special(x)
    bits = struct.unpack("<I", struct.pack("<f", abs(x)))[0]
    a, lo = (struct.unpack("<f", struct.pack("<I", b))[0] for b in (bits, bits - 1))
    hi = struct.unpack("<f", struct.pack("<I", bits + 1))[0] if bits + 1 < 0x7F800000 else None
    return _from_repr(("-" if x < 0 else "") + _strictly_shortest(a, lo, hi, 9), 6)


def decimal_text(d: Decimal) -> str:
    s = str(d)  # duckdb decimals carry the column scale; str() is plain unless tiny
    if "E" in s:
        s = format(d, "f")
    return s[1:] if s[0] == "-" and not d else s  # PG has no negative zero


# --- dates and times ---------------------------------------------------------

def _bc(s: str) -> str:
    """DuckDB's '0044-03-15 (BC) 01:00:00' -> PG's '0044-03-15 01:00:00 BC'."""
    return s.replace(" (BC)", "") + " BC" if " (BC)" in s else s


def date_text(v: Any) -> str:
    return v.isoformat() if isinstance(v, dt.date) else _bc(v)


def time_text(v: Any) -> str:
    if isinstance(v, str):
        return v
    s = v.replace(tzinfo=None).isoformat()
    return s.rstrip("0") if v.microsecond else s


def tz_offset_text(seconds: int) -> str:
    """PG's offset: '+00', '+05:30', '-08', '+00:53:28'."""
    sign = "-" if seconds < 0 else "+"
    h, rem = divmod(abs(seconds), 3600)
    m, s = divmod(rem, 60)
    return f"{sign}{h:02d}" + (f":{m:02d}" if m or s else "") + (f":{s:02d}" if s else "")


def timetz_text(v: Any) -> str:
    if isinstance(v, str):
        return v
    off = v.utcoffset()
    return time_text(v) + tz_offset_text(int(off.total_seconds()) if off is not None else 0)


def timestamp_text(v: Any) -> str:
    if isinstance(v, str):
        return _bc(v)
    s = v.isoformat(" ")
    return s.rstrip("0") if v.microsecond else s


def _timestamptz_renderer(timezone: str) -> Renderer:
    zone: dt.tzinfo = _UTC if timezone.upper() in ("UTC", "ETC/UTC", "GMT") else ZoneInfo(timezone)

    def render(v: Any) -> str:
        if isinstance(v, str):  # DuckDB's VARCHAR already uses its session TimeZone
            return _bc(v)
        if v.tzinfo is None:  # duckdb hands +-infinity over as naive datetime.max/min
            if v == dt.datetime.max or v == dt.datetime.min:
                return "infinity" if v == dt.datetime.max else "-infinity"
            v = v.replace(tzinfo=_UTC)
        try:
            local = v.astimezone(zone)
        except OverflowError:  # within a day of year 1 or 9999
            local = v.astimezone(_UTC)
        off = local.utcoffset()
        s = local.replace(tzinfo=None).isoformat(" ")
        if local.microsecond:
            s = s.rstrip("0")
        return s + tz_offset_text(int(off.total_seconds()) if off is not None else 0)

    return render


def interval_text_parts(months: int, days: int, micros: int) -> str:
    """EncodeInterval for IntervalStyle 'postgres'."""
    out: list[str] = []
    before = False
    years = abs(months) // 12 * (-1 if months < 0 else 1)  # C truncation toward zero
    mons = months - years * 12
    for value, unit in ((years, "year"), (mons, "mon"), (days, "day")):
        if value:
            out.append(f"{'+' if before and value > 0 else ''}{value} {unit}{'' if value == 1 else 's'}")
            before = value < 0
    if not out or micros:
        neg = micros < 0
        secs, frac = divmod(abs(micros), 1_000_000)
        h, rem = divmod(secs, 3600)
        m, s = divmod(rem, 60)
        t = f"{'-' if neg else ('+' if before else '')}{h:02d}:{m:02d}:{s:02d}"
        if frac:
            t += f".{frac:06d}".rstrip("0")
        out.append(t)
    return " ".join(out)


_DUCK_INTERVAL = re.compile(r"(-?\d+) (year|month|day)s?")
_DUCK_TIME = re.compile(r"(-?)(\d+):(\d\d):(\d\d)(?:\.(\d+))?$")


def interval_text(v: Any) -> str:
    """timedelta (no months; days/time split normalised to one sign) or DuckDB's text."""
    if isinstance(v, dt.timedelta):
        us = (v.days * 86_400 + v.seconds) * 1_000_000 + v.microseconds
        days = abs(us) // _DAY_US * (-1 if us < 0 else 1)
        return interval_text_parts(0, days, us - days * _DAY_US)
    months = days = micros = 0
    for n, unit in _DUCK_INTERVAL.findall(v):
        if unit == "year":
            months += int(n) * 12
        elif unit == "month":
            months += int(n)
        else:
            days += int(n)
    m = _DUCK_TIME.search(v)
    if m:
        sign, h, mi, s, frac = m.groups()
        micros = ((int(h) * 60 + int(mi)) * 60 + int(s)) * 1_000_000 + int((frac or "").ljust(6, "0")[:6])
        micros = -micros if sign else micros
    return interval_text_parts(months, days, micros)


# --- other scalars and arrays ------------------------------------------------

def bool_text(v: Any) -> str:
    return "t" if v else "f"


def bytea_text(v: Any) -> str:
    return "\\x" + v.hex()


def _identity(v: Any) -> str:
    return v


_NEEDS_QUOTE = re.compile(r'[{}",\\ \t\n\r\v\f]')


def array_element_text(s: str) -> str:
    """Quote one element's text as array_out does."""
    if s == "" or _NEEDS_QUOTE.search(s) or (len(s) == 4 and s.upper() == "NULL"):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return s


_UNQUOTED_KINDS = frozenset({"bool", "int", "float4", "float8", "decimal", "uuid"})


def _array_renderer(elem: Renderer, needs_quoting: bool) -> Renderer:
    def render(v: Any) -> str:
        if isinstance(v, str):  # already text (a VARCHAR fetch of something odd)
            return v
        parts: list[str] = []
        for e in v:
            if e is None:
                parts.append("NULL")
            elif isinstance(e, (list, tuple)):
                parts.append(render(e))
            elif needs_quoting:
                parts.append(array_element_text(elem(e)))
            else:
                parts.append(elem(e))
        return "{" + ",".join(parts) + "}"

    return render


def _renderer(t: PgType, timezone: str) -> Renderer:
    kind = t.kind
    if kind == "array":
        elem_t = t.element or PgType(25)
        return _array_renderer(_renderer(elem_t, timezone), elem_t.kind not in _UNQUOTED_KINDS)
    if kind == "timestamptz":
        return _timestamptz_renderer(timezone)
    return _BY_KIND.get(kind, str)


_BY_KIND: dict[str, Renderer] = {
    "text": _identity, "str": str, "duckstr": str, "bool": bool_text, "int": str,
    "float4": float4_text, "float8": float8_text, "decimal": decimal_text, "bytea": bytea_text,
    "date": date_text, "time": time_text, "timetz": timetz_text, "timestamp": timestamp_text,
    "interval": interval_text, "uuid": str,
}


@lru_cache(maxsize=1024)
def _cached_renderer(type_str: str, timezone: str) -> Renderer:
    return _renderer(pg_type_for_duckdb(type_str), timezone)


def value_renderer(duck_type: Any, timezone: str = "UTC") -> Renderer:
    """Like text_renderer_for but for non-NULL values only (the hot path)."""
    try:
        return _cached_renderer(str(duck_type), timezone)
    except Exception:  # noqa: BLE001 - unknown zone or type: still render something
        return str


def text_renderer_for(duck_type: Any, timezone: str = "UTC") -> Callable[[Any], str | None]:
    """One function turning a duckdb value of this column type into PG's text (None stays None)."""
    render = value_renderer(duck_type, timezone)

    def render_nullable(v: Any) -> str | None:
        return None if v is None else render(v)

    return render_nullable


def render_rows(description: Sequence[Sequence[Any]], rows: Sequence[Sequence[Any]],
                timezone: str = "UTC") -> list[list[str | None]]:
    """PG text output for duckdb `fetchall()` rows, given the cursor's `.description`."""
    if not rows:
        return []
    columns: list[Sequence[Any]] = []
    for d, col in zip(description, zip(*rows)):
        render = value_renderer(d[1], timezone)
        if render is _identity:
            columns.append(col)
        elif None in col:
            columns.append([None if v is None else render(v) for v in col])
        else:
            columns.append(list(map(render, col)))
    return [list(r) for r in zip(*columns)]
