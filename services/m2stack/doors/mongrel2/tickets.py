"""Which dispatcher gave each request a handler holds, and what becomes of it when a
dispatcher says WHO (dispatched.py does the I/O; docs/dispatcher.md, "Crash").

A dispatcher names its instance (random per process) in its answer to HELLO and in WHO.
On WHO, the requests this handler holds of that same instance were given to others (it
took this handler for dead): their replies are withheld. Those of another instance (the
dispatcher restarted, and the new one repeated nothing) are answered: the replies go to
mongrel2 directly, the client is still there.

Either way the dispatcher that says WHO does not count them, so they are not free in the
HELLO that follows, and each gives its credit back with `DONE 0` when it ends. Request
ids restart at 1 in each instance: a ticket (the name of one request here) is its wire id
behind the instance's epoch, so a new instance's request 12 is never the old one's.

No socket, no clock: unit-tested as it is (tests/unit/test_dispatch_tickets.py).
"""

from __future__ import annotations

from typing import Generic, TypeVar

from m2stack.protocol import dispatch as wire

R = TypeVar("R")  # a reply, as the intake sends it


class Tickets:
    def __init__(self) -> None:
        self.instance: bytes | None = None  # the dispatcher whose requests come now
        self.epoch = 0
        self.prefix = b"0:"
        self.current: set[bytes] = set()     # tickets that dispatcher counts as out here
        self.orphans: set[bytes] = set()     # of a dispatcher that is gone: answered, DONE 0
        self.withheld: set[bytes] = set()    # given to others: never answered, DONE 0
        # The instance our HELLO after its WHO went to, until it answers: every message sent
        # before that HELLO gets a WHO too, and those echoes are not a new forgetting.
        self.asked: bytes | None = None

    @property
    def held(self) -> int:
        """Requests running here, counted or not by the dispatcher."""
        return len(self.current) + len(self.orphans) + len(self.withheld)

    def welcome(self, instance: bytes) -> None:
        """The dispatcher answered HELLO: the requests that follow are `instance`'s."""
        self.asked = None
        if instance != self.instance:
            self._forgotten_by(instance)

    def take(self, request_id: bytes) -> bytes:
        """A REQ: the ticket its greenlet carries."""
        ticket = self.prefix + request_id
        self.current.add(ticket)
        return ticket

    def who(self, instance: bytes) -> tuple[int, int] | None:
        """The dispatcher `instance` does not know us: (withheld, orphaned) by this WHO, for
        a HELLO to send; None for an echo of a WHO already answered with one."""
        if instance == self.asked:
            return None
        self.asked = instance
        if instance == self.instance:
            taken = self.current
            self.withheld |= taken
            self.current = set()
            return len(taken), 0
        orphaned = len(self.current)
        self._forgotten_by(instance)
        return 0, orphaned

    def _forgotten_by(self, instance: bytes) -> None:
        self.orphans |= self.current
        self.current = set()
        self.instance = instance
        self.epoch += 1
        self.prefix = b"%d:" % self.epoch

    def may_reply(self, ticket: bytes) -> bool:
        return ticket not in self.withheld

    def ended(self, verb: bytes, ticket: bytes) -> list[bytes] | None:
        """Its reply went out (DONE, CLOSE, KEEP, or HOLD for a stream's head) or was
        withheld (DONE): the acknowledgement to send, if any."""
        if ticket in self.current:
            if verb != wire.HOLD:
                self.current.discard(ticket)
            return wire.ack(verb, ticket[len(self.prefix):])
        if verb == wire.HOLD:  # the dispatcher that could repeat it is gone, or already has
            return None
        if ticket in self.orphans or ticket in self.withheld:
            self.orphans.discard(ticket)
            self.withheld.discard(ticket)
            return wire.ack(wire.DONE, wire.NO_REQUEST)
        return None  # ended twice


class Turn(Generic[R]):
    """What the requests served in one turn of the receive loop end with, held until the
    turn ends and then sent in this order: ONE message of their acknowledgements, then
    their replies, with no switch of greenlet between (dispatched.py's `_flush`).

    Why that order: a reply that reached mongrel2 without its acknowledgement reaching the
    dispatcher is a request the dispatcher repeats if this handler dies, and a client
    answered twice. The other way round, a handler killed between the two loses the replies
    of one turn (their clients wait for mongrel2's reaper); it never answers twice. Why
    held: one message of acknowledgements costs both ends one send and one receive instead
    of one per request.

    Whether a reply may go out is decided when it is sent, not when it was made: a WHO
    that came later in the same turn withholds it (Tickets.may_reply). No socket, no
    clock: unit-tested as it is."""

    __slots__ = ("owner", "entries", "pending")

    def __init__(self, owner: object):
        self.owner = owner  # the greenlet serving this turn: only its requests are held here
        self.entries: list[tuple[bytes, bytes, R | None]] = []  # (verb, ticket, reply or None)
        self.pending: R | None = None  # the reply of the request being served now

    def reply(self, reply: R) -> None:
        self.pending = reply

    def ended(self, verb: bytes, ticket: bytes) -> None:
        """The request being served ended (`verb`, as for Tickets.ended), with the reply
        given since the last one ended, if any."""
        self.entries.append((verb, ticket, self.pending))
        self.pending = None

    @property
    def full(self) -> bool:
        return len(self.entries) >= wire.ACKS_PER_MESSAGE

    def take(self, tickets: Tickets) -> tuple[list[bytes], list[R]]:
        """The acknowledgements' message (empty if none is owed) and the replies to send
        after it; the turn is empty afterwards."""
        pairs: list[tuple[bytes, bytes]] = []
        replies: list[R] = []
        for verb, ticket, reply in self.entries:
            if reply is not None and tickets.may_reply(ticket):
                replies.append(reply)
            message = tickets.ended(verb, ticket)
            if message is not None:
                pairs.append((message[0], message[1]))
        self.entries = []
        return (wire.acks(pairs) if pairs else []), replies
