"""Memory of idle wire connections: sqlgate's resident size with N clients
connected and idle, on each backend (PERFORMANCE.md: 1,000 idle connections
≤ 200 MB resident).

    python -m benchmarks idle_connections [--connections 1000] [--backends duckdb,postgres]

For each backend: start `sqlgate serve`, run one statement (so the pools and
caches a first statement builds are counted in the baseline), read VmRSS from
/proc, open N psycopg connections over the wire (SCRAM, as a driver logs in),
run one read on each (a connection that has served is the realistic idle one),
leave them idle, read VmRSS again. Prints the resident size with them, the
growth per connection, and whether a new client is still served while they are
all open. Exit code 0 whatever the outcome: a benchmark reports.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import psycopg

from tests.support.pgserver import PgServer
from tests.support.sqlgate_server import SqlgateServer

TARGET_MB = 200.0


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def open_idle(dsn: str, count: int, concurrency: int = 20) -> list[psycopg.AsyncConnection]:
    """`count` connections that have each run one read, then stay idle."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> psycopg.AsyncConnection:
        async with gate:
            conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
            await (await conn.execute("SELECT 1")).fetchall()
            return conn

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def measure(server: SqlgateServer, count: int) -> tuple[float, float, float, bool]:
    dsn = f"postgresql://bench:{server.admin_token}@127.0.0.1:{server.pg_port}/main?sslmode=disable"
    pid = server.process.pid  # type: ignore[union-attr]
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as warm:
        await warm.execute("SELECT 1")
    before = resident_mb(pid)
    started = time.perf_counter()
    conns = await open_idle(dsn, count)
    opened_s = time.perf_counter() - started
    await asyncio.sleep(1.0)  # let buffers settle; the connections are idle now
    after = resident_mb(pid)
    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, connect_timeout=10) as late:
            served = (await (await late.execute("SELECT 41 + 1")).fetchone()) == (42,)
    except psycopg.Error:
        served = False
    for conn in conns:
        await conn.close()
    return before, after, opened_s, served


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks idle_connections")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--backends", default="duckdb,postgres")
    args = parser.parse_args()
    pg = PgServer().start() if "postgres" in args.backends else None
    try:
        print(f"{args.connections} idle wire connections (target: ≤ {TARGET_MB:.0f} MB resident)")
        for backend in args.backends.split(","):
            dsn = pg.create_database("idle_bench") if backend == "postgres" and pg else None
            with SqlgateServer(backend, dsn).start() as server:
                before, after, opened_s, served = asyncio.run(measure(server, args.connections))
            per_kb = (after - before) * 1024 / args.connections
            verdict = "met" if after <= TARGET_MB else "MISSED"
            print(f"  {backend:9} resident {before:6.1f} MB -> {after:6.1f} MB with them "
                  f"({per_kb:5.1f} KB each; opened in {opened_s:4.1f} s); target {verdict}; "
                  f"a new client {'is' if served else 'is NOT'} served meanwhile", flush=True)
        return 0
    finally:
        if pg is not None:
            pg.stop()
