"""Serve a request in the greenlet that received it; hand receiving on if it waits.

A request that never waits (most do not: /plaintext, /json, a refused body) costs, in a
greenlet of its own, a spawn, two switches and a turn of the hub's callback queue: as
much as the request itself. Served in the receiving greenlet, none of that. A request
that does wait (a query, a sleep, a slow send) switches away from the receiver; at that
very switch greenlet's trace hook calls `on_block`, which starts a new receiver, and the
waiting greenlet finishes its request and ends. So receiving never waits on a request.

Both hubs are greenlet-based, so one hook serves the two adapters alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import greenlet

log = logging.getLogger("m2stack.hubs.handoff")

# greenlet -> what to call if it switches away while serving here
_serving_here: dict[Any, Callable[[], None]] = {}
_previous_trace: Any = None
_installed = False


def _trace(event: str, args: Any) -> None:
    if _serving_here and (event == "switch" or event == "throw"):
        on_block = _serving_here.pop(args[0], None)  # args: (origin, target)
        if on_block is not None:
            try:
                on_block()  # must not switch: it only schedules (spawn)
            except Exception:
                log.exception("handing receiving on failed")
    if _previous_trace is not None:
        _previous_trace(event, args)


def install() -> None:
    """Hook the switch trace once per process (keeping any trace already there)."""
    global _previous_trace, _installed
    if not _installed:
        _previous_trace = greenlet.settrace(_trace)
        _installed = True


def serve_here(on_block: Callable[[], None], function: Callable[..., Any], args: tuple) -> bool:
    """`function(*args)` in this greenlet; False if it switched away meanwhile (then
    `on_block` was called at that switch)."""
    me = greenlet.getcurrent()
    _serving_here[me] = on_block
    try:
        function(*args)
    finally:
        never_left = _serving_here.pop(me, None) is not None
    return never_left
