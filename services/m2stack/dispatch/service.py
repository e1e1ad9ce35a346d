"""The dispatcher process: mongrel2's PUSH sockets in, handlers' DEALER sockets out.

Blocking pyzmq and one poll loop, no hub: every decision is dispatch/core.py's; this file
moves bytes and keeps time. Fronts are found as handlers find them (m2stack/front_addresses.py),
the name resolved in a thread so a slow DNS never stalls the loop: each gets a PULL
socket connected to its PUSH and an XPUB connected to its SUB (for the 503s and closes the
dispatcher itself sends; replies go from handlers to mongrel2 directly).

A front is read only while some handler has a free credit: what is not taken waits in
mongrel2's queue, not in ours, so a crash of this process loses as little as it can.

SIGTERM: stop reading the fronts (what already reached us is handed out), wait for the
handlers to acknowledge what is out, up to the grace period, exit 0.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from functools import partial
from typing import Any

import msgspec
import zmq

from m2stack.dispatch.core import Dispatcher, Incoming
from m2stack.dispatch.exporter import Exporter, render
from m2stack.front_addresses import FrontAddresses, drain_then_disconnect
from m2stack.protocol import dispatch as wire
from m2stack.protocol.errors import ProtocolError
from m2stack.settings import DispatcherSettings
from m2stack.zmq_tcp import keep_alive

log = logging.getLogger("m2stack.dispatch")

TICK = 0.05           # seconds: the longest poll, so expiry and DNS changes are seen
SHUTDOWN_GRACE = 10.0
# What libzmq may hold in our PULL socket: lost if we crash, but with 1 the I/O thread is
# woken for every message (measured: twice the CPU per request).
RECEIVE_HWM = 100
# Plain ints: pyzmq's flag enums cost more than the send they qualify.
_NOBLOCK, _NOBLOCK_MORE, _RCVMORE = int(zmq.NOBLOCK), int(zmq.NOBLOCK | zmq.SNDMORE), int(zmq.RCVMORE)


class _Method(msgspec.Struct):
    METHOD: str = ""


_decode_method = msgspec.json.Decoder(_Method).decode


def _method_only(payload: bytes) -> dict[str, str | list[str]]:
    """JSON headers as far as the dispatcher needs them: METHOD alone (the other headers
    are skipped, not built into a dict; the handler parses and checks them all). What
    this refuses, the protocol module's tolerant parser decides."""
    return {"METHOD": _decode_method(payload).METHOD}


class FrontLink:
    """One mongrel2, as the dispatcher sees it."""

    def __init__(self, name: str, requests_endpoint: str, pull: Any, responses_endpoint: str, xpub: Any):
        self.name = name
        self.requests_endpoint = requests_endpoint
        self.pull = pull
        self.responses_endpoint = responses_endpoint
        self.xpub = xpub


def _lookup(host: str, port: int) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


class Resolver(threading.Thread):
    """Looks the front name up every `refresh` seconds; `addresses` is the latest answer."""

    def __init__(self, fronts: FrontAddresses, refresh: float):
        super().__init__(daemon=True, name="resolver")
        self.fronts, self.refresh = fronts, refresh
        self.addresses: set[str] | None = None
        self.changed = threading.Event()

    def lookup(self) -> None:
        found = self.fronts.resolve(_lookup)
        if found is not None and found != self.addresses:  # None: keep what we have
            self.addresses = found
            self.changed.set()

    def run(self) -> None:
        while True:
            self.lookup()
            if not self.refresh:
                return
            time.sleep(self.refresh)


class DispatcherService:
    def __init__(self, settings: DispatcherSettings):
        self.settings = settings
        self.core = Dispatcher(dead_after=settings.dead_after, max_waiting=settings.max_waiting,
                               retry_methods=frozenset(m.strip().upper() for m in
                                                       settings.retry_methods.split(",") if m.strip()))
        self.context = zmq.Context()
        self.router = self.context.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a vanished handler raises: it is lost at once
        self.router.setsockopt(zmq.SNDHWM, 0)  # credits bound what is out at a handler
        self.router.setsockopt(zmq.RCVHWM, 0)
        self.router.setsockopt(zmq.LINGER, 1000)
        keep_alive(zmq, self.router, settings.keepalive_idle, settings.peer_heartbeat)
        self.router.bind(settings.bind)
        self.fronts: dict[str, FrontLink] = {}
        self.poller = zmq.Poller()
        self.poller.register(self.router, zmq.POLLIN)
        self.reading_fronts = False
        self.stopping = False
        self.addresses = FrontAddresses(settings.requests_endpoint, settings.responses_endpoint)
        self.resolver = Resolver(self.addresses, settings.fronts_refresh) if self.addresses.host else None
        self.started = time.monotonic()
        self.started_at = time.time()
        # Bound here, before any front is read: a port in use stops the dispatcher at start.
        self.exporter = Exporter(settings.metrics_port) if settings.metrics_port else None

    # -- fronts ----------------------------------------------------------------------------

    def follow_fronts(self) -> None:
        if self.resolver is None:
            found = {""}  # ipc:// or inproc://: one front, as configured
        elif self.resolver.changed.is_set():
            self.resolver.changed.clear()
            found = self.resolver.addresses or set()
        else:
            return
        added, removed = FrontAddresses.changes(self.fronts, found)
        for address in added:
            self._add_front(address, *self.addresses.endpoints(address))
        for address in removed:
            self._remove_front(address)

    def _add_front(self, address: str, requests_endpoint: str, responses_endpoint: str) -> None:
        s = self.settings
        pull = self.context.socket(zmq.PULL)
        pull.setsockopt(zmq.RCVHWM, RECEIVE_HWM)
        pull.setsockopt(zmq.LINGER, 0)
        keep_alive(zmq, pull, s.keepalive_idle, s.peer_heartbeat)
        xpub = self.context.socket(zmq.XPUB)
        xpub.setsockopt(zmq.LINGER, 1000)
        keep_alive(zmq, xpub, s.keepalive_idle, s.peer_heartbeat)
        xpub.connect(responses_endpoint)
        pull.connect(requests_endpoint)
        self.fronts[address] = FrontLink(responses_endpoint, requests_endpoint, pull, responses_endpoint, xpub)
        self.poller.register(xpub, zmq.POLLIN)  # subscription notices: read and forgotten
        if self.reading_fronts:
            self.poller.register(pull, zmq.POLLIN)
        log.info("front found", extra={"requests": requests_endpoint, "responses": responses_endpoint})

    def _remove_front(self, address: str) -> None:
        link = self.fronts.pop(address)
        self._take_all(address, link)  # libzmq drops a disconnected pipe's queue: take it first
        for sock in (link.pull, link.xpub):
            try:
                self.poller.unregister(sock)
            except KeyError:
                pass
            sock.close()
        log.info("front gone", extra={"requests": link.requests_endpoint})

    def _read_fronts(self, wanted: bool) -> None:
        if wanted == self.reading_fronts:
            return
        self.reading_fronts = wanted
        for link in self.fronts.values():
            if wanted:
                self.poller.register(link.pull, zmq.POLLIN)
            else:
                self.poller.unregister(link.pull)

    # -- moving messages -----------------------------------------------------------------

    def _from_front(self, address: str, raw: bytes) -> None:
        try:
            incoming = Incoming.parse(address, raw, _method_only)
        except ProtocolError as exc:
            log.warning("dropped malformed message", extra={"error": str(exc), "size": len(raw)})
            return
        self.core.from_front(incoming, time.monotonic())

    def _take(self, address: str, link: FrontLink, limit: int) -> int:
        """Up to `limit` messages, and no more than the core has room for (each message
        costs at most one credit or one place in its small backlog)."""
        limit = min(limit, self.core.room)
        taken = 0
        while taken < limit:
            try:
                raw = link.pull.recv(_NOBLOCK)
            except zmq.Again:
                break
            self._from_front(address, raw)
            taken += 1
        return taken

    def _take_all(self, address: str, link: FrontLink) -> None:
        while True:
            try:
                raw = link.pull.recv(_NOBLOCK)
            except zmq.Again:
                return
            self._from_front(address, raw)

    def _from_handlers(self, limit: int) -> None:
        now = time.monotonic()
        router, core = self.router, self.core
        for _ in range(limit):
            try:
                routing_id = router.recv(_NOBLOCK)
            except zmq.Again:
                return
            frame = router.recv(_NOBLOCK) if router.getsockopt(_RCVMORE) else b""
            try:
                core.from_handler(routing_id, wire.unpack_from_handler(frame), now)
            except ProtocolError as exc:
                log.warning("bad message from a handler", extra={"error": str(exc)})

    def flush(self) -> None:
        core, router = self.core, self.router
        while core.to_handlers or core.to_fronts:
            to_handlers, core.to_handlers = core.to_handlers, []
            for routing_id, parts in to_handlers:
                try:
                    router.send(routing_id, _NOBLOCK_MORE)
                    router.send(wire.pack(parts), _NOBLOCK)
                except zmq.ZMQError as exc:  # EHOSTUNREACH: it is gone
                    core.lost(routing_id, why=exc.strerror)
            to_fronts, core.to_fronts = core.to_fronts, []
            for address, message in to_fronts:
                link = self.fronts.get(address)
                if link is None:
                    continue
                try:
                    link.xpub.send(message, _NOBLOCK)
                except zmq.ZMQError as exc:
                    log.warning("cannot answer at a front", extra={"front": link.name, "error": exc.strerror})

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> int:
        if self.resolver is not None:
            self.resolver.start()
        if self.exporter is not None:
            self.publish_metrics()
            self.exporter.start()
        log.info("dispatcher starting", extra={"bind": self.settings.bind, "instance": self.core.instance.decode(),
                                               "dead_after": self.settings.dead_after,
                                               "retry_methods": sorted(self.core.retry_methods),
                                               "metrics_port": self.exporter.port if self.exporter else 0})
        last_tick = last_beat = 0.0
        stop_at = None
        while True:
            now = time.monotonic()
            if self.stopping and stop_at is None:
                stop_at = now + SHUTDOWN_GRACE
                self._stop_reading()
            if stop_at is not None and (now > stop_at or not (self.core.in_flight or self.core.waiting)):
                break
            self._read_fronts(not self.stopping and self.core.wants_requests)
            events = dict(self.poller.poll(int(TICK * 1000)))
            if self.router in events:
                self._from_handlers(self.settings.batch)
            for address, link in list(self.fronts.items()):
                if link.xpub in events:
                    self._subscriptions(link)
                if self.reading_fronts and link.pull in events:
                    self._take(address, link, self.settings.batch)
            self.flush()
            now = time.monotonic()
            if now - last_tick >= TICK:
                last_tick = now
                self.core.expire(now)
                self.follow_fronts()
                self.flush()
            if now - last_beat >= 1.0:
                last_beat = now
                self._heartbeat()
        return self.shutdown()

    def _subscriptions(self, link: FrontLink) -> None:
        while True:
            try:
                link.xpub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return

    def _stop_reading(self) -> None:
        log.info("stopping: no more requests taken", extra={"in_flight": self.core.in_flight})
        self._read_fronts(False)
        for address, link in self.fronts.items():
            drain_then_disconnect(link.pull, link.requests_endpoint, partial(self._take_all, address, link),
                                  zmq.ZMQError)
            self._take_all(address, link)
        self.flush()

    def publish_metrics(self) -> None:
        """What a scrape answers until the next heartbeat (rendered here, in the loop, so
        the exporter's thread never reads the core)."""
        if self.exporter is not None:
            self.exporter.publish(render(self.core, started=self.started_at,
                                         default_front=self.settings.requests_endpoint))

    def _heartbeat(self) -> None:
        self.publish_metrics()
        c = self.core.counters
        try:
            with open(self.settings.heartbeat_file, "w") as f:
                f.write(f"{time.time():.3f} handlers={len(self.core.handlers)} fronts={len(self.fronts)}\n")
        except OSError as exc:
            log.warning("cannot write heartbeat", extra={"error": str(exc)})
        log.debug("dispatcher", extra={"handlers": len(self.core.handlers), "in_flight": self.core.in_flight,
                                       "dispatched": c.dispatched, "retried": c.retried, "refused": c.refused})

    def shutdown(self) -> int:
        c = self.core.counters
        log.info("stopped", extra={"dispatched": c.dispatched, "acknowledged": c.acknowledged,
                                   "retried": c.retried, "refused": c.refused, "closed": c.closed,
                                   "dropped": c.dropped, "handlers_lost": c.handlers_lost,
                                   "in_flight": self.core.in_flight})
        for link in self.fronts.values():
            link.pull.close()
            link.xpub.close()
        self.router.close()
        self.context.term()
        return 0  # the exporter's thread is a daemon: it ends with the process

    def request_stop(self, _signum: int, _frame: Any) -> None:
        self.stopping = True


def serve(settings: DispatcherSettings) -> int:
    service = DispatcherService(settings)
    signal.signal(signal.SIGTERM, service.request_stop)
    signal.signal(signal.SIGINT, service.request_stop)
    return service.run()
