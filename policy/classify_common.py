"""The mutable accumulator both tree classifiers fill in, turned into a Part."""

from __future__ import annotations

from policy.dangerous import CAPTURE_FORMAT_SETTINGS, capture_format_problem
from proxy.statement import Part, StatementClass, Target

C = StatementClass


def check_capture_format(acc: Acc, name: str, value: str | None, prefix: str = "") -> None:
    """A setting that changes how values are written as text (policy.dangerous.capture_format_problem):
    refused unless its value keeps checkpoints exact, and the verdict depends on that value."""
    if name.lower() in CAPTURE_FORMAT_SETTINGS:
        acc.numbers_matter = True
        if why := capture_format_problem(name, value):
            acc.raise_to(C.DANGEROUS, prefix + why)


class Acc:
    """What one statement does, gathered while walking its tree."""

    __slots__ = ("klass", "tables", "targets", "reason", "command", "meta", "numbers", "numbers_matter", "_pending")

    def __init__(self, command: str = "", klass: StatementClass = C.READ, reason: str = ""):
        self.klass = klass
        self.tables: list[str] = []
        self.targets: list[Target] = []
        self.reason = reason
        self.command = command
        self.meta = False
        self.numbers: list[int] = []  # source offsets of numeric constants (the cache's fingerprint check)
        self.numbers_matter = False  # the class depends on a number's value: no fingerprint may fold them
        self._pending: list[tuple[int, Target, bool]] = []

    def raise_to(self, klass: StatementClass, reason: str = "") -> None:
        if klass > self.klass:
            self.klass = klass
            if reason:
                self.reason = reason
        elif klass == self.klass and reason and not self.reason:
            self.reason = reason

    def target(self, kind: str, name: str, action: str, column: str | None = None,
               detail: str = "", listed: bool = True) -> None:
        t = Target(kind, name, action, column, detail)
        if t not in self.targets:
            self.targets.append(t)
        if listed and name and name not in self.tables:
            self.tables.append(name)

    def later(self, location: int, t: Target, listed: bool = True) -> None:
        """A target found while walking: added in source order by flush()."""
        self._pending.append((location, t, listed))

    def flush(self) -> None:
        if self._pending:
            self._pending.sort(key=lambda x: x[0])
            for _, t, listed in self._pending:
                self.target(t.kind, t.name, t.action, t.column, t.detail, listed)
            self._pending.clear()

    def merge(self, other: Acc) -> None:
        other.flush()
        self.raise_to(other.klass, other.reason)
        for t in other.targets:
            if t not in self.targets:
                self.targets.append(t)
        for n in other.tables:
            if n not in self.tables:
                self.tables.append(n)
        self.meta = self.meta or other.meta
        self.numbers_matter = self.numbers_matter or other.numbers_matter

    def part(self, sql: str, tree=None) -> Part:
        self.flush()
        return Part(
            sql=sql,
            klass=self.klass,
            tables=tuple(self.tables),
            command=self.command,
            reason=self.reason,
            targets=tuple(self.targets),
            touches_meta=self.meta,
            tree=tree,
        )
