"""Hub adapters: the few primitives the Mongrel2 front door needs from a greenlet hub.

gevent_hub.py and eventlet_hub.py mirror each other line for line; the entry
points (run_gevent.py, run_eventlet.py) monkey-patch before importing them.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def load(name: str) -> ModuleType:
    """The adapter of a hub by name. Only what app-level I/O needs is asked of it; with no
    hub ("none": unit tests, plain threads) that subset comes from `blocking`."""
    if name in ("gevent", "eventlet"):
        return importlib.import_module(f"m2stack.hubs.{name}_hub")
    return importlib.import_module("m2stack.hubs.blocking")
