"""The gevent hub: what gevent does differently from eventlet (greenlet_base.py has the rest)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import gevent
import gevent.lock
import gevent.pool
import gevent.socket

from m2stack.hubs import Hub
from m2stack.hubs.greenlet_base import GreenletHub

T = TypeVar("T")


class GeventHub(GreenletHub):
    NAME = "gevent"
    VERSION = gevent.__version__
    Timeout = gevent.Timeout
    spawn_background = staticmethod(gevent.spawn_raw)
    sleep = staticmethod(gevent.sleep)
    make_semaphore = staticmethod(gevent.lock.BoundedSemaphore)
    wait_readable = staticmethod(gevent.socket.wait_read)
    wait_writable = staticmethod(gevent.socket.wait_write)
    # gevent's default resolver runs the OS's getaddrinfo in its thread pool.
    getaddrinfo = staticmethod(gevent.socket.getaddrinfo)

    def call_in_hub(self, function: Callable[..., Any], *args: Any) -> None:
        gevent.get_hub().loop.run_callback(function, *args)

    def map_concurrently(self, function: Callable[[Any], T], items: list[Any]) -> list[T]:
        return gevent.pool.Group().map(function, items)  # type: ignore[no-any-return]


HUB: Hub = GeventHub()
