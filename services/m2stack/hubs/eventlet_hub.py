"""eventlet flavour of the hub adapter (mirror of gevent_hub.py)."""

from __future__ import annotations

import eventlet
import eventlet.greenpool
import eventlet.semaphore
from eventlet.green import zmq
from eventlet.hubs import trampoline

NAME = "eventlet"
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


def receive(socket, timeout: float) -> bytes | None:
    """One message, or None after `timeout` seconds (zmq.green ignores RCVTIMEO)."""
    with eventlet.Timeout(timeout, False):
        return socket.recv()
    return None


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
