"""sqlgate reachable from SQL: `SELECT sqlgate.rollback('cp_1')`,
`SELECT * FROM sqlgate.traces LIMIT 5` and the like, over every front door,
so an agent that only speaks SQL is never stuck.

Recognised from the syntax tree, never from text: a SELECT whose only item
is a call `sqlgate.NAME(literal, ...)`, or `SELECT * FROM sqlgate.NAME`
(optionally with LIMIT). A registered handler answers it; the statement never
reaches the database. Handlers are registered by name, in one place
(`proxy.server`), so extensions plug in the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp

from policy.identity import Identity
from proxy.result import Field, Result
from proxy.trace import Trace

TEXT_OID = 25


@dataclass(frozen=True)
class Call:
    """A recognised `sqlgate.*` call: its name and literal arguments."""

    name: str
    args: tuple[Any, ...] = ()
    limit: int | None = None


@dataclass(frozen=True)
class CallContext:
    call: Call
    identity: Identity
    branch: str
    trace: Trace  # the call's own trace; a handler that commits work may commit it too (trace.stored)

    @property
    def trace_id(self) -> str:
        return self.trace.id


Handler = Callable[[CallContext], Awaitable[Result]]


@dataclass
class SqlFunctions:
    handlers: dict[str, Handler] = field(default_factory=dict)

    def register(self, name: str, handler: Handler) -> None:
        self.handlers[name] = handler

    def match(self, sql: str, dialect: str) -> Call | None:
        """The call `sql` makes, if it is one of the two recognised shapes of a registered name."""
        try:
            trees = sqlglot.parse(sql, read=dialect)
        except sqlglot.errors.SqlglotError:
            return None
        if len(trees) != 1 or not isinstance(trees[0], exp.Select):
            return None
        call = _function_call(trees[0]) or _table_read(trees[0])
        return call if call is not None and call.name in self.handlers else None

    async def run(self, context: CallContext) -> Result:
        return await self.handlers[context.call.name](context)


def _is_sqlgate(identifier: exp.Expression | None) -> bool:
    return isinstance(identifier, exp.Identifier) and (
        identifier.this == "sqlgate" if identifier.quoted else identifier.this.lower() == "sqlgate"
    )


def _literal(node: exp.Expression) -> Any:
    if isinstance(node, exp.Literal):
        return node.this if node.is_string else float(node.this) if "." in node.this else int(node.this)
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Boolean):
        return node.this
    raise ValueError("not a literal")


def _function_call(select: exp.Select) -> Call | None:
    if len(select.expressions) != 1 or any(select.args.get(k) for k in ("from_", "from", "where", "joins", "with")):
        return None
    item = select.expressions[0]
    item = item.this if isinstance(item, exp.Alias) else item
    if not (isinstance(item, exp.Dot) and _is_sqlgate(item.this) and isinstance(item.expression, exp.Anonymous)):
        return None
    try:
        args = tuple(_literal(a) for a in item.expression.expressions)
    except ValueError:
        return None
    return Call(str(item.expression.this).lower(), args)


def _table_read(select: exp.Select) -> Call | None:
    source = select.args.get("from_") or select.args.get("from")
    if source is None or not isinstance(source.this, exp.Table) or select.args.get("joins"):
        return None
    table = source.this
    if not _is_sqlgate(table.args.get("db")) or table.args.get("catalog"):
        return None
    if len(select.expressions) != 1 or not isinstance(select.expressions[0], exp.Star) or select.args.get("where"):
        return None
    limit = select.args.get("limit")
    try:
        count = int(_literal(limit.expression)) if limit is not None else None
    except (ValueError, TypeError):
        return None
    return Call(table.name.lower(), (), count)


def rows_result(rows: list[dict[str, Any]], columns: list[str]) -> Result:
    """A handler's answer as text columns, the way any SELECT answers."""
    fields = [Field(name=c, type_oid=TEXT_OID) for c in columns]
    body = [[_text(row.get(c)) for c in columns] for row in rows]
    return Result(fields, body, f"SELECT {len(body)}")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        return "{" + ",".join(str(v) for v in value) + "}"
    return str(value)
