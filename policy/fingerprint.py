"""The classification cache: exact text first, then a literal-insensitive
fingerprint so statements that differ only in numeric literals (pgbench's
`... WHERE aid = 123` / `... = 456`) share one classification.

Fingerprint: one left-to-right scan (`_LEX`) steps over words, strings
('' and E'' escapes), quoted identifiers, comments (-- to LF or CR, nested
/* */), dollar quotes and parameters ($1, never folded); every whole
number-like run that is a plain decimal (digits, optionally one inner '.') is
cut out, and the key is the dialect plus the tuple of the exact text between
them. So two strings share a key only if they are identical outside plain
numeric literals: string literals, identifiers, comments and whitespace are
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
literals); they are built from stored field values without __init__.
Non-ASCII strings, strings over MAX_CACHED_CHARS and unparseable
strings only use the exact cache.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict

from policy.classify import classify_with_spans
from proxy.statement import Part, Statement, StatementClass

MAX_ENTRIES = 10_000
MAX_CACHED_CHARS = 16_384

# The lexical classes that can hold digits, as one alternation tried at the
# current position (a strictly left-to-right scan: each match starts where the
# last one ended; a nested comment or a dollar quote restarts the scan after
# its end). It never classifies anything: it only finds the spans of plain
# numeric literals and steps over everything that could contain digits
# without being one. Unnamed alternatives are stepped over.
_LEX = re.compile(
    r"""
      (?:                                 # a run of tokens that cannot hold a number:
          [A-DF-Za-df-z_][\w$]*+          #   words, incl. a1, x$2
        | [eE](?!')[\w$]*+                #   (but E'...' is a string)
        | [^\w'"$\-/.]++                  #   whitespace, punctuation, operator characters
        | -(?!-) | /(?!\*) | \.(?!\d)     #   '-', '/', '.' that start no comment or number
      )++
    | (?P<num>\d++(?:\.\d++)?+(?![\w.$])) # a plain decimal: 12, 1.5 (the whole number-like run)
    | \.?\d[\w.$]*+(?:(?<=[eE])[+-][\w.$]*+)?   # any other number-like run: .5, 1e+5, 0x1F, 1_000, 1.
    | --[^\n\r]*+                        # line comment (ends at \n or \r, as in PostgreSQL)
    | '[^']*+(?:''[^']*+)*+'              # 'string' with '' escapes (also after b/x/n/U&)
    | [eE]'[^'\\]*+(?:(?:\\.|'')[^'\\]*+)*+'   # E'string' with backslash escapes
    | "[^"]*+(?:""[^"]*+)*+"              # "quoted identifier"
    | \$\d++                              # parameter $1: never a literal
    | (?P<dollar>\$(?:[A-Za-z_]\w*+)?\$)  # $tag$ opening a dollar quote
    | (?P<block>/\*)                      # /* comment, nested
    | (?P<bad>['"])                       # an unterminated quote
    | \$                                  # a lone '$' (e.g. DuckDB's $name)
    """,
    re.VERBOSE | re.ASCII | re.DOTALL,
)
_BLOCK = re.compile(r"/\*|\*/")


class Fingerprint:
    __slots__ = ("key", "spans", "sql")

    def __init__(self, key, spans, sql):
        self.key = key
        self.spans = spans  # [(start, end_exclusive)] of the folded numbers
        self.sql = sql

    @property
    def dash_before(self) -> list[int]:
        """For each folded number, the offset of a '-' just before it (only
        whitespace between), else -1: PostgreSQL locates a negative constant
        at its minus sign. Only a hint for `_numbers_confirmed`, which still
        needs a numeric constant of the engine's at that exact offset."""
        sql = self.sql
        out = []
        for s, _ in self.spans:
            i = s - 1
            while i >= 0 and sql[i] in " \t\n\r\f\v":
                i -= 1
            out.append(i if i >= 0 and sql[i] == "-" else -1)
        return out


def fingerprint(sql: str, dialect: str) -> Fingerprint | None:
    """The literal-insensitive key of `sql`, or None when it has no foldable
    number (the exact cache is enough) or cannot be fingerprinted safely.

    Only plain decimals (digits, optionally one inner '.') standing as a whole
    number-like run are folded; digits inside words, strings, quoted
    identifiers, comments, dollar quotes and parameters ($1) are part of the
    key. Whether the engine really sees each folded span as a numeric constant
    is checked when an entry is stored (`_numbers_confirmed`)."""
    if not sql.isascii() or len(sql) > MAX_CACHED_CHARS:
        return None
    spans: list[tuple[int, int]] = []
    segments: list[str] = []
    last = 0
    pos = 0
    finditer = _LEX.finditer
    while True:
        for m in finditer(sql, pos):
            kind = m.lastgroup
            if kind is None:
                continue
            if kind == "num":
                s, e = m.span()
                segments.append(sql[last:s])
                spans.append((s, e))
                last = e
                continue
            end = m.end()
            if kind == "block":
                depth = 1
                while depth:
                    b = _BLOCK.search(sql, end)
                    if b is None:
                        return None
                    end = b.end()
                    depth += 1 if b.group() == "/*" else -1
            elif kind == "dollar":
                tag = m.group()
                close = sql.find(tag, end)
                if close < 0:
                    return None
                end = close + len(tag)
            else:  # an unterminated quote: the engine rejects it
                return None
            pos = end
            break  # restart the scan after the comment or dollar quote
        else:
            break
    if not spans:
        return None
    segments.append(sql[last:])
    return Fingerprint((dialect, tuple(segments)), spans, sql)


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


_new = object.__new__
_setattr = object.__setattr__


def _anchor(pos: int, spans: list[tuple[int, int]]) -> tuple[int, int] | None:
    """`pos` as (k, offset): `offset` characters after the end of the k-th
    folded number (k = 0: the start of the string); None if `pos` falls inside
    a number."""
    k = 0
    base = 0
    for s, e in spans:
        if e <= pos:
            k += 1
            base = e
        elif s < pos:
            return None
        else:
            break
    return k, pos - base


class _Entry:
    """A classification stored under a fingerprint: for each part, its bounds
    as anchors relative to the folded numbers and its field values (tree
    dropped); the Statement's field values. A hit builds new frozen objects
    from these directly (no __init__, no dataclasses.replace)."""

    __slots__ = ("parts", "n_numbers", "statement_fields")

    def __init__(self, parts, n_numbers, statement_fields):
        self.parts = parts  # ((k_start, off_start, k_end, off_end, fields), ...)
        self.n_numbers = n_numbers
        self.statement_fields = statement_fields


def _make_entry(st: Statement, part_spans, number_spans) -> _Entry | None:
    parts = []
    for p, (a, b) in zip(st.parts, part_spans):
        aa, bb = _anchor(a, number_spans), _anchor(b, number_spans)
        if aa is None or bb is None:
            return None
        fields = dict(p.__dict__)
        fields["tree"] = None  # the cached tree holds the old literals
        parts.append((aa[0], aa[1], bb[0], bb[1], fields))
    return _Entry(tuple(parts), len(number_spans), dict(st.__dict__))


def _reslice(entry: _Entry, sql: str, new_spans: list[tuple[int, int]]) -> Statement | None:
    """The cached classification with `sql` and each Part.sql taken from the
    new text: a part bound anchored `off` characters after the end of the
    k-th folded number moves with that number's new end."""
    if len(new_spans) != entry.n_numbers:
        return None
    parts = []
    for ka, oa, kb, ob, fields in entry.parts:
        if ka:
            oa += new_spans[ka - 1][1]
        if kb:
            ob += new_spans[kb - 1][1]
        d = fields.copy()
        d["sql"] = sql[oa:ob]
        p = _new(Part)
        _setattr(p, "__dict__", d)
        parts.append(p)
    d = entry.statement_fields.copy()
    d["sql"] = sql
    d["parts"] = tuple(parts)
    st = _new(Statement)
    _setattr(st, "__dict__", d)
    return st


# Templates: a quicker way to a stored fingerprint for text that differs from it
# only in its numbers (pgbench's `... WHERE aid = 123;`, `... = 456;`), with no
# regex scan. A template is a stored key's segments (the exact text between the
# folded numbers); text matches it when it is those segments with a plain decimal
# (ASCII digits, optionally one inner '.', as `num` folds them) between each two
# and nothing else. `fingerprint` then gives that text the same key and spans:
# its scan reaches each number after the same text (a left-to-right scan whose
# state depends only on what it has read; the lookaheads at a number's start see a
# digit, as they did), folds the number there (the same following character as
# when the key was made, so the same lookahead verdict), and reads the same text
# on. tests/test_fingerprint_cache.py checks this against `fingerprint` itself.
TEMPLATE_PREFIX = 16  # templates are found by their text's first characters: a first segment at least this long
MAX_TEMPLATES = 4  # per prefix (most recent first)
_PLAIN_NUMBER = re.compile(r"[0-9]++(?:\.[0-9]++)?+").match


def match_template(sql: str, segments: tuple[str, ...]) -> list[tuple[int, int]] | None:
    """The spans of the numbers when `sql` is `segments` with a plain decimal
    between each two; else None."""
    first = segments[0]
    if not sql.startswith(first):
        return None
    pos = len(first)
    spans = []
    for i in range(1, len(segments)):
        m = _PLAIN_NUMBER(sql, pos)
        if m is None:
            return None
        end = m.end()
        spans.append((pos, end))
        segment = segments[i]
        if not sql.startswith(segment, end):
            return None
        pos = end + len(segment)
    return spans if pos == len(sql) else None


class ClassificationCache:
    """Thread-safe two-level LRU cache in front of `classify`."""

    def __init__(self, max_entries: int = MAX_ENTRIES):
        self.max_entries = max_entries
        self._exact: OrderedDict = OrderedDict()
        self._fp: OrderedDict = OrderedDict()
        self._templates: dict[str, list[tuple]] = {}  # text prefix -> [fingerprint key], most recent first
        self._lock = threading.Lock()
        self.hits_exact = 0
        self.hits_fingerprint = 0
        self.misses = 0

    def clear(self) -> None:
        with self._lock:
            self._exact.clear()
            self._fp.clear()
            self._templates.clear()
            self.hits_exact = self.hits_fingerprint = self.misses = 0

    def _put(self, table: OrderedDict, key, value) -> None:
        if key in table:
            table.move_to_end(key)
        table[key] = value
        if len(table) > self.max_entries:
            table.popitem(last=False)

    def _remember_template(self, key) -> None:
        """Called with the lock held, for a key with an entry."""
        segments = key[1]
        first = segments[0]
        if len(first) < TEMPLATE_PREFIX:
            return
        templates = self._templates
        keys = templates.get(first[:TEMPLATE_PREFIX])
        if keys is None:
            if len(templates) >= self.max_entries:
                templates.clear()  # a bound, not a policy: templates are found again as fingerprints hit
            templates[first[:TEMPLATE_PREFIX]] = [key]
        elif keys[0] != key:
            if key in keys:
                keys.remove(key)
            keys.insert(0, key)
            del keys[MAX_TEMPLATES:]

    def _by_template(self, sql: str, dialect: str) -> Statement | None:
        """A fingerprint hit found through a template, or None. Called with the lock held."""
        keys = self._templates.get(sql[:TEMPLATE_PREFIX])
        if keys is None or len(sql) > MAX_CACHED_CHARS:
            return None
        for key in keys:
            if key[0] != dialect:
                continue
            spans = match_template(sql, key[1])
            if spans is None:
                continue
            entry = self._fp.get(key)
            if entry is None:
                return None  # evicted: the ordinary way stores it again
            st = _reslice(entry, sql, spans)
            if st is not None:
                self._fp.move_to_end(key)
            return st
        return None

    def get(self, sql: str, dialect: str) -> Statement:
        key = (dialect, sql)
        with self._lock:
            st = self._exact.get(key)
            if st is not None:
                self._exact.move_to_end(key)
                self.hits_exact += 1
                return st
            st = self._by_template(sql, dialect)
            if st is not None:
                # Not kept as exact text: a template hit is nearly as quick, and text that differs only in
                # its numbers (pgbench's) would churn the exact level, one insert and eviction per statement.
                self.hits_fingerprint += 1
                return st
        fp = fingerprint(sql, dialect)
        if fp is not None:
            with self._lock:
                entry = self._fp.get(fp.key)
                if entry is not None:
                    st = _reslice(entry, sql, fp.spans)
                    if st is not None:
                        self._fp.move_to_end(fp.key)
                        self.hits_fingerprint += 1
                        self._put(self._exact, key, st)
                        self._remember_template(fp.key)
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
                entry = _make_entry(st, part_spans, fp.spans)
                if entry is not None:
                    self._put(self._fp, fp.key, entry)
                    self._remember_template(fp.key)
        return st


CACHE = ClassificationCache()
