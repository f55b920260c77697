"""Shared fixtures: one real PostgreSQL server for the whole run, and real
sqlgate servers (started through the `sqlgate serve` CLI) per backend, for
the HTTP front door and for the wire protocol."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.pgserver import PgServer
from tests.support.sqlgate_server import SqlgateServer, start_sqlgate
from tests.support.wire import Wire, start_wire

BACKENDS = ["duckdb", "postgres"]
__all__ = ["start_sqlgate", "start_wire"]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = PgServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session", params=BACKENDS)
def sqlgate(request: pytest.FixtureRequest, pg_server: PgServer) -> Iterator[SqlgateServer]:
    """A running sqlgate on each backend; tests use their own table names."""
    with start_sqlgate(request.param, pg_server, "sqlgate_shared") as server:
        yield server


@pytest.fixture(scope="session", params=BACKENDS)
def wire(request: pytest.FixtureRequest, pg_server: PgServer) -> Iterator[Wire]:
    with start_wire(request.param, pg_server, "sqlgate_wire") as w:
        yield w


@pytest.fixture(scope="session")
def wire_pg(pg_server: PgServer) -> Iterator[Wire]:
    with start_wire("postgres", pg_server, "sqlgate_wire_pg") as w:
        yield w


@pytest.fixture(scope="session")
def duck(pg_server: PgServer) -> Iterator[SqlgateServer]:
    """A sqlgate on its own DuckDB file, for DuckDB-only tests."""
    with start_sqlgate("duckdb", pg_server, "unused") as server:
        yield server


@pytest.fixture(scope="session")
def pg(pg_server: PgServer) -> Iterator[SqlgateServer]:
    """A sqlgate on its own PostgreSQL database, for PostgreSQL-only tests."""
    with start_sqlgate("postgres", pg_server, "sqlgate_pg_only") as server:
        yield server
