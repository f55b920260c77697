"""The classification cache: exact text first, then a literal-insensitive
fingerprint so statements that differ only in numeric literals (pgbench's
`... WHERE aid = 123` / `... = 456`) share one classification.

Fingerprint: sqlglot's tokenizer for the dialect splits the text; every NUMBER
token that is a plain decimal (digits, optionally one inner '.') is cut out,
and the key is the dialect plus the tuple of the exact text between those
tokens. So two strings share a key only if they are identical outside plain
numeric tokens: string literals, identifiers, comments and whitespace are
never folded.

A fingerprint entry is stored only when the database's own lexer agrees that
every folded token is a numeric constant (PostgreSQL: an A_Const integer or
float in pglast's parse tree, at the token's position or at a '-' right
before it; DuckDB: a numeric_const in duckdb.tokenize). The classifier never
reads numeric values, so the class, tables and targets carry over.

On a fingerprint hit the cached Statement is returned with `sql` and each
`Part.sql` re-sliced out of the new text: part boundaries are stored as
character offsets and shifted by the length change of every folded token
before them. Re-sliced parts carry tree=None (the cached tree holds the old
literals). Non-ASCII strings, strings over MAX_CACHED_CHARS and unparseable
strings only use the exact cache.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from sqlglot.tokens import TokenType

from policy.classify import classify_with_spans
from policy.classify_sqlglot import tokenize
from policy.statement import Statement, StatementClass

MAX_ENTRIES = 10_000
MAX_CACHED_CHARS = 16_384
_DIGITS = frozenset("0123456789")


def _plain_number(text: str) -> bool:
    head, dot, tail = text.partition(".")
    if not head or not all(c in _DIGITS for c in head):
        return False
    return not dot or (bool(tail) and all(c in _DIGITS for c in tail))


class Fingerprint:
    __slots__ = ("key", "spans", "dash_before")

    def __init__(self, key, spans, dash_before):
        self.key = key
        self.spans = spans  # [(start, end_exclusive)] of the folded NUMBER tokens
        self.dash_before = dash_before  # start of a '-' token just before, or -1


def fingerprint(sql: str, dialect: str) -> Fingerprint | None:
    """The literal-insensitive key of `sql`, or None when it has no foldable
    number (the exact cache is enough) or cannot be fingerprinted safely."""
    if not sql.isascii() or len(sql) > MAX_CACHED_CHARS:
        return None
    try:
        tokens = tokenize(sql, dialect)
    except Exception:
        return None
    spans: list[tuple[int, int]] = []
    dash: list[int] = []
    segments: list[str] = []
    prev = None
    last = 0
    for t in tokens:
        if t.token_type == TokenType.NUMBER:
            end = t.end + 1
            if sql[t.start:end] != t.text or not _plain_number(t.text):
                return None
            segments.append(sql[last:t.start])
            spans.append((t.start, end))
            dash.append(prev.start if prev is not None and prev.token_type == TokenType.DASH else -1)
            last = end
        prev = t
    if not spans:
        return None
    segments.append(sql[last:])
    return Fingerprint((dialect, tuple(segments)), spans, dash)


def _numbers_confirmed(sql: str, dialect: str, fp: Fingerprint, pg_numbers: frozenset | None) -> bool:
    """Does the database's own parser/lexer see each folded token as a number?
    PostgreSQL: `pg_numbers` are the offsets of numeric A_Const nodes found
    while classifying (ASCII text, so byte and character offsets agree)."""
    if dialect == "postgres":
        if pg_numbers is None:
            return False
        return all(s in pg_numbers or (d >= 0 and d in pg_numbers) for (s, _), d in zip(fp.spans, fp.dash_before))
    try:
        import duckdb

        numeric = {pos for pos, kind in duckdb.tokenize(sql) if kind == duckdb.token_type.numeric_const}
    except Exception:
        return False
    return all(s in numeric for s, _ in fp.spans)


class _Entry:
    __slots__ = ("statement", "part_spans", "number_spans")

    def __init__(self, statement, part_spans, number_spans):
        self.statement = statement
        self.part_spans = part_spans
        self.number_spans = number_spans


def _reslice(entry: _Entry, sql: str, new_spans: list[tuple[int, int]]) -> Statement | None:
    old = entry.number_spans
    if len(old) != len(new_spans):
        return None

    def shift(pos: int) -> int:
        delta = 0
        for (os_, oe), (ns, ne) in zip(old, new_spans):
            if oe <= pos:
                delta += (ne - ns) - (oe - os_)
            elif os_ < pos:
                raise ValueError("part boundary inside a number")
            else:
                break
        return pos + delta

    st = entry.statement
    try:
        parts = tuple(
            _copy_frozen(p, sql=sql[shift(a):shift(b)], tree=None) for p, (a, b) in zip(st.parts, entry.part_spans)
        )
    except ValueError:
        return None
    return _copy_frozen(st, sql=sql, parts=parts)


def _copy_frozen(obj, **changes):
    """dataclasses.replace for our frozen dataclasses, without re-running
    __init__ (which is most of a fingerprint hit's cost)."""
    new = object.__new__(type(obj))
    d = new.__dict__
    d.update(obj.__dict__)
    d.update(changes)
    return new


class ClassificationCache:
    """Thread-safe two-level LRU cache in front of `classify`."""

    def __init__(self, max_entries: int = MAX_ENTRIES):
        self.max_entries = max_entries
        self._exact: OrderedDict = OrderedDict()
        self._fp: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.hits_exact = 0
        self.hits_fingerprint = 0
        self.misses = 0

    def clear(self) -> None:
        with self._lock:
            self._exact.clear()
            self._fp.clear()
            self.hits_exact = self.hits_fingerprint = self.misses = 0

    def _put(self, table: OrderedDict, key, value) -> None:
        table[key] = value
        table.move_to_end(key)
        if len(table) > self.max_entries:
            table.popitem(last=False)

    def get(self, sql: str, dialect: str) -> Statement:
        key = (dialect, sql)
        with self._lock:
            st = self._exact.get(key)
            if st is not None:
                self._exact.move_to_end(key)
                self.hits_exact += 1
                return st
        fp = fingerprint(sql, dialect)
        if fp is not None:
            with self._lock:
                entry = self._fp.get(fp.key)
                if entry is not None:
                    self._fp.move_to_end(fp.key)
            if entry is not None:
                st = _reslice(entry, sql, fp.spans)
                if st is not None:
                    with self._lock:
                        self.hits_fingerprint += 1
                        self._put(self._exact, key, st)
                    return st
        st, part_spans, pg_numbers = classify_with_spans(sql, dialect)
        store_fp = (
            fp is not None
            and part_spans is not None
            and len(part_spans) == len(st.parts)
            and st.klass != StatementClass.UNPARSEABLE
            and _numbers_confirmed(sql, dialect, fp, pg_numbers)
        )
        with self._lock:
            self.misses += 1
            if len(sql) <= MAX_CACHED_CHARS:
                self._put(self._exact, key, st)
            if store_fp:
                self._put(self._fp, fp.key, _Entry(st, part_spans, fp.spans))
        return st


CACHE = ClassificationCache()
