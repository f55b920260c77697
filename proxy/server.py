"""Starting sqlgate: the backend, the admin token, the HTTP front door.

Refuses to listen on a non-loopback address without TLS unless told
`--insecure`; creates the admin token on first start and shows it once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import sys

import uvicorn

from branching.checkpoint import Checkpointer
from policy.identity import Role, hash_secret, scram_verifier
from proxy.auth import Authenticator
from proxy.backends.base import Backend
from proxy.builtin_functions import register_builtins
from proxy.config import Settings
from proxy.http.app import build_app
from proxy.http.checkpoint_endpoints import register_checkpoint_functions
from proxy.http.context import AppContext
from proxy.pipeline import Pipeline
from proxy.sql_functions import SqlFunctions
from proxy.trace_sink import TraceSink

log = logging.getLogger("sqlgate")


class StartupError(Exception):
    """Something the operator must fix before sqlgate can start; the message says what."""


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
        except OSError:
            return False


def check_exposure(settings: Settings) -> None:
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise StartupError("--tls-cert and --tls-key go together: give both files, or neither.")
    for flag, host in (("--http", settings.http_host), ("--pg", settings.pg_host)):
        if not is_loopback(host) and not settings.tls and not settings.insecure:
            raise StartupError(
                f"refusing to listen on {host} ({flag}) without TLS: tokens would cross the network in clear.\n"
                "Give --tls-cert FILE --tls-key FILE, or add --insecure if this network is trusted."
            )


def make_backend(settings: Settings) -> Backend:
    if settings.database:
        from proxy.backends.postgres import PostgresBackend

        return PostgresBackend(settings.database, settings.pool_size, f"{int(settings.statement_timeout_s * 1000)}ms",
                               f"{int(settings.idle_timeout_s * 1000)}ms")
    from proxy.backends.duckdb import DuckDBBackend

    return DuckDBBackend(settings.duckdb_path, settings.statement_timeout_s)


async def ensure_admin_token(settings: Settings, auth: Authenticator) -> str | None:
    """The admin secret to show once, or None when it already existed or came from the environment."""
    meta = auth.meta

    async def ensure(secret: str) -> None:
        found = await meta.find_token(hash_secret(secret))
        if found is None:
            await auth.create_token(None, "admin", Role.ADMIN, None, secret=secret)
        elif found.scram is None:  # made before SCRAM: the secret is here, so add its verifier
            await meta.set_token_scram(found.id, scram_verifier(secret))

    from_env = os.environ.get("SQLGATE_ADMIN_TOKEN")
    if from_env:
        await ensure(from_env)
        return None
    path = settings.data_dir / "admin.token"
    if path.exists():
        await ensure(path.read_text().strip())
        return None
    _, secret = await auth.create_token(None, "admin", Role.ADMIN, None)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret


async def build_context(settings: Settings) -> AppContext:
    backend = make_backend(settings)
    await backend.start()
    traces = TraceSink(backend.meta)
    traces.start()
    auth = Authenticator(backend.meta)
    functions = SqlFunctions()
    register_builtins(functions, backend.meta, traces)
    checkpointer = await make_checkpointer(backend, settings.checkpoint_retention_days)
    pipeline = Pipeline(backend, traces, checkpointer=checkpointer, functions=functions)
    register_checkpoint_functions(functions, pipeline, traces)
    watch = getattr(backend, "watch_revocations", None)
    if watch is not None:  # several proxies on one PostgreSQL learn each other's revocations
        background.append(asyncio.create_task(watch(auth.revoked_elsewhere), name="sqlgate-revocations"))
    return AppContext(settings, backend, pipeline, auth, traces)


# Tasks that live as long as the server (kept referenced so they are not collected).
background: list[asyncio.Task[None]] = []


async def make_checkpointer(backend: Backend, retention_days: float) -> Checkpointer:
    """The backend's checkpoint adapter, installed (schema, functions) and purging expired checkpoints hourly."""
    from branching.setup import install
    from policy.classify import classify

    checkpointer = await install(backend, retention_days)
    # Undoing a rollback runs statements again: they are classified as the pipeline classifies them.
    checkpointer.classify = lambda text: classify(text, backend.dialect).parts[0]
    return checkpointer  # type: ignore[no-any-return]


async def serve(settings: Settings) -> None:
    check_exposure(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    ctx = await build_context(settings)
    try:
        secret = await ensure_admin_token(settings, ctx.auth)
        scheme = "https" if settings.tls else "http"
        url = f"{scheme}://{settings.http_host}:{settings.http_port}"
        backend_name = "PostgreSQL" if settings.database else f"DuckDB at {settings.duckdb_path}"
        if secret:
            print(f"sqlgate: admin token (shown once, also in {settings.data_dir / 'admin.token'}): {secret}",
                  flush=True)
        print(f"sqlgate: serving {backend_name} on {url}", flush=True)
        from proxy.wire.server import WireServer

        wire = WireServer(ctx.pipeline, ctx.auth, settings.pg_host, settings.pg_port, settings.tls_cert,
                          settings.tls_key, settings.pg_idle_timeout_s, relay=settings.wire_relay)
        await wire.start()
        ctx.auth.on_revoke.append(wire.revoked)
        print(f"sqlgate: PostgreSQL wire protocol on {settings.pg_host}:{wire.port}", flush=True)
        config = uvicorn.Config(
            build_app(ctx), host=settings.http_host, port=settings.http_port, log_level="warning",
            lifespan="off", access_log=False, loop="asyncio", http="httptools",
            ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
            ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
            timeout_graceful_shutdown=5,
        )
        try:
            await uvicorn.Server(config).serve()
        finally:
            await wire.close()
    finally:
        await ctx.traces.close()
        await ctx.backend.close()


def run(settings: Settings) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency; this keeps odd platforms working
        runner = asyncio.run
    try:
        runner(serve(settings))
    except Exception as exc:  # start-up problems are the operator's to fix: say what, no trace
        if not is_startup_problem(exc):
            raise
        print(f"sqlgate: cannot start: {str(exc).strip()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


def is_startup_problem(exc: Exception) -> bool:
    if isinstance(exc, (StartupError, OSError)):
        return True
    try:
        import psycopg

        from proxy.backends.postgres_setup import SetupError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, (SetupError, psycopg.OperationalError))
