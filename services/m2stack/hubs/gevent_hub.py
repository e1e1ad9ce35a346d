"""gevent flavour of the hub adapter (mirror of eventlet_hub.py)."""

from __future__ import annotations

import gevent
import gevent.lock
import gevent.pool
import zmq.green as zmq
from gevent.socket import wait_read, wait_write

NAME = "gevent"
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


def receive(socket, timeout: float) -> bytes | None:
    """One message, or None after `timeout` seconds (zmq.green ignores RCVTIMEO)."""
    with gevent.Timeout(timeout, False):
        return socket.recv()
    return None


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
