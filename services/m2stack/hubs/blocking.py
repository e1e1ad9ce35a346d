"""No hub: the app-level I/O primitives of gevent_hub/eventlet_hub for plain threads.

Used when the app runs without a hub (unit tests, a sync WSGI worker): correct, not concurrent.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any, Literal, TypeVar

T = TypeVar("T")

NAME = "blocking"
wait_for_db = None  # psycopg2's default: block in libpq


def versions() -> dict[str, str]:
    return {}


class Timeout(Exception):
    """Accepted for symmetry; never fires without a hub."""

    def __init__(self, seconds: float | None = None, exception: BaseException | None = None):
        super().__init__(seconds)

    def __enter__(self) -> Timeout:
        return self

    def __exit__(self, *exc_info: object) -> Literal[False]:
        return False


def resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def make_semaphore(size: int) -> threading.BoundedSemaphore:
    return threading.BoundedSemaphore(size)


def map_concurrently(function: Callable[[Any], T], items: list[Any]) -> list[T]:
    return [function(item) for item in items]
