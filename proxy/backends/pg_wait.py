"""Waiting on a PostgreSQL connection's socket on the statement path, with its reader left registered.

psycopg's `wait_async` adds the socket to the event loop and removes it again at every wait: epoll_ctl
calls, a poll handle, a timer. That is about 30 µs of CPU per statement, a third of what a plain
`simple_query` costs in Python (`python -m benchmarks wire_overhead` shows it in TPC-B's proxy CPU). A
`WatchedConnection` keeps its socket's reader registered between statements instead: adding it again
while it is registered makes no system call, so a psycopg wait in between, which replaces it and then
removes it, costs only the next add.

The reader is removed before the socket closes (a closed descriptor left in the loop could be handed
to the next socket), and whenever it fires with nobody waiting: the server spoke unprompted (a NOTICE,
a termination), and level-triggered readiness would otherwise fire at every turn of the loop.

uvloop closes a poll handle whose socket reports an error (a reset connection) without calling its
reader, and leaves it in its table: a waiter is therefore also woken by a timer, as psycopg's are (the
generator just asks again when nothing came), and a closed handle found when adding the reader is
taken out (`remove_reader` does that safely) before the reader is added again.
"""

from __future__ import annotations

import asyncio
import select
from typing import Any

import psycopg
from psycopg import waiting
from psycopg.pq import TransactionStatus
from psycopg.waiting import Ready, Wait

_R, _W = Wait.R, Wait.W
_READY_R = Ready.R
_ACTIVE = TransactionStatus.ACTIVE
# How often a waiter looks again on its own: only a socket uvloop gave up on needs it.
_RECHECK_SECONDS = 1.0


class _Watch:
    """The reader of one connection's socket on one loop, and the future of whoever waits on it."""

    __slots__ = ("loop", "fd", "waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self.loop, self.fd = loop, fd
        self.waiter: asyncio.Future[None] | None = None

    def readable(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is None:
            self.loop.remove_reader(self.fd)
        elif not waiter.done():
            waiter.set_result(None)

    async def until_readable(self) -> None:
        loop, fd = self.loop, self.fd
        try:
            loop.add_reader(fd, self.readable)
        except RuntimeError:  # uvloop's handle for fd was closed on a socket error: start afresh
            loop.remove_reader(fd)
            loop.add_reader(fd, self.readable)
        self.waiter = waiter = loop.create_future()
        timer = loop.call_later(_RECHECK_SECONDS, self.readable)
        try:
            await waiter
        finally:
            timer.cancel()

    def stop(self) -> None:
        self.waiter = None
        if not self.loop.is_closed():
            self.loop.remove_reader(self.fd)


class WatchedConnection(psycopg.AsyncConnection[Any]):
    """A psycopg connection whose statement-path waits (`wait`) keep the socket's reader registered."""

    _watch: _Watch | None = None

    def forget_watch(self) -> None:
        """Take the socket's reader out of the loop: before anything closes the socket."""
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.stop()

    async def close(self) -> None:
        self.forget_watch()
        await super().close()


async def wait(conn: psycopg.AsyncConnection[Any], gen: Any) -> Any:
    """`conn.wait(gen)` for a psycopg generator (conn.lock held), without psycopg's per-wait
    registration when `conn` is a WatchedConnection."""
    if not isinstance(conn, WatchedConnection):
        return await conn.wait(gen)
    try:
        s = next(gen)
    except StopIteration as done:
        return done.value
    loop = asyncio.get_running_loop()
    fd = conn.pgconn.socket
    watch = conn._watch  # noqa: SLF001 - the connection's own state, kept here
    if watch is None or watch.loop is not loop or watch.fd != fd:
        conn.forget_watch()
        watch = conn._watch = _Watch(loop, fd)  # noqa: SLF001
    try:
        while True:
            if s & _W:  # a statement longer than the socket's buffer: rare, waited for once
                ready = await _writable(loop, fd, s)
            else:
                await watch.until_readable()
                ready = _READY_R
            s = gen.send(ready)
    except StopIteration as done:
        return done.value
    except OSError as exc:
        conn.forget_watch()
        raise psycopg.OperationalError("connection socket closed") from exc
    except BaseException:  # cancelled while the statement runs
        conn.forget_watch()
        await _settle_interrupted(conn, gen, fd)
        raise


async def _writable(loop: asyncio.AbstractEventLoop, fd: int, s: int) -> int:
    """Wait until the socket takes more (or, for Wait.RW, has something to read): the Ready flags."""
    r, w, _ = select.select([fd] if s & _R else [], [fd], [], 0)
    if r or w:
        return (Ready.R if r else Ready.NONE) | (Ready.W if w else Ready.NONE)
    done: asyncio.Future[int] = loop.create_future()

    def ready(state: int) -> None:
        if not done.done():
            done.set_result(state)

    loop.add_writer(fd, ready, Ready.W)
    if s & _R:
        loop.add_reader(fd, ready, Ready.R)
    try:
        return await done
    finally:
        loop.remove_writer(fd)
        if s & _R:
            loop.remove_reader(fd)


async def _settle_interrupted(conn: psycopg.AsyncConnection[Any], gen: Any, fd: int) -> None:
    """What psycopg's own wait does when interrupted: cancel the statement on the server and read its
    end, so the connection is not left busy; if that fails too, close it (the pool discards it)."""
    if conn.pgconn.transaction_status != _ACTIVE:
        return
    try:
        await conn.cancel_safe(timeout=5.0)
        await waiting.wait_async(gen, fd, interval=0.1, timeout=5.0)
    except (StopIteration, psycopg.errors.QueryCanceled):
        pass
    except BaseException:  # noqa: BLE001 - the connection's state is unknown: it must not be reused
        conn.pgconn.finish()
