"""Waiting on a PostgreSQL connection's socket on the statement path, with its reader left registered.

psycopg's `wait_async` adds the socket to the event loop and removes it again at every wait: epoll_ctl
calls, a poll handle, a timer. That is about 30 µs of CPU per statement, a third of what a plain
`simple_query` costs in Python (`python -m benchmarks wire_overhead` shows it in TPC-B's proxy CPU). A
`WatchedConnection` keeps its socket's reader registered between statements instead: adding it again
while it is registered makes no system call, so a psycopg wait in between, which replaces it and then
removes it, costs only the next add.

The reader is removed before the socket closes (a descriptor left in the loop would deafen the next
socket given that number): at close(), when the connection is collected, and on errors. It is also
removed when it fires with nobody waiting while the socket has something to read (the server spoke
unprompted: a NOTICE, a termination), as level-triggered readiness would fire at every turn of the loop;
a stale call with nothing to read (asyncio's selector queues one in the turn the waiter wakes) keeps it.

A socket error wakes the waiter on both loops (uvloop runs the callbacks before it closes its handle;
asyncio reports the socket readable), and the generator then raises psycopg's error. uvloop leaves that
closed handle in its table: adding the reader again fails, and `remove_reader` takes it out safely.
"""

from __future__ import annotations

import asyncio
import select
import weakref
from typing import Any

import psycopg
from psycopg import waiting
from psycopg.pq import TransactionStatus
from psycopg.waiting import Ready, Wait

_R, _W = Wait.R, Wait.W
_READY_R = Ready.R
_ACTIVE = TransactionStatus.ACTIVE


class _Watch:
    """The reader of one connection's socket on one loop, and the future of whoever waits on it."""

    __slots__ = ("loop", "fd", "waiter", "stopped")

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self.loop, self.fd = loop, fd
        self.waiter: asyncio.Future[None] | None = None
        self.stopped = False

    def readable(self) -> None:
        if self.stopped:
            return
        waiter, self.waiter = self.waiter, None
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(None)
        elif _readable_now(self.fd):
            self.loop.remove_reader(self.fd)

    async def until_readable(self) -> None:
        loop, fd = self.loop, self.fd
        try:
            loop.add_reader(fd, self.readable)
        except RuntimeError:  # uvloop's handle for fd was closed on a socket error: start afresh
            loop.remove_reader(fd)
            loop.add_reader(fd, self.readable)
        self.waiter = loop.create_future()
        await self.waiter

    def stop(self) -> None:
        """Out of the loop for good; whoever waits wakes up (and finds the connection closed)."""
        if self.stopped:
            return
        self.stopped = True
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        loop = self.loop
        if loop.is_closed():
            return
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            loop.remove_reader(self.fd)
        else:  # collected on another thread (the garbage collector runs where it is triggered)
            loop.call_soon_threadsafe(loop.remove_reader, self.fd)


def _readable_now(fd: int) -> bool:
    """Whether fd has something to read (or an error) this instant; poll(), as select() stops at 1024."""
    return bool(_poll_now(fd, select.POLLIN))


def _poll_now(fd: int, events: int) -> int:
    poller = select.poll()
    poller.register(fd, events)
    found = poller.poll(0)
    return found[0][1] if found else 0


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
        # A connection collected without close(): its socket closes, so the reader must go first.
        weakref.finalize(conn, watch.stop).atexit = False
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
    except (asyncio.CancelledError, KeyboardInterrupt):  # while the statement runs
        conn.forget_watch()
        await _settle_interrupted(conn, gen, fd)
        raise
    except BaseException:
        conn.forget_watch()
        raise


async def _writable(loop: asyncio.AbstractEventLoop, fd: int, s: int) -> int:
    """Wait until the socket takes more (or, for Wait.RW, has something to read): the Ready flags."""
    await asyncio.sleep(0)  # a long write lets the loop run between its rounds, as psycopg's does
    found = _poll_now(fd, select.POLLOUT | (select.POLLIN if s & _R else 0))
    if found:  # anything but writable (readable, an error, a hang-up) is read; anything but readable, written
        return ((Ready.R if found & ~select.POLLOUT else Ready.NONE)
                | (Ready.W if found & ~select.POLLIN else Ready.NONE))
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
    except BaseException as exc:  # the connection's state is unknown: it must not be reused
        conn.pgconn.finish()
        if not isinstance(exc, Exception):  # a second interruption goes on up, as psycopg lets it
            raise
