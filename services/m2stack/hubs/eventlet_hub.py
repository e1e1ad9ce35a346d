"""The eventlet hub: what eventlet does differently from gevent (greenlet_base.py has the rest)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import eventlet
import eventlet.greenpool
import eventlet.hubs
import eventlet.patcher
import eventlet.semaphore
import eventlet.tpool

from m2stack.hubs import Hub
from m2stack.hubs.greenlet_base import GreenletHub

T = TypeVar("T")
_os_getaddrinfo = eventlet.patcher.original("socket").getaddrinfo


class EventletHub(GreenletHub):
    NAME = "eventlet"
    VERSION = eventlet.__version__
    Timeout = eventlet.Timeout
    spawn_background = staticmethod(eventlet.spawn_n)
    sleep = staticmethod(eventlet.sleep)
    make_semaphore = staticmethod(eventlet.semaphore.BoundedSemaphore)
    wait_readable = staticmethod(functools.partial(eventlet.hubs.trampoline, read=True))
    wait_writable = staticmethod(functools.partial(eventlet.hubs.trampoline, write=True))

    def call_in_hub(self, function: Callable[..., Any], *args: Any) -> None:
        eventlet.hubs.get_hub().schedule_call_global(0, function, *args)

    def getaddrinfo(self, host: str, port: int, family: int, type: int) -> list[Any]:
        # The OS resolver in a real thread: eventlet's own greendns was seen timing out on
        # Docker's embedded DNS under load where the OS resolver did not.
        return eventlet.tpool.execute(_os_getaddrinfo, host, port, family, type)  # type: ignore[no-any-return]

    def map_concurrently(self, function: Callable[[Any], T], items: list[Any]) -> list[T]:
        return list(eventlet.greenpool.GreenPool(max(1, len(items))).imap(function, items))


HUB: Hub = EventletHub()
