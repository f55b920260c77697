"""Authentication: a presented secret becomes an Identity, or an error.

Lookups are cached for a few seconds (the token table lives in the backend,
and a lookup per request would cost a round trip); a revoke through this
proxy drops the cache entry at once, so it takes effect on the next request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from policy.identity import DEFAULT_TOKEN_LIFETIME, Identity, Role, Token, hash_secret, new_token
from proxy import errors
from proxy.backends.base import MetaStore

CACHE_SECONDS = 5.0


class Authenticator:
    def __init__(self, meta: MetaStore) -> None:
        self.meta = meta
        self._cache: dict[str, tuple[Token, float]] = {}
        self.on_revoke: list[Callable[[Token], None]] = []  # e.g. the wire server ending the token's sessions

    async def authenticate(self, secret: str | None, actor: str | None = None) -> Identity:
        if not secret:
            raise errors.auth_missing()
        # Keyed by the secret itself (memory only), so a hit costs no hashing.
        cached = self._cache.get(secret)
        now = time.monotonic()
        if cached and now - cached[1] < CACHE_SECONDS:
            token = cached[0]
        else:
            found = await self.meta.find_token(hash_secret(secret))
            if found is None:
                raise errors.auth_invalid()
            token = found
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[secret] = (token, now)
        if not token.is_valid():
            self._cache.pop(secret, None)
            raise errors.auth_invalid()
        return Identity(token, actor or token.name)

    async def create_token(self, creator: Identity | None, name: str, role: Role,
                           lifetime: timedelta | None = DEFAULT_TOKEN_LIFETIME,
                           secret: str | None = None) -> tuple[Token, str]:
        """A new token; a creator may only hand out what it has itself."""
        if creator is not None and creator.role is not Role.ADMIN:
            if role > creator.role:
                raise errors.token_scope(f"a {creator.role.label} token cannot create a {role.label} token")
            own_expiry = creator.token.expires_at
            token, _ = new_token(name, role, lifetime, None)
            if own_expiry is not None and (token.expires_at is None or token.expires_at > own_expiry):
                raise errors.token_scope("a token cannot outlive the token that creates it")
        token, secret = new_token(name, role, lifetime, creator.token.id if creator else None, secret)
        await self.meta.insert_token(token)
        return token, secret

    async def revoke(self, token_id: str) -> Token:
        token = await self.meta.revoke_token(token_id)
        if token is None:
            raise errors.token_not_found(token_id)
        self.forget(token.secret_hash)
        for observer in self.on_revoke:
            observer(token)
        return token

    async def revoked_elsewhere(self, token_id: str) -> None:
        """Another proxy revoked a token: drop it here too and tell the observers."""
        token = await self.meta.get_token(token_id)
        if token is None:
            return
        self.forget(token.secret_hash)
        for observer in self.on_revoke:
            observer(token)

    def forget(self, secret_hash: str | None = None) -> None:
        if secret_hash is None:
            self._cache.clear()
            return
        for secret in [s for s, (token, _) in self._cache.items() if token.secret_hash == secret_hash]:
            del self._cache[secret]
