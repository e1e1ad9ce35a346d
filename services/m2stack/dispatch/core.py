"""The dispatcher's decisions, with no sockets (sans-I/O, the way h11 does HTTP).

The service (dispatch/service.py) feeds it what arrives, from mongrel2 (`from_front`) and
from handlers (`from_handler`), and the passing of time (`expire`); it answers with
messages, which the service sends:

    to_handlers: (routing_id, frames)   to one handler's DEALER
    to_fronts:   (front, message)       to one mongrel2's SUB (a 503, or a close)

The rules, in one place:

- Credits: a handler announces how many requests it takes at once; each request sent costs
  one, each DONE/CLOSE/KEEP gives it back. None free anywhere: a request waits here, in
  arrival order. Of the handlers with a free credit the next request goes to the cheapest:
  (requests out at it + 1) x its moving average of response time ("peak EWMA" as Finagle
  and Linkerd balance): a handler twice as slow gets half the share of its peers, so one
  slow or CPU-starved handler stops taking the requests it would delay. An estimate not
  refreshed decays towards the handlers' mean (time constant LATENCY_DECAY), so one slow
  request does not keep a handler out for good: it is tried again, and measured.
- One request per connection at a time: the next of a connection goes out only when the
  previous one's reply was acknowledged, so pipelined requests are answered in order. A
  reply that closes the connection (CLOSE), or mongrel2's disconnect notice, drops what is
  queued behind it, never served; so is anything of that connection that arrives later
  (mongrel2 may have parsed more requests behind a closing one): a closed connection is
  remembered until its disconnect notice, or for CLOSED_MEMORY seconds.
- Sticky: disconnect notices and WebSocket frames go to the handler serving or holding
  their connection (HOLD: a stream; KEEP: a WebSocket).
- Each dispatcher process is an instance (random id) named in its WHO and in its answer
  to HELLO, so a handler tells a restarted dispatcher (which repeated nothing: it answers
  what it holds) from this one having taken it for dead (it withholds). Request ids start
  at 1 in each instance; an acknowledgement of an id we do not hold (DONE 0 above all)
  only gives a credit back.
- A handler silent for `dead_after` seconds is dead. Its unacknowledged requests that are
  safe to repeat go to another handler (at the head of their connection, so order holds);
  the others get 503 JSON with Retry-After, and their connections close. A connection it
  held (a stream under way, a WebSocket) is closed: the client learns at once.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import deque
from dataclasses import dataclass, field

from m2stack.protocol import dispatch as wire
from m2stack.protocol import http
from m2stack.protocol import mongrel2 as m2

log = logging.getLogger("m2stack.dispatch")

Key = tuple[str, bytes, bytes]  # (front, sender, connection id): conn ids are per mongrel2 process

LATENCY_DECAY = 1.0     # seconds: how fast an estimate not refreshed returns to the mean
CLOSED_MEMORY = 60.0    # seconds a closed connection is remembered (mongrel2's ids only grow)
# Requests one connection may have queued here behind the one being served. A client that
# pipelines deeper is closed: what the dispatcher holds stays bounded per connection (and
# a crash of it loses little), and one client cannot take the intake of every other.
PIPELINE_DEPTH = 32


@dataclass(frozen=True, slots=True)
class Incoming:
    """What the dispatcher needs of one message from mongrel2."""

    front: str
    sender: bytes
    conn_id: bytes
    method: str
    is_disconnect: bool
    raw: bytes

    @classmethod
    def parse(cls, front: str, raw: bytes, fast_json: m2.HeaderDecoder | None = None) -> Incoming:
        sender, conn_id, method, body = m2.peek_request(raw, fast_json)  # ProtocolError for the caller
        return cls(front, sender, conn_id, method, method == "JSON" and m2.is_disconnect_notice(body), raw)

    @property
    def key(self) -> Key:
        return (self.front, self.sender, self.conn_id)


@dataclass(eq=False, slots=True)
class Item:
    """One request handed to a handler and not yet acknowledged."""

    id: bytes
    incoming: Incoming
    conn: Connection
    handler: Handler
    retryable: bool
    sent_at: float = 0.0
    held: bool = False       # HOLD (answered in parts) or KEEP (a WebSocket): never repeated
    finished: bool = False   # KEEP: its credit came back, the connection stays bound


@dataclass(eq=False, slots=True)
class Connection:
    """A client connection with work under way or queued; forgotten when it has none."""

    key: Key
    counts: Counters                     # its front's
    current: Item | None = None          # the request out at a handler (or the KEEP binding)
    queue: deque[Incoming] = field(default_factory=deque)
    gone: bool = False                   # disconnected or closed: nothing more is served
    notified: bool = False               # mongrel2's disconnect notice came: no tombstone
    waiting: bool = False                # its head request waits for a credit
    # Who answered its last request: the next one goes there too while it has a credit.
    # Replies leave each handler on its own TCP connection to mongrel2, and an
    # acknowledgement can overtake its reply; another handler's answer to the next
    # request (with its close) could then reach the client first.
    last_handler: Handler | None = None


@dataclass(eq=False, slots=True)
class Handler:
    routing_id: bytes
    capacity: int
    free: int
    last_seen: float
    items: dict[bytes, Item] = field(default_factory=dict)
    leaving: bool = False
    said_bye: bool = False    # then its silence, once nothing is out at it, is its exit
    latency: float = 0.0      # moving average of seconds from hand-out to acknowledgement
    measured_at: float = 0.0

    def cost(self, now: float, mean: float) -> float:
        """What one more request here is expected to wait: its latency estimate, decayed
        towards the mean since it was last measured, times the requests out at it + 1."""
        latency = self.latency
        if mean and latency != mean:
            latency = mean + (latency - mean) * math.exp(-(now - self.measured_at) / LATENCY_DECAY)
        return latency * (self.capacity - self.free + 1)


# What the dispatcher counts: plain ints the hot path bumps (no lock: one thread writes
# them), read at each heartbeat by the exporter (dispatch/exporter.py). They only grow.
@dataclass(slots=True)
class Counters:
    """Requests of one front (Dispatcher.fronts), by what became of them; the sum of every
    front's is Dispatcher.counters."""

    dispatched: int = 0
    acknowledged: int = 0
    retried: int = 0          # repeated on another handler: theirs was taken for dead
    refused: int = 0          # answered 503: theirs was taken for dead, not safe to repeat
    closed: int = 0           # connections the dispatcher closed itself (their holder died, ...)
    dropped: int = 0          # queued behind a closed connection, never served
    handlers_lost: int = 0    # in the sum only: handler_counts.lost


@dataclass(slots=True)
class HandlerCounters:
    joined: int = 0
    left: int = 0             # said BYE
    dead: int = 0             # taken for dead (silent, or unreachable), busy or idle
    lost: int = 0             # ... of those, with requests out at them


def unavailable(sender: bytes, conn_id: bytes, method: str) -> list[bytes]:
    """503 JSON and a close: the handler died with this request, which is not safe to repeat."""
    body = json.dumps({"error": {
        "status": 503,
        "message": f"the handler serving this request stopped answering: it may or may not "
                   f"have run; a {method} is not repeated because that may not be safe: retry "
                   "if it is",
    }}).encode()
    wire_bytes = http.render_http_response(503, "Service Unavailable", [
        ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
        ("Retry-After", "1"), ("Connection", "close"),
    ], body)
    return m2.frame_response(sender, (conn_id,), wire_bytes) + m2.frame_close(sender, (conn_id,))


class Dispatcher:
    LATENCY_WEIGHT = 0.2  # of each new measurement in the moving average

    def __init__(self, *, dead_after: float, retry_methods: frozenset[str], max_waiting: int = 100,
                 instance: bytes | None = None):
        self.instance = instance or os.urandom(8).hex().encode()
        self.now = 0.0  # the latest time the service told us
        self.dead_after = dead_after
        self.max_waiting = max_waiting  # requests held here for want of a credit, at most
        self.closed: dict[Key, float] = {}  # closed connections, oldest first: key -> when
        self.retry_methods = retry_methods
        self.handlers: dict[bytes, Handler] = {}
        self.connections: dict[Key, Connection] = {}
        self.waiting: deque[Connection] = deque()   # connections whose head waits for a credit
        self.to_handlers: list[tuple[bytes, list[bytes]]] = []
        self.to_fronts: list[tuple[str, bytes]] = []
        self.fronts: dict[str, Counters] = {}   # front -> its counts
        self.handler_counts = HandlerCounters()
        self._next_id = 0  # the first request is 1: no request is wire.NO_REQUEST

    # -- what the service asks --------------------------------------------------------

    @property
    def counters(self) -> Counters:
        """Every front's counts summed."""
        total = Counters(handlers_lost=self.handler_counts.lost)
        for counts in self.fronts.values():
            total.dispatched += counts.dispatched
            total.acknowledged += counts.acknowledged
            total.retried += counts.retried
            total.refused += counts.refused
            total.closed += counts.closed
            total.dropped += counts.dropped
        return total

    def front_counts(self, front: str) -> Counters:
        counts = self.fronts.get(front)
        if counts is None:
            counts = self.fronts[front] = Counters()
        return counts

    @property
    def free_credits(self) -> int:
        return sum(h.free for h in self.handlers.values() if not h.leaving)

    @property
    def room(self) -> int:
        """How many more messages to take from mongrel2 now: the free credits, plus a
        small backlog (max_waiting) so that disconnect notices, which need no credit, are
        still read while every credit is out. What is not taken waits in mongrel2, where a
        crash of ours cannot lose it."""
        return self.free_credits + max(0, self.max_waiting - len(self.waiting))

    @property
    def wants_requests(self) -> bool:
        return self.room > 0

    @property
    def in_flight(self) -> int:
        return sum(len(h.items) for h in self.handlers.values())

    # -- from mongrel2 -------------------------------------------------------------------

    def from_front(self, incoming: Incoming, now: float | None = None) -> None:
        if now is not None:
            self.now = now
        key = incoming.key
        conn = self.connections.get(key)
        if incoming.method == "JSON":
            if incoming.is_disconnect:
                self.closed.pop(key, None)
                self._disconnected(conn, incoming)
            elif conn is not None and conn.current is not None:
                self._to_handler(conn.current.handler, wire.connection_message(incoming.raw))
            return
        if key in self.closed:  # behind a reply that closed the connection: never served
            self.front_counts(incoming.front).dropped += 1
            return
        if incoming.method == "WEBSOCKET":
            if conn is not None and conn.current is not None:
                self._to_handler(conn.current.handler, wire.connection_message(incoming.raw))
            else:  # its handler is gone (or we restarted): the client learns at once
                self._close_at_front(key)
            return
        if conn is None:  # its front's counts found once per connection, not per count
            conn = self.connections[key] = Connection(key, self.front_counts(incoming.front))
        if conn.gone:
            return
        if conn.current is not None or conn.waiting:
            if len(conn.queue) >= PIPELINE_DEPTH:
                log.warning("connection closed: pipelined too deep", extra={"depth": len(conn.queue)})
                conn.counts.dropped += 1
                self._close_at_front(key)
                self._drop(conn)
                return
            conn.queue.append(incoming)  # pipelined: it waits for the one before it
            return
        self._hand_out(conn, incoming)

    def _disconnected(self, conn: Connection | None, incoming: Incoming) -> None:
        if conn is None:
            return  # an idle connection: nobody holds it
        conn.counts.dropped += len(conn.queue)
        conn.queue.clear()
        conn.gone = conn.notified = True
        item = conn.current
        if item is None:
            self._forget(conn)
            return
        self._to_handler(item.handler, wire.connection_message(incoming.raw))
        if item.finished:  # a WebSocket binding: nothing more will be acknowledged
            item.handler.items.pop(item.id, None)
            conn.current = None
            self._forget(conn)

    # -- from handlers --------------------------------------------------------------------

    def from_handler(self, routing_id: bytes, frames: list[bytes], now: float) -> None:
        """One handler message (the routing id stripped). ProtocolError if malformed."""
        acks: list[tuple[bytes, bytes]] = []
        args: list[bytes] = []
        if frames and frames[0] in wire.ACKS:  # one acknowledgement, or several in one message
            verb, acks = frames[0], wire.parse_acks(frames)
        else:
            verb, args = wire.parse_from_handler(frames)
        self.now = now
        handler = self.handlers.get(routing_id)
        if verb == wire.HELLO:
            capacity, free = int(args[0]), int(args[1])
            if handler is None:
                handler = self.handlers[routing_id] = Handler(routing_id, capacity, free, now)
                self.handler_counts.joined += 1
                # Priced like its peers until measured: a new handler at cost 0 would get
                # every request until its credits ran out.
                measured = [h.latency for h in self.handlers.values() if h.latency]
                handler.latency = sum(measured) / len(measured) if measured else 0.0
                log.info("handler joined", extra={"handler": routing_id.hex(), "capacity": capacity})
            else:  # it asked again after a WHO: what is out at it still counts
                handler.capacity = capacity
                handler.free = max(0, min(free, capacity - sum(not i.finished for i in handler.items.values())))
            handler.last_seen = now
            self._to_handler(handler, wire.welcome(self.instance))  # before any REQ: they are ours
            self._serve_waiting()
            return
        if handler is None:
            self._to_handler_id(routing_id, wire.who(self.instance))
            return
        handler.last_seen = now
        if verb == wire.BEAT:
            self._to_handler(handler, [wire.BEAT])  # the answer tells it we still count on it
            return
        if verb == wire.BYE:
            if not handler.said_bye:
                self.handler_counts.left += 1
            handler.leaving = handler.said_bye = True
            self._to_handler(handler, [wire.BYE])
            log.info("handler leaving", extra={"handler": routing_id.hex(), "in_flight": len(handler.items)})
            return
        for verb, request_id in acks:
            self._acknowledged(handler, verb, request_id)
            if handler.routing_id not in self.handlers:
                return  # it was leaving and is done: what follows is of no request we hold

    def _acknowledged(self, handler: Handler, verb: bytes, request_id: bytes) -> None:
        item = handler.items.get(request_id)
        if item is None:
            # DONE 0: a request of a dispatcher that forgot it (another instance, or this
            # one before it took the handler for dead), now finished; or a repeat. The
            # credit is the handler's again, never more than what is not out at it.
            if verb != wire.HOLD:
                out = sum(not i.finished for i in handler.items.values())
                handler.free = min(handler.capacity - out, handler.free + 1)
                self._serve_waiting()
            return
        conn = item.conn
        if verb == wire.HOLD:
            item.held = True
            return
        if not item.finished:
            handler.free = min(handler.capacity, handler.free + 1)
            conn.counts.acknowledged += 1
            if not item.held:  # a stream's length says nothing of the handler's speed
                took = max(0.0, self.now - item.sent_at)
                handler.latency = took if not handler.latency else (
                    handler.latency + self.LATENCY_WEIGHT * (took - handler.latency))
                handler.measured_at = self.now
        if verb == wire.KEEP:
            item.held = item.finished = True  # the WebSocket's binding: conn.current stays
            self._serve_waiting()
            return
        del handler.items[request_id]
        conn.current = None
        conn.last_handler = handler
        if verb == wire.CLOSE:
            conn.gone = True
        self._next_of(conn)
        self._serve_waiting()
        if handler.leaving and not handler.items:
            self._remove(handler)

    # -- time ------------------------------------------------------------------------------

    def expire(self, now: float) -> None:
        """Handlers silent longer than dead_after are dead: save what they held."""
        self.now = now
        while self.closed:
            key, when = next(iter(self.closed.items()))
            if now - when < CLOSED_MEMORY:
                break
            del self.closed[key]
        dead = [h for h in self.handlers.values() if now - h.last_seen > self.dead_after]
        for handler in dead:  # first, so no repeated request goes to another of them
            handler.leaving = True
        for handler in dead:
            self.lost(handler.routing_id, why="silent")

    def lost(self, routing_id: bytes, *, why: str) -> None:
        handler = self.handlers.get(routing_id)
        if handler is None:
            return
        self._remove(handler)
        if not handler.items:
            if not handler.said_bye:
                self.handler_counts.dead += 1
            return
        self.handler_counts.dead += 1
        self.handler_counts.lost += 1
        log.warning("handler lost", extra={"handler": routing_id.hex(), "why": why,
                                           "unacknowledged": len(handler.items)})
        for item in list(handler.items.values()):
            conn = item.conn
            conn.current = None
            if conn.gone:
                self._forget(conn)
            elif item.held:
                self._close_at_front(conn.key)
                self._drop(conn)
            elif item.retryable:
                conn.counts.retried += 1
                conn.queue.appendleft(item.incoming)
                self._next_of(conn)
            else:
                conn.counts.refused += 1
                front, sender, conn_id = conn.key
                for message in unavailable(sender, conn_id, item.incoming.method):
                    self.to_fronts.append((front, message))
                self._drop(conn)
        self._serve_waiting()

    # -- the hand-out ------------------------------------------------------------------

    def _hand_out(self, conn: Connection, incoming: Incoming) -> None:
        handler = conn.last_handler
        if handler is None or handler.free <= 0 or handler.leaving or \
                self.handlers.get(handler.routing_id) is not handler:
            handler = self._least_loaded()
        if handler is None:
            conn.queue.appendleft(incoming)
            conn.waiting = True
            self.waiting.append(conn)
            return
        self._next_id += 1
        request_id = b"%d" % self._next_id
        item = Item(request_id, incoming, conn, handler, retryable=incoming.method in self.retry_methods,
                    sent_at=self.now)
        handler.items[request_id] = item
        handler.free -= 1
        # To the end of the order: among equally loaded handlers, the least recently chosen goes first.
        del self.handlers[handler.routing_id]
        self.handlers[handler.routing_id] = handler
        conn.current = item
        conn.counts.dispatched += 1
        self._to_handler(handler, wire.request(request_id, incoming.raw))

    def _least_loaded(self) -> Handler | None:
        """The cheapest handler with a free credit; of equals, the least recently chosen."""
        best, best_cost = None, 0.0
        measured = [h.latency for h in self.handlers.values() if h.latency]
        mean = sum(measured) / len(measured) if measured else 0.0
        now = self.now
        for handler in self.handlers.values():
            if handler.free > 0 and not handler.leaving:
                cost = handler.cost(now, mean)
                if best is None or cost < best_cost:
                    best, best_cost = handler, cost
        return best

    def _serve_waiting(self) -> None:
        while self.waiting and self._least_loaded() is not None:
            conn = self.waiting.popleft()
            conn.waiting = False
            if conn.gone or not conn.queue:
                self._forget(conn)
                continue
            self._hand_out(conn, conn.queue.popleft())

    def _next_of(self, conn: Connection) -> None:
        if conn.gone:
            self._drop(conn)
        elif conn.queue:
            self._hand_out(conn, conn.queue.popleft())
        else:
            self._forget(conn)

    def _drop(self, conn: Connection) -> None:
        conn.counts.dropped += len(conn.queue)
        conn.queue.clear()
        conn.gone = True
        if not conn.notified:
            self.closed[conn.key] = self.now
        if conn.current is None:
            self._forget(conn)

    def _forget(self, conn: Connection) -> None:
        if self.connections.get(conn.key) is conn and conn.current is None and not conn.waiting:
            del self.connections[conn.key]

    def _remove(self, handler: Handler) -> None:
        self.handlers.pop(handler.routing_id, None)

    # -- out -------------------------------------------------------------------------------

    def _to_handler(self, handler: Handler, frames: list[bytes]) -> None:
        self.to_handlers.append((handler.routing_id, frames))

    def _to_handler_id(self, routing_id: bytes, frames: list[bytes]) -> None:
        self.to_handlers.append((routing_id, frames))

    def _close_at_front(self, key: Key) -> None:
        front, sender, conn_id = key
        self.front_counts(front).closed += 1
        for message in m2.frame_close(sender, (conn_id,)):
            self.to_fronts.append((front, message))
