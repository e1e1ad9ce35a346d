"""Serve a request in the greenlet that received it; start a new receiver if it waits.

A request that never waits (most do not: /plaintext, /json, a refused body) costs, in a
greenlet of its own, a spawn, two switches and a turn of the hub's callback queue: as
much as the request itself. Served in the receiving greenlet, none of that. A request
that does wait (a query, a sleep, a slow send) switches away from the receiver; at that
very switch greenlet's trace hook starts `take_over` in a new greenlet (the next
receiver), and the waiting greenlet finishes its request and ends. So receiving never
waits on a request.

The hook only starts `take_over`, never calls it: starting a greenlet does not switch
in either hub, and whatever `take_over` does (wait included) happens in its own greenlet,
not inside the switch being traced. The hook costs a Python call on every switch, so it
is installed only where requests are served here (`install`), and `installed` tells
whether a later `greenlet.settrace` has dropped it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import greenlet

log = logging.getLogger("m2stack.hubs.handoff")

Start = Callable[[Callable[[], Any]], Any]  # start a function in a new greenlet, without switching

# greenlet -> what to start if it switches away while serving here
_serving_here: dict[Any, Callable[[], Any]] = {}
_previous_trace: Any = None
_start: Start | None = None


class NotInstalled(RuntimeError):
    """`serve_here` without the hook: a request that waited would stop receiving."""


def _trace(event: str, args: Any) -> None:
    if _serving_here and (event == "switch" or event == "throw"):
        take_over = _serving_here.pop(args[0], None)  # args: (origin, target)
        if take_over is not None and _start is not None:
            try:
                _start(take_over)
            except Exception:
                log.exception("starting a new receiver failed")
    if _previous_trace is not None:
        _previous_trace(event, args)


def install(start: Start) -> None:
    """Hook the switch trace once per process (keeping any trace already there); `start`
    is the hub's spawn. Later calls do nothing, even if the hook was dropped since
    (`installed` says so): chaining it twice would call it twice on every switch."""
    global _previous_trace, _start
    if _start is None:
        _start = start
        _previous_trace = greenlet.settrace(_trace)


def installed() -> bool:
    """True while this module's hook is the active greenlet trace."""
    return _start is not None and greenlet.gettrace() is _trace


def serve_here(take_over: Callable[[], Any], function: Callable[..., Any], args: tuple[Any, ...]) -> bool:
    """`function(*args)` in this greenlet; False if it switched away meanwhile (then
    `take_over` was started at that switch)."""
    if _start is None:
        raise NotInstalled("serving where received needs the hand-off hook: call the hub's install_handoff() first")
    me = greenlet.getcurrent()
    _serving_here[me] = take_over
    try:
        function(*args)
    finally:
        never_left = _serving_here.pop(me, None) is not None
    return never_left
