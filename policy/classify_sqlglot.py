"""Classify one DuckDB statement from sqlglot's tree (dialect "duckdb"), with
DuckDB's own statement type as a cross-check and fallback. Anything sqlglot
returns as an opaque Command, or a root that is not a statement, is decided
from DuckDB's statement type and, where needed, sqlglot's token stream, and is
`dangerous` when still unknown."""

from __future__ import annotations

import logging
import threading

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect

from policy.classify_common import Acc, C
from policy.classify_sqlglot_fallback import fallback
from policy.dangerous import DUCKDB_SESSION_SETTINGS, SEQUENCE_FUNCTIONS, function_is_dangerous
from policy.names import fold_ident, qualified, quote_ident, split_qualified_text

logging.getLogger("sqlglot").setLevel(logging.ERROR)

_local = threading.local()  # sqlglot tokenizers/parsers hold per-call state: one per thread


def tokenize(text: str, dialect: str = "duckdb") -> list:
    """sqlglot's token stream for `text` (a per-thread reused tokenizer)."""
    cache = getattr(_local, "tokenizers", None)
    if cache is None:
        cache = _local.tokenizers = {}
    tok = cache.get(dialect)
    if tok is None:
        tok = cache[dialect] = Dialect.get_or_raise(dialect).tokenizer()
    return list(tok.tokenize(text))


def parse(text: str, dialect: str = "duckdb", tokens: list | None = None) -> list:
    """sqlglot.parse(text, read=dialect) with per-thread reused parser objects
    (`tokens`: the tokens of `text`, when the caller already has them)."""
    cache = getattr(_local, "parsers", None)
    if cache is None:
        cache = _local.parsers = {}
    p = cache.get(dialect)
    if p is None:
        p = cache[dialect] = Dialect.get_or_raise(dialect).parser()
    return p.parse(tokenize(text, dialect) if tokens is None else tokens, text)

META = "sqlgate"
READ_TYPES = {"SELECT", "EXPLAIN", "RELATION"}
DML = {exp.Insert: (C.WRITE, "insert"), exp.Update: (C.DESTRUCTIVE_DML, "update"),
       exp.Delete: (C.DESTRUCTIVE_DML, "delete"), exp.Merge: (C.DESTRUCTIVE_DML, "merge")}
REL_KINDS = {"TABLE": "table", "VIEW": "view", "SEQUENCE": "sequence", "INDEX": "index",
             "MATERIALIZED VIEW": "materialized view"}
FILE_CHARS = frozenset("./\\:*?")


def ident_text(node) -> str | None:
    if node is None:
        return None
    if isinstance(node, exp.Identifier):
        return fold_ident(node.this, node.quoted)
    if isinstance(node, (exp.Var, exp.Literal)):
        return str(node.this)
    return None


def table_name(t: exp.Expression) -> str:
    if not isinstance(t, exp.Table):
        t = t.find(exp.Table) if t is not None else None
        if t is None:
            return ""
    return qualified(ident_text(t.args.get("catalog")), ident_text(t.args.get("db")),
                     ident_text(t.args.get("this")) if isinstance(t.this, exp.Identifier) else None)


def func_name(f: exp.Func) -> str:
    if isinstance(f, exp.Anonymous):
        return str(f.this)
    return f.sql_name()


_NONE, _FUNC, _TABLE, _COLUMN, _DOT, _DML, _INTO = range(7)
_KINDS: dict[type, int] = {}


def _kind(t: type) -> int:
    """What `scan` does with a node of type `t` (the isinstance tests, in
    their order, done once per node type)."""
    k = _KINDS.get(t)
    if k is None:
        if issubclass(t, exp.Func):
            k = _FUNC
        elif issubclass(t, exp.Table):
            k = _TABLE
        elif issubclass(t, exp.Column):
            k = _COLUMN
        elif issubclass(t, exp.Dot):
            k = _DOT
        elif t in DML:
            k = _DML
        elif issubclass(t, exp.Into):
            k = _INTO
        else:
            k = _NONE
        _KINDS[t] = k
    return k


def scan(acc: Acc, tree: exp.Expression, executed: bool) -> None:
    kinds = _KINDS
    for node in tree.walk():
        t = type(node)
        k = kinds.get(t)
        if k is None:
            k = _kind(t)
        if k == _NONE:
            continue
        if k == _FUNC:
            _func(acc, node, executed)
        elif k == _TABLE:
            if ident_text(node.args.get("db")) == META or ident_text(node.args.get("catalog")) == META:
                acc.meta = True
            this = node.this
            if isinstance(this, exp.Identifier) and not FILE_CHARS.isdisjoint(this.this):
                acc.raise_to(C.DANGEROUS, "a file path used as a table reads a file")
            elif isinstance(this, exp.Literal):
                acc.raise_to(C.DANGEROUS, "a string used as a table reads a file")
        elif k == _COLUMN:
            parts = node.parts
            if len(parts) >= 3 and ident_text(parts[0]) == META:
                acc.meta = True
        elif k == _DOT:
            if ident_text(node.this) == META or (isinstance(node.this, exp.Column) and node.this.name == META):
                acc.meta = True
        elif not executed:
            continue
        elif k == _DML:
            klass, action = DML[t]
            acc.raise_to(klass, "" if klass < C.DESTRUCTIVE_DML else f"{action.upper()} changes existing rows")
            if t is exp.Insert and _overwrites(node):
                action = "upsert"  # still `write` (the corpus contract), but checkpointed: it can overwrite rows
                acc.raise_to(klass, "the upsert may overwrite existing rows")
            target = node.this
            if target is not None:
                acc.target("table", table_name(target), action)
        elif node.parent is not None and isinstance(node.parent, exp.Select):  # _INTO
            acc.raise_to(C.SAFE_DDL)
            acc.target("table", table_name(node.this), "create", detail="select into")


def _overwrites(node: exp.Expression) -> bool:
    """INSERT ... ON CONFLICT DO UPDATE or INSERT OR REPLACE (not DO NOTHING / INSERT OR IGNORE)."""
    if str(node.args.get("alternative") or "").upper() == "REPLACE":
        return True
    conflict = node.args.get("conflict")
    action = conflict.args.get("action") if conflict is not None else None
    return action is not None and "UPDATE" in str(action.this).upper()


def _func(acc: Acc, f: exp.Func, executed: bool) -> None:
    name = func_name(f).lower()
    if function_is_dangerous(name):
        acc.raise_to(C.DANGEROUS, f"{name}() reads files, the network or other databases, or has server-wide effects")
        return
    if executed and name in SEQUENCE_FUNCTIONS:
        acc.raise_to(C.WRITE, f"{name}() advances a sequence (not undone by rollback)")
        args = f.expressions
        if args and isinstance(args[0], exp.Literal) and args[0].is_string:
            parts = split_qualified_text(args[0].this)
            if parts:
                acc.meta = acc.meta or (len(parts) > 1 and parts[0] == META)
                acc.target("sequence", qualified(*parts), "advance")


def classify_tree(tree: exp.Expression, stype: str, text: str) -> Acc:
    """`stype` is DuckDB's StatementType name for the statement."""
    acc = Acc()
    if isinstance(tree, (exp.Query, exp.Values, exp.Subquery, exp.Pivot)):
        acc.command = "PIVOT" if isinstance(tree, exp.Pivot) else "SELECT"
        scan(acc, tree, executed=True)
        allowed = READ_TYPES | {"MULTI"} if isinstance(tree, exp.Pivot) else READ_TYPES
        if acc.klass == C.READ and stype not in allowed:
            acc.raise_to(C.DANGEROUS, f"sqlglot and DuckDB disagree about this statement ({stype})")
        return acc
    for cls, (_klass, action) in DML.items():
        if isinstance(tree, cls):
            acc.command = action.upper()
            scan(acc, tree, executed=True)
            return acc
    h = _HANDLERS.get(type(tree))
    if h is not None:
        h(acc, tree, stype, text)
        scan(acc, tree, executed=False)
        return acc
    return fallback(tree, stype, text)


def _create(acc, t: exp.Create, stype, text):
    kind = (t.args.get("kind") or "").upper()
    acc.command = "CREATE " + kind
    replace = bool(t.args.get("replace"))
    if kind == "INDEX":
        idx = t.this
        acc.raise_to(C.DESTRUCTIVE_DDL if replace else C.SAFE_DDL)
        acc.target("index", table_name(idx.args.get("table")), "replace" if replace else "create",
                   detail=ident_text(idx.this) or "")
        return
    if kind == "SCHEMA":
        acc.raise_to(C.SAFE_DDL)
        name = ident_text(t.this.args.get("db")) if isinstance(t.this, exp.Table) else None
        if name == META:
            acc.meta = True
        acc.target("schema", quote_ident(name or ""), "create", listed=False)
        return
    if kind in REL_KINDS:
        name = table_name(t.this)
        if replace:
            acc.raise_to(C.DESTRUCTIVE_DDL, "CREATE OR REPLACE discards the existing object")
        else:
            acc.raise_to(C.SAFE_DDL)
        props = t.args.get("properties")
        temp = props is not None and any(isinstance(p, exp.TemporaryProperty) for p in props.expressions)
        acc.target(REL_KINDS[kind], name, "replace" if replace else "create", detail="temp" if temp else "")
        if t.expression is not None:
            scan(acc, t.expression, executed=True)
        return
    if kind in ("MACRO", "FUNCTION", "TABLE FUNCTION", "TYPE"):
        acc.raise_to(C.DESTRUCTIVE_DDL if replace else C.SAFE_DDL,
                     "CREATE OR REPLACE replaces an existing definition" if replace else "")
        return
    acc.raise_to(C.DANGEROUS, f"CREATE {kind} is not allowed")


def _drop(acc, t: exp.Drop, stype, text):
    kind = (t.args.get("kind") or "").upper()
    acc.command = "DROP " + kind
    detail = "cascade" if t.args.get("cascade") else ""
    if kind == "SCHEMA":
        acc.raise_to(C.DESTRUCTIVE_DDL, "DROP SCHEMA removes every object in it")
        for tb in t.args.get("tables") or ():
            s = ident_text(tb.args.get("db")) or ""
            acc.meta = acc.meta or s == META
            acc.target("schema", quote_ident(s) + ".*", "drop", detail=detail)
    elif kind in REL_KINDS:
        acc.raise_to(C.DESTRUCTIVE_DDL, f"DROP {kind} removes it and its data")
        for tb in t.args.get("tables") or ():
            acc.target(REL_KINDS[kind], table_name(tb), "drop", detail=detail)
    elif kind in ("MACRO", "FUNCTION", "TYPE", "MACRO TABLE"):
        acc.raise_to(C.DESTRUCTIVE_DDL, f"DROP {kind} removes a definition")
    else:
        acc.raise_to(C.DANGEROUS, f"DROP {kind} is not allowed")


def _alter(acc, t: exp.Alter, stype, text):
    kind = (t.args.get("kind") or "TABLE").upper()
    acc.command = "ALTER " + kind
    name = table_name(t.this)
    rk = REL_KINDS.get(kind, "table")
    acc.raise_to(C.SAFE_DDL)
    for a in t.args.get("actions") or ():
        if isinstance(a, exp.ColumnDef):
            acc.target(rk, name, "alter", ident_text(a.this), "add column")
        elif isinstance(a, exp.Drop):
            cols = [ident_text(c.this) if isinstance(c, exp.Column) else None for c in a.args.get("tables") or ()]
            acc.raise_to(C.DESTRUCTIVE_DDL, "ALTER ... DROP can lose data")
            for c in cols or [None]:
                acc.target(rk, name, "alter", c, "drop " + (a.args.get("kind") or "").lower())
        elif isinstance(a, exp.AlterColumn):
            col = ident_text(a.this)
            if a.args.get("dtype") is not None:
                acc.raise_to(C.DESTRUCTIVE_DDL, "ALTER ... TYPE can lose data")
                acc.target(rk, name, "alter", col, "type")
            elif a.args.get("drop") or a.args.get("allow_null"):
                acc.raise_to(C.DESTRUCTIVE_DDL, "ALTER ... DROP can lose data")
                acc.target(rk, name, "alter", col, "drop not null" if a.args.get("allow_null") else "drop default")
            elif a.args.get("allow_null") is False:
                acc.target(rk, name, "alter", col, "set not null")
            elif a.args.get("default") is not None:
                acc.target(rk, name, "alter", col, "set default")  # safe_ddl, but the old default is kept
            else:
                acc.target(rk, name, "alter", col, "alter column")
        elif isinstance(a, exp.AlterRename):
            acc.raise_to(C.DESTRUCTIVE_DDL, "RENAME breaks everything that uses the old name")
            acc.target(rk, name, "rename", detail=table_name(a.this))
        elif isinstance(a, exp.RenameColumn):
            acc.raise_to(C.DESTRUCTIVE_DDL, "RENAME breaks everything that uses the old name")
            col = a.this.name if a.this is not None else None
            acc.target(rk, name, "rename", col, "rename column")
        elif isinstance(a, exp.AddConstraint):
            acc.target(rk, name, "alter", detail="add constraint")
        else:
            acc.raise_to(C.DESTRUCTIVE_DDL, "an ALTER sqlgate does not know in detail")
            acc.target(rk, name, "alter", detail=type(a).__name__.lower())
    if not t.args.get("actions"):
        acc.target(rk, name, "alter")


def _truncate(acc, t, stype, text):
    acc.command = "TRUNCATE"
    acc.raise_to(C.DESTRUCTIVE_DML, "TRUNCATE removes every row")
    for tb in t.expressions:
        acc.target("table", table_name(tb), "truncate")


def _dangerous(command, reason):
    def h(acc, t, stype, text):
        acc.command = command
        acc.raise_to(C.DANGEROUS, reason)
        if isinstance(t, exp.Copy) and t.args.get("kind") and t.this is not None:
            acc.target("table", table_name(t.this), "insert", detail="copy")
    return h


def _set(acc, t: exp.Set, stype, text):
    acc.command = "SET"
    acc.raise_to(C.SESSION)
    for item in t.expressions:
        kind = (item.args.get("kind") or "").upper()
        eq = item.this
        target = eq.this if isinstance(eq, exp.EQ) else eq
        name = (target.name if isinstance(target, (exp.Column, exp.Identifier, exp.Var)) else "").lower()
        if kind == "VARIABLE":
            continue
        if not name or name not in DUCKDB_SESSION_SETTINGS or kind == "GLOBAL":
            acc.raise_to(C.DANGEROUS, f"SET {name or '?'} changes an instance-wide setting")
        elif name in ("search_path", "schema") and isinstance(eq, exp.EQ):
            value = eq.expression
            text_value = value.this if isinstance(value, exp.Literal) else value.sql("duckdb")
            acc.target("setting", "search_path", "set", detail=str(text_value), listed=False)
            parts = split_qualified_text(str(text_value).replace(",", "."))
            acc.meta = acc.meta or parts is None or META in parts


def _use(acc, t: exp.Use, stype, text):
    acc.command = "USE"
    acc.raise_to(C.SESSION)
    tb = t.this
    names = [ident_text(tb.args.get(k)) for k in ("catalog", "db", "this")] if isinstance(tb, exp.Table) else [None]
    acc.meta = acc.meta or META in names or names == [None]
    acc.target("setting", "search_path", "set", detail=table_name(tb) if isinstance(tb, exp.Table) else "",
               listed=False)


def _simple(command, klass):
    def h(acc, t, stype, text):
        acc.command = command
        acc.raise_to(klass)
    return h


_HANDLERS = {
    exp.Create: _create, exp.Drop: _drop, exp.Alter: _alter, exp.TruncateTable: _truncate,
    exp.Copy: _dangerous("COPY", "COPY reads or writes files"),
    exp.Pragma: _dangerous("PRAGMA", "PRAGMA changes or reveals instance state"),
    exp.Attach: _dangerous("ATTACH", "ATTACH opens another database file"),
    exp.Detach: _dangerous("DETACH", "DETACH closes an attached database"),
    exp.Install: _dangerous("INSTALL", "extensions install native code"),
    exp.Set: _set,
    exp.Transaction: _simple("BEGIN", C.TRANSACTION), exp.Commit: _simple("COMMIT", C.TRANSACTION),
    exp.Rollback: _simple("ROLLBACK", C.TRANSACTION),
    exp.Describe: _simple("DESCRIBE", C.READ), exp.Show: _simple("SHOW", C.READ),
    exp.Summarize: _simple("SUMMARIZE", C.READ), exp.Use: _use,
}


def classify_text(text: str, stype: str, tokens: list | None = None):
    """Parse `text` (one statement; `tokens`: its sqlglot tokens if already
    known) with sqlglot and classify it."""
    try:
        trees = [t for t in parse(text, "duckdb", tokens) if t is not None]
    except Exception as e:  # sqlglot cannot read it: DuckDB can, so decide by type
        acc = fallback(None, stype, text)
        if acc.klass < C.DANGEROUS and stype not in ("TRANSACTION", "SET", "VARIABLE_SET", "EXPLAIN", "SELECT"):
            acc.raise_to(C.DANGEROUS, f"sqlglot cannot parse this statement: {e}")
        return acc, None
    if len(trees) != 1:
        acc = Acc(command=stype)
        acc.raise_to(C.DANGEROUS, "sqlglot and DuckDB split this statement differently")
        return acc, None
    acc = classify_tree(trees[0], stype, text)
    acc.flush()
    return acc, trees[0]
