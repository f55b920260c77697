"""For the wire protocol tests: a running sqlgate's --pg address, and
connection strings and psql settings for clients."""

from __future__ import annotations

import os
from dataclasses import dataclass

from tests.support.pgserver import PgServer
from tests.support.sqlgate_server import SqlgateServer, start_sqlgate

PSQL = "psql"


@dataclass
class Wire:
    server: SqlgateServer
    pg_port: int
    backend: str

    def dsn(self, token: str | None = None, actor: str = "agent", branch: str = "main") -> str:
        return f"postgresql://{actor}:{token or self.server.admin_token}@127.0.0.1:{self.pg_port}/{branch}"

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    def psql_env(self, token: str | None = None) -> dict[str, str]:
        return {**os.environ, "PGPASSWORD": token or self.server.admin_token, "PGHOST": "127.0.0.1",
                "PGPORT": str(self.pg_port), "PGUSER": "agent", "PGDATABASE": "main", "PGSSLMODE": "disable",
                "PSQLRC": "/dev/null"}


def start_wire(backend: str, pg_server: PgServer, db_name: str, *extra: str) -> Wire:
    server = start_sqlgate(backend, pg_server, db_name, *extra)
    return Wire(server, server.pg_port, backend)
