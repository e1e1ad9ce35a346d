"""gevent flavour of the hub adapter (mirror of eventlet_hub.py)."""

from __future__ import annotations

import time

import gevent
import gevent.lock
import gevent.pool
import zmq
from gevent.socket import wait_read, wait_write

NAME = "gevent"
_NOBLOCK, _EVENTS = zmq.NOBLOCK, zmq.EVENTS
_POLLIN, _POLLOUT = int(zmq.POLLIN), int(zmq.POLLOUT)  # plain ints: no enum per call
IDLE_SEND_WAIT = 0.25  # seconds: re-check a full socket's EVENTS at least this often


class _Idle(Exception):
    """A wait on a socket's FD timed out (raised and caught in this module only)."""


Timeout = gevent.Timeout  # `with Timeout(s):` raises itself in the greenlet after s seconds


def versions() -> dict[str, str]:
    import greenlet
    return {"gevent": gevent.__version__, "greenlet": greenlet.__version__,
            "pyzmq": zmq.pyzmq_version(), "libzmq": zmq.zmq_version()}


def make_pool(size: int) -> gevent.pool.Pool:
    return gevent.pool.Pool(size)


def spawn(pool: gevent.pool.Pool, function, *args) -> None:
    pool.spawn(function, *args)  # blocks while the pool is full: back-pressure


def spawn_background(function, *args) -> None:
    gevent.spawn(function, *args)


def in_flight(pool: gevent.pool.Pool) -> int:
    return len(pool)


def join(pool: gevent.pool.Pool, timeout: float) -> bool:
    """Wait for every greenlet in the pool; False if some were still running at timeout."""
    return pool.join(timeout=timeout)


def sleep(seconds: float) -> None:
    gevent.sleep(seconds)


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
            wait_read(sock.FD, timeout=remaining, timeout_exc=_Idle)
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
                wait_read(sock.FD, timeout=IDLE_SEND_WAIT, timeout_exc=_Idle)
            except _Idle:
                pass


# -- app-level I/O (m2stack.db, m2stack.demo.fanout) --------------------------------

def make_semaphore(size: int) -> gevent.lock.BoundedSemaphore:
    return gevent.lock.BoundedSemaphore(size)  # acquire(timeout=s) parks only this greenlet


def map_concurrently(function, items: list) -> list:
    """`function` over `items`, one greenlet each, results in order."""
    return gevent.pool.Group().map(function, items)


def wait_for_db(conn) -> None:
    """psycopg2 wait callback: drive libpq's non-blocking poll, park on its socket meanwhile.
    (States are psycopg2.extensions.POLL_OK/READ/WRITE = 0/1/2.)"""
    while True:
        state = conn.poll()
        if state == 0:
            return
        if state == 1:
            wait_read(conn.fileno())
        elif state == 2:
            wait_write(conn.fileno())
        else:
            raise OSError(f"unexpected psycopg2 poll state {state!r}")
