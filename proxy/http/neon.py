"""Neon's SQL-over-HTTP protocol (neon-http.md): request bodies and headers
in, result JSON out. No I/O here; the endpoint module does that."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import unquote, urlsplit

from proxy import errors
from proxy.backends.base import TxOptions
from proxy.jsonvalues import json_row_converters
from proxy.pipeline import Query, Step
from proxy.result import Field, Result

ISOLATION_LEVELS = {
    "ReadUncommitted": "READ UNCOMMITTED", "ReadCommitted": "READ COMMITTED",
    "RepeatableRead": "REPEATABLE READ", "Serializable": "SERIALIZABLE",
}
SINGLE_SHAPE = '{"query": "SELECT $1::int AS n", "params": ["1"]}'
BATCH_SHAPE = '{"queries": [{"query": "INSERT INTO t VALUES ($1)", "params": ["1"]}, {"query": "SELECT * FROM t"}]}'


@dataclass(frozen=True)
class ConnectionString:
    user: str | None
    password: str | None
    database: str | None


@dataclass(frozen=True)
class SqlRequest:
    """A parsed POST /sql body and its headers."""

    queries: tuple[Query, ...]
    batch: bool
    array_mode: tuple[bool, ...]  # per query
    raw_text: bool
    branch: str | None
    dry_run: bool
    tx: TxOptions


def parse_connection_string(value: str) -> ConnectionString:
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        raise errors.connection_string_invalid(str(exc)) from None
    if parts.scheme not in ("postgres", "postgresql"):
        raise errors.connection_string_invalid("incorrect scheme")
    database = unquote(parts.path.lstrip("/")) or None
    return ConnectionString(
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
        database,
    )


def _flag(headers: Mapping[str, str], name: str) -> bool:
    return headers.get(name) == "true"  # Neon: exactly "true" counts as on


def param_text(value: Any) -> str | None:
    """A JSON parameter as the text Neon would bind (untyped)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return array_literal(value)
    return json.dumps(value)


def array_literal(values: list[Any]) -> str:
    items = []
    for v in values:
        if v is None:
            items.append("NULL")
        elif isinstance(v, list):
            items.append(array_literal(v))
        else:
            text = param_text(v) or ""
            items.append('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(items) + "}"


def _query(item: Any, where: str) -> tuple[Query, bool | None]:
    if not isinstance(item, dict):
        raise errors.bad_request(f"{where} must be a JSON object", f"Send {SINGLE_SHAPE}.",
                                 f"POST /sql with {SINGLE_SHAPE}")
    sql = item.get("query", item.get("sql"))
    if not isinstance(sql, str):
        raise errors.bad_request(
            f'{where} needs "query": a string of SQL', f"Send {SINGLE_SHAPE}.", f"POST /sql with {SINGLE_SHAPE}"
        )
    params = item.get("params")
    if params is not None and not isinstance(params, list):
        raise errors.bad_request(
            '"params" must be a JSON array', f"Parameters bind to $1, $2, ... in order: {SINGLE_SHAPE}.",
            f"POST /sql with {SINGLE_SHAPE}",
        )
    array_mode = item.get("arrayMode")
    return Query(sql, tuple(param_text(p) for p in params) if params else None), (
        array_mode if isinstance(array_mode, bool) else None
    )


def parse_request(body: bytes, headers: Mapping[str, str]) -> SqlRequest:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.body_not_json(str(exc)) from None
    if not isinstance(payload, dict):
        raise errors.body_not_json("expected a JSON object")
    header_array_mode = _flag(headers, "neon-array-mode")
    if "queries" in payload:
        items = payload["queries"]
        if not isinstance(items, list) or not items:
            raise errors.bad_request(
                '"queries" must be a non-empty array of {"query", "params"} objects',
                f"Send {BATCH_SHAPE}.", f"POST /sql with {BATCH_SHAPE}",
            )
        parsed = [_query(item, f"queries[{i}]") for i, item in enumerate(items)]
        batch = True
    else:
        parsed = [_query(payload, "the body")]
        batch = False
    level = headers.get("neon-batch-isolation-level")
    if level is not None and level not in ISOLATION_LEVELS:
        raise errors.invalid_isolation_level(level)
    branch = payload.get("branch")
    if branch is not None and not isinstance(branch, str):
        raise errors.bad_request('"branch" must be a string', "Branches are named like databases.", 'use "main"')
    return SqlRequest(
        queries=tuple(q for q, _ in parsed),
        batch=batch,
        array_mode=tuple(header_array_mode if mode is None else mode for _, mode in parsed),
        raw_text=_flag(headers, "neon-raw-text-output"),
        branch=branch,
        dry_run=payload.get("dry_run") is True,
        tx=TxOptions(
            isolation=ISOLATION_LEVELS.get(level or ""),
            read_only=batch and _flag(headers, "neon-batch-read-only"),
            deferrable=batch and _flag(headers, "neon-batch-deferrable"),
        ),
    )


@lru_cache(maxsize=1024)
def fields_json(fields: tuple[Field, ...]) -> str:
    """Neon's `fields` array; the same columns recur request after request."""
    return json.dumps([
        {"name": f.name, "dataTypeID": f.type_oid, "tableID": f.table_oid, "columnID": f.column_number,
         "dataTypeSize": f.type_size, "dataTypeModifier": f.type_modifier, "format": "text"}
        for f in fields
    ])


class ResponseTooLarge(Exception):
    pass


class BodyBuilder:
    """Serialises results as Neon does, counting the rows' bytes against the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0

    def result(self, step: Step, array_mode: bool, raw_text: bool) -> str:
        result = step.result or Result()
        rows_json = self._rows(result, array_mode, raw_text)
        tail = {"command": result.command, "rowCount": result.row_count, "rowAsArray": array_mode,
                "trace_id": step.trace.id}
        if step.checkpoint is not None:
            tail["checkpoint"] = step.checkpoint.public()
        return '{"fields":' + fields_json(tuple(result.fields)) + ',"rows":' + rows_json + "," + json.dumps(tail)[1:]

    def _rows(self, result: Result, array_mode: bool, raw_text: bool) -> str:
        convert = None if raw_text else json_row_converters(result.fields)
        names = [f.name for f in result.fields]
        out = []
        dumps = json.dumps
        for row in result.rows:
            values: list[Any] = row if convert is None else [c(v) for c, v in zip(convert, row)]
            text = dumps(values if array_mode else dict(zip(names, values)), ensure_ascii=False)
            self.size += len(text) + 1
            if self.size > self.limit:
                raise ResponseTooLarge
            out.append(text)
        return "[" + ",".join(out) + "]"
