"""HTTP load for the benchmarks: POST a JSON SQL request with a varying integer
parameter from N concurrent keep-alive HTTP/1.1 connections for a fixed time.

`run_load` uses `wrk` (Debian package `wrk`, C + LuaJIT) when it is installed,
else a multi-process asyncio generator on raw sockets (slower: it takes more of
the shared CPU, so it narrows the measurable difference between servers).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    requests: int
    seconds: float
    errors: int  # non-2xx responses and socket errors
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    tool: str = ""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk_path() -> str | None:
    return shutil.which("wrk")


def generator_name() -> str:
    return "wrk" if wrk_path() else "python-asyncio"


# ------------------------------------------------------------------- wrk

_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
{auth}
local head = {head}
local tail = {tail}
local max_id = {max_id}
request = function()
  return wrk.format(nil, {path}, nil, head .. math.random(1, max_id) .. tail)
end
"""


def _lua_str(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def _run_wrk(url: str, path: str, query: str, max_id: int, token: str | None, clients: int, duration: float,
             threads: int) -> LoadResult:
    # The body is {"query": ..., "params": [<id>]}: split around the id.
    marker = "123456789987654321"
    body = json.dumps({"query": query, "params": [int(marker)]})
    head, tail = body.split(marker)
    auth = f'wrk.headers["Authorization"] = {_lua_str("Bearer " + token)}' if token else ""
    script = _LUA.format(auth=auth, head=_lua_str(head), tail=_lua_str(tail), max_id=max_id, path=_lua_str(path))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
        script_path = f.name
    try:
        out = subprocess.run(
            [wrk_path() or "wrk", "-t", str(threads), "-c", str(clients), "-d", f"{duration:g}s", "--latency",
             "-s", script_path, url],
            capture_output=True, text=True, timeout=duration + 60, check=True,
        ).stdout
    finally:
        os.unlink(script_path)
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    if not m:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    requests, seconds = int(m.group(1)), _ms(m.group(2), m.group(3)) / 1000
    errors = 0
    if e := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(e.group(1))
    if e := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(x) for x in e.groups())
    p50 = re.search(r"^\s*50%\s+([\d.]+)(us|ms|s)", out, re.M)
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)", out, re.M)
    return LoadResult(requests, seconds, errors, _ms(*p50.groups()) if p50 else None,
                      _ms(*p99.groups()) if p99 else None, "wrk")


# ------------------------------------------------- python asyncio fallback

def _py_worker(host: str, port: int, path: str, query: str, max_id: int, token: str | None, conns: int,
               duration: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    auth = f"Authorization: Bearer {token}\r\n" if token else ""

    async def one(stop_at: float, lat: list[float]) -> tuple[int, int]:
        reader, writer = await asyncio.open_connection(host, port)
        done = errors = 0
        try:
            while time.perf_counter() < stop_at:
                body = json.dumps({"query": query, "params": [random.randint(1, max_id)]}).encode()
                writer.write(
                    f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n{auth}"
                    f"Content-Length: {len(body)}\r\n\r\n".encode() + body
                )
                t0 = time.perf_counter()
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                m = re.search(rb"(?i)content-length:\s*(\d+)", head)
                await reader.readexactly(int(m.group(1)) if m else 0)
                lat.append(time.perf_counter() - t0)
                done += 1
                errors += status >= 400
        finally:
            writer.close()
        return done, errors

    async def run() -> tuple[int, int, list[float]]:
        lat: list[float] = []
        stop_at = time.perf_counter() + duration
        results = await asyncio.gather(*(one(stop_at, lat) for _ in range(conns)))
        return sum(r[0] for r in results), sum(r[1] for r in results), lat

    out.put(asyncio.run(run()))


def _run_python(url: str, path: str, query: str, max_id: int, token: str | None, clients: int, duration: float,
                processes: int) -> LoadResult:
    parts = urlsplit(url)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    per = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    procs = [ctx.Process(target=_py_worker, args=(parts.hostname, parts.port, path, query, max_id, token, n,
                                                  duration, queue)) for n in per if n]
    started = time.perf_counter()
    for p in procs:
        p.start()
    try:
        results = [queue.get(timeout=duration + 60) for _ in procs]
    finally:
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.terminate()
    seconds = time.perf_counter() - started
    lat = sorted(x for r in results for x in r[2])
    pick = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000) if lat else (lambda q: None)
    return LoadResult(sum(r[0] for r in results), min(seconds, duration) if lat else seconds,
                      sum(r[1] for r in results), pick(0.5), pick(0.99), "python-asyncio")


def run_load(url: str, query: str, max_id: int, token: str | None = None, clients: int = 16,
             duration: float = 5.0, threads: int = 2, path: str = "/sql") -> LoadResult:
    """POST {"query": query, "params": [random 1..max_id]} for `duration` seconds."""
    if wrk_path():
        return _run_wrk(url, path, query, max_id, token, clients, duration, threads)
    return _run_python(url, path, query, max_id, token, clients, duration, threads)
