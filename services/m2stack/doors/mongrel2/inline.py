"""Whether requests can still be served in the greenlet that received them (both intakes)."""

from __future__ import annotations

import logging

from m2stack import metrics
from m2stack.hubs import Hub

log = logging.getLogger("m2stack.doors.inline")


def still_inline(hub: Hub) -> bool:
    """Serving where received needs greenlet's trace hook (hubs/handoff.py): if something
    replaced it (a later `settrace`), a request that waits would hold up its receiver, so
    the intake goes back to a greenlet per request, loudly."""
    if hub.handoff_installed():
        return True
    log.error("the hand-off is gone (greenlet.settrace replaced): a greenlet per request from now on")
    metrics.HANDOFF_LOST.set(1)
    return False
