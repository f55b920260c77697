"""The bare relay PERFORMANCE.md's wire targets are measured against: an
asyncio.Protocol byte pipe on uvloop, one PostgreSQL connection per client,
no parsing, no pooling, no tracing. The floor for any Python wire proxy.

    python -m benchmarks baseline_relay LISTEN_PORT TARGET_PORT
"""

from __future__ import annotations

import asyncio
from typing import Any


class _Pipe(asyncio.Protocol):
    """One direction's reader: what arrives is written to the peer."""

    def __init__(self) -> None:
        self.peer: Any = None
        self.transport: Any = None
        self.pending: list[bytes] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.peer is None:
            self.pending.append(data)  # the other side is still connecting
        else:
            self.peer.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None:
            self.peer.close()


class _Client(_Pipe):
    def __init__(self, target_port: int) -> None:
        super().__init__()
        self.target_port = target_port

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            server_transport, server = await loop.create_connection(_Pipe, "127.0.0.1", self.target_port)
        except OSError:
            self.transport.close()
            return
        server.peer = self.transport
        self.peer = server_transport
        for data in self.pending:
            server_transport.write(data)
        self.pending.clear()


async def serve(listen_port: int, target_port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Client(target_port), "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


def main() -> None:
    import argparse

    import uvloop

    parser = argparse.ArgumentParser(prog="python -m benchmarks baseline_relay",
                                     description="a bare byte relay to PostgreSQL, for wire_overhead's baseline")
    parser.add_argument("listen_port", type=int)
    parser.add_argument("target_port", type=int, help="PostgreSQL's port on 127.0.0.1")
    args = parser.parse_args()
    uvloop.run(serve(args.listen_port, args.target_port))


if __name__ == "__main__":
    main()
