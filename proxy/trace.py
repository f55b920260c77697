"""A trace record: one per statement, whatever became of it (DESIGN.md,
invariant 2). Built by the pipeline; stored by the backend's metadata store."""

from __future__ import annotations

import itertools
import json
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from proxy.sql_filters import conditions

OUTCOMES = ("ok", "refused", "failed", "rolled_back", "skipped")


_sequence = itertools.count()
_time_ns = time.time_ns
_random_bits = random.getrandbits


def new_id(prefix: str) -> str:
    """A short id that sorts by creation time: ms clock (11 hex digits), then a
    per-process counter (4, so ids made in one millisecond keep their order),
    random tail (6; not a secret: ids name records, they grant nothing).
    Counter and tail are formatted as one 10-digit number: the same text, one
    conversion less (this runs twice for every statement)."""
    return f"{prefix}_{_time_ns() // 1_000_000:011x}{(next(_sequence) & 0xFFFF) << 24 | _random_bits(24):010x}"


@dataclass
class Trace:
    request_id: str
    actor: str
    token_id: str | None
    branch: str
    front_door: str
    sql: str
    params: list[Any] | None
    klass: str
    tables: list[str]
    command: str = ""
    rows: int | None = None
    duration_ms: float = 0.0
    cost: float | None = None  # database time in ms: what budgets are spent in
    checkpoint_id: str | None = None
    outcome: str = "ok"
    error_code: str | None = None
    error_message: str | None = None
    id: str = field(default_factory=lambda: new_id("tr"))
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # Set once the trace has committed with the work it describes (not a column).
    stored: bool = field(default=False, compare=False)

    def public(self) -> dict[str, Any]:
        # Built by hand: dataclasses.asdict deep-copies, and this runs for every statement.
        data = dict(self.__dict__)
        del data["stored"]
        data["class"] = data.pop("klass")
        data["at"] = self.at.isoformat()
        return {"id": data.pop("id"), **data}


@dataclass(frozen=True)
class TraceFilter:
    actor: str | None = None
    branch: str | None = None
    klass: str | None = None
    since: datetime | None = None
    outcome: str | None = None
    limit: int = 100

    def where(self, placeholder: str) -> tuple[str, list[Any]]:
        """The SQL condition and its arguments, for a driver's placeholder style."""
        return conditions(placeholder, {"actor": self.actor, "branch": self.branch, "class": self.klass,
                                        "outcome": self.outcome}, {'"at"': self.since})


def text_without_nul(value: Any) -> Any:
    """PostgreSQL text and jsonb cannot hold NUL: show it as the four characters
    \\x00 (before any JSON encoding) rather than lose the trace."""
    if isinstance(value, str):
        return value.replace("\x00", "\\x00") if "\x00" in value else value
    if isinstance(value, list):
        return [text_without_nul(v) for v in value]
    if isinstance(value, dict):
        return {k: text_without_nul(v) for k, v in value.items()}
    return value


def json_without_nul(value: Any) -> str:
    """JSON text of `value` with NUL shown as in text_without_nul. JSON writes NUL as
    \\u0000, so a text without that sequence needs no second, cleaning pass
    (the common case: the walk over every value costs more than the encoding)."""
    text = json.dumps(value, default=str)
    return json.dumps(text_without_nul(value), default=str) if "\\u0000" in text else text


def traces_json(traces: Sequence[Trace]) -> str:
    """Traces as the JSON array `sqlgate.record_traces(jsonb)` takes."""
    return json_without_nul([t.public() for t in traces])


# COPY's text format: backslash, tab, newline and carriage return are escaped;
# NUL (which PostgreSQL text cannot hold) becomes the four characters \x00.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\x00": "\\\\x00"})
COPY_COLUMNS = ("id", "at", "request_id", "actor", "token_id", "branch", "front_door", "sql", "params", "class",
                "tables", "command", "rows", "duration_ms", "cost", "checkpoint_id", "outcome", "error_code",
                "error_message")


def _copy_text(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, str):  # translate() is slow per character; most values need nothing
        return value.translate(_COPY_ESCAPES) if _needs_escape(value) else value
    return str(value)


def _needs_escape(value: str) -> bool:
    # Five substring searches (memchr) cost a third of one regex search.
    return "\\" in value or "\t" in value or "\n" in value or "\r" in value or "\x00" in value


# A string JSON writes as it is (printable ASCII but '"' and '\\'), and COPY too.
_JSON_PLAIN = re.compile(r'[ !#-\[\]-~]*+\Z')


def _copy_json(value: Any) -> str:
    if value is None:
        return "\\N"
    if not value:
        return "[]"
    if value.__class__ is list:  # tables and parameters: strings (or NULL) that need no escaping, the common case
        plain = _JSON_PLAIN.match
        items = []
        for v in value:
            if v is None:
                items.append("null")
            elif isinstance(v, str) and plain(v):
                items.append(f'"{v}"')
            else:
                break
        else:
            return f"[{', '.join(items)}]"  # what json.dumps writes for these
    return json_without_nul(value).translate(_COPY_ESCAPES)


def traces_copy(traces: Sequence[Trace]) -> bytes:
    """Traces as COPY text rows in COPY_COLUMNS order. Written by hand: it runs
    for every traced statement, and a generic row writer cost three times as much.
    Ids, times, labels and numbers are sqlgate's own and never need escaping;
    what a client chose (actor, branch, SQL, messages) is escaped."""
    lines = []
    append = lines.append
    for t in traces:
        params, rows, cost = t.params, t.rows, t.cost
        duration = repr(t.duration_ms)
        append(f"{t.id}\t{t.at.isoformat()}\t{t.request_id}\t{_copy_text(t.actor)}\t{t.token_id or _NULL}\t"
               f"{_copy_text(t.branch)}\t{t.front_door}\t{_copy_text(t.sql)}\t"
               f"{_NULL if params is None else _copy_json(params)}\t{t.klass}\t{_copy_json(t.tables)}\t"
               f"{_copy_text(t.command)}\t{_NULL if rows is None else rows}\t{duration}\t"
               f"{_NULL if cost is None else duration if cost is t.duration_ms else repr(cost)}\t"
               f"{t.checkpoint_id or _NULL}\t{t.outcome}\t{t.error_code or _NULL}\t{_copy_text(t.error_message)}\n")
    return "".join(lines).encode()


_NULL = "\\N"
