"""Intake by pulling: a PULL socket connected to each front's PUSH (the default mode).

The PULL socket connects only once the front has subscribed to our replies (XPUB reports
b"\\x01"): no request is taken before its reply can be delivered (the slow-joiner race).
When DNS stops listing the front, its sockets close.

Each request is served in the greenlet that received it (HANDLER_SERVE_INLINE, the
default: hubs/handoff.py hands receiving on to a new greenlet if the request waits), or
in a greenlet of its own. Leaving (SIGTERM): take what is queued here, then disconnect
from every front's PUSH so mongrel2 routes nothing more to us (libzmq drops a
disconnected pipe's queue, hence that order), and serve what still trickles in until
it goes quiet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from m2stack.doors.mongrel2.fronts import IDLE_WAKEUP, Front, Fronts, Handle
from m2stack.doors.mongrel2.inline import still_inline
from m2stack.front_addresses import drain_then_disconnect
from m2stack.hubs import Hub
from m2stack.settings import HandlerSettings
from m2stack.zmq_tcp import keep_alive

log = logging.getLogger("m2stack.doors.pull")


class PullIntake:
    def __init__(self, hub: Hub, settings: HandlerSettings, fronts: Fronts, pool: Any, handle: Handle):
        self.hub = hub
        self.settings = settings
        self.fronts = fronts
        self.pool = pool
        self.handle = handle
        self.serve_inline = settings.serve_inline
        self.stopping = False
        fronts.on_added, fronts.on_subscribed, fronts.on_removed = self._add, self._start_pulling, self._stop_pulling

    def start(self) -> None:
        if self.serve_inline:
            self.hub.install_handoff()

    def check(self) -> None:
        if self.serve_inline:
            self.serve_inline = still_inline(self.hub)

    # -- each request ------------------------------------------------------------------

    def spawn(self, raw: bytes, front: Front) -> None:
        self.hub.spawn(self.pool, self.handle, raw, front, None)  # blocks while the pool is full

    def serve_here(self, raw: bytes, front: Front, take_over: Callable[[], None]) -> bool:
        """Serve in the receiving greenlet (hubs/handoff.py); False if the request waited,
        and the hub started `take_over` (this front's receive loop) in a new greenlet then."""
        return self.hub.serve_here(self.pool, take_over, self.handle, raw, front, None)

    def reply(self, front: Front, sender: bytes, conn_id: bytes, data: bytes, close: bool) -> None:
        self.fronts.reply(front, sender, conn_id, data, close)

    @staticmethod
    def may_reply(ticket: bytes | None) -> bool:
        return True  # nobody else can answer what was pulled here

    @staticmethod
    def hold(ticket: bytes | None) -> bool:
        return True

    # -- one front's PULL socket ---------------------------------------------------------

    def _add(self, front: Front) -> None:
        zmq = self.hub.zmq
        requests = self.fronts.context.socket(zmq.PULL)
        requests.setsockopt(zmq.RCVHWM, self.settings.receive_hwm)  # little queued in a handler that dies
        requests.setsockopt(zmq.LINGER, 0)
        keep_alive(zmq, requests, self.settings.keepalive_idle, self.settings.peer_heartbeat)
        front.requests = requests
        self.hub.spawn_background(self._receive, front)

    def _receive(self, front: Front) -> None:
        zmq = self.hub.zmq
        take_over = front.take_over = front.take_over or (lambda: self._receive(front))  # the hub starts it
        while not front.closed and not self.stopping:
            try:
                raw = self.hub.receive(front.requests, IDLE_WAKEUP)
            except zmq.ZMQError:
                return
            if raw is None:
                continue
            if not self.serve_inline:
                self.spawn(raw, front)
                self._drain(front)  # every message already queued, before going back to the hub
            elif not self.serve_here(raw, front, take_over):
                return  # the request waited: another greenlet has been receiving since
        if front.closed:
            front.requests.close()

    def _drain(self, front: Front) -> int:
        zmq = self.hub.zmq
        events, pollin, noblock = zmq.EVENTS, int(zmq.POLLIN), zmq.NOBLOCK
        taken = 0
        sock = front.requests
        while sock.getsockopt(events) & pollin:  # cheaper than a failed recv's exception
            self.spawn(sock.recv(noblock), front)
            taken += 1
        return taken

    def _start_pulling(self, front: Front) -> None:
        if not front.pulling and not front.closed and not self.stopping:
            front.requests.connect(front.requests_endpoint)
            front.pulling = True
            log.info("connected to mongrel2", extra={"requests": front.requests_endpoint,
                                                     "responses": front.responses_endpoint})

    def _stop_pulling(self, front: Front) -> None:
        if front.pulling:
            front.pulling = False
            drain_then_disconnect(front.requests, front.requests_endpoint, lambda: self._drain(front),
                                  self.hub.zmq.ZMQError)

    # -- leaving -------------------------------------------------------------------------

    def leave(self, deadline: float) -> None:
        """Disconnect from every front's PUSH (taking what was queued first), then serve
        what was still in flight to us (a PUSH that beat the disconnect) until it goes
        quiet."""
        self.stopping = self.fronts.stopping = True
        for front in self.fronts.by_address.values():
            self._stop_pulling(front)
        quiet_since = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - quiet_since < self.settings.drain_quiet:
            if sum(self._drain(front) for front in self.fronts.by_address.values()):
                quiet_since = time.monotonic()
            else:
                self.hub.sleep(0.01)

    def close(self) -> None:
        pass  # the PULL sockets close with their fronts
