"""Authentication: a presented secret becomes an Identity, or an error.

Lookups are cached for a few seconds (the token table lives in the backend,
and a lookup per request would cost a round trip); a revoke through this
proxy drops the cache entry at once, so it takes effect on the next request.

SCRAM logins (the wire protocol) present no secret, only a proof: the token
is the one valid token whose StoredKey the proof matches, so each login costs
one HMAC per valid SCRAM token (microseconds each: fine for thousands). The
list of those tokens is cached the same way: CACHE_SECONDS at most, dropped
at once by a revoke (here or, through `revoked_elsewhere`, on another proxy)
and by a token created here; a proof that matches nothing reloads it when it
is older than SCRAM_MISS_RELOAD_SECONDS, so a token just created on another
proxy works within that time, while failed logins cost at most one query per
that interval. Expiry is checked at every login, not only at load time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import timedelta

from policy.identity import (
    DEFAULT_TOKEN_LIFETIME,
    Identity,
    Role,
    Token,
    hash_secret,
    new_token,
    scram_proof_matches,
    scram_server_signature,
    scram_verifier,
)
from proxy import errors
from proxy.backends.base import MetaStore

log = logging.getLogger("sqlgate.auth")

CACHE_SECONDS = 5.0
SCRAM_MISS_RELOAD_SECONDS = 1.0


class Authenticator:
    def __init__(self, meta: MetaStore) -> None:
        self.meta = meta
        self._cache: dict[str, tuple[Token, float]] = {}
        self.on_revoke: list[Callable[[Token], None]] = []  # e.g. the wire server ending the token's sessions
        # Valid tokens with a SCRAM verifier: (token, StoredKey, ServerKey), and when loaded.
        self._scram: tuple[list[tuple[Token, bytes, bytes]], float] | None = None
        self._scram_lock = asyncio.Lock()
        self._scram_generation = 0  # bumped by every invalidation, so a load racing a revoke is not kept

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
            if token.scram is None and token.is_valid():
                token = await self._add_scram(token, secret)
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[secret] = (token, now)
        if not token.is_valid():
            self._cache.pop(secret, None)
            raise errors.auth_invalid()
        return Identity(token, actor or token.name)

    async def authenticate_scram(self, auth_message: bytes, client_proof: bytes,
                                 actor: str | None = None) -> tuple[Identity, bytes]:
        """The identity whose token made this ClientProof, and the ServerSignature
        that proves to the client that this server knows the token's verifier."""
        found = self._match(await self._scram_tokens(CACHE_SECONDS), auth_message, client_proof)
        if found is None:  # perhaps a token just created on another proxy
            found = self._match(await self._scram_tokens(SCRAM_MISS_RELOAD_SECONDS), auth_message, client_proof)
        if found is None:
            raise errors.auth_invalid()
        token, server_key = found
        return Identity(token, actor or token.name), scram_server_signature(server_key, auth_message)

    @staticmethod
    def _match(candidates: list[tuple[Token, bytes, bytes]], auth_message: bytes,
               client_proof: bytes) -> tuple[Token, bytes] | None:
        for token, stored_key, server_key in candidates:
            if scram_proof_matches(stored_key, auth_message, client_proof) and token.is_valid():
                return token, server_key
        return None

    async def _scram_tokens(self, max_age: float) -> list[tuple[Token, bytes, bytes]]:
        async with self._scram_lock:  # concurrent logins share one load
            while True:
                cached = self._scram
                now = time.monotonic()
                if cached is not None and now - cached[1] < max_age:
                    return cached[0]
                generation = self._scram_generation
                tokens = await self.meta.scram_tokens()
                entries: list[tuple[Token, bytes, bytes]] = []
                for token in tokens:
                    keys = token.scram_keys()
                    if keys is not None and token.is_valid():
                        entries.append((token, *keys))
                if generation == self._scram_generation:  # else a revoke raced this load: load again
                    self._scram = (entries, now)
                    return entries

    async def _add_scram(self, token: Token, secret: str) -> Token:
        """A token made before SCRAM, presented with its secret: store its verifier
        now, so it can log in over the wire protocol from then on."""
        scram = scram_verifier(secret)
        try:
            await self.meta.set_token_scram(token.id, scram)
        except Exception:  # noqa: BLE001 - the request itself must not fail for this
            log.warning("could not store the SCRAM verifier of token %s", token.id, exc_info=True)
            return token
        self._drop_scram()
        return Token(token.id, token.name, token.role, token.secret_hash, token.created_at, token.expires_at,
                     token.revoked_at, token.created_by, scram)

    async def create_token(self, creator: Identity | None, name: str, role: Role,
                           lifetime: timedelta | None = DEFAULT_TOKEN_LIFETIME,
                           secret: str | None = None) -> tuple[Token, str]:
        """A new token; a creator may only hand out what it has itself."""
        token, secret = new_token(name, role, lifetime, creator.token.id if creator else None, secret)
        if creator is not None and creator.role is not Role.ADMIN:
            if role > creator.role:
                raise errors.token_scope(f"a {creator.role.label} token cannot create a {role.label} token")
            own_expiry = creator.token.expires_at
            if own_expiry is not None and (token.expires_at is None or token.expires_at > own_expiry):
                raise errors.token_scope("a token cannot outlive the token that creates it")
        await self.meta.insert_token(token)
        self._drop_scram()  # it can log in over the wire protocol at once
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

    def _drop_scram(self) -> None:
        self._scram = None
        self._scram_generation += 1

    def forget(self, secret_hash: str | None = None) -> None:
        self._drop_scram()
        if secret_hash is None:
            self._cache.clear()
            return
        for secret in [s for s, (token, _) in self._cache.items() if token.secret_hash == secret_hash]:
            del self._cache[secret]
