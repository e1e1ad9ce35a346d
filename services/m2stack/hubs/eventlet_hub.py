"""eventlet flavour of the hub adapter (mirror of gevent_hub.py)."""

from __future__ import annotations

import eventlet
import eventlet.greenpool
from eventlet.green import zmq

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
