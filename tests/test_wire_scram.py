"""SCRAM-SHA-256 on the wire front door: the key derivation against RFC 7677's
test vector, the exchange's parsing, the Authenticator finding a token by its
proof, and real clients (psql, psycopg, asyncpg, a raw socket) through a
real server on both backends."""


from __future__ import annotations

import asyncio
import base64
import secrets
import struct
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import duckdb
import psycopg
import pytest

from policy.identity import (
    SCRAM_ITERATIONS,
    SCRAM_SALT,
    Role,
    Token,
    new_token,
    parse_scram_verifier,
    saslprep,
    scram_keys,
    scram_proof_matches,
    scram_server_signature,
    scram_verifier,
)
from proxy import errors
from proxy.auth import Authenticator
from proxy.backends.duckdb import DuckDBBackend
from proxy.backends.duckdb_meta import DuckDBMeta, create_schema
from proxy.wire.scram import ScramError, ScramExchange
from tests.support.pgserver import PgServer
from tests.support.wire import PSQL, Wire
from tests.support.wire_raw import Conn, auth, client_proof, error_fields, msg, scram_login, startup

# RFC 7677, section 3.
RFC_PASSWORD = "pencil"
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_SERVER_FIRST = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
RFC_CLIENT_FINAL = (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


# --- an independent client side (hashlib only), for the raw-socket tests ------

def test_rfc7677_vector_through_the_server_side() -> None:
    stored, server = scram_keys(RFC_PASSWORD, RFC_SALT, 4096)
    exchange = ScramExchange(RFC_SALT, 4096, server_nonce=RFC_SERVER_NONCE)
    assert exchange.client_first(RFC_CLIENT_FIRST) == RFC_SERVER_FIRST
    auth_message, proof = exchange.client_final(RFC_CLIENT_FINAL)
    assert auth_message == RFC_CLIENT_FIRST[3:] + b"," + RFC_SERVER_FIRST + b"," + RFC_CLIENT_FINAL.rsplit(b",p=")[0]
    assert scram_proof_matches(stored, auth_message, proof)
    assert exchange.server_final(scram_server_signature(server, auth_message)) == RFC_SERVER_FINAL
    # the independent client computation agrees with the RFC too
    proof2, signature = client_proof(RFC_PASSWORD, RFC_SALT, 4096, auth_message)
    assert proof2 == proof and b"v=" + base64.b64encode(signature) == RFC_SERVER_FINAL
    # another password's keys do not match the proof
    other_stored, _ = scram_keys("pencil2", RFC_SALT, 4096)
    assert not scram_proof_matches(other_stored, auth_message, proof)
    assert not scram_proof_matches(stored, auth_message + b"x", proof)


def test_verifier_roundtrip_and_parameters() -> None:
    token, secret = new_token("a", Role.READ, timedelta(hours=1), None)
    assert token.scram is not None and token.scram.startswith(f"SCRAM-SHA-256${SCRAM_ITERATIONS}:")
    assert token.scram_keys() == scram_keys(secret)
    assert "scram" not in repr(token) and "scram" not in token.public()
    assert parse_scram_verifier(scram_verifier("x").replace(str(SCRAM_ITERATIONS), "8192", 1)) is None
    stored, server = scram_keys("x")
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    assert parse_scram_verifier(f"SCRAM-SHA-256$4096:{b64(b'other-salt-16byt')}${b64(stored)}:{b64(server)}") is None
    assert parse_scram_verifier("garbage") is None
    assert len(SCRAM_SALT) == 16
    legacy = Token("tok_old", "old", Role.READ, "h", datetime.now(UTC), None)
    assert legacy.scram is None and legacy.scram_keys() is None


def test_saslprep_matches_libpq() -> None:
    assert saslprep("sqlgate_abc-_XYZ") == b"sqlgate_abc-_XYZ"
    assert saslprep("a\x07b") == b"a\x07b"  # ASCII passes unchanged, as pg_saslprep does
    assert saslprep("I\u00adX\u00aa") == b"IXa"  # soft hyphen dropped, NFKC
    assert saslprep("a\u2000b\u00e9") == "a b\u00e9".encode()  # non-ASCII space becomes a space
    assert saslprep("\u00e9\u0007") == "\u00e9\u0007".encode()  # prohibited: raw bytes, as libpq falls back


@pytest.mark.parametrize("first, why", [
    (b"p=tls-server-end-point,,n=,r=abc", "channel binding"),
    (b"n,a=admin,n=,r=abc", "authorization identity"),
    (b"n,,m=ext,n=,r=abc", "extension"),
    (b"n,,r=abc,n=", "n= and r="),
    (b"x,,n=,r=abc", "flag"),
    (b"n,", "gs2"),
    (b"n,,n=,r=\x7fbad", "nonce"),
    (b"\xff\xfe", "UTF-8"),
])
def test_bad_client_first(first: bytes, why: str) -> None:
    with pytest.raises(ScramError, match=why):
        ScramExchange().client_first(first)


def test_bad_client_final() -> None:
    ex = ScramExchange(server_nonce="SRV")
    ex.client_first(b"n,,n=,r=CLI")
    proof = base64.b64encode(bytes(32)).decode()
    for final, why in [
        (f"c=eSws,r=CLISRV,p={proof}", "channel binding"),  # y,, claimed after n,,
        (f"c=biws,r=CLIXXX,p={proof}", "nonce"),
        ("c=biws,r=CLISRV,p=!!", "base64"),
        (f"c=biws,r=CLISRV,p={base64.b64encode(bytes(8)).decode()}", "ClientProof"),
        ("c=biws,r=CLISRV", "expected"),
    ]:
        with pytest.raises(ScramError, match=why):
            ex.client_final(final.encode())
    ex = ScramExchange(server_nonce="SRV")
    ex.client_first(b"y,,n=,r=CLI")
    assert ex.client_final(f"c=eSws,r=CLISRV,p={proof}".encode())[1] == bytes(32)


def _exchange_for(secret: str) -> tuple[bytes, bytes, bytes]:
    ex = ScramExchange()
    server_first = ex.client_first(b"n,,n=,r=" + secrets.token_urlsafe(12).encode())
    attrs = dict(a.split("=", 1) for a in server_first.decode().split(","))
    final_wo_proof = f"c=biws,r={attrs['r']}"
    auth_message = ex.client_first_bare.encode() + b"," + server_first + b"," + final_wo_proof.encode()
    proof, signature = client_proof(secret, base64.b64decode(attrs["s"]), int(attrs["i"]), auth_message)
    got = ex.client_final(f"{final_wo_proof},p={base64.b64encode(proof).decode()}".encode())
    assert got == (auth_message, proof)
    return auth_message, proof, signature


class CountingMeta(DuckDBMeta):
    """The real DuckDB store, counting how often the token list is loaded."""

    loads = 0

    async def scram_tokens(self) -> list[Token]:
        self.loads += 1
        return await super().scram_tokens()


def test_authenticator_finds_the_token_by_its_proof(tmp_path: Any) -> None:
    async def main() -> None:
        backend = DuckDBBackend(tmp_path / "tokens.duckdb")
        await backend.start()
        meta = CountingMeta(backend)
        made = [new_token(f"t{i}", Role.READ, timedelta(hours=1), None) for i in range(20)]
        expired, expired_secret = new_token("old", Role.READ, timedelta(seconds=-1), None)
        for token in [t for t, _ in made] + [expired]:
            await meta.insert_token(token)
        auth = Authenticator(meta)
        for token, secret in (made[0], made[13], made[19]):
            auth_message, proof, signature = _exchange_for(secret)
            identity, server_signature = await auth.authenticate_scram(auth_message, proof, "actor")
            assert identity.token.id == token.id and identity.actor == "actor"
            assert server_signature == signature
        assert meta.loads == 1  # cached
        with pytest.raises(errors.SqlgateError):
            await auth.authenticate_scram(*_exchange_for(expired_secret)[:2])
        with pytest.raises(errors.SqlgateError):
            await auth.authenticate_scram(*_exchange_for("sqlgate_wrong")[:2])
        # a token created here works at once; a revoked one stops at once
        token, secret = await auth.create_token(None, "new", Role.WRITE)
        assert (await auth.authenticate_scram(*_exchange_for(secret)[:2]))[0].token.id == token.id
        await auth.revoke(token.id)
        with pytest.raises(errors.SqlgateError):
            await auth.authenticate_scram(*_exchange_for(secret)[:2])
        await backend.close()

    asyncio.run(main())


def test_schema_upgrade_adds_the_column_duckdb(tmp_path: Any) -> None:
    db = duckdb.connect(str(tmp_path / "old.duckdb"))
    db.execute("CREATE SCHEMA sqlgate; CREATE TABLE sqlgate.tokens (id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL,"
               " role VARCHAR NOT NULL, secret_hash VARCHAR NOT NULL UNIQUE, created_at TIMESTAMPTZ NOT NULL,"
               " expires_at TIMESTAMPTZ, revoked_at TIMESTAMPTZ, created_by VARCHAR)")
    db.execute("INSERT INTO sqlgate.tokens VALUES ('tok_1', 'n', 'read', 'h', now(), NULL, NULL, NULL)")
    create_schema(db)
    create_schema(db)  # idempotent
    assert db.execute("SELECT id, scram FROM sqlgate.tokens").fetchall() == [("tok_1", None)]


# --- through the real server ---------------------------------------------------

def test_raw_message_sequence(wire: Wire) -> None:
    for gs2 in ("n,,", "y,,"):
        c, signature = scram_login(wire, wire.server.admin_token, gs2)
        code, final = auth(c.message())
        assert code == 12 and final == b"v=" + base64.b64encode(signature)  # AuthenticationSASLFinal
        assert auth(c.message()) == (0, b"")  # AuthenticationOk
        kinds: list[bytes] = []
        while not kinds or kinds[-1] != b"Z":
            kinds.append(c.message()[0])
        assert set(kinds[:-1]) == {b"S", b"K"}
        c.sock.sendall(msg(b"Q", b"SELECT 41 + 1\0"))
        replies = [c.message() for _ in range(4)]
        assert [k for k, _ in replies] == [b"T", b"D", b"C", b"Z"] and b"42" in replies[1][1]
        c.sock.close()


def test_raw_bad_proof_is_28p01_then_close(wire: Wire) -> None:
    c, _ = scram_login(wire, wire.server.admin_token, tamper=True)
    kind, body = c.message()
    assert kind == b"E"
    fields = error_fields(body)
    assert fields["C"] == "28P01" and fields["S"] == "FATAL"
    assert fields["M"] == 'password authentication failed for user "agent"'
    assert "token" in fields["H"]
    assert c.closed()
    c.sock.close()
    # channel binding that was not offered: a protocol error, and a close
    c = Conn(wire)
    c.sock.sendall(startup())
    auth(c.message())
    first = b"p=tls-server-end-point,,n=,r=abc"
    c.sock.sendall(msg(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first))
    kind, body = c.message()
    assert kind == b"E" and error_fields(body)["C"] == "08P01"
    assert c.closed()
    c.sock.close()
    # the server is fine
    with psycopg.connect(wire.dsn()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_psql_and_psycopg_log_in_with_scram(wire: Wire) -> None:
    token = wire.server.token("read", "scram-reader")["token"]  # usable at once
    r = subprocess.run([PSQL, "-X", "-A", "-t", "-c", "SELECT 'psql in'"], env=wire.psql_env(token), text=True,
                       capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "psql in", r.stderr
    # libpq's require_auth (psycopg's libpq is 16+) refuses anything but what it names
    assert psycopg.pq.version() >= 160000
    with psycopg.connect(wire.dsn(token), require_auth="scram-sha-256") as conn:
        assert conn.execute("SELECT 2").fetchone() == (2,)
    with pytest.raises(psycopg.OperationalError, match="server requested SASL authentication"):
        psycopg.connect(wire.dsn(token), require_auth="password")
    with pytest.raises(psycopg.OperationalError, match="channel binding"):
        psycopg.connect(wire.dsn(token), channel_binding="require")


def test_wrong_and_revoked_tokens_fail(wire: Wire) -> None:
    with pytest.raises(psycopg.OperationalError, match='password authentication failed for user "agent"'):
        psycopg.connect(wire.dsn("sqlgate_wrong"))
    r = subprocess.run([PSQL, "-X", "-c", "SELECT 1"], env=wire.psql_env("sqlgate_wrong"), text=True,
                       capture_output=True, timeout=60)
    assert r.returncode != 0 and "password authentication failed" in r.stderr
    made = wire.server.token("write", "to-revoke")
    with psycopg.connect(wire.dsn(made["token"])) as conn:
        assert conn.execute("SELECT 3").fetchone() == (3,)
    with wire.server.client() as c:
        c.delete(f"/tokens/{made['id']}").raise_for_status()
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(wire.dsn(made["token"]))
    assert info.value.sqlstate == "28P01" or "password authentication failed" in str(info.value)
    with psycopg.connect(wire.dsn()) as conn:  # and the server goes on
        assert conn.execute("SELECT 4").fetchone() == (4,)


def test_asyncpg_logs_in_with_scram(wire: Wire) -> None:
    async def main() -> None:
        conn = await asyncpg.connect(wire.dsn())
        try:
            assert await conn.fetchval("SELECT 5") == 5
        finally:
            await conn.close()
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(wire.dsn("sqlgate_wrong"))

    asyncio.run(main())


def test_token_from_before_scram_gains_a_verifier_over_http(wire_pg: Wire, pg_server: PgServer) -> None:
    made = wire_pg.server.token("read", "legacy")
    with psycopg.connect(pg_server.dsn("sqlgate_wire_pg"), autocommit=True) as db:
        db.execute("UPDATE sqlgate.tokens SET scram = NULL WHERE id = %s", (made["id"],))
    wire_pg.server.token("read", "cache-buster")  # a token created here drops the cached list
    with pytest.raises(psycopg.OperationalError, match="create a new token"):
        psycopg.connect(wire_pg.dsn(made["token"]))
    assert wire_pg.server.sql("SELECT 1", token=made["token"]).status_code == 200  # the secret seen: verifier stored
    with psycopg.connect(pg_server.dsn("sqlgate_wire_pg"), autocommit=True) as db:
        (scram,) = db.execute("SELECT scram FROM sqlgate.tokens WHERE id = %s", (made["id"],)).fetchone()  # type: ignore[misc]
    assert scram == scram_verifier(made["token"])
    with psycopg.connect(wire_pg.dsn(made["token"])) as conn:  # the verifier dropped the cached list
        assert conn.execute("SELECT 6").fetchone() == (6,)


def test_schema_upgrade_adds_the_column_postgres(pg_server: PgServer) -> None:
    from proxy.backends.postgres_setup import SCHEMA_SQL

    name = "sqlgate_scram_upgrade_" + secrets.token_hex(3)
    dsn = pg_server.create_database(name)
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("CREATE SCHEMA sqlgate; CREATE TABLE sqlgate.tokens (id text PRIMARY KEY, name text NOT NULL,"
                   " role text NOT NULL, secret_hash text NOT NULL UNIQUE, created_at timestamptz NOT NULL,"
                   " expires_at timestamptz, revoked_at timestamptz, created_by text)")
        db.execute("INSERT INTO sqlgate.tokens VALUES ('tok_1', 'n', 'read', 'h', now(), NULL, NULL, NULL)")
        db.execute(SCHEMA_SQL)
        db.execute(SCHEMA_SQL)
        assert db.execute("SELECT id, scram FROM sqlgate.tokens").fetchall() == [("tok_1", None)]
