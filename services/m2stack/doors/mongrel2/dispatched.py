"""Intake from the dispatcher: a handler's end of its wire (protocol/dispatch.py,
docs/dispatcher.md), and the only place that knows its verbs.

One DEALER socket to the dispatcher's ROUTER, with a random routing id per process (a
restarted handler is a new one). It announces the handler's capacity, takes requests and
connection messages, acknowledges each request as its reply goes to mongrel2 (replies go
to the front directly), and beats every HANDLER_DISPATCH_BEAT seconds. The dispatcher's
name is resolved here, off the hub's thread, and followed when it moves.

Each turn of the receive loop takes every message that has arrived. Its requests are
served in the receiving greenlet (HANDLER_SERVE_INLINE, as pull.py serves; the hand-off
starts a new receiver if one waits), and what they end with is held in a `Turn` and sent
when the turn ends: one message of acknowledgements, then the replies (tickets.py says
why in that order). A request served in a greenlet of its own replies, then acknowledges.

The fence: a reply goes out only while the dispatcher's last answer to a beat is recent
(HANDLER_DISPATCH_FENCE); after a stall the handler asks first, and if the dispatcher has
taken it for dead (WHO from the instance that gave the request) and given its requests to
others, their replies are withheld, so a client never gets two answers. A WHO from another
instance (the dispatcher restarted) withholds nothing: what this handler holds is answered
(tickets.py decides). WebSockets are closed (1012) on any WHO: the dispatcher that routed
their frames to this handler no longer does.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from m2stack.doors.mongrel2.core import CLOSED, KEPT_OPEN, SERVED, WITHHELD
from m2stack.doors.mongrel2.fronts import Front, Fronts, Handle
from m2stack.doors.mongrel2.inline import still_inline
from m2stack.doors.mongrel2.tickets import Tickets, Turn
from m2stack.hubs import Hub
from m2stack.protocol import dispatch as wire
from m2stack.protocol.errors import ProtocolError
from m2stack.settings import HandlerSettings
from m2stack.zmq_tcp import endpoint_at, keep_alive, split_endpoint

log = logging.getLogger("m2stack.doors.dispatched")

IDLE_WAKEUP = 0.25
LINK_HEARTBEAT = 1.0  # seconds
# Beats unanswered this long: look the dispatcher's name up again (it may have moved).
REFIND_AFTER = 1.0
# How the dispatcher is told each message ended (by core.SERVED, CLOSED, KEPT_OPEN, WITHHELD:
# tickets.py turns the last into `DONE 0`, a credit back for a request it forgot).
Reply = tuple[Front, bytes, bytes, bytes, bool]  # Fronts.send's arguments
_VERBS = {SERVED: wire.DONE, CLOSED: wire.CLOSE, KEPT_OPEN: wire.KEEP, WITHHELD: wire.DONE}


class DispatchedIntake:
    def __init__(self, hub: Hub, settings: HandlerSettings, fronts: Fronts, pool: Any, handle: Handle,
                 forgotten: Callable[[], None] = lambda: None):
        zmq = hub.zmq
        context = fronts.context
        self.hub = hub
        self.fronts = fronts
        self.pool = pool
        self.handle = handle
        self.forgotten = forgotten  # on WHO: close what the dispatcher no longer routes here
        self.capacity = settings.max_in_flight
        self.beat_every = settings.dispatch_beat
        self.tickets = Tickets()   # the requests received and not yet answered, by dispatcher
        self.serve_inline = settings.serve_inline
        self.turn: Turn[Reply] | None = None  # the receive loop's, while it serves in a turn
        self.fence = settings.dispatch_fence
        self.last_pong = time.monotonic()
        self.leaving = False       # we said BYE
        self.released = False      # the dispatcher answered BYE: no request will follow
        self.closed = False
        self.routing_id = os.urandom(8)
        sock = self.sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, self.routing_id)
        sock.setsockopt(zmq.SNDHWM, 0)  # acknowledgements are never dropped or blocked
        sock.setsockopt(zmq.RCVHWM, 0)  # the dispatcher's credits bound what comes in
        sock.setsockopt(zmq.LINGER, 2000)
        # ZMTP heartbeats every second: a dispatcher that vanished without a FIN is noticed
        # in ~3 s and reconnected to; one that moved is followed (_follow).
        keep_alive(zmq, sock, settings.keepalive_idle, LINK_HEARTBEAT)
        _, self.host, self.port = split_endpoint(settings.dispatcher)
        self.endpoint = settings.dispatcher if not self.host else self._find(settings.dispatcher)
        sock.connect(self.endpoint)
        self._noblock, self._events, self._pollin = int(zmq.NOBLOCK), zmq.EVENTS, int(zmq.POLLIN)
        self._draining = False
        self._take_over_receiving = self._take_over  # bound once: passed with every request

    def start(self) -> None:
        if self.serve_inline:
            self.hub.install_handoff()
        self._send(wire.hello(self.capacity, self.capacity - self.tickets.held))
        log.info("connected to the dispatcher", extra={"dispatcher": self.endpoint,
                                                       "routing_id": self.routing_id.hex(),
                                                       "capacity": self.capacity})
        self.hub.spawn_background(self._receive)
        self.hub.spawn_background(self._beat)
        if self.host:
            self.hub.spawn_background(self._follow)

    def check(self) -> None:
        if self.serve_inline:
            self.serve_inline = still_inline(self.hub)

    # -- each message ----------------------------------------------------------------------

    def from_dispatcher(self, raw: bytes, ticket: bytes | None, turn: Turn[Reply] | None = None) -> bool:
        """Requests take a place in the pool (the dispatcher's credits match its size):
        served here in `turn`, or in a greenlet of their own. Connection messages
        (disconnect notices, WebSocket frames) never wait for a place. False if a request
        served here waited (the hand-off started `_take_over` then)."""
        if ticket is None:
            self.hub.spawn_background(self._serve_connection_message, raw)
        elif turn is None:
            self.hub.spawn(self.pool, self._serve, raw, ticket)
        else:
            if self.hub.in_flight(self.pool) >= self.capacity:
                self._flush(turn)  # waiting for a place (a switch) must not hold replies
            return self.hub.serve_here(self.pool, self._take_over_receiving, self._serve, raw, ticket)
        return True

    def _front(self, raw: bytes) -> Front | None:
        """The front a message came from: the one whose mongrel2 subscribed to its sender
        (the message's first word)."""
        sender = raw[:raw.find(b" ")]
        front = self.fronts.front_for(sender)
        if front is None:
            log.warning("no front subscribed for this request's mongrel2: dropped",
                        extra={"sender": sender[:40].decode("ascii", "replace")})
        return front

    def _serve_connection_message(self, raw: bytes) -> None:
        front = self._front(raw)
        if front is not None:
            self.handle(raw, front, None)

    def _serve(self, raw: bytes, ticket: bytes) -> None:
        outcome = SERVED
        try:
            front = self._front(raw)
            outcome = CLOSED if front is None else self.handle(raw, front, ticket)
        except Exception:  # served in the receiving greenlet, it must not end the receive loop
            log.exception("a request failed outside the app")
        finally:
            self.acknowledge(_VERBS[outcome], ticket)

    def reply(self, front: Front, sender: bytes, conn_id: bytes, data: bytes, close: bool) -> None:
        """A whole reply: held for the end of the turn if served in one, else sent now."""
        turn = self._my_turn()
        if turn is not None and self.fronts.subscribed_to(front, sender):
            turn.reply((front, sender, conn_id, data, close))
        else:
            self.fronts.reply(front, sender, conn_id, data, close)  # may wait for a subscription

    def may_reply(self, ticket: bytes | None) -> bool:
        """May this request's reply go out (the fence)?"""
        if ticket is None or self.cleared(ticket):
            return True
        log.warning("reply withheld: the dispatcher gave this request to another handler",
                    extra={"ticket": ticket.decode()})
        return False

    def hold(self, ticket: bytes | None) -> bool:
        """A streamed reply's head is about to go out: the dispatcher must never repeat it.
        False: the dispatcher already has (the fence), so nothing may be sent."""
        if not self.may_reply(ticket):
            return False
        if ticket is not None:
            turn = self._my_turn()
            if turn is not None:
                self._flush(turn)  # what the turn holds first: HOLD goes out alone, now
            self._send_ack(wire.HOLD, ticket)
        return True

    def acknowledge(self, verb: bytes, ticket: bytes) -> None:
        turn = self._my_turn()
        if turn is not None:
            turn.ended(verb, ticket)
            if turn.full:
                self._flush(turn)
        else:
            self._send_ack(verb, ticket)

    def _my_turn(self) -> Turn[Reply] | None:
        """The turn the calling greenlet serves in, if any (a request that waited no longer does)."""
        turn = self.turn
        return turn if turn is not None and turn.owner is self.hub.current() else None

    def _send_ack(self, verb: bytes, ticket: bytes) -> None:
        message = self.tickets.ended(verb, ticket)
        if message is not None:
            self._send(message)

    def _flush(self, turn: Turn[Reply]) -> None:
        """The turn's acknowledgements in one message, then its replies: nothing between
        them switches greenlet (a send to an XPUB drops at its HWM, never waits)."""
        acks, replies = turn.take(self.tickets)
        if acks:
            self._send(acks, drain=False)  # the receive loop looks at the socket next
        send, zmq_error = self.fronts.send, self.hub.zmq.ZMQError
        for front, sender, conn_id, data, close in replies:
            try:
                send(front, sender, conn_id, data, close)
            except zmq_error as exc:  # its front went away meanwhile
                log.warning("reply dropped: its front is gone", extra={"front": front.name, "error": str(exc)})

    def cleared(self, ticket: bytes, limit: float = 2.0) -> bool:
        """May the reply to `ticket` go out? Not if the dispatcher gave it to another
        handler (or answered it) because it took this one for dead."""
        tickets = self.tickets
        if not tickets.may_reply(ticket):
            return False
        if time.monotonic() - self.last_pong <= self.fence:
            return True
        asked = time.monotonic()
        self._send([wire.BEAT])
        while self.last_pong < asked and tickets.may_reply(ticket) and time.monotonic() - asked < limit:
            self.hub.sleep(0.002)
        # No answer at all: the dispatcher is down, and a new one knows nothing to repeat.
        return tickets.may_reply(ticket)

    def leave(self, deadline: float) -> bool:
        """Say BYE and keep serving what is already on its way, until the dispatcher
        answers BYE (nothing more will come) or the `deadline` (time.monotonic) passes."""
        self.leaving = True
        self._send([wire.BYE])
        while not self.released and time.monotonic() < deadline:
            self.hub.sleep(0.01)
        if not self.released:
            log.warning("the dispatcher did not answer BYE", extra={"dispatcher": self.endpoint})
        return self.released

    def close(self) -> None:
        self.closed = True
        self.sock.close()  # LINGER lets the last acknowledgements go out

    # -- inside ----------------------------------------------------------------------------

    def _send(self, parts: list[bytes], drain: bool = True) -> None:
        if self.closed:
            return
        sock = self.sock
        sock.send(wire.pack(parts), self._noblock)  # SNDHWM 0: never EAGAIN
        # A send also processes the socket's pending commands, which can spend the FD's
        # edge while a message waits: the receiving greenlet, parked on that FD, would not
        # wake until its timeout (measured: 250 ms for ~2 % of requests). So whoever
        # sends takes what has arrived (not inside a turn: the receive loop takes it next).
        if drain and self.turn is None and not self._draining and sock.getsockopt(self._events) & self._pollin:
            self._drain()

    def _drain(self) -> None:
        sock, events, pollin, noblock = self.sock, self._events, self._pollin, self._noblock
        self._draining = True
        try:
            while not self.closed and sock.getsockopt(events) & pollin:
                self._handle(wire.unpack_from_dispatcher(sock.recv(noblock)))
        finally:
            self._draining = False

    def _receive(self) -> None:
        zmq = self.hub.zmq
        while not self.closed:
            try:
                frame = self.hub.receive(self.sock, IDLE_WAKEUP)
            except zmq.ZMQError:
                return  # closed at shutdown
            if frame is None:
                continue
            if not self.serve_inline:
                self._handle(wire.unpack_from_dispatcher(frame))
                if not self._draining:
                    self._drain()
            elif not self._turn(frame):
                return  # a request waited: the greenlet the hand-off started receives now

    def _turn(self, frame: bytes) -> bool:
        """`frame` and every message already here, requests served in this greenlet and
        what they end with held in one Turn, sent when no message is left (or the turn is
        full). False if a request waited: another greenlet receives from then on."""
        sock, events, pollin, noblock = self.sock, self._events, self._pollin, self._noblock
        turn: Turn[Reply] = Turn(self.hub.current())
        self.turn = turn
        try:
            while True:
                if not self._handle(wire.unpack_from_dispatcher(frame), turn):
                    return False
                if self.closed or not sock.getsockopt(events) & pollin:
                    return True
                frame = sock.recv(noblock)
        finally:
            if self.turn is turn:
                self.turn = None
            self._flush(turn)  # empty if `_take_over` sent it already

    def _take_over(self) -> None:
        """Started by the hand-off when a request served in a turn waits: send what that
        turn holds (its greenlet is busy now), then receive in its place."""
        turn, self.turn = self.turn, None
        if turn is not None:
            self._flush(turn)
        self._receive()

    def _handle(self, frames: list[bytes], turn: Turn[Reply] | None = None) -> bool:
        """One message; False if it was a request served in `turn` that waited."""
        try:
            verb, args = wire.parse_from_dispatcher(frames)
        except ProtocolError as exc:
            log.warning("bad message from the dispatcher", extra={"error": str(exc)})
            return True
        if verb == wire.REQ:
            return self.from_dispatcher(args[1], self.tickets.take(args[0]), turn)
        if verb == wire.MSG:
            self.from_dispatcher(args[0], None)
        elif verb == wire.BEAT:
            self.last_pong = time.monotonic()
        elif verb == wire.HELLO:
            self.tickets.welcome(args[0])
            self.last_pong = time.monotonic()
        elif verb == wire.WHO:
            self._forgotten(args[0])
        elif verb == wire.BYE:
            self.released = True
        return True

    def _forgotten(self, instance: bytes) -> None:
        """WHO: the same instance took us for dead (what it gave us went to others: withheld),
        or another one is there (the dispatcher restarted: what we hold is answered)."""
        self.last_pong = time.monotonic()
        counts = self.tickets.who(instance)
        if counts is None:
            return  # an answer to a message sent before our HELLO to it: that one stands
        withheld, orphaned = counts
        if withheld or orphaned:
            log.warning("the dispatcher forgot this handler", extra={
                "instance": instance.decode("ascii", "replace"), "withheld": withheld, "answered": orphaned})
        self.forgotten()
        if not self.leaving:
            # What is still running here is not free: each gives its credit back (DONE 0).
            self._send(wire.hello(self.capacity, self.capacity - self.tickets.held))
        else:
            self.released = True  # a new dispatcher sends a leaving handler nothing

    def _beat(self) -> None:
        while not self.closed:
            self._send([wire.BEAT])
            self.hub.sleep(self.beat_every)

    def _lookup(self) -> list[str]:
        try:
            return self.hub.resolve(self.host, int(self.port))
        except OSError as exc:
            log.warning("cannot resolve the dispatcher", extra={"host": self.host, "error": str(exc)})
            return []

    def _find(self, configured: str) -> str:
        """The endpoint at the dispatcher's address, waiting until its name resolves."""
        while not (addresses := self._lookup()):
            self.hub.sleep(IDLE_WAKEUP)
        return endpoint_at(configured, addresses[0])

    def _follow(self) -> None:
        """While beats go unanswered, resolve the name again and move to a new address."""
        while not self.closed:
            self.hub.sleep(IDLE_WAKEUP)
            if self.closed or time.monotonic() - self.last_pong < REFIND_AFTER:
                continue
            addresses = self._lookup()
            if not addresses or any(endpoint_at(self.endpoint, a) == self.endpoint for a in addresses):
                continue  # same place (restarting there, or just slow): libzmq reconnects
            moved_to = endpoint_at(self.endpoint, addresses[0])
            log.info("the dispatcher moved", extra={"from": self.endpoint, "to": moved_to})
            self.sock.disconnect(self.endpoint)
            self.sock.connect(moved_to)
            self.endpoint = moved_to
