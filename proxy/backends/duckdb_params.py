"""Parameters for DuckDB. Clients send every parameter as untyped text
(Neon's protocol); PostgreSQL infers each one's type, DuckDB casts a VARCHAR.
Two casts read that text differently: PostgreSQL array literals ('{1,2}')
and bytea hex ('\\xdead'). The statement's own syntax tree says which
parameters are cast to those types; only those are converted."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import sqlglot
from sqlglot import exp

from proxy.jsonvalues import parse_array

_BINARY = {exp.DataType.Type.VARBINARY, exp.DataType.Type.BINARY, exp.DataType.Type.BLOB}


@lru_cache(maxsize=4096)
def param_casts(sql: str) -> dict[int, str]:
    """{parameter number: 'array' | 'binary'} for `$n::type[]` and `$n::bytea` casts."""
    try:
        trees = sqlglot.parse(sql, read="duckdb")
    except sqlglot.errors.SqlglotError:
        return {}
    casts: dict[int, str] = {}
    for tree in trees:
        for cast in tree.find_all(exp.Cast) if tree else ():
            inner = cast.this
            if not isinstance(inner, exp.Placeholder) or not str(inner.this).isdigit():
                continue
            if cast.to.is_type(exp.DataType.Type.ARRAY) or cast.to.this is exp.DataType.Type.ARRAY:
                casts[int(inner.this)] = "array"
            elif cast.to.this in _BINARY:
                casts[int(inner.this)] = "binary"
    return casts


def adapt_params(sql: str, params: Sequence[str | None]) -> list[Any]:
    casts = param_casts(sql) if any(p and p[:1] in ("{", "\\") for p in params) else {}
    adapted: list[Any] = list(params)
    for number, kind in casts.items():
        value = adapted[number - 1] if 0 < number <= len(adapted) else None
        if not isinstance(value, str):
            continue
        try:
            if kind == "array" and value.startswith("{"):
                adapted[number - 1] = parse_array(value)
            elif kind == "binary" and value.startswith("\\x"):
                adapted[number - 1] = bytes.fromhex(value[2:])
        except ValueError:
            pass  # not what it looked like: DuckDB gets the text and says what is wrong
    return adapted
