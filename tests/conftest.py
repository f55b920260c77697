"""Shared fixtures: one real PostgreSQL server for the whole run, and one
real sqlgate server per backend, started through the `sqlgate serve` CLI."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.pgserver import PgServer
from tests.support.sqlgate_server import SqlgateServer

BACKENDS = ["duckdb", "postgres"]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = PgServer().start()
    try:
        yield server
    finally:
        server.stop()


def start_sqlgate(backend: str, pg_server: PgServer, db_name: str, *extra: str) -> SqlgateServer:
    database = pg_server.create_database(db_name) if backend == "postgres" else None
    return SqlgateServer(backend, database, list(extra)).start()


@pytest.fixture(scope="session", params=BACKENDS)
def sqlgate(request: pytest.FixtureRequest, pg_server: PgServer) -> Iterator[SqlgateServer]:
    """A running sqlgate on each backend; tests use their own table names."""
    server = start_sqlgate(request.param, pg_server, "sqlgate_shared")
    try:
        yield server
    finally:
        server.stop()
