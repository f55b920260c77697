"""Identities: roles, tokens and who a request acts as.

Tokens are random secrets shown once; only their SHA-256 is stored, so the
metadata alone cannot be used to log in. (A slow KDF would buy nothing here:
the secrets carry 256 bits of entropy.)

For the wire protocol's SCRAM-SHA-256 (RFC 5802/7677) each token also keeps
a verifier (StoredKey, ServerKey), computed where the secret exists: at
creation, or when sqlgate next sees the secret (the admin token at start-up,
any token on an HTTP request). See SCRAM_SALT for why one salt serves all.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import secrets
import stringprep
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

TOKEN_PREFIX = "sqlgate_"
DEFAULT_TOKEN_LIFETIME = timedelta(days=7)

# SCRAM-SHA-256 parameters, the same for every token, and public. A per-user
# salt exists to defeat precomputed dictionaries over low-entropy passwords;
# sqlgate's secrets are random with 256 bits of entropy, so there is no
# dictionary to precompute and a fixed salt costs nothing. It is what makes
# SCRAM possible at all here: the server must send the salt (server-first)
# before it knows which token is logging in (the SCRAM user name is only the
# actor label), so the token is found afterwards by its ClientProof
# (`scram_proof_matches`). A new salt or count needs a new verifier format
# tag ("v1" in the salt); tokens with other parameters are simply not offered.
SCRAM_SALT = b"sqlgate-scram-v1"  # 16 bytes
SCRAM_ITERATIONS = 4096
SCRAM_MECHANISM = "SCRAM-SHA-256"


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
    # "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>" (base64, PostgreSQL's
    # format), or None for tokens made before sqlgate spoke SCRAM. Not a secret that
    # logs in (StoredKey is a hash of ClientKey), but kept out of reprs and public().
    scram: str | None = field(default=None, repr=False)

    def scram_keys(self) -> tuple[bytes, bytes] | None:
        """(StoredKey, ServerKey) when the verifier uses the current salt and count."""
        return parse_scram_verifier(self.scram) if self.scram else None

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


def saslprep(secret: str) -> bytes:
    """The password bytes SCRAM hashes, as libpq computes them (pg_saslprep):
    ASCII unchanged; otherwise RFC 4013 SASLprep, or the raw UTF-8 when the
    string is not valid under SASLprep (libpq falls back the same way)."""
    if secret.isascii():
        return secret.encode()
    mapped = "".join(" " if stringprep.in_table_c12(c) else c for c in secret if not stringprep.in_table_b1(c))
    normal = unicodedata.normalize("NFKC", mapped)
    prohibited = (stringprep.in_table_a1, stringprep.in_table_c12, stringprep.in_table_c21_c22,
                  stringprep.in_table_c3, stringprep.in_table_c4, stringprep.in_table_c5, stringprep.in_table_c6,
                  stringprep.in_table_c7, stringprep.in_table_c8, stringprep.in_table_c9)
    if not normal or any(check(c) for c in normal for check in prohibited):
        return secret.encode()
    if any(stringprep.in_table_d1(c) for c in normal) and (
            any(stringprep.in_table_d2(c) for c in normal)
            or not (stringprep.in_table_d1(normal[0]) and stringprep.in_table_d1(normal[-1]))):
        return secret.encode()
    return normal.encode()


def scram_keys(secret: str, salt: bytes = SCRAM_SALT, iterations: int = SCRAM_ITERATIONS) -> tuple[bytes, bytes]:
    """(StoredKey, ServerKey) of RFC 5802 for this secret."""
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(secret), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    return hashlib.sha256(client_key).digest(), hmac.digest(salted, b"Server Key", "sha256")


def scram_verifier(secret: str) -> str:
    stored, server = scram_keys(secret)
    salt, stored_b64, server_b64 = (base64.b64encode(b).decode() for b in (SCRAM_SALT, stored, server))
    return f"{SCRAM_MECHANISM}${SCRAM_ITERATIONS}:{salt}${stored_b64}:{server_b64}"


def parse_scram_verifier(verifier: str) -> tuple[bytes, bytes] | None:
    """(StoredKey, ServerKey), or None if malformed or made with other parameters."""
    try:
        mechanism, params, keys = verifier.split("$")
        iterations, salt = params.split(":")
        stored, server = (base64.b64decode(k, validate=True) for k in keys.split(":"))
        if (mechanism != SCRAM_MECHANISM or int(iterations) != SCRAM_ITERATIONS
                or base64.b64decode(salt, validate=True) != SCRAM_SALT or len(stored) != 32 or len(server) != 32):
            return None
        return stored, server
    except ValueError:
        return None


def scram_proof_matches(stored_key: bytes, auth_message: bytes, client_proof: bytes) -> bool:
    """Whether ClientProof was made with the ClientKey whose hash is StoredKey."""
    if len(client_proof) != len(stored_key):
        return False
    signature = hmac.digest(stored_key, auth_message, "sha256")
    client_key = bytes(a ^ b for a, b in zip(client_proof, signature, strict=True))
    return hmac.compare_digest(hashlib.sha256(client_key).digest(), stored_key)


def scram_server_signature(server_key: bytes, auth_message: bytes) -> bytes:
    return hmac.digest(server_key, auth_message, "sha256")


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
        scram=scram_verifier(secret),
    )
    return token, secret
