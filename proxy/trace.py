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


def new_id(prefix: str) -> str:
    """A short id that sorts by creation time: ms clock, then a per-process
    counter (so ids made in one millisecond keep their order), random tail
    (not a secret: ids name records, they grant nothing)."""
    return f"{prefix}_{int(time.time() * 1000):011x}{next(_sequence) % 65536:04x}{random.getrandbits(24):06x}"


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


_NEEDS_ESCAPE = re.compile("[\\\\\t\n\r\x00]")


def _copy_text(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, str):  # translate() is slow per character; most values need nothing
        return value.translate(_COPY_ESCAPES) if _NEEDS_ESCAPE.search(value) else value
    return str(value)


def _copy_json(value: Any) -> str:
    if value is None:
        return "\\N"
    return "[]" if not value else json_without_nul(value).translate(_COPY_ESCAPES)


def traces_copy(traces: Sequence[Trace]) -> bytes:
    """Traces as COPY text rows in COPY_COLUMNS order. Written by hand: it runs
    for every traced statement, and a generic row writer cost three times as much.
    Ids, times, labels and numbers are sqlgate's own and never need escaping;
    what a client chose (actor, branch, SQL, messages) is escaped."""
    lines = []
    for t in traces:
        lines.append("\t".join((
            t.id, t.at.isoformat(), t.request_id, _copy_text(t.actor), t.token_id or "\\N",
            _copy_text(t.branch), t.front_door, _copy_text(t.sql), _copy_json(t.params),
            t.klass, _copy_json(t.tables), _copy_text(t.command), "\\N" if t.rows is None else str(t.rows),
            repr(t.duration_ms), "\\N" if t.cost is None else repr(t.cost), t.checkpoint_id or "\\N", t.outcome,
            t.error_code or "\\N", _copy_text(t.error_message),
        )))
    lines.append("")
    return "\n".join(lines).encode()
