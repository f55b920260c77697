"""The vocabulary of classification: statement classes and the frozen values
the classifier returns. Everything else (policy, checkpoints, traces) reads
these; nothing mutates them."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class StatementClass(enum.IntEnum):
    """Classes in order of severity: a string takes the most severe of its parts.

    UNPARSEABLE sits above everything: a string the database itself would
    reject is refused whole, before anything runs.
    """

    READ = 0
    TRANSACTION = 1
    SESSION = 2
    WRITE = 3
    SAFE_DDL = 4
    DESTRUCTIVE_DML = 5
    DESTRUCTIVE_DDL = 6
    DANGEROUS = 7
    UNPARSEABLE = 8

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> StatementClass:
        return cls[label.upper()]

    @property
    def is_destructive(self) -> bool:
        return self in (StatementClass.DESTRUCTIVE_DML, StatementClass.DESTRUCTIVE_DDL)


@dataclass(frozen=True)
class Target:
    """One object a statement changes, as the checkpoint code needs to know it.

    kind:   'table', 'view', 'index', 'sequence', 'schema', 'function', 'type', ...
    name:   as in `Part.tables` (quote_ident form, schema only where written).
    action: what happens to it: 'insert', 'update', 'delete', 'truncate',
            'merge', 'create', 'drop', 'alter', 'rename', 'replace', 'advance',
            'upsert' (an INSERT that may overwrite rows: ON CONFLICT DO UPDATE,
            INSERT OR REPLACE; its class stays `write`, but it is checkpointed).
    column: the column concerned, for ALTER ... COLUMN actions; else None.
    detail: a short free-form hint (e.g. 'drop column', 'type', 'cascade').
    """

    kind: str
    name: str
    action: str
    column: str | None = None
    detail: str = ""


# ALTER TABLE actions of class safe_ddl that take a checkpoint all the same (Part.checkpointed_anyway).
CHECKPOINTED_ALTERS = frozenset({"set default", "add column", "set not null", "add constraint"})


@dataclass(frozen=True)
class Part:
    """One statement of a (possibly multi-statement) string.

    sql:     the exact source text of this statement, without the separating ';'.
    klass:   its class.
    tables:  relations whose data or definition it changes (corpus convention).
    command: the statement's verb as PostgreSQL's command tag starts it
             ('SELECT', 'INSERT', 'DELETE', 'CREATE TABLE', 'DROP TABLE', 'SET', ...).
    reason:  a short human sentence saying why it got this class when that is
             not obvious from the command ('DO block runs dynamic SQL', ...).
    targets: the objects it changes, in a form checkpoint code can act on.
    touches_meta: it names sqlgate's own schema (`sqlgate.*`).
    tree:    the sqlglot tree (read-only: it is shared through the cache) or None.
    """

    sql: str
    klass: StatementClass
    tables: tuple[str, ...] = ()
    command: str = ""
    reason: str = ""
    targets: tuple[Target, ...] = ()
    touches_meta: bool = False
    tree: Any = field(default=None, compare=False, repr=False)

    @property
    def checkpointed_anyway(self) -> bool:
        """It is checkpointed although its class is not destructive: an upsert overwrites rows (class
        `write`); a SET DEFAULT replaces the old default, and ADD COLUMN / SET NOT NULL / ADD CONSTRAINT /
        CREATE INDEX add to an existing table's definition (class `safe_ddl`), which a rollback to an
        earlier checkpoint must take away to give the table back exactly as it was. Where a safe_ddl
        statement cannot be checkpointed, it runs unrecorded (Pipeline._take_checkpoint)."""
        return any(t.action == "upsert" or (t.kind == "index" and t.action == "create")
                   or (t.action == "alter" and t.kind == "table" and t.detail in CHECKPOINTED_ALTERS)
                   for t in self.targets)


@dataclass(frozen=True)
class Statement:
    """A whole request string, classified. `klass` is the most severe part's."""

    sql: str
    dialect: str
    parts: tuple[Part, ...]
    klass: StatementClass
    tables: tuple[str, ...]
    error: str = ""  # for UNPARSEABLE: what the parser said, with position if known
    error_position: int | None = None  # 1-based character position of the error, as PostgreSQL reports it

    @property
    def touches_meta(self) -> bool:
        return any(p.touches_meta for p in self.parts)
