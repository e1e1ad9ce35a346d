"""The wire between handlers and the dispatcher (docs/dispatcher.md has the whole story).

Every message is one ZeroMQ frame: a verb and its arguments separated by single spaces
(a request's own bytes last, as they are: they may hold spaces). One frame, not one per
argument: each frame costs a send and a receive, the largest cost of the dispatcher.
Handlers hold a DEALER socket connected to the dispatcher's ROUTER, so the dispatcher sees
each handler's routing id in front of the frame and the handler never does.

Handler to dispatcher:

    HELLO capacity free     join (or rejoin after WHO): how many requests I take at once,
                            and how many of them are free now (what I still hold of a
                            dispatcher that forgot it is not free)
    BEAT                    I am alive (any message counts as alive)
    DONE id                 the reply to request `id` went to mongrel2; one credit back.
                            `DONE 0` (no request has id 0): a credit back for a request of
                            a dispatcher that forgot it, or of one that is gone
    CLOSE id                ... and it closed the connection: drop what is queued behind it
    KEEP id                 ... and the connection stays mine (a WebSocket): send me its
                            messages until CLOSE id or mongrel2's disconnect notice
    HOLD id                 request `id` is being answered in parts (a stream): never repeat
                            it; send me its connection's messages; DONE or CLOSE follows
    BYE                     I am leaving: send me no new request
    DONE a CLOSE b DONE c   several acknowledgements in one message (at most ACKS_PER_MESSAGE),
                            as if sent one by one in that order: a handler acknowledges what it
                            served in one turn of its receive loop at once

Dispatcher to handler:

    HELLO instance          the answer to HELLO: this dispatcher's instance (random per
                            process); every REQ that follows is that instance's
    REQ id message          a request (mongrel2's message, untouched), costing one credit
    MSG message             a message for a connection this handler holds or is serving
                            (disconnect notices, WebSocket frames): no credit, no answer
    BEAT                    the answer to a BEAT: you are still counted on
    WHO instance            I do not know you: send HELLO. The same instance as gave you
                            your requests took you for dead, and may have given them to
                            others: withhold their replies. Another instance (a restarted
                            dispatcher) repeated nothing: answer them, then `DONE 0` each
    BYE                     no request will follow: finish what you have and go

Pure: bytes in, bytes out; the sockets belong to the callers.
"""

from __future__ import annotations

from m2stack.protocol.errors import ProtocolError

# The request id no request has (ids start at 1): `DONE 0` gives a credit back and
# acknowledges nothing, so a new dispatcher's request 12 is never taken for the old one's.
NO_REQUEST = b"0"

HELLO, BEAT, DONE, CLOSE, KEEP, HOLD, BYE = b"HELLO", b"BEAT", b"DONE", b"CLOSE", b"KEEP", b"HOLD", b"BYE"
REQ, MSG, WHO = b"REQ", b"MSG", b"WHO"

# The acknowledgements: each names one request.
ACKS = frozenset({DONE, CLOSE, KEEP, HOLD})
# A message of several acknowledgements holds at most this many (a bound on what one
# malformed message can make the dispatcher do, and on how long a handler holds replies).
ACKS_PER_MESSAGE = 64
FROM_HANDLER = frozenset({HELLO, BEAT, BYE} | ACKS)
FROM_DISPATCHER = frozenset({HELLO, REQ, MSG, BEAT, WHO, BYE})


def hello(capacity: int, free: int) -> list[bytes]:
    return [HELLO, b"%d" % capacity, b"%d" % free]


def welcome(instance: bytes) -> list[bytes]:
    """The dispatcher's answer to HELLO."""
    return [HELLO, instance]


def who(instance: bytes) -> list[bytes]:
    return [WHO, instance]


def ack(verb: bytes, request_id: bytes) -> list[bytes]:
    if verb not in ACKS:
        raise ValueError(f"not an acknowledgement: {verb!r}")
    return [verb, request_id]


def acks(pairs: list[tuple[bytes, bytes]]) -> list[bytes]:
    """Several acknowledgements, (verb, request id) each, as one message's parts."""
    if not 0 < len(pairs) <= ACKS_PER_MESSAGE:
        raise ValueError(f"1 to {ACKS_PER_MESSAGE} acknowledgements in a message, not {len(pairs)}")
    parts: list[bytes] = []
    for verb, request_id in pairs:
        parts += ack(verb, request_id)
    return parts


def request(request_id: bytes, message: bytes) -> list[bytes]:
    return [REQ, request_id, message]


def connection_message(message: bytes) -> list[bytes]:
    return [MSG, message]


def pack(parts: list[bytes]) -> bytes:
    """One message's frame."""
    return b" ".join(parts)


def unpack_from_handler(frame: bytes) -> list[bytes]:
    return frame.split(b" ")


def unpack_from_dispatcher(frame: bytes) -> list[bytes]:
    verb, _, rest = frame.partition(b" ")
    if verb == REQ:
        request_id, _, message = rest.partition(b" ")
        return [verb, request_id, message]
    if verb == MSG:
        return [verb, rest]
    return [verb, *rest.split(b" ")] if rest else [verb]


def parse_from_handler(frames: list[bytes]) -> tuple[bytes, list[bytes]]:
    """(verb, arguments) of a handler's message; ProtocolError if it is not one."""
    if len(frames) == 2 and frames[0] in ACKS and frames[1].isdigit():
        return frames[0], frames[1:]  # the common case, first
    if not frames or frames[0] not in FROM_HANDLER:
        raise ProtocolError(f"unknown message from a handler: {frames[:1]!r}")
    verb, args = frames[0], frames[1:]
    if verb == HELLO:
        if len(args) != 2 or not all(arg.isdigit() for arg in args):
            raise ProtocolError("HELLO takes two counts")
        if int(args[0]) < 1 or int(args[1]) > int(args[0]):
            raise ProtocolError("HELLO: capacity at least 1, free at most capacity")
    elif verb in ACKS:
        if len(args) != 1 or not args[0].isdigit():
            raise ProtocolError(f"{verb.decode()} takes one request id")
    elif args:
        raise ProtocolError(f"{verb.decode()} takes no arguments")
    return verb, args


def parse_acks(frames: list[bytes]) -> list[tuple[bytes, bytes]]:
    """The (verb, request id) pairs of a message of acknowledgements, one or more;
    ProtocolError if it is anything else."""
    count, odd = divmod(len(frames), 2)
    if odd or not 0 < count <= ACKS_PER_MESSAGE:
        raise ProtocolError(f"acknowledgements come in pairs, 1 to {ACKS_PER_MESSAGE}: {len(frames)} parts")
    pairs = list(zip(frames[::2], frames[1::2], strict=True))
    for verb, request_id in pairs:
        if verb not in ACKS or not request_id.isdigit():
            raise ProtocolError(f"not an acknowledgement: {verb[:8]!r} {request_id[:20]!r}")
    return pairs


def parse_from_dispatcher(frames: list[bytes]) -> tuple[bytes, list[bytes]]:
    """(verb, arguments) of the dispatcher's message; ProtocolError if it is not one."""
    if not frames or frames[0] not in FROM_DISPATCHER:
        raise ProtocolError(f"unknown message from the dispatcher: {frames[:1]!r}")
    verb, args = frames[0], frames[1:]
    expected = {HELLO: 1, REQ: 2, MSG: 1, BEAT: 0, WHO: 1, BYE: 0}[verb]
    if len(args) != expected:
        raise ProtocolError(f"{verb.decode()} takes {expected} frames, got {len(args)}")
    if verb == REQ and not args[0].isdigit():
        raise ProtocolError("REQ: the request id is not digits")
    if verb in (HELLO, WHO) and not args[0]:
        raise ProtocolError(f"{verb.decode()}: no instance")
    return verb, args
