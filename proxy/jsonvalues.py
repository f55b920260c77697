"""Neon's non-raw HTTP mode (neon-http.md §2.3): turning PostgreSQL text output
into typed JSON values by type OID, including a parser for PostgreSQL array
literals ('{1,"a b",NULL}', nested, with an optional '[1:3]=' bounds prefix)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from proxy import pgtypes as t
from proxy.result import Field

Converter = Callable[[str], Any]
_SPECIAL_FLOATS = frozenset({"NaN", "Infinity", "-Infinity"})


def _as_bool(s: str) -> bool:
    return s == "t"


def _as_float(s: str) -> float | str:
    return s if s in _SPECIAL_FLOATS else float(s)


def _as_string(s: str) -> str:
    return s


_SCALAR: dict[int, Converter] = {
    t.BOOL: _as_bool, t.INT2: int, t.INT4: int, t.FLOAT4: _as_float, t.FLOAT8: _as_float,
    t.JSON: json.loads, t.JSONB: json.loads,
}
_WS = " \t\n\r\v\f"


def parse_array(text: str, convert: Converter = _as_string) -> list[Any]:
    """Parse a PG array literal into nested lists; NULL -> None, others via `convert`."""
    n = len(text)
    pos = 0
    if text.startswith("["):  # explicit bounds, e.g. '[2:3]={1,2}'
        pos = text.index("=") + 1
    while pos < n and text[pos] in _WS:
        pos += 1
    if pos >= n or text[pos] != "{":
        raise ValueError(f"malformed array literal: {text!r}")

    def level(pos: int) -> tuple[list[Any], int]:
        out: list[Any] = []
        pos += 1  # past '{'
        while pos < n and text[pos] in _WS:
            pos += 1
        if pos < n and text[pos] == "}":
            return out, pos + 1
        while pos < n:
            while text[pos] in _WS:
                pos += 1
            c = text[pos]
            if c == "{":
                value, pos = level(pos)
                out.append(value)
            elif c == '"':
                chars: list[str] = []
                pos += 1
                while text[pos] != '"':
                    if text[pos] == "\\":
                        pos += 1
                    chars.append(text[pos])
                    pos += 1
                pos += 1
                out.append(convert("".join(chars)))
            else:
                chars = []
                keep = 0  # length up to the last escaped or non-space char
                escaped = False
                while text[pos] not in ",}":
                    ch = text[pos]
                    if ch == "\\":
                        pos += 1
                        ch, escaped = text[pos], True
                        chars.append(ch)
                        keep = len(chars)
                    else:
                        chars.append(ch)
                        if ch not in _WS:
                            keep = len(chars)
                    pos += 1
                item = "".join(chars[:keep])
                if not escaped and item.upper() == "NULL":
                    out.append(None)
                else:
                    out.append(convert(item))
            while text[pos] in _WS:
                pos += 1
            c = text[pos]
            pos += 1
            if c == "}":
                return out, pos
            if c != ",":
                raise ValueError(f"malformed array literal: {text!r}")
        raise ValueError(f"malformed array literal: {text!r}")

    try:
        result, end = level(pos)
    except IndexError:
        raise ValueError(f"malformed array literal: {text!r}") from None
    if text[end:].strip(_WS):
        raise ValueError(f"junk after array literal: {text!r}")
    return result


def converter_for(type_oid: int) -> Callable[[str | None], Any]:
    """The §2.3 conversion for one column type; falls back to the text on bad input."""
    element = t.ELEMENT_OF.get(type_oid)
    if element is not None:
        elem_convert = _SCALAR.get(element, _as_string)

        def convert(s: str) -> Any:
            return parse_array(s, elem_convert)
    else:
        convert = _SCALAR.get(type_oid, _as_string)
        if convert is _as_string:
            return _as_string_or_none

    def convert_nullable(s: str | None) -> Any:
        if s is None:
            return None
        try:
            return convert(s)
        except ValueError:  # includes json.JSONDecodeError
            return s

    return convert_nullable


def _as_string_or_none(s: str | None) -> str | None:
    return s


def json_value(text: str | None, type_oid: int) -> Any:
    """One PG text value as Neon's non-raw mode sends it."""
    return converter_for(type_oid)(text)


def json_row_converters(fields: Sequence[Field]) -> list[Callable[[str | None], Any]]:
    """One converter per column, to apply to each row's text values."""
    return [converter_for(f.type_oid) for f in fields]
