"""Statement classification: `classify(sql, dialect)` and the cached
`classify_cached(sql, dialect)`.

PostgreSQL: the string is parsed by PostgreSQL's own parser (libpg_query via
pglast). If it rejects the string, nothing would run: the whole string is
UNPARSEABLE. Otherwise each statement is sliced out by its stmt_location /
stmt_len and classified from PostgreSQL's raw parse tree (policy.classify_pg),
so lexing tricks (`--c\\rDELETE`, nested comments, dollar quotes, E'' strings,
U&"" identifiers) are seen exactly as the server sees them. sqlglot is not
needed on this path (it errors on or returns opaque Commands for much valid
PostgreSQL, and lexes differently), so `Part.tree` is None for PostgreSQL.

DuckDB: `extract_statements` (DuckDB's own parser) splits and validates the
string; each statement is parsed by sqlglot (dialect "duckdb") and classified
from its tree, with DuckDB's statement type as cross-check and fallback
(policy.classify_sqlglot).

Hostile input: strings over MAX_SQL_CHARS, trees over MAX_NODES nodes or
nesting deeper than the walker allows, and RecursionError anywhere are
refused as UNPARSEABLE ("statement too large to inspect"). Any other internal
error on a string the database accepts is DANGEROUS: we fail closed.
"""

from __future__ import annotations

import json
import threading

from pglast import parser as pgparser
from sqlglot.tokens import TokenType

from policy import classify_pg, classify_sqlglot
from policy.classify_common import Acc, C
from proxy.statement import Part, Statement, StatementClass

MAX_SQL_CHARS = 100_000
MAX_NODES = 20_000
TOO_LARGE = "statement too large to inspect"

__all__ = ["classify", "classify_cached", "MAX_SQL_CHARS", "MAX_NODES"]


class _TooLarge(Exception):
    pass


def _statement(sql: str, dialect: str, parts: list[Part], error: str = "") -> Statement:
    klass = max((p.klass for p in parts), default=StatementClass.READ)
    tables: list[str] = []
    for p in parts:
        for t in p.tables:
            if t not in tables:
                tables.append(t)
    return Statement(sql=sql, dialect=dialect, parts=tuple(parts), klass=klass, tables=tuple(tables), error=error)


def _unparseable(sql: str, dialect: str, error: str, position: int | None = None) -> Statement:
    return Statement(sql=sql, dialect=dialect, parts=(), klass=StatementClass.UNPARSEABLE, tables=(), error=error,
                     error_position=position)


def _line_col(sql: str, index: int) -> str:
    index = max(0, min(index, len(sql)))
    line = sql.count("\n", 0, index) + 1
    col = index - (sql.rfind("\n", 0, index) + 1) + 1
    return f"line {line}, column {col}"


def classify(sql: str, dialect: str) -> Statement:
    """Classify a (possibly multi-statement) string. Never raises on any str."""
    if dialect not in ("postgres", "duckdb"):
        raise ValueError(f"unknown dialect {dialect!r}")
    if not isinstance(sql, str):
        raise TypeError("sql must be str")
    return classify_with_spans(sql, dialect)[0]


def classify_with_spans(sql: str, dialect: str) -> tuple[Statement, list[tuple[int, int]] | None, frozenset | None]:
    """`classify`, plus each part's (start, end) character span in `sql` (None
    if unknown) and, for PostgreSQL, the offsets where its parser saw numeric
    constants (None when the class depends on a number's value, as SET
    extra_float_digits's does). The cache uses them to store and re-slice
    fingerprint hits."""
    if len(sql) > MAX_SQL_CHARS:
        return _unparseable(sql, dialect, f"{TOO_LARGE} (over {MAX_SQL_CHARS} characters)"), None, None
    if "\x00" in sql:  # C parsers would stop at the NUL; the server never accepts one
        where = _line_col(sql, sql.index("\x00"))
        return _unparseable(sql, dialect, f"NUL character in the statement at {where}"), None, None
    try:
        if dialect == "postgres":
            return _classify_pg(sql)
        return _classify_duckdb(sql)
    except (RecursionError, _TooLarge, classify_pg.TooDeep, MemoryError):
        return _unparseable(sql, dialect, TOO_LARGE), None, None


# ------------------------------------------------------------------ postgres

def _pg_parse(sql: str):
    """(tree, error): PostgreSQL's verdict on the whole string."""
    try:
        raw = pgparser.parse_sql_json(sql)
    except pgparser.ParseError as e:
        msg = e.args[0] if e.args else str(e)
        where = f" at {_line_col(sql, e.args[1])}" if len(e.args) > 1 and isinstance(e.args[1], int) else ""
        return None, f"{msg}{where}"
    except Exception as e:  # e.g. stack depth exceeded inside the parser
        return None, f"{type(e).__name__}: {e}"
    if raw.count("{") > MAX_NODES:  # one '{' per node of the parser's JSON output
        raise _TooLarge(TOO_LARGE)
    return json.loads(raw), ""


def _pg_spans(sql: str, stmts) -> list[tuple[int, int]]:
    """Character spans of each statement (stmt_location/len are UTF-8 byte offsets)."""
    if sql.isascii():
        spans = []
        for s in stmts:
            loc = s.get("stmt_location", 0)
            ln = s.get("stmt_len", 0) or len(sql) - loc
            spans.append((loc, loc + ln))
        return spans
    raw = sql.encode("utf-8")
    spans = []
    for s in stmts:
        loc = s.get("stmt_location", 0)
        ln = s.get("stmt_len", 0) or len(raw) - loc
        start = len(raw[:loc].decode("utf-8", errors="ignore"))
        end = start + len(raw[loc: loc + ln].decode("utf-8", errors="ignore"))
        spans.append((start, end))
    return spans


def _error_position(sql: str) -> int | None:
    """PostgreSQL's 1-based position of a syntax error (pglast gives a 0-based
    offset that is exact for ASCII text; elsewhere none is claimed)."""
    if not sql.isascii():
        return None
    try:
        pgparser.parse_sql_json(sql)
    except pgparser.ParseError as e:
        return e.args[1] + 1 if len(e.args) > 1 and isinstance(e.args[1], int) else None
    except Exception:
        return None
    return None


def _classify_pg(sql: str) -> Statement:
    tree, error = _pg_parse(sql)
    if tree is None:
        return _unparseable(sql, "postgres", error, _error_position(sql)), None, None
    stmts = tree.get("stmts", [])
    prepared: dict = {}
    parts = []
    numbers: set[int] = set()
    folds = True  # may a fingerprint fold its numbers (None: the class depends on a number's value)
    spans = _pg_spans(sql, stmts)
    for s, (a, b) in zip(stmts, spans):
        text = sql[a:b]
        try:
            acc = classify_pg.classify_node(s["stmt"], text, prepared)
        except (RecursionError, classify_pg.TooDeep, _TooLarge):
            raise
        except Exception as e:  # fail closed on our own bugs
            acc = Acc(command="?")
            acc.raise_to(C.DANGEROUS, f"sqlgate could not inspect this statement ({type(e).__name__})")
        numbers.update(acc.numbers)
        folds = folds and not acc.numbers_matter
        parts.append(acc.part(text))
    return _statement(sql, "postgres", parts), spans, frozenset(numbers) if folds else None


def pg_statement_spans(sql: str) -> list[tuple[int, int]] | None:
    """Statement spans as PostgreSQL splits `sql` (None if it does not parse)."""
    tree, _ = _pg_parse(sql)
    if tree is None:
        return None
    return _pg_spans(sql, tree.get("stmts", []))


# -------------------------------------------------------------------- duckdb

_duck_lock = threading.Lock()
_duck_conn = None


def _duck_statements(sql: str):
    """DuckDB's own split: [(type_name, query_text)]; raises on invalid SQL."""
    global _duck_conn
    with _duck_lock:
        if _duck_conn is None:
            import duckdb

            conn = duckdb.connect(":memory:")
            conn.execute("SET enable_external_access = false")
            conn.execute("SET lock_configuration = true")
            _duck_conn = conn
        stmts = _duck_conn.extract_statements(sql)
        # DuckDB 2.0.1 keeps the whitespace after the previous ';' in a statement's text; 2.0.0 did not.
        return [(s.type.name, s.query.lstrip()) for s in stmts]


def _trim_statement(query: str) -> tuple[str, list | None]:
    """Drop the separating ';' (and what follows it) using sqlglot's tokens.
    Also returns those tokens, cut after the last one kept, when they are
    exactly what tokenizing the trimmed text gives (only whitespace and ';'
    followed it, no comment), so the statement is not tokenized twice."""
    if ";" not in query:  # fast path: no separator to drop
        return query.rstrip(), None
    try:
        toks = classify_sqlglot.tokenize(query)
    except Exception:
        return query.rstrip().removesuffix(";").rstrip(), None
    last = None
    n = 0
    for i, t in enumerate(toks):
        if t.token_type != TokenType.SEMICOLON:
            last = t
            n = i + 1
    if last is None:
        return "", None
    text = query[: last.end + 1]
    rest = query[last.end + 1:]
    reuse = not rest.strip(" \t\r\n;") and not last.comments and all(
        t.token_type == TokenType.SEMICOLON and not t.comments for t in toks[n:])
    return text, (toks[:n] if reuse else None)


def _classify_duckdb(sql: str) -> Statement:
    import duckdb

    try:
        stmts = _duck_statements(sql)
    except duckdb.Error as e:
        from proxy.db_errors import duckdb_syntax

        message, position = duckdb_syntax(str(e).strip(), sql)  # PostgreSQL's wording, and where
        return _unparseable(sql, "duckdb", message, position), None, None
    except Exception as e:  # e.g. a statement type this duckdb module cannot name
        acc = Acc(command="?")
        acc.raise_to(C.DANGEROUS, f"DuckDB returned something sqlgate cannot inspect ({e})")
        return _statement(sql, "duckdb", [acc.part(sql)]), None, None
    parts = []
    spans: list[tuple[int, int]] | None = []
    pos = 0
    for stype, query in stmts:
        at = sql.find(query, pos)  # locate DuckDB's own slice (not a classification)
        if at >= 0:
            pos = at + len(query)
        text, tokens = _trim_statement(query)
        if not text.strip():
            continue
        if at < 0:
            spans = None
        elif spans is not None:
            spans.append((at, at + len(text)))
        try:
            acc, tree = classify_sqlglot.classify_text(text, stype, tokens)
        except (RecursionError, _TooLarge):
            raise
        except Exception as e:
            acc, tree = Acc(command=stype), None
            acc.raise_to(C.DANGEROUS, f"sqlgate could not inspect this statement ({type(e).__name__})")
        parts.append(acc.part(text, tree))
    return _statement(sql, "duckdb", parts), spans, None


def duckdb_statement_texts(sql: str) -> list[str]:
    """DuckDB's split of `sql` into statement texts (raises if DuckDB rejects it)."""
    return [q for _, q in _duck_statements(sql)]


_cache_get = None


def classify_cached(sql: str, dialect: str) -> Statement:
    """`classify` behind the process-wide two-level cache of policy.fingerprint
    (exact text, then numeric-literal-insensitive fingerprint)."""
    global _cache_get
    if _cache_get is None:
        from policy.fingerprint import CACHE  # imported late: fingerprint imports this module

        _cache_get = CACHE.get
    return _cache_get(sql, dialect)
