"""The server side of a SCRAM-SHA-256 exchange (RFC 5802, RFC 7677), as
PostgreSQL speaks it, with no I/O and no token lookup: parsing the client's
two messages, building the server's, and the AuthMessage both sides sign.

Which token made the proof is the Authenticator's job (`authenticate_scram`).
Channel binding (SCRAM-SHA-256-PLUS) is not offered, so the gs2 header must
be `n,,` (client cannot bind) or `y,,` (client could, but we did not offer);
`p=...` is refused. Like PostgreSQL, the user name in client-first is ignored
(the StartupMessage's user is the actor label) and authzid is refused.
"""

from __future__ import annotations

import base64
import binascii
import secrets

from policy.identity import SCRAM_ITERATIONS, SCRAM_MECHANISM, SCRAM_SALT
from proxy.wire.codec import ProtocolViolation

MECHANISMS = [SCRAM_MECHANISM]  # no -PLUS: tls-server-end-point is not implemented


class ScramError(ProtocolViolation):
    """A malformed or unacceptable SCRAM message (08P01, as PostgreSQL)."""


def _printable(value: str) -> bool:
    return bool(value) and all(0x21 <= ord(c) <= 0x7E and c != "," for c in value)


class ScramExchange:
    """One login's exchange: client_first -> server-first; client_final -> proof."""

    def __init__(self, salt: bytes = SCRAM_SALT, iterations: int = SCRAM_ITERATIONS,
                 server_nonce: str | None = None) -> None:
        self.salt, self.iterations = salt, iterations
        self.server_nonce = server_nonce or base64.b64encode(secrets.token_bytes(18)).decode()
        self.gs2_header = ""
        self.client_first_bare = ""
        self.server_first = ""
        self.nonce = ""

    def client_first(self, data: bytes) -> bytes:
        """client-first-message in, server-first-message out."""
        text = _text(data)
        parts = text.split(",", 2)
        if len(parts) != 3:
            raise ScramError("malformed SCRAM message: expected a gs2 header")
        flag, authzid, bare = parts
        if flag.startswith("p="):
            raise ScramError("channel binding was not offered: connect with channel_binding=disable or prefer")
        if flag not in ("n", "y"):
            raise ScramError(f"malformed SCRAM message: unexpected channel-binding flag {flag!r}")
        if authzid:
            raise ScramError("client uses authorization identity, but it is not supported")
        attributes = bare.split(",")
        if attributes[0].startswith("m="):
            raise ScramError("client requires an unsupported SCRAM extension")
        if len(attributes) < 2 or not attributes[0].startswith("n=") or not attributes[1].startswith("r="):
            raise ScramError("malformed SCRAM message: expected n= and r= attributes")
        client_nonce = attributes[1][2:]
        if not _printable(client_nonce):
            raise ScramError("malformed SCRAM message: invalid client nonce")
        self.gs2_header = f"{flag},{authzid},"
        self.client_first_bare = bare
        self.nonce = client_nonce + self.server_nonce
        self.server_first = f"r={self.nonce},s={base64.b64encode(self.salt).decode()},i={self.iterations}"
        return self.server_first.encode()

    def client_final(self, data: bytes) -> tuple[bytes, bytes]:
        """client-final-message in; (AuthMessage, ClientProof) out, for the Authenticator."""
        text = _text(data)
        without_proof, sep, proof_attr = text.rpartition(",p=")
        if not sep or not without_proof.startswith("c="):
            raise ScramError("malformed SCRAM message: expected c=, r= and p= attributes")
        attributes = without_proof.split(",")
        if len(attributes) < 2 or not attributes[1].startswith("r="):
            raise ScramError("malformed SCRAM message: expected c=, r= and p= attributes")
        if _b64(attributes[0][2:]) != self.gs2_header.encode():
            raise ScramError("SCRAM channel binding check failed")
        if attributes[1][2:] != self.nonce:
            raise ScramError("SCRAM nonce mismatch")
        proof = _b64(proof_attr)
        if len(proof) != 32:
            raise ScramError("malformed SCRAM message: invalid ClientProof")
        auth_message = f"{self.client_first_bare},{self.server_first},{without_proof}".encode()
        return auth_message, proof

    @staticmethod
    def server_final(server_signature: bytes) -> bytes:
        return b"v=" + base64.b64encode(server_signature)


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ScramError("malformed SCRAM message: invalid UTF-8") from None


def _b64(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ScramError("malformed SCRAM message: invalid base64") from None
