"""The relay's raw connections to PostgreSQL: one small pool per agent login,
beside the backend's psycopg pools, bounded by the same --pool-size.

The relay is an optimisation, never a requirement: when a login's target
needs TLS (the relay speaks plain TCP, so it only serves loopback or a Unix
socket unless sslmode=disable says so), or PostgreSQL refuses the relay, the
statement takes the ordinary path and the relay rests for a while.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from proxy.wire.relay_auth import RelayRefused, Target, connect
from proxy.wire.relay_conn import RelayConnection

log = logging.getLogger("sqlgate.wire")

RETRY_AFTER_S = 30.0  # after a refused connection, the ordinary path serves until then
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def target_for(params: dict[str, str], login: str) -> Target | None:
    """A relay target from libpq connection parameters; None when the relay
    cannot serve it as securely as libpq would."""
    host = (params.get("hostaddr") or params.get("host") or "/var/run/postgresql").split(",")[0]
    port = params.get("port", "5432").split(",")[0] or "5432"
    sslmode = params.get("sslmode", "prefer")
    if host.startswith("/"):
        address: tuple[str, ...] = ("unix", f"{host}/.s.PGSQL.{port}")
    elif sslmode == "disable" or (host in _LOOPBACK and sslmode in ("prefer", "allow")):
        address = ("tcp", host, port)
    else:
        return None
    return Target(address, params.get("user", ""), params.get("password", ""),
                  params.get("dbname") or params.get("user", ""), f"sqlgate-relay-{login}")


class RelayPool:
    def __init__(self, target: Target, size: int) -> None:
        self.target = target
        self.size = size
        self.idle: list[RelayConnection] = []
        self.open = 0
        self.waiters: deque[asyncio.Future[RelayConnection | None]] = deque()
        self.resting_until = 0.0

    async def acquire(self) -> RelayConnection | None:
        """A connection, or None when the relay should not be used now."""
        while True:
            idle = self.take_idle()
            if idle is not None:
                return idle
            if time.monotonic() < self.resting_until:
                return None
            if self.open < self.size:
                self.open += 1
                try:
                    return await connect(self.target)
                except RelayRefused as exc:
                    self.open -= 1
                    self.resting_until = time.monotonic() + RETRY_AFTER_S
                    log.warning("wire relay: %s refused the relay (%s); statements take the ordinary path",
                                self.target.user, exc)
                    return None
                except BaseException:
                    self.open -= 1
                    raise
            waiter: asyncio.Future[RelayConnection | None] = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            conn = await waiter
            if conn is not None:
                return conn  # handed over by release(); else a slot freed up: try again

    def take_idle(self) -> RelayConnection | None:
        """An idle connection at once, or None (never waits, never connects)."""
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                return conn
            self.open -= 1
        return None

    def release(self, conn: RelayConnection) -> None:
        """Give a connection back; a broken or busy one is closed instead."""
        if conn.closed or conn.exchange is not None:
            conn.close()
            self.open -= 1
            conn = None  # type: ignore[assignment]
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if conn is not None:
            self.idle.append(conn)

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()
        self.open = 0


class RelayPools:
    """One RelayPool per backend login, made from the backend's connection parameters."""

    def __init__(self, logins: dict[Any, dict[str, str]], size: int) -> None:
        self.pools: dict[Any, RelayPool] = {}
        for login, params in logins.items():
            target = target_for(params, getattr(login, "value", str(login)))
            if target is not None:
                self.pools[login] = RelayPool(target, size)

    def get(self, login: Any) -> RelayPool | None:
        return self.pools.get(login)

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()
