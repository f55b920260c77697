"""Which transaction-control statement a `transaction` part is, read from
the SQL tokenizer's tokens (comments and case never fool it)."""

from __future__ import annotations

import enum
from functools import lru_cache

import sqlglot
from sqlglot.tokens import TokenType


class TxVerb(enum.Enum):
    BEGIN = "BEGIN"
    COMMIT = "COMMIT"
    ROLLBACK = "ROLLBACK"
    ROLLBACK_TO = "ROLLBACK TO"
    SAVEPOINT = "SAVEPOINT"
    RELEASE = "RELEASE"
    OTHER = "OTHER"  # PREPARE TRANSACTION, SET TRANSACTION, ...


_FIRST = {
    "BEGIN": TxVerb.BEGIN, "START": TxVerb.BEGIN, "COMMIT": TxVerb.COMMIT, "END": TxVerb.COMMIT,
    "ROLLBACK": TxVerb.ROLLBACK, "ABORT": TxVerb.ROLLBACK, "SAVEPOINT": TxVerb.SAVEPOINT, "RELEASE": TxVerb.RELEASE,
}


_ISOLATION = ("SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED", "READ UNCOMMITTED")


# Both are pure functions of the text, asked on every transaction-control statement (twice for some):
# a client sends the same few texts ("BEGIN;", "END;") again and again, and a tokenizer run costs
# tens of microseconds. Bounded, so distinct texts cannot grow it without limit.
@lru_cache(maxsize=1024)
def begin_options(sql: str, dialect: str) -> tuple[str | None, bool, bool]:
    """(isolation level, read only, deferrable) a BEGIN / START TRANSACTION asks for."""
    try:
        tokens = sqlglot.Dialect.get_or_raise(dialect).tokenize(sql)
    except Exception:
        return None, False, False
    words = " ".join(t.text.upper() for t in tokens)
    isolation = next((level for level in _ISOLATION if f"ISOLATION LEVEL {level}" in words), None)
    return isolation, "READ ONLY" in words, "NOT DEFERRABLE" not in words and "DEFERRABLE" in words


@lru_cache(maxsize=1024)
def transaction_verb(sql: str, dialect: str) -> TxVerb:
    try:
        tokens = sqlglot.Dialect.get_or_raise(dialect).tokenize(sql)
    except Exception:
        return TxVerb.OTHER
    words = [t.text.upper() for t in tokens if t.token_type is not TokenType.SEMICOLON]
    if not words:
        return TxVerb.OTHER
    verb = _FIRST.get(words[0], TxVerb.OTHER)
    if verb is TxVerb.ROLLBACK and "TO" in words[1:3]:
        return TxVerb.ROLLBACK_TO
    if verb is TxVerb.COMMIT and words[0] == "COMMIT" and "PREPARED" in words[1:2]:
        return TxVerb.OTHER
    if verb is TxVerb.ROLLBACK and "PREPARED" in words[1:2]:
        return TxVerb.OTHER
    return verb
