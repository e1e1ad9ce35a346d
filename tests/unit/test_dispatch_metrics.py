"""What the dispatcher counts (m2stack.dispatch.core: Dispatcher.fronts, handler_counts) and
how its exporter writes it (m2stack.dispatch.exporter): the text parsed back line by line
against the exposition format, and served over HTTP on loopback."""

import http.client
import json
import math
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from m2stack.dispatch.core import PIPELINE_DEPTH, Dispatcher, Incoming
from m2stack.dispatch.exporter import CONTENT_TYPE, Exporter, render
from m2stack.protocol import dispatch as wire
from m2stack.protocol.mongrel2 import encode_request
from support import wait_until

SENDER = b"f400bf85"
FRONT, OTHER = "10.0.0.5", "10.0.0.6"
A, B = b"\x00handler-a", b"\x00handler-b"
DEAD_AFTER = 1.0


def dispatcher(max_waiting=10):
    return Dispatcher(dead_after=DEAD_AFTER, retry_methods=frozenset({"GET"}), max_waiting=max_waiting)


def request(d, conn, method="GET", front=FRONT, now=0.0):
    headers = {"PATH": "/", "METHOD": method, "VERSION": "HTTP/1.1", "URI": "/"}
    d.from_front(Incoming.parse(front, encode_request(SENDER, b"%d" % conn, "/", headers, b"")), now)


def hello(d, handler, capacity, now=0.0):
    d.from_handler(handler, wire.hello(capacity, capacity), now)


def handed(d):
    """(handler, request id) of each REQ the dispatcher has to send; its outbox emptied."""
    out = [(target, wire.parse_from_dispatcher(frames)) for target, frames in d.to_handlers]
    d.to_handlers.clear()
    d.to_fronts.clear()
    return [(target, args[0]) for target, (verb, args) in out if verb == wire.REQ]


# -- the counts ------------------------------------------------------------------------------


def test_requests_are_counted_per_front_and_summed():
    d = dispatcher()
    hello(d, A, 10)
    for conn in range(3):
        request(d, conn)
    request(d, 1, front=OTHER)
    for handler, request_id in handed(d)[:2]:
        d.from_handler(handler, wire.ack(wire.DONE, request_id), 0.1)
    assert (d.fronts[FRONT].dispatched, d.fronts[OTHER].dispatched) == (3, 1)
    assert (d.fronts[FRONT].acknowledged, d.fronts[OTHER].acknowledged) == (2, 0)
    assert (d.counters.dispatched, d.counters.acknowledged) == (4, 2)


def test_a_keep_alive_connection_counts_each_request():
    d = dispatcher()
    hello(d, A, 1)
    for n in range(5):
        request(d, 7, now=n)
        [(_, request_id)] = handed(d)
        d.from_handler(A, wire.ack(wire.DONE, request_id), n + 0.5)
    assert d.fronts[FRONT].dispatched == d.fronts[FRONT].acknowledged == 5


def test_a_dead_handlers_requests_are_counted_by_what_became_of_them_on_their_front():
    d = dispatcher()
    hello(d, A, 4)
    request(d, 1)                          # GET: repeated
    request(d, 2, method="POST")           # POST: 503
    request(d, 3, front=OTHER)             # GET of the other front: repeated
    handed(d)
    hello(d, B, 4, now=0.9)
    d.expire(DEAD_AFTER + 0.5)
    assert [target for target, _ in handed(d)] == [B, B]
    front, other = d.fronts[FRONT], d.fronts[OTHER]
    assert (front.retried, front.refused, front.dispatched) == (1, 1, 3)
    assert (other.retried, other.refused, other.dispatched) == (1, 0, 2)
    assert (d.handler_counts.dead, d.handler_counts.lost) == (1, 1)
    assert d.counters.handlers_lost == 1


def test_connections_the_dispatcher_closes_are_counted_on_their_front():
    d = dispatcher()
    hello(d, A, 1)
    request(d, 1, front=OTHER)             # out at A: the next ones queue behind it
    for _ in range(PIPELINE_DEPTH + 1):    # one too many: the connection is closed
        request(d, 1, front=OTHER)
    assert d.fronts[OTHER].closed == 1
    assert d.fronts[OTHER].dropped == PIPELINE_DEPTH + 1
    request(d, 1, front=OTHER)             # behind the close: dropped, on its front
    assert d.fronts[OTHER].dropped == PIPELINE_DEPTH + 2
    assert FRONT not in d.fronts


def test_handlers_joining_leaving_and_dying_are_counted_once_each():
    d = dispatcher()
    hello(d, A, 1)
    hello(d, A, 1)                         # again, after a WHO: the same handler
    hello(d, B, 1)
    assert d.handler_counts.joined == 2
    d.from_handler(B, [wire.BYE], 0.1)
    d.from_handler(B, [wire.BYE], 0.2)
    assert d.handler_counts.left == 1
    d.expire(DEAD_AFTER + 0.5)             # A idle and silent: dead; B said BYE: its silence is its exit
    assert (d.handler_counts.dead, d.handler_counts.lost) == (1, 0)
    assert d.handlers == {}


def test_a_handler_that_said_bye_and_dies_with_requests_out_is_dead():
    d = dispatcher()
    hello(d, A, 1)
    request(d, 1)
    handed(d)
    d.from_handler(A, [wire.BYE], 0.1)
    d.lost(A, why="Host unreachable")
    assert (d.handler_counts.left, d.handler_counts.dead, d.handler_counts.lost) == (1, 1, 1)
    d.lost(A, why="Host unreachable")      # already forgotten: counted once
    assert d.handler_counts.dead == 1


# -- the text ------------------------------------------------------------------------------

METRIC = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(rf'({METRIC})(?:\{{({LABEL}(?:,{LABEL})*)\}})? (\S+)')
HELP = re.compile(rf"# HELP ({METRIC}) (\S.*)")
TYPE = re.compile(rf"# TYPE ({METRIC}) (counter|gauge)")


def parse(text):
    """{name: (type, help, {labels: value})}, every line held to the 0.0.4 text format:
    HELP then TYPE once per metric, before its samples, which follow it together."""
    assert text.endswith("\n") and "\n\n" not in text
    families, current = {}, None
    for line in text[:-1].split("\n"):
        if m := HELP.fullmatch(line):
            assert m[1] not in families, f"{m[1]} twice"
            current, help_text = m[1], m[2]
        elif m := TYPE.fullmatch(line):
            assert m[1] == current and current not in families, line
            families[current] = (m[2], help_text, {})
        else:
            m = SAMPLE.fullmatch(line)
            assert m, f"not a sample line: {line!r}"
            assert m[1] == current and current in families, f"{line!r}: no HELP and TYPE of its own before it"
            labels = tuple(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m[2] or ""))
            value = float(m[3])
            assert not math.isnan(value)
            samples = families[current][2]
            assert labels not in samples, f"{line!r} twice"
            samples[labels] = value
    for name, (kind, _, samples) in families.items():
        assert kind != "counter" or name.endswith("_total"), name
        assert all(v >= 0 for v in samples.values()), name
    return families


def busy_dispatcher():
    """Two handlers, requests from two fronts out at them, one waiting, one handler leaving."""
    d = dispatcher()
    hello(d, A, 2)
    hello(d, B, 1)
    request(d, 1)
    request(d, 2)
    request(d, 3, front=OTHER)
    request(d, 4)                          # no credit left: waits
    assert len(handed(d)) == 3
    d.from_handler(B, [wire.BYE], 0.1)
    return d


def test_the_text_is_the_exposition_format_with_what_the_core_holds():
    d = busy_dispatcher()
    families = parse(render(d, started=1764900000.25, default_front="ipc:///run/m2").decode())
    value = {name: samples for name, (_, _, samples) in families.items()}
    p = "m2stack_dispatcher_"
    assert value[p + "handlers"] == {(): 1.0}
    assert value[p + "handlers_leaving"] == {(): 1.0}
    assert value[p + "handlers_joined_total"] == {(): 2.0}
    assert value[p + "handlers_left_total"] == {(): 1.0}
    assert value[p + "handlers_dead_total"] == {(): 0.0}
    assert value[p + "requests_in_flight"] == {(("handler", A.hex()),): 2.0, (("handler", B.hex()),): 1.0}
    assert value[p + "free_credits"] == {(): 0.0}
    assert value[p + "requests_waiting"] == {(): 1.0}
    assert value[p + "max_waiting"] == {(): 10.0}
    assert value[p + "requests_dispatched_total"] == {(("front", FRONT),): 2.0, (("front", OTHER),): 1.0}
    for name in ("requests_acknowledged_total", "requests_repeated_total", "requests_refused_total",
                 "connections_closed_total", "requests_dropped_total"):
        assert value[p + name] == {(("front", FRONT),): 0.0, (("front", OTHER),): 0.0}, name
    assert value["process_start_time_seconds"] == {(): 1764900000.25}
    assert families[p + "handlers_dead_total"][0] == "counter" and families[p + "handlers"][0] == "gauge"


def test_the_text_reads_the_same_to_prometheus_client():
    d = busy_dispatcher()
    request(d, 9, front='a"b\\c\nd')       # a front name that needs escaping (none does today)
    text = render(d, started=1.0, default_front="x").decode()
    mine = parse(text)
    theirs = {f.name: f for f in text_string_to_metric_families(text)}
    # prometheus_client names a counter family without its _total
    assert {n.removesuffix("_total") for n in mine} == set(theirs)
    dispatched = theirs["m2stack_dispatcher_requests_dispatched"].samples
    assert {s.labels["front"]: s.value for s in dispatched} == {FRONT: 2, OTHER: 1, 'a"b\\c\nd': 0}


def test_a_front_with_no_address_is_named_by_its_endpoint():
    d = dispatcher()
    hello(d, A, 1)
    request(d, 1, front="")
    families = parse(render(d, started=0.0, default_front="ipc:///run/m2/requests").decode())
    assert families["m2stack_dispatcher_requests_dispatched_total"][2] == {(("front", "ipc:///run/m2/requests"),): 1}


def test_an_idle_dispatcher_has_every_metric_and_no_labelled_sample():
    families = parse(render(dispatcher(), started=0.0, default_front="x").decode())
    assert len(families) == 17
    assert families["m2stack_dispatcher_requests_in_flight"][2] == {}
    assert families["m2stack_dispatcher_handlers"][2] == {(): 0.0}


# -- served ---------------------------------------------------------------------------------


@pytest.fixture
def exporter():
    e = Exporter(0, host="127.0.0.1")
    e.start()
    yield e
    e.close()


def call(exporter, method, path):
    conn = http.client.HTTPConnection("127.0.0.1", exporter.port, timeout=5)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_the_exporter_serves_the_latest_text_published(exporter):
    exporter.publish(b"first 1\n")
    status, headers, body = call(exporter, "GET", "/metrics")
    assert (status, headers["content-type"], body) == (200, CONTENT_TYPE, b"first 1\n")
    exporter.publish(b"second 2\n")
    assert call(exporter, "GET", "/metrics?x=1")[2] == b"second 2\n"
    status, headers, body = call(exporter, "HEAD", "/metrics")
    assert (status, headers["content-length"], body) == (200, "9", b"")


def test_a_text_not_renewed_is_refused_with_503():
    e = Exporter(0, host="127.0.0.1", stale_after=0.3)
    e.start()
    try:
        assert call(e, "GET", "/metrics")[0] == 503  # nothing published yet
        e.publish(b"x 1\n")
        assert call(e, "GET", "/metrics")[0] == 200
        wait_until(lambda: call(e, "GET", "/metrics")[0] == 503, 5, "the text to go stale")
        status, headers, body = call(e, "GET", "/metrics")
        assert headers["content-type"] == "application/json" and "published no metrics" in body.decode()
        e.publish(b"x 2\n")
        assert call(e, "GET", "/metrics")[2] == b"x 2\n"
    finally:
        e.close()


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/", 404), ("GET", "/metrics/x", 404), ("POST", "/metrics", 405), ("DELETE", "/metrics", 405),
    ("BREW", "/metrics", 405),
])
def test_the_exporter_answers_anything_else_with_a_json_error(exporter, method, path, status):
    got, headers, body = call(exporter, method, path)
    assert got == status and headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["status"] == status
    if status == 405:
        assert headers["allow"] == "GET, HEAD"


def test_a_malformed_request_line_gets_400_json(exporter):
    import socket

    with socket.create_connection(("127.0.0.1", exporter.port), timeout=5) as sock:
        sock.sendall(b"GARBAGE\r\n\r\n")
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 400 ") and json.loads(body)["error"]["status"] == 400
