"""The bare SQL-over-HTTP pass-through sqlgate's POST /sql is measured against.

The fair minimum any such server does: read a JSON body {"query", "params"},
run the statement through a psycopg AsyncConnectionPool (autocommit), read the
values as PostgreSQL's text straight from libpq's PGresult (AsyncRawCursor,
the way proxy/backends/postgres.py does) and answer {"fields", "rows"} as JSON.
No auth, no classification, no traces.

Run it with uvicorn (the DSN in BASELINE_DSN, pool size in BASELINE_POOL_SIZE):
    BASELINE_DSN=postgresql://... uvicorn benchmarks.baseline_http:app \
        --loop uvloop --http httptools --workers 1 --no-access-log
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_pool: AsyncConnectionPool | None = None


def _param(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


async def sql(request: Request) -> Response:
    payload = json.loads(await request.body())
    params = [_param(p) for p in payload.get("params") or []]
    assert _pool is not None
    async with _pool.connection() as conn:
        cur = psycopg.AsyncRawCursor(conn)
        try:
            await cur.execute(payload["query"], params or None)  # type: ignore[arg-type]
        except psycopg.Error as exc:
            return Response(json.dumps({"message": str(exc)}), status_code=400, media_type="application/json")
        res = cur.pgresult
        fields: list[str] = []
        rows: list[list[str | None]] = []
        if res is not None:
            nf = res.nfields
            fields = [(res.fname(i) or b"").decode() for i in range(nf)]
            get = res.get_value
            for r in range(res.ntuples):
                row = []
                for c in range(nf):
                    v = get(r, c)
                    row.append(None if v is None else bytes(v).decode())
                rows.append(row)
    return Response(json.dumps({"fields": fields, "rows": rows}), media_type="application/json")


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    global _pool
    size = int(os.environ.get("BASELINE_POOL_SIZE", "10"))
    _pool = AsyncConnectionPool(os.environ["BASELINE_DSN"], min_size=1, max_size=size, open=False,
                                kwargs={"autocommit": True}, name="baseline")
    await _pool.open(wait=True, timeout=30)
    try:
        yield
    finally:
        await _pool.close()


async def health(request: Request) -> Response:
    return Response("ok")


app = Starlette(routes=[Route("/sql", sql, methods=["POST"]), Route("/health", health)], lifespan=lifespan)
