"""The greenlet loop both hubs share; gevent_hub.py and eventlet_hub.py add what differs.

Written once, as Gunicorn writes its async worker once (base_async.py) and each
library's worker holds only what differs. Here: a bounded pool of bare greenlets,
serving where received (handoff.py), ZeroMQ made cooperative on plain pyzmq by waiting
on each socket's FD, the watchdog's interrupt, psycopg2's wait callback. A flavour
supplies spawn, sleep, waits on a file descriptor, a semaphore, a timeout, a callback
run by the hub, name resolution and its version. This module imports neither library.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any, ClassVar, TypeVar

import greenlet
import zmq

from m2stack.hubs import handoff

T = TypeVar("T")
_NOBLOCK, _EVENTS = zmq.NOBLOCK, zmq.EVENTS
_POLLIN, _POLLOUT = int(zmq.POLLIN), int(zmq.POLLOUT)  # plain ints: no enum per call
IDLE_SEND_WAIT = 0.25  # seconds: re-check a full socket's EVENTS at least this often
# psycopg2.extensions.POLL_OK / POLL_READ / POLL_WRITE
_POLL_OK, _POLL_READ, _POLL_WRITE = 0, 1, 2


class WaitTimedOut(Exception):
    """A wait on a file descriptor timed out (raised by a flavour's `wait_readable`)."""


class Pool:
    """At most `size` greenlets at once, each a bare one (no result kept, no links): the
    cheapest spawn the hub has. `spawn` waits while all are busy: back-pressure."""

    def __init__(self, size: int, slots: Any, spawn_raw: Callable[..., Any]):
        self.size = size
        self._slots = slots  # the flavour's bounded semaphore
        self._spawn_raw = spawn_raw

    def spawn(self, function: Callable[..., Any], *args: Any) -> None:
        self._slots.acquire()
        self._spawn_raw(self._run, function, args)

    def _run(self, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            function(*args)
        finally:
            self._slots.release()

    def serve_here(self, take_over: Callable[[], Any], function: Callable[..., Any], *args: Any) -> bool:
        """`function(*args)` in the calling greenlet, holding a place like a spawn
        (handoff.py); False if it waited, and `take_over` was started then."""
        self._slots.acquire()
        try:
            return handoff.serve_here(take_over, function, args)
        finally:
            self._slots.release()

    def running(self) -> int:
        return self.size - int(self._slots.counter)


class GreenletHub:
    """The Hub of hubs/__init__.py, for a greenlet library; a subclass fills in what the
    library does differently. Where the library's own function fits, the subclass binds it
    as is (`staticmethod`), so a call costs what it cost before there was a base."""

    NAME: ClassVar[str]
    VERSION: ClassVar[str]  # of the hub library
    Timeout: type[BaseException]  # `with Timeout(s[, exception]):` raises in the caller after s
    zmq: ModuleType = zmq  # plain pyzmq: `receive` and `send` make it cooperative

    # -- what a flavour supplies ---------------------------------------------------------

    def spawn_background(self, function: Callable[..., Any], *args: Any) -> Any:
        """Start `function(*args)` in a bare greenlet, without switching to it."""
        raise NotImplementedError

    def sleep(self, seconds: float) -> None:
        raise NotImplementedError

    def make_semaphore(self, size: int) -> Any:
        """A bounded semaphore whose `acquire(timeout=s)` parks only the caller."""
        raise NotImplementedError

    def wait_readable(self, fd: int, timeout: float | None = None, timeout_exc: Any = None) -> None:
        """Park the caller until `fd` is readable; raise `timeout_exc` after `timeout`."""
        raise NotImplementedError

    def wait_writable(self, fd: int) -> None:
        raise NotImplementedError

    def call_in_hub(self, function: Callable[..., Any], *args: Any) -> None:
        """`function(*args)` run soon by the hub itself, not by a greenlet."""
        raise NotImplementedError

    def getaddrinfo(self, host: str, port: int, family: int, type: int) -> list[Any]:
        """The OS resolver's answer (as libzmq and libpq would get), off the hub's thread."""
        raise NotImplementedError

    def map_concurrently(self, function: Callable[[Any], T], items: list[Any]) -> list[T]:
        """`function` over `items`, one greenlet each, results in order."""
        raise NotImplementedError

    # -- greenlets -----------------------------------------------------------------------

    def versions(self) -> dict[str, str]:
        return {self.NAME: self.VERSION, "greenlet": str(greenlet.__version__),
                "pyzmq": zmq.pyzmq_version(), "libzmq": zmq.zmq_version()}

    def make_pool(self, size: int) -> Pool:
        return Pool(size, self.make_semaphore(size), self.spawn_background)

    def spawn(self, pool: Pool, function: Callable[..., Any], *args: Any) -> None:
        pool.spawn(function, *args)

    def install_handoff(self) -> None:
        """Hook greenlet switches so that `serve_here` can hand receiving on (once per
        process; every switch pays a Python call from then on)."""
        handoff.install(self.spawn_background)

    def handoff_installed(self) -> bool:
        """Whether the hook is still greenlet's active trace (another settrace drops it)."""
        return handoff.installed()

    def serve_here(self, pool: Pool, take_over: Callable[[], Any], function: Callable[..., Any],
                   *args: Any) -> bool:
        return pool.serve_here(take_over, function, *args)

    def in_flight(self, pool: Pool) -> int:
        return pool.running()

    def join(self, pool: Pool, timeout: float) -> bool:
        """Wait until the pool is empty; False if greenlets still ran at `timeout`."""
        deadline = time.monotonic() + timeout
        while pool.running() and time.monotonic() < deadline:
            self.sleep(0.01)
        return not pool.running()

    current = staticmethod(greenlet.getcurrent)  # the running greenlet, a handle for `interrupt`

    def interrupt(self, target: Any, exception: BaseException) -> None:
        """Raise `exception` in `target` where it waits, from the hub (never from a
        greenlet, which would then be left suspended when the target switches away)."""
        self.call_in_hub(_throw, target, exception)

    # -- ZeroMQ on plain pyzmq -----------------------------------------------------------

    def receive(self, sock: Any, timeout: float) -> bytes | None:
        """One message from a plain pyzmq socket, or None after `timeout` seconds.

        Non-blocking receives, and the socket's FD (which signals "look at EVENTS") parks
        only this greenlet: cheaper per message than a green socket, which polls EVENTS
        through Python enums on every call."""
        deadline = 0.0
        while True:
            # EVENTS first: a failed non-blocking recv costs an exception, EVENTS a C call.
            # Reading EVENTS also spends the FD's edge, so it is read again before each wait.
            if sock.getsockopt(_EVENTS) & _POLLIN:
                return sock.recv(_NOBLOCK)  # type: ignore[no-any-return]
            now = time.monotonic()
            if not deadline:
                deadline = now + timeout
            remaining = deadline - now
            if remaining <= 0:
                return None
            try:
                self.wait_readable(sock.FD, timeout=remaining, timeout_exc=WaitTimedOut)
            except WaitTimedOut:
                return None

    def send(self, sock: Any, data: bytes) -> None:
        """Send without blocking the hub; waits (parking this greenlet) only at the HWM."""
        while True:
            try:
                sock.send(data, _NOBLOCK)
                return
            except zmq.Again:
                pass
            if not sock.getsockopt(_EVENTS) & _POLLOUT:
                try:
                    self.wait_readable(sock.FD, timeout=IDLE_SEND_WAIT, timeout_exc=WaitTimedOut)
                except WaitTimedOut:
                    pass

    # -- app-level I/O (m2stack.db, m2stack.demo.fanout) ---------------------------------

    def resolve(self, host: str, port: int) -> list[str]:
        """The addresses of `host`, by the OS resolver, parking only the caller meanwhile."""
        infos = self.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))

    def wait_for_db(self, conn: Any) -> None:
        """psycopg2's wait callback: drive libpq's non-blocking poll, park on its socket
        meanwhile."""
        while True:
            state = conn.poll()
            if state == _POLL_OK:
                return
            if state == _POLL_READ:
                self.wait_readable(conn.fileno())
            elif state == _POLL_WRITE:
                self.wait_writable(conn.fileno())
            else:
                raise OSError(f"unexpected psycopg2 poll state {state!r}")


def _throw(target: Any, exception: BaseException) -> None:
    if not target.dead:
        target.throw(exception)
