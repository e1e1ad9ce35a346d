"""The hub contract: what the front doors and the app's I/O ask of a greenlet hub.

Two adapters honour it, gevent_hub.py and eventlet_hub.py, mirror images line for line;
blocking.py honours the app-level part for code that runs with no hub at all. An entry
point monkey-patches first, then imports its adapter and passes it down as an object:
nothing looks a hub up by name after start-up.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any, Protocol, TypeVar, cast

T = TypeVar("T")


class AppHub(Protocol):
    """What app-level I/O needs (PostgreSQL, outbound HTTP, deadlines)."""

    NAME: str
    # `with Timeout(seconds):` raises the Timeout in the calling greenlet after `seconds`;
    # `Timeout(seconds, exception)` raises `exception` instead.
    Timeout: type[BaseException]
    # psycopg2's wait callback (None: let libpq block, as in a plain thread).
    wait_for_db: Callable[[Any], None] | None

    def versions(self) -> dict[str, str]:
        """The versions of what the hub is made of, by name."""

    def resolve(self, host: str, port: int) -> list[str]:
        """The addresses of `host` (OS resolver), parking only the caller meanwhile."""

    def make_semaphore(self, size: int) -> Any:
        """A bounded semaphore whose `acquire(timeout=s)` parks only the caller."""

    def map_concurrently(self, function: Callable[[Any], T], items: list) -> list[T]:
        """`function` over `items`, each in its own greenlet; results in order."""


class Hub(AppHub, Protocol):
    """Everything the Mongrel2 front door needs besides the app-level part."""

    zmq: ModuleType  # plain pyzmq: `receive` and `send` make it cooperative

    def make_pool(self, size: int) -> Any:
        """A pool of at most `size` greenlets."""

    def install_handoff(self) -> None: ...

    def handoff_installed(self) -> bool: ...

    def spawn(self, pool: Any, function: Callable[..., Any], *args: Any) -> None:
        """Run `function` in the pool; blocks while the pool is full (back-pressure)."""

    def serve_here(self, pool: Any, on_block: Callable[[], None], function: Callable[..., Any],
                   *args: Any) -> bool:
        """Run `function` in the calling greenlet, holding a place in the pool; if it
        waits, `on_block()` is called at that moment (to hand the caller's role on) and
        False is returned when it is done (hubs/handoff.py)."""

    def spawn_background(self, function: Callable[..., Any], *args: Any) -> None: ...

    def in_flight(self, pool: Any) -> int: ...

    def join(self, pool: Any, timeout: float) -> bool:
        """Wait for the pool to empty; False if greenlets still ran at `timeout`."""

    def sleep(self, seconds: float) -> None: ...

    def current(self) -> Any:
        """The running greenlet, as a handle for `interrupt`."""

    def interrupt(self, greenlet: Any, exception: BaseException) -> None:
        """Raise `exception` in `greenlet` at the point where it waits."""

    def receive(self, socket: Any, timeout: float) -> bytes | None:
        """One message from a zmq socket, or None after `timeout` seconds; parks only the
        calling greenlet."""

    def send(self, socket: Any, data: bytes) -> None:
        """One message to a zmq socket; parks only the calling greenlet if it is full."""


GREEN_HUBS = ("gevent", "eventlet")


def load(name: str) -> Hub:
    """The adapter of a greenlet hub, after the caller has monkey-patched for it."""
    if name not in GREEN_HUBS:
        raise ValueError(f"unknown hub {name!r}: expected one of {', '.join(GREEN_HUBS)}")
    module = importlib.import_module(f"m2stack.hubs.{name}_hub")
    return cast(Hub, module)


def blocking_hub() -> AppHub:
    """No hub: plain threads (unit tests, a sync WSGI worker). Correct, not concurrent."""
    return cast(AppHub, importlib.import_module("m2stack.hubs.blocking"))


def detect() -> AppHub:
    """The hub this process was patched for (e.g. by Gunicorn's worker class), else none."""
    gevent_monkey = sys.modules.get("gevent.monkey")
    if gevent_monkey is not None and gevent_monkey.is_module_patched("socket"):
        return load("gevent")
    eventlet_patcher = sys.modules.get("eventlet.patcher")
    if eventlet_patcher is not None and eventlet_patcher.is_monkey_patched("socket"):
        return load("eventlet")
    return blocking_hub()
