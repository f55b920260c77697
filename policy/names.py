"""Rendering relation names as PostgreSQL's quote_ident() would write them.

Everything here works on identifiers a parser has already decoded (case
folded, unicode escapes resolved, truncated); nothing here reads SQL text.
"""

from __future__ import annotations

from pglast.keywords import (
    COL_NAME_KEYWORDS,
    RESERVED_KEYWORDS,
    TYPE_FUNC_NAME_KEYWORDS,
)

NAMEDATALEN = 64
_QUOTE_KEYWORDS = frozenset(RESERVED_KEYWORDS) | frozenset(COL_NAME_KEYWORDS) | frozenset(TYPE_FUNC_NAME_KEYWORDS)
_FIRST = frozenset("abcdefghijklmnopqrstuvwxyz_")
_REST = _FIRST | frozenset("0123456789")


def truncate_ident(name: str) -> str:
    """Clip to NAMEDATALEN-1 bytes at a character boundary, as PostgreSQL does."""
    raw = name.encode("utf-8")
    if len(raw) < NAMEDATALEN:
        return name
    return raw[: NAMEDATALEN - 1].decode("utf-8", errors="ignore")


def fold_ident(name: str, quoted: bool) -> str:
    """An identifier as PostgreSQL stores it: unquoted ASCII letters lower-cased."""
    if quoted:
        return name
    return "".join(c.lower() if "A" <= c <= "Z" else c for c in name)


def quote_ident(name: str) -> str:
    """PostgreSQL's quote_identifier(): quote unless plain lower-case and not a keyword."""
    safe = bool(name) and name[0] in _FIRST and all(c in _REST for c in name)
    if safe and name in _QUOTE_KEYWORDS:
        safe = False
    if safe:
        return name
    return '"' + name.replace('"', '""') + '"'


def qualified(*parts: str | None) -> str:
    """Join the parts that are present, each through quote_ident."""
    return ".".join(quote_ident(p) for p in parts if p)


def split_qualified_text(text: str) -> list[str] | None:
    """Parse a textual name like regclass input ('public."Seq"'): PostgreSQL's
    SplitIdentifierString rules. Returns the folded parts, or None if malformed."""
    parts: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i < n and text[i] == '"':
            i += 1
            buf = []
            while True:
                if i >= n:
                    return None
                if text[i] == '"':
                    if i + 1 < n and text[i + 1] == '"':
                        buf.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                buf.append(text[i])
                i += 1
            part = "".join(buf)
        else:
            start = i
            while i < n and text[i] != "." and not text[i].isspace():
                i += 1
            part = fold_ident(text[start:i], False)
            if not part:
                return None
        parts.append(truncate_ident(part))
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return parts
        if text[i] != ".":
            return None
        i += 1
