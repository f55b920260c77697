"""DuckDB statements sqlgate cannot read from sqlglot's tree (an opaque
Command, or a root that is not a statement): decided from DuckDB's own
statement type and sqlglot's token stream, and `dangerous` when still unknown."""

from __future__ import annotations

from sqlglot.tokens import TokenType

from policy.classify_common import Acc, C
from policy.dangerous import DUCKDB_SESSION_SETTINGS


def classify_text(text: str, stype: str):
    from policy.classify_sqlglot import classify_text as inner  # EXPLAIN/SUMMARIZE recurse into their statement

    return inner(text, stype)


def tokenize(text: str):
    from policy.classify_sqlglot import tokenize as inner

    return inner(text)


class _Tok:
    __slots__ = ("token_type", "text", "start", "end")

    def __init__(self, token_type, text, start, end):
        self.token_type, self.text, self.start, self.end = token_type, text, start, end


def _tokens(text: str):
    """sqlglot's tokens, re-tokenizing the raw remainder sqlglot's tokenizer
    swallows into one string after a COMMAND keyword (EXPLAIN, RESET, ...)."""
    out: list[_Tok] = []
    base = 0
    rest = text
    while True:
        toks = [t for t in tokenize(rest) if t.token_type != TokenType.SEMICOLON]
        if not toks:
            return out
        first = toks[0]
        out.append(_Tok(first.token_type, first.text, base + first.start, base + first.end))
        if first.token_type == TokenType.COMMAND and len(toks) > 1:
            base += first.end + 1
            rest = rest[first.end + 1:]
            continue
        out.extend(_Tok(t.token_type, t.text, base + t.start, base + t.end) for t in toks[1:])
        return out


def _rest_after(text: str, tokens, i: int) -> str:
    return text[tokens[i].start:] if i < len(tokens) else ""


def fallback(tree, stype: str, text: str) -> Acc:
    """sqlglot gave a Command or a non-statement root: decide from DuckDB's
    statement type and the token stream; dangerous when still unknown."""
    acc = Acc(command=stype)
    try:
        toks = _tokens(text)
    except Exception:
        toks = []
    words = [t.text.upper() for t in toks]
    if stype == "TRANSACTION":
        acc.command = words[0] if words else "TRANSACTION"
        acc.raise_to(C.TRANSACTION)
        return acc
    if stype in ("SET", "VARIABLE_SET") and words and words[0] in ("SET", "RESET"):
        acc.command = words[0]
        i = 1
        if i < len(words) and words[i] in ("SESSION", "LOCAL"):
            i += 1
        name = toks[i].text.lower() if i < len(toks) else ""
        ok_shape = i + 1 == len(toks) or (i + 1 < len(toks) and words[i + 1] in ("=", "TO"))
        if name in DUCKDB_SESSION_SETTINGS and ok_shape:
            acc.raise_to(C.SESSION)
        else:
            acc.raise_to(C.DANGEROUS, f"{words[0]} {name or '?'} changes an instance-wide setting")
        return acc
    if stype == "EXPLAIN" and words and words[0] == "EXPLAIN":
        acc.command = "EXPLAIN"
        i = 1
        analyze = i < len(words) and words[i] in ("ANALYZE", "ANALYSE")
        inner_text = _rest_after(text, toks, i + 1 if analyze else i)
        inner, _ = classify_text(inner_text, "SELECT" if not analyze else _guess_type(words, i + 1))
        if analyze:
            acc.merge(inner)
        elif inner.klass >= C.DANGEROUS:
            acc.raise_to(C.DANGEROUS, inner.reason)
        return acc
    if stype == "SELECT" and words and words[0] in ("SHOW", "DESCRIBE", "SUMMARIZE"):
        acc.command = words[0]
        rest = toks[1:]
        if all(t.token_type in (TokenType.VAR, TokenType.DOT) or t.token_type == TokenType.IDENTIFIER
               for t in rest):
            acc.raise_to(C.READ)
            return acc
        inner, _ = classify_text(_rest_after(text, toks, 1), "SELECT")
        acc.merge(inner)
        return acc
    if stype == "CREATE" and (words[:2] == ["CREATE", "TYPE"] or words[:4] == ["CREATE", "OR", "REPLACE", "TYPE"]):
        acc.command = "CREATE TYPE"
        acc.raise_to(C.DESTRUCTIVE_DDL if words[1] == "OR" else C.SAFE_DDL)
        return acc
    if stype == "DROP" and words[:2] == ["DROP", "TYPE"]:
        acc.command = "DROP TYPE"
        acc.raise_to(C.DESTRUCTIVE_DDL, "DROP TYPE removes a definition")
        return acc
    two = words and words[0] in ("CREATE", "DROP", "ALTER", "FORCE", "EXPORT", "IMPORT")
    acc.command = " ".join(words[:2] if two else words[:1]) or stype
    acc.raise_to(C.DANGEROUS, f"sqlgate cannot inspect this {stype} statement")
    return acc


def _guess_type(words, i):
    w = words[i] if i < len(words) else ""
    return {"DELETE": "DELETE", "UPDATE": "UPDATE", "INSERT": "INSERT"}.get(w, "SELECT")
