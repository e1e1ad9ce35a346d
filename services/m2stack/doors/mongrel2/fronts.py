"""The Mongrel2 servers ("fronts") one handler serves, found by DNS and followed.

A handler may serve several fronts at once (Swarm: `tasks.mongrel2` resolves to every
replica). For each address the front name resolves to, a `Front` gets its own pair of
sockets: an XPUB connected to that front's SUB and a PULL connected to its PUSH. A reply
goes out on the XPUB of the front its request came from, so it can only ever reach that
front, whatever the fronts' identities. (Mongrel2 1.12 subscribes to every topic, so a
socket shared by several fronts would hand each reply to all of them, and each would
write it to its own client holding that connection id.)

The PULL socket connects only once the front has subscribed (XPUB reports b"\\x01"):
no request is taken before its reply can be delivered (the slow-joiner race). When the
front unsubscribes (it stopped), the PULL socket disconnects until it is back; when DNS
stops listing it, its sockets close.

Every socket sets TCP keepalive and ZMTP heartbeats (m2stack.zmq_tcp).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from m2stack.hubs import Hub
from m2stack.settings import HandlerSettings
from m2stack.zmq_tcp import front_endpoints, keep_alive, split_endpoint

log = logging.getLogger("m2stack.doors.fronts")

IDLE_WAKEUP = 0.25  # seconds: how often an idle greenlet looks at its stop flag
SUBSCRIBE, UNSUBSCRIBE = 1, 0


class Front:
    """One mongrel2: its endpoints and its two sockets."""

    def __init__(self, address: str, requests_endpoint: str, responses_endpoint: str,
                 requests: Any, responses: Any):
        self.address = address
        self.requests_endpoint = requests_endpoint
        self.responses_endpoint = responses_endpoint
        self.requests = requests      # PULL from its PUSH
        self.responses = responses    # XPUB to its SUB
        self.subscriptions = 0
        self.idents: set[bytes] = set()  # the topics it subscribed to: its send_ident
        self.pulling = False
        self.closed = False
        self.take_over: Callable[[], None] | None = None  # starts a new receiver greenlet

    @property
    def name(self) -> str:
        return self.responses_endpoint


Dispatch = Callable[[bytes, Front], None]
# serve_here(raw, front, on_block) -> False if the request waited (hubs/handoff.py)
ServeHere = Callable[[bytes, Front, Callable[[], None]], bool]


class Fronts:
    """Every front this handler serves. Each request is served in the greenlet that
    received it, `serve_here(raw, front, on_block)`, which calls `on_block` if the
    request waits, so that a new greenlet goes on receiving (hubs/handoff.py); what is
    taken at shutdown goes to `dispatch(raw, front)`, a greenlet each.

    With no `dispatch` (requests come from the dispatcher, doors/dispatched.py) only the
    reply sockets are made: nothing is pulled from mongrel2."""

    def __init__(self, hub: Hub, context: Any, settings: HandlerSettings, dispatch: Dispatch | None,
                 serve_here: ServeHere | None = None):
        self.hub = hub
        self.context = context
        self.settings = settings
        self.dispatch = dispatch
        self.serve_here = serve_here
        self.pull = dispatch is not None
        self.by_address: dict[str, Front] = {}
        self.stopping = False
        scheme, host, port = split_endpoint(settings.requests_endpoint)
        r_scheme, r_host, r_port = split_endpoint(settings.responses_endpoint)
        if scheme == "tcp" and (r_scheme != "tcp" or r_host != host):
            raise SystemExit("M2_REQUESTS_ENDPOINT and M2_RESPONSES_ENDPOINT must name the same host: "
                             "both sockets of a front are found by resolving it")
        self.host, self.requests_port, self.responses_port = host, port, r_port

    # -- which fronts exist -----------------------------------------------------------

    def resolve(self) -> set[str] | None:
        """The addresses the front name resolves to now; None when resolution failed
        (then the fronts stay as they are: a DNS hiccup must not disconnect them)."""
        if not self.host:
            return {""}  # ipc:// or inproc://: one front, as configured
        try:
            return set(self.hub.resolve(self.host, int(self.requests_port)))
        except OSError as exc:
            log.warning("cannot resolve the fronts", extra={"host": self.host, "error": str(exc)})
            return None

    def update(self, addresses: set[str]) -> None:
        for address in sorted(addresses - self.by_address.keys()):
            self._add(address)
        for address in sorted(self.by_address.keys() - addresses):
            self._remove(self.by_address[address])

    def watch(self) -> None:
        """Resolve the front name now and every M2_FRONTS_REFRESH seconds (a greenlet)."""
        while not self.stopping:
            addresses = self.resolve()
            if addresses is not None:
                self.update(addresses)
            if not self.settings.fronts_refresh:
                return
            deadline = time.monotonic() + self.settings.fronts_refresh
            while not self.stopping and time.monotonic() < deadline:
                self.hub.sleep(IDLE_WAKEUP)

    def _endpoints(self, address: str) -> tuple[str, str]:
        if not address:
            return self.settings.requests_endpoint, self.settings.responses_endpoint
        return front_endpoints(address, self.requests_port, self.responses_port)

    def _add(self, address: str) -> None:
        zmq = self.hub.zmq
        requests_endpoint, responses_endpoint = self._endpoints(address)
        responses = self.context.socket(zmq.XPUB)
        responses.setsockopt(zmq.LINGER, 2000)  # flush replies on close, bounded
        keep_alive(zmq, responses, self.settings.keepalive_idle, self.settings.peer_heartbeat)
        requests = None
        if self.pull:
            requests = self.context.socket(zmq.PULL)
            requests.setsockopt(zmq.RCVHWM, self.settings.receive_hwm)  # little queued in a handler that dies
            requests.setsockopt(zmq.LINGER, 0)
            keep_alive(zmq, requests, self.settings.keepalive_idle, self.settings.peer_heartbeat)
        responses.connect(responses_endpoint)
        front = Front(address, requests_endpoint, responses_endpoint, requests, responses)
        self.by_address[address] = front
        log.info("front found", extra={"front": front.name})
        self.hub.spawn_background(self._follow_subscriptions, front)
        if self.pull:
            self.hub.spawn_background(self._receive, front)

    def _remove(self, front: Front) -> None:
        log.info("front gone", extra={"front": front.name})
        self._stop_pulling(front)
        del self.by_address[front.address]
        front.closed = True  # its greenlets close its sockets

    # -- one front's greenlets ---------------------------------------------------------

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
            if event[:1] == bytes([SUBSCRIBE]):
                front.subscriptions += 1
                front.idents.add(event[1:])
                self._start_pulling(front)
            elif event[:1] == bytes([UNSUBSCRIBE]):
                # It stopped (a restart, most likely). The PULL socket stays connected, so
                # ZeroMQ takes requests from the new process as soon as it binds (one that
                # finds no handler hangs its client); replies wait for its subscription
                # (`wait_subscribed`).
                front.subscriptions = max(0, front.subscriptions - 1)
                front.idents.discard(event[1:])
                if not front.subscriptions:
                    log.info("mongrel2 unsubscribed", extra={"front": front.name})
                    waiting_since = time.monotonic()
        front.responses.close()  # LINGER lets queued replies go out

    def _receive(self, front: Front) -> None:
        zmq = self.hub.zmq
        serve_here = self.serve_here
        take_over = front.take_over = front.take_over or (lambda: self.hub.spawn_background(self._receive, front))
        while not front.closed and not self.stopping:
            try:
                raw = self.hub.receive(front.requests, IDLE_WAKEUP)
            except zmq.ZMQError:
                return
            if raw is None:
                continue
            if serve_here is None:
                self.dispatch(raw, front)
                self._drain(front)  # every message already queued, before going back to the hub
            elif not serve_here(raw, front, take_over):
                return  # the request waited: another greenlet has been receiving since
        if front.closed:
            front.requests.close()

    def _drain(self, front: Front) -> int:
        if front.requests is None or self.dispatch is None:
            return 0
        zmq = self.hub.zmq
        events, pollin, noblock = zmq.EVENTS, int(zmq.POLLIN), zmq.NOBLOCK
        taken = 0
        sock = front.requests
        while sock.getsockopt(events) & pollin:  # cheaper than a failed recv's exception
            self.dispatch(sock.recv(noblock), front)
            taken += 1
        return taken

    def _start_pulling(self, front: Front) -> None:
        if front.requests is not None and not front.pulling and not front.closed and not self.stopping:
            front.requests.connect(front.requests_endpoint)
            front.pulling = True
            log.info("connected to mongrel2", extra={"requests": front.requests_endpoint,
                                                     "responses": front.responses_endpoint})

    def _stop_pulling(self, front: Front) -> None:
        if front.pulling:
            front.pulling = False
            # libzmq drops what is still queued in the pipe when it disconnects (measured: 9
            # of 10 queued messages gone): take it first, so it is answered.
            self._drain(front)
            try:
                front.requests.disconnect(front.requests_endpoint)
            except self.hub.zmq.ZMQError:
                pass  # already gone

    # -- what the door uses ----------------------------------------------------------

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

    def stop_pulling(self) -> None:
        """Disconnect from every front's PUSH: mongrel2 routes nothing more to us."""
        self.stopping = True
        for front in self.by_address.values():
            self._stop_pulling(front)

    def drain(self) -> int:
        """Dispatch what reached our queues before the disconnect; how many."""
        return sum(self._drain(front) for front in self.by_address.values())

    def close(self) -> None:
        for front in list(self.by_address.values()):
            front.closed = True
            if front.requests is not None:
                front.requests.close()
            front.responses.close()  # LINGER lets queued replies go out
        self.by_address.clear()
