"""The checkpoint contract between the pipeline and the backend adapters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from proxy.backends.base import Session
from proxy.statement import Part


@dataclass(frozen=True)
class CheckpointContext:
    """Who and what a checkpoint is taken for (recorded with it)."""

    actor: str
    token_id: str | None
    branch: str
    trace_id: str


@dataclass(frozen=True)
class Checkpoint:
    id: str
    tables: tuple[str, ...]
    kind: str  # how it was kept, e.g. "rows", "table", "column", "definition"
    size_bytes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    # Added for issue #3: when set, the statement must run differently to stay undoable (a DROP becomes
    # a move, DuckDB keeps rows through RETURNING): the pipeline awaits `run(execute, params)`, where
    # `execute()` runs part.sql as usual, instead of calling session.execute itself.
    run: Any = field(default=None, compare=False, repr=False)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tables": list(self.tables),
            "kind": self.kind,
            "undo": {"method": "POST", "path": "/rollback", "body": {"checkpoint": self.id}},
            "undo_sql": f"SELECT sqlgate.rollback('{self.id}')",
        }


class Checkpointer(Protocol):
    async def take(self, session: Session, part: Part, context: CheckpointContext) -> Checkpoint:
        """Record what `part` will destroy, inside the session's open transaction."""
