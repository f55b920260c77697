"""The WHERE clause of sqlgate's list endpoints (traces, checkpoints): equality
and lower-bound filters, rendered for either driver's placeholder style."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def conditions(placeholder: str, equal: Mapping[str, Any], at_least: Mapping[str, Any] | None = None,
               always: str = "true") -> tuple[str, list[Any]]:
    """`always AND col = $ AND ... AND col >= $`, skipping filters that are None."""
    parts, args = [always], []
    for column, value in equal.items():
        if value is not None:
            parts.append(f"{column} = {placeholder}")
            args.append(value)
    for column, value in (at_least or {}).items():
        if value is not None:
            parts.append(f"{column} >= {placeholder}")
            args.append(value)
    return " AND ".join(parts), args
