"""eventlet flavour of the hub adapter (mirror of gevent_hub.py)."""

from __future__ import annotations

import time

import eventlet
import eventlet.greenpool
import eventlet.semaphore
import zmq
from eventlet.hubs import trampoline

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


def make_pool(size: int) -> eventlet.greenpool.GreenPool:
    return eventlet.greenpool.GreenPool(size)


def spawn(pool: eventlet.greenpool.GreenPool, function, *args) -> None:
    pool.spawn_n(function, *args)  # blocks while the pool is full: back-pressure


def spawn_background(function, *args) -> None:
    eventlet.spawn_n(function, *args)


def in_flight(pool: eventlet.greenpool.GreenPool) -> int:
    return pool.running()


def join(pool: eventlet.greenpool.GreenPool, timeout: float) -> bool:
    """Wait for every greenlet in the pool; False if some were still running at timeout."""
    with eventlet.Timeout(timeout, False):
        pool.waitall()
    return pool.running() == 0


def sleep(seconds: float) -> None:
    eventlet.sleep(seconds)


def receive(sock, timeout: float) -> bytes | None:
    """One message from a plain pyzmq socket, or None after `timeout` seconds.

    Non-blocking receives, and the socket's FD (which signals "look at EVENTS") parks
    only this greenlet: cheaper per message than a green socket, which polls EVENTS
    through Python enums on every call."""
    deadline = 0.0
    while True:
        try:
            return sock.recv(_NOBLOCK)
        except zmq.Again:
            pass
        if sock.getsockopt(_EVENTS) & _POLLIN:
            continue  # a message arrived meanwhile: the FD's edge is already spent
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
