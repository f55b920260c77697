"""Server settings, as the command line and environment give them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TEN_MIB = 10 * 1024 * 1024


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("sqlgate-data")
    database: str | None = None  # postgresql://... ; None = embedded DuckDB
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    pg_host: str = "127.0.0.1"
    pg_port: int = 6543
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure: bool = False
    max_request_bytes: int = TEN_MIB
    max_response_bytes: int = TEN_MIB
    statement_timeout_s: float = 30.0
    idle_timeout_s: float = 60.0  # idle inside a transaction (on the database roles)
    pg_idle_timeout_s: float = 3600.0  # an idle wire client is disconnected after this
    pool_size: int = 10
    wire_relay: bool = True  # plain reads over the wire go to PostgreSQL as bytes (proxy/wire/relay.py)
    checkpoint_retention_days: float = 7.0  # then a checkpoint and what it kept are purged

    @property
    def duckdb_path(self) -> Path:
        return self.data_dir / "main.duckdb"

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None
