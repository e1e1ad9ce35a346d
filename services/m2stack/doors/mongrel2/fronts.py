"""The Mongrel2 servers ("fronts") one handler replies to, found by DNS and followed.

For each address the front name resolves to (m2stack/front_addresses.py), a `Front` gets
an XPUB socket connected to that front's SUB. A reply goes out on the XPUB of the front
its request came from, so it can only ever reach that front, whatever the fronts'
identities. (Mongrel2 1.12 subscribes to every topic, so a socket shared by several
fronts would hand each reply to all of them, and each would write it to its own client
holding that connection id.) Requests come in through the intake (pull.py: a PULL
socket per front, connected once it has subscribed; dispatched.py: the dispatcher).

Every socket sets TCP keepalive and ZMTP heartbeats (m2stack.zmq_tcp).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from m2stack.front_addresses import FrontAddresses
from m2stack.hubs import Hub
from m2stack.protocol import mongrel2 as protocol
from m2stack.settings import HandlerSettings
from m2stack.zmq_tcp import keep_alive

log = logging.getLogger("m2stack.doors.fronts")

IDLE_WAKEUP = 0.25  # seconds: how often an idle greenlet looks at its stop flag
SUBSCRIBE, UNSUBSCRIBE = b"\x01", b"\x00"


class Front:
    """One mongrel2: its endpoints and its sockets."""

    def __init__(self, address: str, requests_endpoint: str, responses_endpoint: str,
                 requests: Any, responses: Any):
        self.address = address
        self.requests_endpoint = requests_endpoint
        self.responses_endpoint = responses_endpoint
        self.requests = requests      # PULL from its PUSH (pull.py), or None
        self.responses = responses    # XPUB to its SUB
        self.subscriptions = 0
        self.idents: set[bytes] = set()  # the topics it subscribed to: its send_ident
        self.pulling = False
        self.closed = False
        self.take_over: Callable[[], None] | None = None  # starts a new receiver greenlet (pull.py)

    @property
    def name(self) -> str:
        return self.responses_endpoint


# handle(raw, front, ticket) -> core.SERVED, CLOSED, KEPT_OPEN or WITHHELD: the driver's
# `Mongrel2Door.handle`, given to each intake; `ticket` is the dispatcher's request id.
Handle = Callable[[bytes, Front, "bytes | None"], int]


def _nothing(front: Front) -> None:
    pass


class Fronts:
    """Every front this handler serves, and the one way a reply is sent to one.

    The intake learns of each front through three hooks, set before `watch` starts:
    `on_added` (its sockets are made), `on_subscribed` (its mongrel2 takes replies now)
    and `on_removed` (DNS no longer lists it)."""

    def __init__(self, hub: Hub, context: Any, settings: HandlerSettings):
        self.hub = hub
        self.context = context
        self.settings = settings
        self.addresses = FrontAddresses(settings.requests_endpoint, settings.responses_endpoint)
        self.by_address: dict[str, Front] = {}
        self.stopping = False
        self.on_added: Callable[[Front], None] = _nothing
        self.on_subscribed: Callable[[Front], None] = _nothing
        self.on_removed: Callable[[Front], None] = _nothing

    # -- which fronts exist -----------------------------------------------------------

    def watch(self) -> None:
        """Resolve the front name now and every M2_FRONTS_REFRESH seconds (a greenlet)."""
        while not self.stopping:
            found = self.addresses.resolve(self.hub.resolve)
            if found is not None:
                added, removed = FrontAddresses.changes(self.by_address, found)
                for address in added:
                    self._add(address)
                for address in removed:
                    self._remove(self.by_address[address])
            if not self.settings.fronts_refresh:
                return
            deadline = time.monotonic() + self.settings.fronts_refresh
            while not self.stopping and time.monotonic() < deadline:
                self.hub.sleep(IDLE_WAKEUP)

    def _add(self, address: str) -> None:
        zmq = self.hub.zmq
        requests_endpoint, responses_endpoint = self.addresses.endpoints(address)
        responses = self.context.socket(zmq.XPUB)
        responses.setsockopt(zmq.LINGER, 2000)  # flush replies on close, bounded
        keep_alive(zmq, responses, self.settings.keepalive_idle, self.settings.peer_heartbeat)
        responses.connect(responses_endpoint)
        front = Front(address, requests_endpoint, responses_endpoint, None, responses)
        self.by_address[address] = front
        log.info("front found", extra={"front": front.name})
        self.on_added(front)
        self.hub.spawn_background(self._follow_subscriptions, front)

    def _remove(self, front: Front) -> None:
        log.info("front gone", extra={"front": front.name})
        self.on_removed(front)
        del self.by_address[front.address]
        front.closed = True  # its greenlets close its sockets

    def _follow_subscriptions(self, front: Front) -> None:
        waiting_since = time.monotonic()
        while not front.closed:
            try:
                event = self.hub.receive(front.responses, IDLE_WAKEUP)
            except self.hub.zmq.ZMQError:  # closed under us at shutdown
                return
            if event is None:
                if not front.subscriptions and time.monotonic() - waiting_since > 5:
                    waiting_since = time.monotonic()
                    log.info("waiting for mongrel2 to subscribe", extra={"front": front.name})
                continue
            if event[:1] == SUBSCRIBE:
                front.subscriptions += 1
                front.idents.add(event[1:])
                self.on_subscribed(front)
            elif event[:1] == UNSUBSCRIBE:
                # It stopped (a restart, most likely). A PULL socket stays connected, so
                # ZeroMQ takes requests from the new process as soon as it binds (one that
                # finds no handler hangs its client); replies wait for its subscription
                # (`wait_subscribed`).
                front.subscriptions = max(0, front.subscriptions - 1)
                front.idents.discard(event[1:])
                if not front.subscriptions:
                    log.info("mongrel2 unsubscribed", extra={"front": front.name})
                    waiting_since = time.monotonic()
        front.responses.close()  # LINGER lets queued replies go out

    # -- replies ---------------------------------------------------------------------

    def send(self, front: Front, sender: bytes, conn_id: bytes, data: bytes, close: bool) -> None:
        """`data` to one connection (if any), then its close if `close`: the one way a
        reply goes to mongrel2. Raises the hub's ZMQError if the front's socket is gone."""
        if data:
            self.hub.send(front.responses, protocol.frame_one(sender, conn_id, data))
        if close:
            self.hub.send(front.responses, protocol.frame_one(sender, conn_id, b""))

    def reply(self, front: Front, sender: bytes, conn_id: bytes, wire: bytes, close: bool) -> None:
        """A whole reply: `send`, once the front's mongrel2 has subscribed to `sender`."""
        idents = front.idents  # `subscribed_to`, written out: this runs on every request
        if sender not in idents and b"" not in idents and not self.wait_subscribed(front, sender):
            log.warning("reply dropped: its mongrel2 is not subscribed", extra={"front": front.name})
            return
        self.send(front, sender, conn_id, wire, close)

    @staticmethod
    def subscribed_to(front: Front, ident: bytes) -> bool:
        return ident in front.idents or b"" in front.idents  # b"": a SUB that takes everything

    def front_for(self, ident: bytes, limit: float = 2.0) -> Front | None:
        """The front whose mongrel2 subscribed to `ident` (its send_ident, each request's
        sender), waiting up to `limit` seconds for it: a request from the dispatcher can
        arrive before a new front's SUB has subscribed to us."""
        deadline = time.monotonic() + limit
        while True:
            for front in self.by_address.values():
                if self.subscribed_to(front, ident):
                    return front
            if time.monotonic() >= deadline:
                return None
            self.hub.sleep(0.01)

    def wait_subscribed(self, front: Front, ident: bytes, limit: float = 2.0) -> bool:
        """Before a reply: an XPUB socket drops what no subscription matches, and a restarted
        mongrel2 (a new ident) may hand us a request before its SUB socket has subscribed."""
        deadline = time.monotonic() + limit
        while not self.subscribed_to(front, ident) and not front.closed and time.monotonic() < deadline:
            self.hub.sleep(0.01)
        return self.subscribed_to(front, ident)

    @property
    def subscribed(self) -> int:
        return sum(1 for front in self.by_address.values() if front.subscriptions)

    def close(self) -> None:
        for front in list(self.by_address.values()):
            front.closed = True
            if front.requests is not None:
                front.requests.close()
            front.responses.close()  # LINGER lets queued replies go out
        self.by_address.clear()
