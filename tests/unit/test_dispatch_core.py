"""The dispatcher's state machine (m2stack.dispatch.core) and its wire (protocol/dispatch.py),
driven through the public API only: real mongrel2 messages in, what it has to send out
(to_handlers, to_fronts), counters, wants_requests, room, free_credits, in_flight, and the
tombstones of closed connections (closed)."""

import json
import math

import pytest

from m2stack.dispatch.core import CLOSED_MEMORY, LATENCY_DECAY, PIPELINE_DEPTH, Dispatcher, Handler, Incoming
from m2stack.protocol import dispatch as wire
from m2stack.protocol.errors import ProtocolError
from m2stack.protocol.mongrel2 import encode_request, parse_response

SENDER = b"f400bf85"
FRONT = "tcp://m2-a:9999"
OTHER_FRONT = "tcp://m2-b:9999"
A, B, C = b"\x00handler-a", b"\x00handler-b", b"\x00handler-c"
DEAD_AFTER = 1.0
RETRY = frozenset({"GET", "HEAD", "OPTIONS"})
INSTANCE = b"5eed0f1n57a4ce01"
WHO = wire.who(INSTANCE)


# -- building what arrives ----------------------------------------------------------------


def http_request(conn, method="GET", path="/", body=b"", sender=SENDER):
    headers = {"PATH": path, "METHOD": method, "VERSION": "HTTP/1.1", "URI": path, "host": "localhost"}
    return encode_request(sender, conn, path, headers, body)


def disconnect(conn, sender=SENDER):
    return encode_request(sender, conn, "@*", {"PATH": "@*", "METHOD": "JSON"}, b'{"type":"disconnect"}')


def control(conn, kind):
    return encode_request(SENDER, conn, "@*", {"PATH": "@*", "METHOD": "JSON"}, json.dumps({"type": kind}).encode())


def handshake(conn):
    headers = {"PATH": "/ws", "METHOD": "WEBSOCKET_HANDSHAKE", "upgrade": "websocket",
               "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ=="}
    return encode_request(SENDER, conn, "/ws", headers, b"")


def ws_frame(conn, data=b"\x81\x05hello"):
    return encode_request(SENDER, conn, "/ws", {"PATH": "/ws", "METHOD": "WEBSOCKET", "FLAGS": "0x81"}, data)


def dispatcher(max_waiting=0):
    """max_waiting 0: nothing is taken from mongrel2 without a free credit, so `wants_requests`
    says exactly whether a credit is free (the backlog has its own tests)."""
    return Dispatcher(dead_after=DEAD_AFTER, retry_methods=RETRY, max_waiting=max_waiting, instance=INSTANCE)


def front(d, raw, address=FRONT, now=None):
    d.from_front(Incoming.parse(address, raw), now)


def hello(d, handler, capacity, free=None, now=0.0):
    """The handler joins; the dispatcher's answer (its instance, before any request it
    hands out) is checked and taken, so drain() shows what the join set going."""
    before = len(d.to_handlers)
    d.from_handler(handler, wire.hello(capacity, capacity if free is None else free), now)
    assert d.to_handlers[before] == (handler, wire.welcome(INSTANCE)), d.to_handlers
    del d.to_handlers[before]


def ack(d, handler, verb, request_id, now=0.0):
    d.from_handler(handler, wire.ack(verb, request_id), now)


def beat(d, handler, now):
    d.from_handler(handler, [wire.BEAT], now)


def pong(handler):
    """The dispatcher's answer to a known handler's BEAT, as drain() shows it."""
    return ("handler", handler, [wire.BEAT])


def alive(d, handler, now):
    """A beat that keeps the handler counted on (for tests where time passes); its pong taken."""
    beat(d, handler, now)
    assert drain(d) == [pong(handler)]


# -- reading what goes out ----------------------------------------------------------------


def drain(d):
    """What the dispatcher has to send, taken as the service takes it: handler messages
    as ("handler", routing id, frames), then front messages as ("front", front, message)."""
    out = [("handler", target, frames) for target, frames in d.to_handlers]
    out += [("front", target, message) for target, message in d.to_fronts]
    d.to_handlers.clear()
    d.to_fronts.clear()
    return out


def to_handlers(out):
    """(handler, verb, args) of each handler message; each must be a valid dispatcher message."""
    messages = []
    for where, target, payload in out:
        if where == "handler":
            verb, args = wire.parse_from_dispatcher(payload)
            messages.append((target, verb, args))
    return messages


def requests(out):
    """(handler, request id, mongrel2 message) of each REQ."""
    return [(target, args[0], args[1]) for target, verb, args in to_handlers(out) if verb == wire.REQ]


def only_request(out):
    assert len(out) == 1, out
    [(target, request_id, raw)] = requests(out)
    return target, request_id, raw


def at_fronts(out):
    """(front, sender, connection ids, body) of each message for a mongrel2."""
    return [(target, *parse_response(payload)) for where, target, payload in out if where == "front"]


def is_close(message, conn, address=FRONT):
    return message == (address, SENDER, [b"%d" % conn], b"")


def key(conn, address=FRONT, sender=SENDER):
    """A connection's key, as in d.closed."""
    return (address, sender, b"%d" % conn)


def nobody_asks(d, handler, now=0.0):
    """The handler is unknown to the dispatcher: any message of it gets WHO."""
    beat(d, handler, now)
    return drain(d) == [("handler", handler, WHO)]


def split_http(data):
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return status, headers, body


# Two ways a handler dies: silent for longer than dead_after, or a send to it failed.
# The survivors are seen at 1.0, the dying one was last seen at 0.0.
def silent(d, handler):
    d.expire(DEAD_AFTER + 0.5)


def unreachable(d, handler):
    d.lost(handler, why="Host unreachable")


DEATHS = pytest.mark.parametrize("die", [silent, unreachable], ids=["expire", "lost"])


# -- credits: the cheapest handler first, wait when none is free ------------------------------------


def served_by(d, conns, now=None):
    """Send one request on each connection; the handler each went to."""
    targets = []
    for conn in conns:
        front(d, http_request(conn), now=now)
        targets.append(only_request(drain(d))[0])
    return targets


MEASURED_AT = 0.5


def measured(d):
    """A and B (capacity 10), both measured at MEASURED_AT, A at 0.25 s a request, B at 0.5 s:
    B twice as slow. Hand-outs at MEASURED_AT see these estimates as they are (an estimate
    decays towards the mean only as time passes since it was measured)."""
    hello(d, B, 10)
    hello(d, A, 10)
    front(d, http_request(901), now=MEASURED_AT - 0.5)   # to B, which joined first
    front(d, http_request(902), now=MEASURED_AT - 0.25)  # to A: never measured either, chosen less recently
    (first, one, _), (second, two, _) = requests(drain(d))
    assert (first, second) == (B, A)
    ack(d, B, wire.DONE, one, now=MEASURED_AT)
    ack(d, A, wire.DONE, two, now=MEASURED_AT)
    assert drain(d) == []
    assert (d.handlers[A].latency, d.handlers[B].latency) == (0.25, 0.5)


def decayed(latency, mean, since):
    """An estimate `since` seconds after it was measured, as Handler.cost decays it."""
    return mean + (latency - mean) * math.exp(-since / LATENCY_DECAY)


def test_handlers_never_measured_take_turns():
    d = dispatcher()
    hello(d, A, 3)
    hello(d, B, 3)
    assert served_by(d, [1, 2, 3, 4]) == [A, B, A, B]


def test_a_handler_without_a_free_credit_is_passed_over():
    d = dispatcher()
    hello(d, A, 1)
    hello(d, B, 3)
    assert served_by(d, [1, 2, 3, 4]) == [A, B, B, B]
    front(d, http_request(5))
    assert drain(d) == []
    assert not d.wants_requests


def test_the_next_request_goes_to_the_faster_handler():
    d = dispatcher()
    measured(d)  # the slower joined first
    assert served_by(d, [1], now=1.0) == [A]
    d2 = dispatcher()  # the faster joined first: not the order of joining
    hello(d2, A, 10)
    hello(d2, B, 10)
    front(d2, http_request(901), now=0.0)
    front(d2, http_request(902), now=0.0)
    (first, one, _), (second, two, _) = requests(drain(d2))
    assert (first, second) == (A, B)
    ack(d2, B, wire.DONE, two, now=0.5)   # B: 0.5 s
    ack(d2, A, wire.DONE, one, now=0.25)  # A: 0.25 s
    # Decayed towards the mean (0.375) by 1.0 s: A at 0.316 still below B at 0.451.
    assert served_by(d2, [1], now=1.0) == [A]


def test_a_handler_twice_as_slow_gets_half_the_share():
    # Cost: (requests out + 1) x average response time; of equal costs, the least recently chosen.
    # At MEASURED_AT, so the estimates are not decayed: A 0.25 s, B 0.5 s.
    d = dispatcher()
    measured(d)
    targets = served_by(d, range(1, 10), now=MEASURED_AT)
    assert targets == [A, B, A, A, B, A, A, B, A]
    assert targets.count(A) == 2 * targets.count(B)


def test_as_time_passes_the_share_evens_out():
    # The same hand-outs 1.5 s later: both estimates decayed most of the way to the mean
    # (A 0.347 s, B 0.403 s), so B takes more than a third: 4 of 9.
    d = dispatcher()
    measured(d)
    later = MEASURED_AT + 1.5
    a, b = decayed(0.25, 0.375, 1.5), decayed(0.5, 0.375, 1.5)
    assert a == pytest.approx(0.347, abs=1e-3) and b == pytest.approx(0.403, abs=1e-3)
    targets = served_by(d, range(1, 10), now=later)
    assert targets == [A, B, A, B, A, B, A, B, A]
    assert targets.count(B) == 4


def test_response_time_is_a_moving_average():
    d = dispatcher()
    measured(d)
    front(d, http_request(1), now=MEASURED_AT)
    target, request_id, _ = only_request(drain(d))
    assert target == A
    later = MEASURED_AT + 2.25
    ack(d, A, wire.DONE, request_id, now=later)  # one slow answer: 2.25 s; A now 0.25 + 0.2 x 2.0
    assert d.handlers[A].latency == pytest.approx(0.65)
    # B measured 2.25 s ago: 0.5 decayed towards the mean 0.575, about 0.567. B 0.567 < A 0.65,
    # then A 0.65 < B 2 x 0.567 (had A taken the last measurement as it is, 2.25: B twice).
    assert decayed(0.5, 0.575, 2.25) == pytest.approx(0.567, abs=1e-3)
    assert served_by(d, [2, 3], now=later) == [B, A]


def test_a_streams_length_is_not_taken_for_slowness():
    d = dispatcher()
    measured(d)
    front(d, http_request(1, path="/events"), now=MEASURED_AT)
    target, request_id, _ = only_request(drain(d))
    assert target == A
    ack(d, A, wire.HOLD, request_id, now=MEASURED_AT + 0.1)
    ended = MEASURED_AT + 3.0
    ack(d, A, wire.DONE, request_id, now=ended)  # a stream of 3 s ends: twelve times A's 0.25 s
    assert (d.handlers[A].latency, d.handlers[A].measured_at) == (0.25, MEASURED_AT)
    # Not measured: A 0.25 decayed for 3 s towards 0.375 (0.369) < B (0.381). Measured, A
    # would be at 0.8 and B go first.
    assert served_by(d, [2], now=ended) == [A]


def test_a_new_handler_is_priced_like_its_peers_not_flooded():
    d = dispatcher()
    measured(d)
    hello(d, C, 10, now=MEASURED_AT)  # priced at the mean of A's 0.25 s and B's 0.5 s
    assert d.handlers[C].latency == 0.375
    # A 0.25 x 1, then C 0.375 x 1, then B 0.5 x 1 (A 0.5 x 2 ties, and was chosen more recently)
    assert served_by(d, [1, 2, 3], now=MEASURED_AT) == [A, C, B]


def test_a_cost_is_the_decayed_latency_times_the_requests_out_plus_one():
    slow = Handler(A, capacity=4, free=2, last_seen=0.0, latency=2.0, measured_at=10.0)
    assert slow.cost(10.0, 1.0) == 2.0 * 3  # just measured: as it is
    assert slow.cost(10.0 + LATENCY_DECAY, 1.0) == pytest.approx((1.0 + 1.0 / math.e) * 3)
    assert slow.cost(10.0 + 3 * LATENCY_DECAY, 1.0) == pytest.approx((1.0 + math.exp(-3)) * 3)
    assert slow.cost(10.0 + 60 * LATENCY_DECAY, 1.0) == pytest.approx(1.0 * 3)  # back at the mean
    fast = Handler(B, capacity=4, free=4, last_seen=0.0, latency=0.5, measured_at=10.0)
    assert fast.cost(10.0 + LATENCY_DECAY, 1.0) == pytest.approx(1.0 - 0.5 / math.e)  # rises to it
    assert fast.cost(10.0 + LATENCY_DECAY, 0.0) == 0.5  # nothing measured: no mean to decay to
    assert fast.cost(10.0 + LATENCY_DECAY, 0.5) == 0.5  # at the mean already


def slow_once(d):
    """A and B (capacity 10) both measured at 5.0: A at 0.25 s, B once at 5 s (twenty times
    as slow; the mean 2.625). Returns when."""
    hello(d, B, 10)
    hello(d, A, 10)
    front(d, http_request(901), now=0.0)   # B
    front(d, http_request(902), now=4.75)  # A
    (first, one, _), (second, two, _) = requests(drain(d))
    assert (first, second) == (B, A)
    ack(d, B, wire.DONE, one, now=5.0)
    ack(d, A, wire.DONE, two, now=5.0)
    assert drain(d) == []
    return 5.0


def test_a_handler_measured_slow_is_avoided_right_after_the_measurement():
    d = dispatcher()
    measured_at = slow_once(d)
    # A 0.25 x (out + 1) stays below B's 5 x 1 for all of A's ten credits: B only when A is full.
    assert served_by(d, range(1, 12), now=measured_at) == [A] * 10 + [B]


def test_a_handler_measured_slow_once_gets_requests_again_after_a_few_latency_decays():
    d = dispatcher()
    measured_at = slow_once(d)
    later = measured_at + 5 * LATENCY_DECAY
    # Both estimates back near the mean: A 2.609 first, then B 2.641 < A 2 x 2.609.
    front(d, http_request(1), now=later)
    front(d, http_request(2), now=later)
    (first, _, _), (second, b_id, _) = requests(drain(d))
    assert (first, second) == (A, B)
    ack(d, B, wire.DONE, b_id, now=later + 0.25)  # tried again, and measured: quick this time
    assert d.handlers[B].measured_at == later + 0.25
    assert d.handlers[B].latency == pytest.approx(5.0 + 0.2 * (0.25 - 5.0))


def test_with_no_free_credit_a_request_waits_until_a_done_returns_one():
    d = dispatcher()
    hello(d, A, 1)
    front(d, http_request(1))
    _, first, _ = only_request(drain(d))
    assert not d.wants_requests
    waiting = http_request(2)
    front(d, waiting)
    assert drain(d) == []
    assert not d.wants_requests
    ack(d, A, wire.DONE, first)
    target, second, raw = only_request(drain(d))
    assert (target, raw) == (A, waiting)
    assert second != first
    assert not d.wants_requests  # the returned credit went straight to the waiting request
    ack(d, A, wire.DONE, second)
    assert drain(d) == []
    assert d.wants_requests
    assert d.counters.dispatched == 2 and d.counters.acknowledged == 2


def test_a_stream_under_way_keeps_its_credit_until_done():
    d = dispatcher()
    hello(d, A, 1)
    front(d, http_request(1, path="/events"))
    _, request_id, _ = only_request(drain(d))
    ack(d, A, wire.HOLD, request_id)
    waiting = http_request(2)
    front(d, waiting)
    assert drain(d) == [] and d.free_credits == 0 and not d.wants_requests
    ack(d, A, wire.DONE, request_id)
    assert only_request(drain(d))[2] == waiting
    assert d.counters.acknowledged == 1  # HOLD is not an answer


def test_requests_wait_without_any_handler_and_go_when_one_says_hello():
    d = dispatcher()
    assert not d.wants_requests
    first, second = http_request(1), http_request(2)
    front(d, first)
    front(d, second)
    assert drain(d) == [] and not d.wants_requests
    hello(d, A, 3)
    assert [(t, raw) for t, _, raw in requests(drain(d))] == [(A, first), (A, second)]
    assert d.wants_requests
    assert d.in_flight == 2


def test_waiting_requests_go_out_in_arrival_order():
    d = dispatcher()
    hello(d, A, 1)
    front(d, http_request(1))
    _, out_id, _ = only_request(drain(d))
    waiting = [http_request(conn) for conn in (5, 3, 9)]
    for raw in waiting:
        front(d, raw)
    assert drain(d) == []
    sent = []
    for _ in waiting:
        ack(d, A, wire.DONE, out_id)
        _, out_id, raw = only_request(drain(d))
        sent.append(raw)
    assert sent == waiting


def test_a_new_handler_serves_what_waits_before_wants_requests_turns_true():
    d = dispatcher()
    hello(d, A, 1)
    front(d, http_request(1))
    drain(d)
    front(d, http_request(2))  # waits
    hello(d, B, 1)
    assert only_request(drain(d))[0] == B
    assert not d.wants_requests  # B's one credit went to what waited
    front(d, http_request(3))  # waits again
    front(d, http_request(4))
    assert drain(d) == []
    hello(d, C, 3)             # serves both, one credit left and nothing waits
    assert [target for target, _, _ in requests(drain(d))] == [C, C]
    assert d.wants_requests


def test_a_leaving_handlers_free_credits_do_not_count():
    d = dispatcher()
    hello(d, A, 3)
    d.from_handler(A, [wire.BYE], 0.0)
    drain(d)
    assert d.free_credits == 0 and not d.wants_requests


# -- the backlog: max_waiting requests taken while no credit is free ----------------------------


def test_without_a_backlog_room_is_the_free_credits():
    d = dispatcher()
    assert d.room == 0
    hello(d, A, 2)
    hello(d, B, 1)
    assert d.room == 3
    front(d, http_request(1))
    assert d.room == 2 and d.wants_requests


def test_with_a_backlog_requests_are_taken_while_every_credit_is_out_up_to_max_waiting():
    d = dispatcher(max_waiting=2)
    hello(d, A, 1)
    assert d.room == 3  # one credit, two places
    front(d, http_request(1))
    _, first, _ = only_request(drain(d))
    assert d.free_credits == 0 and d.room == 2 and d.wants_requests
    second, third = http_request(2), http_request(3)
    front(d, second)
    assert drain(d) == [] and d.room == 1 and d.wants_requests
    front(d, third)
    assert drain(d) == [] and d.room == 0 and not d.wants_requests
    ack(d, A, wire.DONE, first)
    _, next_id, raw = only_request(drain(d))
    assert raw == second and d.room == 1  # the credit went to the first waiting
    ack(d, A, wire.DONE, next_id)
    assert only_request(drain(d))[2] == third
    assert d.room == 2


def test_with_a_backlog_and_no_handler_the_room_is_max_waiting():
    d = dispatcher(max_waiting=3)
    assert d.room == 3 and d.wants_requests
    raws = [http_request(conn) for conn in (4, 2, 6)]
    for raw in raws:
        front(d, raw)
    assert drain(d) == [] and not d.wants_requests
    hello(d, A, 5)
    assert [raw for _, _, raw in requests(drain(d))] == raws  # in arrival order
    assert d.room == 2 + 3


def test_with_a_backlog_disconnect_notices_are_read_while_every_credit_is_out():
    d = dispatcher(max_waiting=3)
    hello(d, A, 1)
    front(d, http_request(1))
    _, request_id, _ = only_request(drain(d))
    front(d, http_request(2))   # waits for the credit
    later = http_request(3)
    front(d, later)             # waits behind it
    assert d.free_credits == 0 and d.wants_requests
    front(d, disconnect(2))     # the backlog's point: read, though no credit is free
    assert drain(d) == []       # nobody holds connection 2
    assert d.counters.dropped == 1
    notice = disconnect(1)
    front(d, notice)            # and one for the connection being served goes to its handler
    assert drain(d) == [("handler", A, [wire.MSG, notice])]
    ack(d, A, wire.DONE, request_id)
    assert only_request(drain(d))[2] == later  # not connection 2's
    assert d.counters.dispatched == 2


def test_more_waiting_than_max_waiting_leaves_no_room_not_less():
    # Repeated requests of a dead handler wait even past the backlog.
    d = dispatcher(max_waiting=1)
    hello(d, A, 3)
    raws = [http_request(conn) for conn in (1, 2, 3)]
    for raw in raws:
        front(d, raw)
    drain(d)
    d.lost(A, why="Host unreachable")
    assert drain(d) == [] and len(d.waiting) == 3
    assert d.room == 0 and not d.wants_requests
    hello(d, B, 4)
    assert [raw for _, _, raw in requests(drain(d))] == raws
    assert d.room == 1 + 1


def test_a_connection_pipelining_deeper_than_the_limit_is_closed():
    """What one connection has queued here is bounded: past PIPELINE_DEPTH the dispatcher
    closes it (the one being served still finishes), and takes nothing more of it."""
    d = dispatcher(max_waiting=2)
    hello(d, A, 1)
    front(d, http_request(1))
    _, request_id, _ = only_request(drain(d))
    for n in range(PIPELINE_DEPTH):
        front(d, http_request(1, path=f"/{n}"))
        assert drain(d) == []
    front(d, http_request(1, path="/one-too-many"))
    (where, front_name, message), = drain(d)
    assert where == "front" and parse_response(message)[2] == b""  # closed at its front
    assert d.counters.dropped == PIPELINE_DEPTH + 1
    front(d, http_request(1, path="/after"))
    assert drain(d) == [] and d.counters.dropped == PIPELINE_DEPTH + 2
    ack(d, A, wire.DONE, request_id)
    assert drain(d) == []  # nothing of it is served after the close


# -- one request per connection at a time ---------------------------------------------------


def test_pipelined_requests_of_one_connection_go_out_one_after_the_other():
    d = dispatcher()
    hello(d, A, 4)
    first, second = http_request(1, path="/one"), http_request(1, path="/two")
    front(d, first)
    front(d, second)
    _, first_id, raw = only_request(drain(d))
    assert raw == first
    assert d.wants_requests  # credits are free: the second waits for its turn, not for a credit
    ack(d, A, wire.HOLD, first_id)  # a stream under way is not an answer yet
    assert drain(d) == []
    ack(d, A, wire.DONE, first_id)
    assert only_request(drain(d))[2] == second


def test_the_next_request_of_a_connection_stays_with_the_handler_that_answered_the_last():
    # Each handler's replies reach mongrel2 on its own connection and an acknowledgement can
    # overtake its reply: had B answered the second (with its close), the client could see
    # that answer first and the first one never.
    d = dispatcher()
    hello(d, A, 1)
    first, second = http_request(1, path="/one"), http_request(1, path="/two")
    front(d, first, now=0.0)
    front(d, second, now=0.0)
    _, first_id, _ = only_request(drain(d))
    hello(d, B, 5)  # free, but the connection's turn has not come
    assert drain(d) == []
    ack(d, A, wire.DONE, first_id, now=0.5)  # A took 0.5 s; B, never measured, is cheaper
    assert only_request(drain(d))[::2] == (A, second)


def test_a_new_connection_still_goes_to_the_cheapest():
    d = dispatcher()
    hello(d, A, 1)
    front(d, http_request(1), now=0.0)
    _, first_id, _ = only_request(drain(d))
    hello(d, B, 5)
    ack(d, A, wire.DONE, first_id, now=0.5)
    front(d, http_request(2), now=0.5)
    assert only_request(drain(d))[0] == B


def test_requests_of_different_connections_go_out_at_once():
    d = dispatcher()
    hello(d, A, 3)
    raws = [http_request(1), http_request(2), http_request(3, method="POST", body=b"x")]
    for raw in raws:
        front(d, raw)
    assert [raw for _, _, raw in requests(drain(d))] == raws


def test_the_same_connection_id_at_two_fronts_is_two_connections():
    d = dispatcher()
    hello(d, A, 2)
    front(d, http_request(7), FRONT)
    front(d, http_request(7), OTHER_FRONT)
    assert len(requests(drain(d))) == 2


def test_the_same_connection_id_of_two_senders_is_two_connections():
    d = dispatcher()
    hello(d, A, 2)
    front(d, http_request(7, sender=b"m2-one"))
    front(d, http_request(7, sender=b"m2-two"))
    assert len(requests(drain(d))) == 2


def test_three_pipelined_requests_are_released_in_order():
    d = dispatcher()
    hello(d, A, 2)
    raws = [http_request(4, path=f"/{n}") for n in range(3)]
    for raw in raws:
        front(d, raw)
    sent = []
    _, request_id, raw = only_request(drain(d))
    sent.append(raw)
    for _ in raws[1:]:
        ack(d, A, wire.DONE, request_id)
        _, request_id, raw = only_request(drain(d))
        sent.append(raw)
    assert sent == raws
    ack(d, A, wire.DONE, request_id)
    assert drain(d) == []
    assert d.in_flight == 0


def test_an_idle_connection_is_forgotten_and_served_again():
    d = dispatcher()
    hello(d, A, 1)
    front(d, http_request(1))
    _, request_id, _ = only_request(drain(d))
    ack(d, A, wire.DONE, request_id)
    again = http_request(1, path="/again")
    front(d, again)
    assert only_request(drain(d))[2] == again


# -- CLOSE -------------------------------------------------------------------------------------


def test_close_drops_what_is_queued_behind_on_that_connection():
    d = dispatcher()
    hello(d, A, 2)
    for n in range(3):
        front(d, http_request(1, path=f"/{n}"))
    _, request_id, _ = only_request(drain(d))
    ack(d, A, wire.CLOSE, request_id)
    assert drain(d) == []
    assert d.counters.dropped == 2
    assert d.counters.acknowledged == 1
    assert d.in_flight == 0
    assert d.free_credits == 2  # the CLOSE gave its credit back


def test_close_of_one_connection_leaves_the_others_alone():
    d = dispatcher()
    hello(d, A, 2)
    front(d, http_request(1))
    front(d, http_request(2))
    (_, one, _), (_, two, _) = requests(drain(d))
    queued = http_request(2, path="/next")
    front(d, http_request(1, path="/dropped"))
    front(d, queued)
    ack(d, A, wire.CLOSE, one)
    assert drain(d) == []
    ack(d, A, wire.DONE, two)
    assert only_request(drain(d))[2] == queued
    assert d.counters.dropped == 1


def test_a_close_gives_its_credit_to_a_waiting_request():
    d = dispatcher()
    hello(d, A, 1)
    front(d, http_request(1))
    _, request_id, _ = only_request(drain(d))
    waiting = http_request(2)
    front(d, waiting)
    ack(d, A, wire.CLOSE, request_id)
    assert only_request(drain(d))[2] == waiting


def close_connection(d, conn=1, handler=A, now=0.0):
    """A request on `conn` answered with CLOSE at `now`; nothing left out."""
    front(d, http_request(conn), now=now)
    target, request_id, _ = only_request(drain(d))
    assert target == handler
    ack(d, handler, wire.CLOSE, request_id, now=now)
    assert drain(d) == []
    assert key(conn) in d.closed


def test_after_a_close_a_later_request_on_that_connection_is_dropped_until_its_disconnect_notice():
    # mongrel2 may have parsed a smuggled request behind the one that closed: never served.
    d = dispatcher()
    hello(d, A, 1)
    close_connection(d)
    front(d, http_request(1, path="/smuggled"))
    assert drain(d) == []
    assert d.counters.dropped == 1 and d.counters.dispatched == 1
    assert d.free_credits == 1 and d.in_flight == 0  # it took no credit
    front(d, http_request(1, path="/smuggled-too"))
    assert drain(d) == [] and d.counters.dropped == 2
    front(d, disconnect(1))
    assert drain(d) == []  # nobody holds the connection: the notice goes nowhere
    assert key(1) not in d.closed
    assert d.counters.dropped == 2
    again = http_request(1, path="/new-client")  # its id is free again
    front(d, again)
    assert only_request(drain(d))[2] == again


def test_a_closed_connection_is_remembered_for_closed_memory():
    d = dispatcher()
    hello(d, A, 1, now=10.0)
    close_connection(d, now=10.0)
    alive(d, A, 10.0 + CLOSED_MEMORY - 0.1)
    d.expire(10.0 + CLOSED_MEMORY - 0.1)
    front(d, http_request(1, path="/late"))
    assert drain(d) == [] and d.counters.dropped == 1
    alive(d, A, 10.0 + CLOSED_MEMORY + 0.1)
    d.expire(10.0 + CLOSED_MEMORY + 0.1)
    assert d.closed == {}
    again = http_request(1, path="/much-later")
    front(d, again)
    assert only_request(drain(d))[2] == again
    assert d.counters.dropped == 1 and d.counters.handlers_lost == 0


def test_expire_forgets_only_the_tombstones_older_than_closed_memory():
    d = dispatcher()
    hello(d, A, 1)
    close_connection(d, conn=1, now=0.0)
    close_connection(d, conn=2, now=30.0)
    alive(d, A, CLOSED_MEMORY + 1.0)
    d.expire(CLOSED_MEMORY + 1.0)
    assert list(d.closed) == [key(2)]
    one = http_request(1, path="/again")
    front(d, one)
    assert only_request(drain(d))[2] == one
    front(d, http_request(2, path="/again"))
    assert drain(d) == [] and d.counters.dropped == 1


def test_a_tombstone_hides_only_its_own_connection():
    d = dispatcher()
    hello(d, A, 4)
    close_connection(d, conn=7)
    raws = [(http_request(7), OTHER_FRONT), (http_request(7, sender=b"m2-two"), FRONT), (http_request(8), FRONT)]
    for raw, address in raws:
        front(d, raw, address)
    assert [raw for _, _, raw in requests(drain(d))] == [raw for raw, _ in raws]
    assert d.counters.dropped == 0


def test_what_is_queued_behind_a_close_and_what_arrives_after_it_are_both_dropped():
    d = dispatcher()
    hello(d, A, 1)
    front(d, http_request(1))
    _, request_id, _ = only_request(drain(d))
    front(d, http_request(1, path="/queued"))
    ack(d, A, wire.CLOSE, request_id)
    front(d, http_request(1, path="/after"))
    assert drain(d) == []
    assert d.counters.dropped == 2 and d.counters.dispatched == 1


def test_a_websocket_frame_or_control_message_on_a_closed_connection_goes_nowhere():
    d = dispatcher()
    hello(d, A, 1)
    close_connection(d)
    front(d, ws_frame(1))
    assert drain(d) == []  # dropped: no second close either (the handler's CLOSE closed it)
    assert d.counters.dropped == 1
    front(d, control(1, "ping"))
    assert drain(d) == []
    assert key(1) in d.closed  # only a disconnect notice lifts it


@pytest.mark.parametrize("verb", [wire.DONE, wire.CLOSE])
def test_no_tombstone_outlives_the_disconnect_notice(verb):
    d = dispatcher()
    hello(d, A, 1)
    front(d, http_request(1))
    _, request_id, _ = only_request(drain(d))
    front(d, disconnect(1))
    assert drain(d) == [("handler", A, [wire.MSG, disconnect(1)])]
    ack(d, A, verb, request_id, now=0.5)
    assert key(1) not in d.closed


# -- mongrel2's disconnect notice and other control messages ---------------------------------


def test_a_disconnect_goes_to_the_handler_serving_the_connection_and_drops_its_queue():
    d = dispatcher()
    hello(d, A, 1)
    hello(d, B, 3)
    front(d, http_request(2))  # A serves connection 2, B then serves connection 1
    front(d, http_request(1))
    (_, _, _), (target, request_id, _) = requests(drain(d))
    assert target == B
    front(d, http_request(1, path="/queued"))
    front(d, http_request(1, path="/queued-too"))
    notice = disconnect(1)
    front(d, notice)
    assert drain(d) == [("handler", B, [wire.MSG, notice])]
    assert d.counters.dropped == 2
    ack(d, B, wire.DONE, request_id)
    assert drain(d) == []  # the queued ones are never sent
    assert d.in_flight == 1 and d.free_credits == 3


def test_a_disconnect_of_an_idle_connection_goes_nowhere():
    d = dispatcher()
    hello(d, A, 2)
    front(d, disconnect(42))
    assert drain(d) == []
    assert d.counters.dropped == 0
    assert d.free_credits == 2 and d.wants_requests


def test_a_disconnect_of_a_connection_waiting_for_a_credit_drops_it():
    d = dispatcher()
    hello(d, A, 1)
    front(d, http_request(1))
    _, request_id, _ = only_request(drain(d))
    front(d, http_request(2))   # waits for the credit
    later = http_request(3)
    front(d, later)             # waits behind it
    front(d, disconnect(2))
    assert drain(d) == []       # nobody holds connection 2
    assert d.counters.dropped == 1
    ack(d, A, wire.DONE, request_id)
    assert only_request(drain(d))[2] == later
    assert d.counters.dispatched == 2


def test_a_request_of_a_disconnected_connection_still_being_served_is_ignored():
    d = dispatcher()
    hello(d, A, 2)
    front(d, http_request(1))
    drain(d)
    front(d, disconnect(1))
    drain(d)
    front(d, http_request(1, path="/late"))
    assert drain(d) == []


def test_a_disconnect_goes_to_the_handler_streaming_to_the_connection():
    d = dispatcher()
    hello(d, A, 1)
    hello(d, B, 1)
    front(d, http_request(1, path="/events"))
    target, request_id, _ = only_request(drain(d))
    ack(d, target, wire.HOLD, request_id)
    notice = disconnect(1)
    front(d, notice)
    assert drain(d) == [("handler", target, [wire.MSG, notice])]


def test_another_control_message_goes_to_the_serving_handler_and_drops_nothing():
    d = dispatcher()
    hello(d, A, 2)
    front(d, http_request(1))
    _, request_id, _ = only_request(drain(d))
    queued = http_request(1, path="/next")
    front(d, queued)
    notice = control(1, "ping")
    front(d, notice)
    assert drain(d) == [("handler", A, [wire.MSG, notice])]
    ack(d, A, wire.DONE, request_id)
    assert only_request(drain(d))[2] == queued
    assert d.counters.dropped == 0


def test_another_control_message_of_an_idle_connection_goes_nowhere():
    d = dispatcher()
    hello(d, A, 2)
    front(d, control(1, "ping"))
    assert drain(d) == []


# -- WebSockets: sticky to the handler that KEEPs them ----------------------------------------


def keep_websocket(d, conn=1):
    front(d, handshake(conn))
    target, request_id, raw = only_request(drain(d))
    assert raw == handshake(conn)
    ack(d, target, wire.KEEP, request_id)
    assert drain(d) == []
    return target, request_id


def test_websocket_frames_go_as_msg_to_the_handler_that_kept_the_connection():
    d = dispatcher()
    hello(d, A, 1)
    hello(d, B, 2)
    front(d, http_request(2))  # A serves connection 2: the handshake goes to B
    only_request(drain(d))
    target, _ = keep_websocket(d)
    assert target == B
    assert d.free_credits == 2  # KEEP gave the handshake's credit back
    frames = [ws_frame(1, b"\x81\x01a"), ws_frame(1, b"\x81\x01b")]
    for raw in frames:
        front(d, raw)
    assert drain(d) == [("handler", B, [wire.MSG, raw]) for raw in frames]
    assert d.free_credits == 2  # frames cost no credit
    assert d.counters.dispatched == 2


def test_websocket_frames_before_the_keep_go_to_the_handler_serving_the_handshake():
    d = dispatcher()
    hello(d, A, 1)
    front(d, handshake(1))
    drain(d)
    raw = ws_frame(1)
    front(d, raw)
    assert drain(d) == [("handler", A, [wire.MSG, raw])]


def test_a_kept_websocket_does_not_stop_other_requests():
    d = dispatcher()
    hello(d, A, 1)
    keep_websocket(d)
    assert d.wants_requests
    other = http_request(2)
    front(d, other)
    assert only_request(drain(d))[::2] == (A, other)


def test_a_websocket_frame_for_a_connection_nobody_holds_is_answered_with_a_close():
    d = dispatcher()
    hello(d, A, 1)
    front(d, ws_frame(9), OTHER_FRONT)
    out = drain(d)
    assert to_handlers(out) == []
    assert at_fronts(out) == [(OTHER_FRONT, SENDER, [b"9"], b"")]


def test_close_of_a_kept_websocket_releases_it_without_a_second_credit():
    d = dispatcher()
    hello(d, A, 2)
    target, request_id = keep_websocket(d)
    front(d, http_request(2))
    only_request(drain(d))   # one credit in use elsewhere
    ack(d, target, wire.CLOSE, request_id)
    assert drain(d) == []
    assert d.free_credits == 1  # not 2: the KEEP already gave the handshake's back
    front(d, ws_frame(1))  # a late frame: dropped (the handler's CLOSE closed the connection)
    assert drain(d) == [] and d.counters.dropped == 1
    front(d, disconnect(1))
    drain(d)
    front(d, ws_frame(1))  # its notice came: nobody holds it now
    [message] = at_fronts(drain(d))
    assert is_close(message, 1)


def test_a_disconnect_of_a_kept_websocket_goes_to_its_handler():
    d = dispatcher()
    hello(d, A, 1)
    hello(d, B, 2)
    target, _ = keep_websocket(d)
    notice = disconnect(1)
    front(d, notice)
    assert drain(d) == [("handler", target, [wire.MSG, notice])]
    assert d.in_flight == 0
    assert d.free_credits == 3


def test_after_the_disconnect_of_a_kept_websocket_nobody_holds_the_connection():
    d = dispatcher()
    hello(d, A, 1)
    keep_websocket(d)
    front(d, disconnect(1))
    drain(d)
    front(d, ws_frame(1))
    out = drain(d)
    assert to_handlers(out) == []
    [message] = at_fronts(out)
    assert is_close(message, 1)


def test_after_the_disconnect_of_a_kept_websocket_its_connection_id_can_be_served_again():
    d = dispatcher()
    hello(d, A, 1)
    keep_websocket(d)
    front(d, disconnect(1))
    drain(d)
    again = http_request(1)
    front(d, again)
    assert only_request(drain(d))[2] == again


# -- a dead handler: repeat what is safe, refuse the rest, close what it held ------------------


@DEATHS
def test_the_get_of_a_dead_handler_is_sent_again_to_another(die):
    d = dispatcher()
    hello(d, A, 1)
    raw = http_request(1)
    front(d, raw)
    _, first_id, _ = only_request(drain(d))
    hello(d, B, 1, now=1.0)
    die(d, A)
    target, second_id, again = only_request(drain(d))
    assert (target, again) == (B, raw)
    assert second_id != first_id
    assert d.counters.retried == 1 and d.counters.handlers_lost == 1
    assert d.counters.refused == 0 and d.counters.closed == 0
    assert nobody_asks(d, A)


@DEATHS
def test_a_repeated_get_keeps_its_place_ahead_of_its_connections_queue(die):
    d = dispatcher()
    hello(d, A, 2)
    first, second = http_request(1, path="/first"), http_request(1, path="/second")
    front(d, first)
    front(d, second)
    assert only_request(drain(d))[::2] == (A, first)
    hello(d, B, 2, now=1.0)
    die(d, A)
    target, again_id, raw = only_request(drain(d))
    assert (target, raw) == (B, first)  # not the second, which waits behind it
    ack(d, B, wire.DONE, again_id, now=1.2)
    assert only_request(drain(d))[::2] == (B, second)
    assert d.counters.dropped == 0


@DEATHS
def test_a_repeated_get_waits_when_no_other_handler_has_a_credit(die):
    d = dispatcher()
    hello(d, A, 1)
    raw = http_request(1)
    front(d, raw)
    drain(d)
    die(d, A)
    assert drain(d) == []
    assert not d.wants_requests
    hello(d, B, 1, now=2.0)
    assert only_request(drain(d))[::2] == (B, raw)


@DEATHS
def test_the_post_of_a_dead_handler_gets_a_503_and_its_connection_closes(die):
    d = dispatcher()
    hello(d, A, 1)
    front(d, http_request(3, method="POST", path="/items", body=b'{"name":"x"}'))
    only_request(drain(d))
    front(d, http_request(3, path="/queued"))
    front(d, http_request(3, path="/queued-too"))
    hello(d, B, 1, now=1.0)
    die(d, A)
    out = drain(d)
    assert to_handlers(out) == []  # not repeated, and the queue is not served either
    reply, close = at_fronts(out)
    address, sender, ids, data = reply
    assert (address, sender, ids) == (FRONT, SENDER, [b"3"])
    status, headers, body = split_http(data)
    assert status == "HTTP/1.1 503 Service Unavailable"
    assert headers["Retry-After"] == "1"
    assert headers["Connection"] == "close"
    assert headers["Content-Type"] == "application/json"
    assert int(headers["Content-Length"]) == len(body) > 0
    error = json.loads(body)["error"]
    assert error["status"] == 503
    assert "POST" in error["message"]
    assert "may or may not have run" in error["message"]
    assert is_close(close, 3)
    assert d.counters.refused == 1 and d.counters.dropped == 2 and d.counters.retried == 0
    front(d, http_request(3, path="/after"))  # parsed behind it before the close: dropped
    assert drain(d) == [] and d.counters.dropped == 3
    front(d, disconnect(3))
    assert drain(d) == []
    front(d, http_request(3, path="/new-client"))  # after its notice the id is served again
    assert only_request(drain(d))[0] == B


@DEATHS
def test_the_503_goes_to_the_front_the_request_came_from(die):
    d = dispatcher()
    hello(d, A, 1)
    front(d, http_request(3, method="DELETE", path="/items/1"), OTHER_FRONT)
    drain(d)
    die(d, A)
    reply, close = at_fronts(drain(d))
    assert reply[0] == OTHER_FRONT and split_http(reply[3])[0] == "HTTP/1.1 503 Service Unavailable"
    assert is_close(close, 3, OTHER_FRONT)


@DEATHS
def test_a_held_request_of_a_dead_handler_is_not_repeated_its_connection_closes(die):
    d = dispatcher()
    hello(d, A, 1)
    front(d, http_request(5, path="/events"))  # a GET: safe to repeat, but already streaming
    _, request_id, _ = only_request(drain(d))
    ack(d, A, wire.HOLD, request_id)
    front(d, http_request(5, path="/queued"))
    hello(d, B, 1, now=1.0)
    die(d, A)
    out = drain(d)
    assert to_handlers(out) == []
    [message] = at_fronts(out)
    assert is_close(message, 5)
    assert d.counters.closed == 1 and d.counters.retried == 0 and d.counters.refused == 0
    assert d.counters.dropped == 1
    front(d, http_request(5, path="/later"))
    assert drain(d) == [] and d.counters.dropped == 2
    assert key(5) in d.closed


@DEATHS
def test_a_kept_websocket_of_a_dead_handler_is_closed(die):
    d = dispatcher()
    hello(d, A, 1)
    keep_websocket(d, conn=8)
    hello(d, B, 1, now=1.0)
    die(d, A)
    out = drain(d)
    assert to_handlers(out) == []
    [message] = at_fronts(out)
    assert is_close(message, 8)
    assert d.counters.closed == 1
    front(d, ws_frame(8))  # sent before the close reached mongrel2: dropped, closed already
    assert drain(d) == [] and d.counters.dropped == 1
    front(d, disconnect(8))
    assert drain(d) == []
    front(d, ws_frame(8))  # after its notice, nobody holds it
    [message] = at_fronts(drain(d))
    assert is_close(message, 8)


@DEATHS
def test_a_request_whose_client_left_is_not_repeated_when_its_handler_dies(die):
    d = dispatcher()
    hello(d, A, 1)
    front(d, http_request(1))
    drain(d)
    front(d, disconnect(1))
    drain(d)
    hello(d, B, 1, now=1.0)
    die(d, A)
    assert drain(d) == []
    assert d.counters.retried == 0 and d.counters.refused == 0 and d.counters.closed == 0


@DEATHS
def test_a_dead_handlers_other_connections_are_each_saved_their_own_way(die):
    d = dispatcher()
    hello(d, A, 3)
    get, post = http_request(1), http_request(2, method="POST", body=b"x")
    front(d, get)
    front(d, post)
    front(d, handshake(3))
    (_, _, _), (_, _, _), (_, ws_id, _) = requests(drain(d))
    ack(d, A, wire.KEEP, ws_id)
    hello(d, B, 2, now=1.0)
    die(d, A)
    out = drain(d)
    assert [(t, raw) for t, _, raw in requests(out)] == [(B, get)]
    fronts = at_fronts(out)
    assert [ids for _, _, ids, _ in fronts] == [[b"2"], [b"2"], [b"3"]]
    assert d.counters.retried == 1 and d.counters.refused == 1 and d.counters.closed == 1
    assert d.counters.handlers_lost == 1


def test_expire_does_not_hand_a_repeated_request_to_another_dead_handler():
    d = dispatcher()
    for handler in (A, B, C):
        hello(d, handler, 2)
    for conn in (1, 2, 3):
        front(d, http_request(conn), now=0.0)
    (a, _, _), (b, two, _), (c, three, _) = requests(drain(d))
    assert (a, b, c) == (A, B, C)
    ack(d, B, wire.DONE, two, now=0.0)    # B: alive at 0.0, then silent; never measured
    ack(d, C, wire.DONE, three, now=1.0)  # C: alive, measured at 1 s a request
    d.expire(DEAD_AFTER + 0.5)            # A (with connection 1's GET) and B are dead
    out = drain(d)
    assert [target for target, _, _ in requests(out)] == [C]
    assert d.counters.retried == 1


def test_a_handler_is_dead_only_when_silent_longer_than_dead_after():
    d = dispatcher()
    hello(d, A, 1, now=10.0)
    front(d, http_request(1))
    drain(d)
    d.expire(10.0 + DEAD_AFTER)
    assert drain(d) == [] and d.counters.handlers_lost == 0
    beat(d, A, 10.5)  # any message counts as alive
    d.expire(10.0 + DEAD_AFTER + 0.1)
    assert d.counters.handlers_lost == 0
    d.expire(10.5 + DEAD_AFTER + 0.1)
    assert d.counters.handlers_lost == 1


def test_an_acknowledgement_counts_as_alive():
    d = dispatcher()
    hello(d, A, 2)
    front(d, http_request(1))
    front(d, http_request(2))
    (_, one, _), _ = requests(drain(d))
    ack(d, A, wire.DONE, one, now=0.9)
    d.expire(1.5)
    assert d.counters.handlers_lost == 0
    assert d.in_flight == 1


def test_an_idle_silent_handler_is_removed_without_counting_as_lost():
    d = dispatcher()
    hello(d, A, 1)
    d.expire(2.0)
    assert d.counters.handlers_lost == 0
    assert not d.wants_requests
    assert nobody_asks(d, A, now=2.0)


def test_lost_of_an_unknown_handler_changes_nothing():
    d = dispatcher()
    hello(d, A, 1)
    d.lost(B, why="Host unreachable")
    assert drain(d) == []
    assert d.wants_requests and d.counters.handlers_lost == 0


def test_a_dead_handler_is_forgotten_and_its_late_done_gets_who():
    d = dispatcher()
    hello(d, A, 1)
    front(d, http_request(1))
    _, request_id, _ = only_request(drain(d))
    hello(d, B, 1, now=1.0)
    d.lost(A, why="Host unreachable")
    _, again_id, _ = only_request(drain(d))
    ack(d, A, wire.DONE, request_id, now=1.2)
    assert drain(d) == [("handler", A, WHO)]
    assert d.free_credits == 0  # B's credit is still out
    ack(d, B, wire.DONE, again_id, now=1.2)
    assert d.free_credits == 1


# -- BYE ---------------------------------------------------------------------------------------


def test_bye_is_answered_with_bye_and_the_handler_gets_no_new_request():
    d = dispatcher()
    hello(d, A, 5)
    hello(d, B, 1)
    d.from_handler(A, [wire.BYE], 0.0)
    assert drain(d) == [("handler", A, [wire.BYE])]
    assert d.free_credits == 1
    front(d, http_request(1))
    assert only_request(drain(d))[0] == B
    front(d, http_request(2))
    assert drain(d) == []  # waits: A has free credits, but is leaving
    assert not d.wants_requests


def test_a_credit_coming_back_to_a_leaving_handler_serves_nothing():
    d = dispatcher()
    hello(d, A, 2)
    hello(d, B, 1)
    front(d, http_request(1))
    front(d, http_request(2))
    out = requests(drain(d))
    a_id = next(request_id for target, request_id, _ in out if target == A)
    d.from_handler(A, [wire.BYE], 0.0)
    drain(d)
    front(d, http_request(3))  # waits
    ack(d, A, wire.DONE, a_id)  # a credit comes back to A: not for the waiting request
    assert drain(d) == []
    assert nobody_asks(d, A)  # its last ack: removed


def test_a_leaving_handler_still_gets_its_connections_messages():
    d = dispatcher()
    hello(d, A, 2)
    front(d, http_request(1))
    _, request_id, _ = only_request(drain(d))
    keep_websocket(d, conn=2)
    d.from_handler(A, [wire.BYE], 0.0)
    drain(d)
    frame, notice = ws_frame(2), disconnect(1)
    front(d, frame)
    front(d, notice)
    assert drain(d) == [("handler", A, [wire.MSG, frame]), ("handler", A, [wire.MSG, notice])]


def test_a_leaving_handler_is_removed_after_its_last_acknowledgement():
    d = dispatcher()
    hello(d, A, 2)
    front(d, http_request(1))
    front(d, http_request(2))
    (_, one, _), (_, two, _) = requests(drain(d))
    d.from_handler(A, [wire.BYE], 0.0)
    drain(d)
    ack(d, A, wire.DONE, one)
    beat(d, A, 0.1)
    assert drain(d) == [pong(A)]  # still known and counted on: one is still out
    ack(d, A, wire.CLOSE, two)
    assert drain(d) == []
    assert nobody_asks(d, A)


def test_a_leaving_handlers_queued_pipelined_request_goes_to_another():
    d = dispatcher()
    hello(d, A, 1)
    first, second = http_request(1, path="/one"), http_request(1, path="/two")
    front(d, first)
    front(d, second)
    _, request_id, _ = only_request(drain(d))
    hello(d, B, 1)
    d.from_handler(A, [wire.BYE], 0.0)
    drain(d)
    ack(d, A, wire.DONE, request_id)
    assert only_request(drain(d))[::2] == (B, second)


# -- BEAT: answered, so a handler knows it is still counted on -----------------------------------


def test_a_beat_from_a_known_handler_is_answered_with_a_beat_to_it():
    d = dispatcher()
    hello(d, A, 2)
    hello(d, B, 1)
    front(d, http_request(1))
    drain(d)
    beat(d, B, 0.5)
    out = drain(d)
    assert out == [pong(B)]
    assert to_handlers(out) == [(B, wire.BEAT, [])]  # a valid dispatcher message
    assert d.free_credits == 2 and d.in_flight == 1 and d.counters.dispatched == 1
    beat(d, A, 0.6)
    assert drain(d) == [pong(A)]
    assert d.handlers[A].last_seen == 0.6


def test_a_beat_from_a_handler_taken_for_dead_gets_who_not_a_pong():
    d = dispatcher()
    hello(d, A, 1)
    hello(d, B, 1, now=1.0)
    d.expire(DEAD_AFTER + 0.5)
    beat(d, A, DEAD_AFTER + 0.6)
    assert drain(d) == [("handler", A, WHO)]
    beat(d, B, DEAD_AFTER + 0.6)
    assert drain(d) == [pong(B)]


# -- unknown handlers, WHO, and credits the dispatcher did not count ----------------------------


@pytest.mark.parametrize("frames", [[wire.BEAT], [wire.DONE, b"1"], [wire.CLOSE, b"7"], [wire.KEEP, b"7"],
                                    [wire.HOLD, b"7"], [wire.BYE]])
def test_a_message_from_an_unknown_handler_gets_who(frames):
    d = dispatcher()
    d.from_handler(A, frames, 0.0)
    assert drain(d) == [("handler", A, WHO)]
    assert not d.wants_requests and d.free_credits == 0


def test_hello_after_who_registers_the_handler():
    d = dispatcher()
    front(d, http_request(1))  # waits: no handler yet
    ack(d, A, wire.DONE, b"12")  # a request of the dispatcher before it restarted
    assert drain(d) == [("handler", A, WHO)]
    hello(d, A, 2, free=1)
    raw = http_request(1)
    assert only_request(drain(d))[::2] == (A, raw)
    assert not d.wants_requests  # its one free credit was taken
    beat(d, A, 0.5)
    assert drain(d) == [pong(A)]  # known now: a pong, no WHO


def test_an_ack_for_an_unknown_request_gives_a_credit_back_capped_at_capacity():
    d = dispatcher()
    hello(d, A, 2, free=0)  # two requests out from before a restart
    assert not d.wants_requests
    ack(d, A, wire.DONE, b"901")
    assert d.free_credits == 1 and d.wants_requests
    ack(d, A, wire.CLOSE, b"902")
    ack(d, A, wire.DONE, b"903")  # one too many
    assert d.free_credits == 2
    for conn in (1, 2, 3):
        front(d, http_request(conn))
    assert len(requests(drain(d))) == 2  # the third waits


def test_hold_for_an_unknown_request_gives_no_credit():
    d = dispatcher()
    hello(d, A, 2, free=0)
    ack(d, A, wire.HOLD, b"901")
    assert d.free_credits == 0 and not d.wants_requests


def test_an_unknown_ack_serves_a_waiting_request():
    d = dispatcher()
    hello(d, A, 1, free=0)
    waiting = http_request(1)
    front(d, waiting)
    assert drain(d) == []
    ack(d, A, wire.DONE, b"77")
    assert only_request(drain(d))[2] == waiting


def test_a_second_hello_counts_what_is_already_out():
    d = dispatcher()
    hello(d, A, 2)
    front(d, http_request(1))
    drain(d)
    hello(d, A, 2)  # claims two free, but one is out at it
    assert d.free_credits == 1
    hello(d, A, 3, free=3)  # and capacity may change
    assert d.free_credits == 2
    hello(d, A, 3, free=0)
    assert d.free_credits == 0


def test_a_second_hello_does_not_count_a_kept_websocket_as_out():
    d = dispatcher()
    hello(d, A, 2)
    keep_websocket(d)
    hello(d, A, 2)
    assert d.free_credits == 2


def test_a_duplicate_done_is_taken_as_an_unknown_acknowledgement():
    d = dispatcher()
    hello(d, A, 2)
    front(d, http_request(1))
    _, request_id, _ = only_request(drain(d))
    ack(d, A, wire.DONE, request_id)
    ack(d, A, wire.DONE, request_id)
    assert d.free_credits == 2
    assert d.counters.acknowledged == 1


# -- malformed messages ---------------------------------------------------------------------------


@pytest.mark.parametrize("frames", [
    [],
    [b"NOPE"],
    [b"done", b"1"],                 # verbs are upper case
    [wire.REQ, b"1", b"message"],    # a dispatcher verb
    [wire.WHO],
    [wire.HELLO],
    [wire.HELLO, b"2"],
    [wire.HELLO, b"2", b"3"],        # free > capacity
    [wire.HELLO, b"0", b"0"],        # capacity at least 1
    [wire.HELLO, b"two", b"1"],
    [wire.HELLO, b"-2", b"1"],
    [wire.HELLO, b"2", b"1", b"0"],
    [wire.DONE],                     # no id
    [wire.DONE, b""],
    [wire.DONE, b"x1"],
    [wire.DONE, b"1", b"2"],
    [wire.CLOSE],
    [wire.KEEP, b"id"],
    [wire.HOLD],
    [wire.BEAT, b"1"],
    [wire.BYE, b"now"],
])
def test_a_malformed_handler_message_raises_protocol_error_and_changes_nothing(frames):
    d = dispatcher()
    hello(d, A, 1)
    front(d, http_request(1))
    drain(d)
    with pytest.raises(ProtocolError):
        d.from_handler(A, frames, 0.0)
    with pytest.raises(ProtocolError):
        d.from_handler(B, frames, 0.0)  # unknown or not: refused before anything else
    assert drain(d) == []
    assert d.in_flight == 1 and d.free_credits == 0
    assert nobody_asks(d, B)


@pytest.mark.parametrize("frames", [
    [],
    [wire.HELLO, b"1", b"1"],         # a handler's HELLO
    [wire.HELLO],                     # the dispatcher's HELLO names its instance
    [wire.HELLO, b""],
    [wire.REQ, b"x", b"message"],     # not digits
    [wire.REQ, b"", b"message"],
    [wire.REQ, b"1"],
    [wire.REQ, b"1", b"message", b"more"],
    [wire.MSG],
    [wire.MSG, b"a", b"b"],
    [wire.WHO],                       # no instance
    [wire.WHO, b""],
    [wire.WHO, b"a", b"b"],
    [wire.BYE, b"now"],
])
def test_a_malformed_dispatcher_message_raises_protocol_error(frames):
    with pytest.raises(ProtocolError):
        wire.parse_from_dispatcher(frames)


def test_what_the_wire_builds_parses_back():
    assert wire.parse_from_handler(wire.hello(4, 2)) == (wire.HELLO, [b"4", b"2"])
    for verb in (wire.DONE, wire.CLOSE, wire.KEEP, wire.HOLD):
        assert wire.parse_from_handler(wire.ack(verb, b"17")) == (verb, [b"17"])
    assert wire.parse_from_handler([wire.BEAT]) == (wire.BEAT, [])
    assert wire.parse_from_dispatcher(wire.request(b"3", b"raw")) == (wire.REQ, [b"3", b"raw"])
    assert wire.parse_from_dispatcher(wire.connection_message(b"raw")) == (wire.MSG, [b"raw"])
    assert wire.parse_from_dispatcher(wire.who(INSTANCE)) == (wire.WHO, [INSTANCE])
    assert wire.parse_from_dispatcher(wire.welcome(INSTANCE)) == (wire.HELLO, [INSTANCE])
    assert wire.parse_from_handler(wire.ack(wire.DONE, wire.NO_REQUEST)) == (wire.DONE, [b"0"])


@pytest.mark.parametrize("parts", [
    wire.request(b"12", http_request(3, method="POST", path="/a", body=b"with spaces , and: 3:x,")),
    wire.request(b"7", b""),
    wire.connection_message(ws_frame(4, b"\x81\x03a b")),
    wire.who(INSTANCE),
    wire.welcome(INSTANCE),
    [wire.BYE],
])
def test_a_dispatcher_message_survives_its_one_frame(parts):
    frame = wire.pack(parts)
    assert isinstance(frame, bytes)
    assert wire.unpack_from_dispatcher(frame) == parts
    assert wire.parse_from_dispatcher(wire.unpack_from_dispatcher(frame)) == (parts[0], parts[1:])


@pytest.mark.parametrize("parts", [wire.hello(8, 3), wire.ack(wire.DONE, b"41"), wire.ack(wire.HOLD, b"9"),
                                   [wire.BEAT], [wire.BYE]])
def test_a_handler_message_survives_its_one_frame(parts):
    frame = wire.pack(parts)
    assert wire.unpack_from_handler(frame) == parts
    assert wire.parse_from_handler(wire.unpack_from_handler(frame)) == (parts[0], parts[1:])


@pytest.mark.parametrize("frame", [b"", b"DONE", b"DONE  1", b"DONE 1 ", b"HELLO 2  1", b"HELLO 2 1 1", b"BEAT now",
                                   b"done 1", b"REQ 1 x"])
def test_a_bad_handler_frame_is_refused_once_unpacked(frame):
    with pytest.raises(ProtocolError):
        wire.parse_from_handler(wire.unpack_from_handler(frame))


@pytest.mark.parametrize("frame", [b"", b"REQ", b"REQ x1 message", b"REQ  message", b"WHO", b"WHO a b", b"BYE now",
                                   b"HELLO 1 1", b"NOPE"])
def test_a_bad_dispatcher_frame_is_refused_once_unpacked(frame):
    with pytest.raises(ProtocolError):
        wire.parse_from_dispatcher(wire.unpack_from_dispatcher(frame))


@pytest.mark.parametrize("verb", [wire.HELLO, wire.BEAT, wire.BYE, wire.REQ, b"NOPE"])
def test_ack_refuses_a_verb_that_acknowledges_nothing(verb):
    with pytest.raises(ValueError):
        wire.ack(verb, b"1")


def test_incoming_parse_keeps_the_message_and_its_key():
    raw = http_request(12, method="PUT", path="/items/3", body=b"{}")
    incoming = Incoming.parse(OTHER_FRONT, raw)
    assert incoming.key == (OTHER_FRONT, SENDER, b"12")
    assert incoming.method == "PUT" and not incoming.is_disconnect
    assert incoming.raw == raw
    assert Incoming.parse(FRONT, disconnect(12)).is_disconnect
    assert not Incoming.parse(FRONT, control(12, "ping")).is_disconnect


@pytest.mark.parametrize("raw", [
    b"",
    b"garbage",
    b"s 1 / 3:abc,0:,",                                                # headers not JSON
    b"s x / 2:{},0:,",                                                 # connection id not digits
    encode_request(SENDER, 1, "/", {"PATH": "/"}, b""),                # no METHOD
    encode_request(SENDER, 1, "@*", {"METHOD": "JSON"}, b"not json"),  # a notice that says nothing
    encode_request(SENDER, 1, "@*", {"METHOD": "JSON"}, b"[1]"),
    encode_request(SENDER, 1, "@*", {"METHOD": "JSON"}, b'{"type":"disconnect"}') + b"x",
])
def test_incoming_parse_refuses_what_is_not_a_mongrel2_request(raw):
    with pytest.raises(ProtocolError):
        Incoming.parse(FRONT, raw)


def test_every_request_id_is_fresh():
    d = dispatcher()
    hello(d, A, 3)
    ids = set()
    for n in range(6):
        front(d, http_request(n))
        _, request_id, _ = only_request(drain(d))
        assert request_id.isdigit()
        ids.add(request_id)
        ack(d, A, wire.DONE, request_id)
    assert len(ids) == 6


# -- instances: a restarted dispatcher is told from this one --------------------------------


def test_each_dispatcher_has_its_own_instance_and_names_it_in_who():
    first = Dispatcher(dead_after=DEAD_AFTER, retry_methods=RETRY)
    second = Dispatcher(dead_after=DEAD_AFTER, retry_methods=RETRY)
    assert first.instance != second.instance and len(first.instance) == 16
    beat(first, A, 0.0)
    assert drain(first) == [("handler", A, wire.who(first.instance))]


def test_hello_is_answered_with_the_instance_before_any_request():
    d = dispatcher()
    waiting = http_request(1)
    front(d, waiting)
    d.from_handler(A, wire.hello(1, 1), 0.0)
    out = to_handlers(drain(d))
    assert out == [(A, wire.HELLO, [INSTANCE]), (A, wire.REQ, [b"1", waiting])]


def test_request_ids_start_at_1_so_done_0_names_none():
    d = dispatcher()
    hello(d, A, 3)
    front(d, http_request(1))
    assert only_request(drain(d))[1] == b"1" != wire.NO_REQUEST


def test_done_0_gives_a_credit_back_and_acknowledges_nothing():
    """A handler rejoined holding one request of a dispatcher that forgot it (free 1 of 2),
    and got one of ours; DONE 0 when the old one ends: our request is still out."""
    d = dispatcher()
    hello(d, A, 2, free=1)
    front(d, http_request(1))
    raw_next = http_request(1, path="/next")
    front(d, raw_next)  # pipelined behind it
    _, request_id, _ = only_request(drain(d))
    assert d.free_credits == 0
    ack(d, A, wire.DONE, wire.NO_REQUEST)
    assert d.free_credits == 1 and d.in_flight == 1 and d.counters.acknowledged == 0
    assert drain(d) == []  # the connection's next request still waits for ours
    ack(d, A, wire.DONE, wire.NO_REQUEST)  # one too many: never more than capacity - out
    assert d.free_credits == 1
    ack(d, A, wire.DONE, request_id)
    assert only_request(drain(d))[2] == raw_next


# -- several acknowledgements in one message ------------------------------------------------


def test_acknowledgements_in_one_message_are_taken_in_order_as_if_sent_one_by_one():
    d = dispatcher()
    hello(d, A, 3)
    for conn in (1, 2, 3):
        front(d, http_request(conn))
    ids = [request_id for _, request_id, _ in requests(drain(d))]
    assert len(ids) == 3 and not d.wants_requests
    d.from_handler(A, wire.unpack_from_handler(wire.pack(wire.acks(
        [(wire.DONE, ids[0]), (wire.CLOSE, ids[1]), (wire.DONE, ids[2])]))), 0.1)
    assert d.in_flight == 0 and d.handlers[A].free == 3
    assert d.counters.acknowledged == 3
    # the CLOSE closed its connection: what it pipelined next is never served
    front(d, http_request(2))
    assert drain(d) == [] and d.counters.dropped == 1


def test_acknowledgements_together_free_the_waiting_in_arrival_order():
    d = dispatcher(max_waiting=10)
    hello(d, A, 2)
    for conn in (1, 2, 3, 4):
        front(d, http_request(conn))
    first = [request_id for _, request_id, _ in requests(drain(d))]
    d.from_handler(A, wire.acks([(wire.DONE, first[0]), (wire.DONE, first[1])]), 0.1)
    assert [raw for _, _, raw in requests(drain(d))] == [http_request(3), http_request(4)]


def test_acknowledgements_in_one_message_from_an_unknown_handler_get_who():
    d = dispatcher()
    d.from_handler(B, wire.acks([(wire.DONE, b"1"), (wire.DONE, b"2")]), 0.0)
    assert drain(d) == [("handler", B, WHO)]


@pytest.mark.parametrize("frames", [
    [wire.DONE, b"1", wire.DONE],                 # not pairs
    [wire.DONE, b"1", wire.BEAT, b"2"],           # not an acknowledgement
    [wire.DONE, b"1", wire.DONE, b"x"],           # not an id
    [wire.DONE, b"1", wire.DONE, b""],
    [wire.DONE, b"1"] * (wire.ACKS_PER_MESSAGE + 1),  # over the bound
])
def test_a_malformed_message_of_acknowledgements_is_refused_whole(frames):
    d = dispatcher()
    hello(d, A, 2)
    front(d, http_request(1))
    [(_, request_id, _)] = requests(drain(d))
    with pytest.raises(ProtocolError):
        d.from_handler(A, [wire.DONE, request_id, *frames[2:]] if len(frames) > 2 else frames, 0.1)
    assert d.in_flight == 1  # nothing of it was taken


def test_the_wire_builds_at_most_its_bound_of_acknowledgements():
    pairs = [(wire.DONE, b"%d" % n) for n in range(1, wire.ACKS_PER_MESSAGE + 1)]
    assert wire.parse_acks(wire.unpack_from_handler(wire.pack(wire.acks(pairs)))) == pairs
    with pytest.raises(ValueError):
        wire.acks([*pairs, (wire.DONE, b"99")])
    with pytest.raises(ValueError):
        wire.acks([])
    with pytest.raises(ValueError):
        wire.acks([(wire.BEAT, b"1")])


# -- the service reads METHOD alone from JSON headers ---------------------------------------


def json_request(conn, headers, body=b""):
    return encode_request(SENDER, conn, headers.get("PATH", "/"), headers, body, header_format="json")


@pytest.mark.parametrize("raw", [
    json_request(1, {"PATH": "/", "METHOD": "GET", "VERSION": "HTTP/1.1", "host": "x", "accept": ["a", "b"]}),
    json_request(2, {"PATH": "/items", "METHOD": "POST", "content-length": "1"}, b"x"),
    json_request(3, {"PATH": "@*", "METHOD": "JSON"}, b'{"type":"disconnect"}'),
    json_request(4, {"PATH": "/ws", "METHOD": "WEBSOCKET", "FLAGS": "0x81"}, b"\x81\x05hello"),
])
def test_the_services_method_only_decoder_reads_what_the_full_parse_reads(raw):
    from m2stack.dispatch.service import _method_only
    assert Incoming.parse(FRONT, raw, _method_only) == Incoming.parse(FRONT, raw)


@pytest.mark.parametrize("headers", [b'{"PATH":"/","VERSION":"HTTP/1.1"}', b'{"METHOD":""}', b'{"METHOD":,}',
                                     b'{"METHOD":["GET"]}', b"[]"])
def test_the_services_method_only_decoder_still_refuses_a_message_without_a_method(headers):
    from m2stack.dispatch.service import _method_only
    raw = b"%s 1 / %d:%s,0:," % (SENDER, len(headers), headers)
    with pytest.raises(ProtocolError):
        Incoming.parse(FRONT, raw, _method_only)
