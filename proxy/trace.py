"""A trace record: one per statement, whatever became of it (DESIGN.md,
invariant 2). Built by the pipeline; stored by the backend's metadata store."""

from __future__ import annotations

import itertools
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

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
        conditions, args = ["true"], []
        for column, op, value in (("actor", "=", self.actor), ("branch", "=", self.branch),
                                  ("class", "=", self.klass), ("outcome", "=", self.outcome),
                                  ('"at"', ">=", self.since)):
            if value is not None:
                conditions.append(f"{column} {op} {placeholder}")
                args.append(value)
        return " AND ".join(conditions), args
