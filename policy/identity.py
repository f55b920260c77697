"""Identities: roles, tokens and who a request acts as.

Tokens are random secrets shown once; only their SHA-256 is stored, so the
metadata alone cannot be used to log in. (A slow KDF would buy nothing here:
the secrets carry 256 bits of entropy.)
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

TOKEN_PREFIX = "sqlgate_"
DEFAULT_TOKEN_LIFETIME = timedelta(days=7)


class Role(enum.IntEnum):
    """What a token may do; a higher value can do everything a lower one can."""

    READ = 1
    WRITE = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        return cls[text.strip().upper()]


@dataclass(frozen=True)
class Token:
    """A token's stored record (never its secret)."""

    id: str
    name: str
    role: Role
    secret_hash: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None = None
    created_by: str | None = None

    def is_valid(self, now: datetime | None = None) -> bool:
        now = now or datetime.now(UTC)
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def public(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role.label,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "created_by": self.created_by,
        }


@dataclass(frozen=True)
class Identity:
    """Who a request acts as: the token and the actor label it gave."""

    token: Token
    actor: str

    @property
    def role(self) -> Role:
        return self.token.role


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token(name: str, role: Role, lifetime: timedelta | None, created_by: str | None,
              secret: str | None = None) -> tuple[Token, str]:
    """A fresh token record and its secret (the only time the secret exists)."""
    secret = secret or TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    token = Token(
        id="tok_" + secrets.token_hex(6),
        name=name,
        role=role,
        secret_hash=hash_secret(secret),
        created_at=now,
        expires_at=now + lifetime if lifetime else None,
        created_by=created_by,
    )
    return token, secret
