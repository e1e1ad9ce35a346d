"""gevent flavour of the hub adapter (mirror of eventlet_hub.py)."""

from __future__ import annotations

import gevent
import gevent.pool
import zmq.green as zmq

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
