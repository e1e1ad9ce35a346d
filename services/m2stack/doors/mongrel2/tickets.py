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

from m2stack.protocol import dispatch as wire


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
