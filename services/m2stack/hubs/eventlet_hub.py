"""eventlet flavour of the hub adapter (mirror of gevent_hub.py)."""

from __future__ import annotations

import socket
import time

import eventlet
import eventlet.greenpool
import eventlet.hubs
import eventlet.patcher
import eventlet.semaphore
import eventlet.tpool
import zmq
from eventlet.hubs import trampoline
from greenlet import getcurrent

from m2stack.hubs import handoff

NAME = "eventlet"
_NOBLOCK, _EVENTS = zmq.NOBLOCK, zmq.EVENTS
_POLLIN, _POLLOUT = int(zmq.POLLIN), int(zmq.POLLOUT)  # plain ints: no enum per call
IDLE_SEND_WAIT = 0.25  # seconds: re-check a full socket's EVENTS at least this often


class _Idle(Exception):
    """A wait on a socket's FD timed out (raised and caught in this module only)."""


Timeout = eventlet.Timeout  # `with Timeout(s):` raises itself in the greenlet after s seconds


def versions() -> dict[str, str]:
    import greenlet
    return {"eventlet": eventlet.__version__, "greenlet": greenlet.__version__,
            "pyzmq": zmq.pyzmq_version(), "libzmq": zmq.zmq_version()}


class Pool:
    """At most `size` greenlets at once, each a bare one (no result kept, no links): the
    cheapest spawn the hub has. `spawn` waits while all are busy: back-pressure."""

    def __init__(self, size: int):
        self.size = size
        self._slots = eventlet.semaphore.BoundedSemaphore(size)

    def spawn(self, function, *args) -> None:
        self._slots.acquire()
        eventlet.spawn_n(self._run, function, args)

    def _run(self, function, args) -> None:
        try:
            function(*args)
        finally:
            self._slots.release()

    def serve_here(self, on_block, function, *args) -> bool:
        """`function(*args)` in the calling greenlet, holding a place like a spawn
        (hubs/handoff.py); False if it waited, and `on_block` was called then."""
        self._slots.acquire()
        try:
            return handoff.serve_here(on_block, function, args)
        finally:
            self._slots.release()

    def running(self) -> int:
        return self.size - self._slots.counter


def install_handoff() -> None:
    handoff.install()


def handoff_installed() -> bool:
    return True


def make_pool(size: int) -> Pool:
    handoff.install()
    return Pool(size)


def spawn(pool: Pool, function, *args) -> None:
    pool.spawn(function, *args)


def serve_here(pool: Pool, on_block, function, *args) -> bool:
    return pool.serve_here(on_block, function, *args)


def spawn_background(function, *args) -> None:
    eventlet.spawn_n(function, *args)


def in_flight(pool: Pool) -> int:
    return pool.running()


def join(pool: Pool, timeout: float) -> bool:
    """Wait until the pool is empty; False if greenlets still ran at `timeout`."""
    deadline = time.monotonic() + timeout
    while pool.running() and time.monotonic() < deadline:
        eventlet.sleep(0.01)
    return not pool.running()


def current():
    """The running greenlet (a handle for `interrupt`)."""
    return getcurrent()


def interrupt(greenlet, exception: BaseException) -> None:
    """Raise `exception` in `greenlet` where it waits, from the hub (never from a
    greenlet, which would then be left suspended when the target switches away)."""
    eventlet.hubs.get_hub().schedule_call_global(0, _throw, greenlet, exception)


def _throw(greenlet, exception: BaseException) -> None:
    if not greenlet.dead:
        greenlet.throw(exception)


def sleep(seconds: float) -> None:
    eventlet.sleep(seconds)


def receive(sock, timeout: float) -> bytes | None:
    """One message from a plain pyzmq socket, or None after `timeout` seconds.

    Non-blocking receives, and the socket's FD (which signals "look at EVENTS") parks
    only this greenlet: cheaper per message than a green socket, which polls EVENTS
    through Python enums on every call."""
    deadline = 0.0
    while True:
        # EVENTS first: a failed non-blocking recv costs an exception, EVENTS a C call.
        # Reading EVENTS also spends the FD's edge, so it is read again before each wait.
        if sock.getsockopt(_EVENTS) & _POLLIN:
            return sock.recv(_NOBLOCK)
        now = time.monotonic()
        if not deadline:
            deadline = now + timeout
        remaining = deadline - now
        if remaining <= 0:
            return None
        try:
            trampoline(sock.FD, read=True, timeout=remaining, timeout_exc=_Idle)
        except _Idle:
            return None


def send(sock, data: bytes) -> None:
    """Send without blocking the hub; waits (parking this greenlet) only at the HWM."""
    while True:
        try:
            sock.send(data, _NOBLOCK)
            return
        except zmq.Again:
            pass
        if not sock.getsockopt(_EVENTS) & _POLLOUT:
            try:
                trampoline(sock.FD, read=True, timeout=IDLE_SEND_WAIT, timeout_exc=_Idle)
            except _Idle:
                pass


# -- app-level I/O (m2stack.db, m2stack.demo.fanout) --------------------------------

def resolve(host: str, port: int) -> list[str]:
    """The addresses of `host`, by the OS resolver (as libzmq and libpq would), without
    blocking the hub: eventlet's tpool runs getaddrinfo in a real thread. (Its own greendns
    was seen timing out on Docker's embedded DNS under load where the OS resolver did not.)"""
    infos = eventlet.tpool.execute(_os_getaddrinfo, host, port, 0, socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


_os_getaddrinfo = eventlet.patcher.original("socket").getaddrinfo


def make_semaphore(size: int) -> eventlet.semaphore.BoundedSemaphore:
    return eventlet.semaphore.BoundedSemaphore(size)  # acquire(timeout=s) parks only this greenlet


def map_concurrently(function, items: list) -> list:
    """`function` over `items`, one greenlet each, results in order."""
    return list(eventlet.greenpool.GreenPool(max(1, len(items))).imap(function, items))


def wait_for_db(conn) -> None:
    """psycopg2 wait callback: drive libpq's non-blocking poll, park on its socket meanwhile.
    (States are psycopg2.extensions.POLL_OK/READ/WRITE = 0/1/2.)"""
    while True:
        state = conn.poll()
        if state == 0:
            return
        if state == 1:
            trampoline(conn.fileno(), read=True)
        elif state == 2:
            trampoline(conn.fileno(), write=True)
        else:
            raise OSError(f"unexpected psycopg2 poll state {state!r}")
