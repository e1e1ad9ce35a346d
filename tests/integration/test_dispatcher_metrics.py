"""The dispatcher's Prometheus metrics (DISPATCH_METRICS_PORT), scraped over HTTP from the
real process between the real mongrel2 and real handlers, for both hubs.

It renders them at each heartbeat (once a second), so each check waits for the figure
it expects, for at most a few heartbeats; a figure that never comes fails the test.
"""

from __future__ import annotations

import time

import pytest
from test_dispatcher import DEAD_AFTER, Reader, Stack, get, raw_connection

from processes import Mongrel2
from support import parse_head, read_until_close, require, wait_until

FRONT = "127.0.0.1"  # the front's address, as the dispatcher resolved M2_REQUESTS_ENDPOINT
SETTLE = 5.0         # seconds: a few heartbeats of the dispatcher (one a second), on a loaded machine


@pytest.fixture(scope="module")
def mongrel2(tmp_path_factory):
    require("mongrel2", "the process-level tests run the real mongrel2 binary (Debian mongrel2-core)")
    require("m2sh", "mongrel2's config loader")
    server = Mongrel2(tmp_path_factory.mktemp("mongrel2-dispatch-metrics"))
    yield server
    server.stop()


@pytest.fixture
def stack(mongrel2, hub, tmp_path):
    s = Stack(mongrel2, hub, tmp_path)
    s.start_dispatcher()
    yield s
    s.stop()


# Mutation check (2026-12-05): a handler that said BYE counted dead when it falls silent
# (core.lost without its `said_bye` test): fails here, handlers_dead_total 2.
def test_the_dispatchers_metrics_follow_handlers_requests_and_refusals(mongrel2, stack):
    started = time.time()
    dispatcher = stack.dispatcher

    def metric(name: str, **labels: str) -> float:
        return dispatcher.metrics().value("m2stack_dispatcher_" + name, **labels)

    def settles(name: str, want: float, **labels: str) -> None:
        wait_until(lambda: metric(name, **labels) == want, SETTLE,
                   f"{name}{labels or ''} to be {want} (it is {metric(name, **labels)})")

    assert metric("handlers") == 0 and metric("handlers_joined_total") == 0
    handlers = stack.start_handlers(2)
    settles("handlers", 2)
    assert metric("handlers_joined_total") == 2
    capacity = metric("free_credits")
    assert capacity > 0 and metric("requests_waiting") == 0

    # handed out, acknowledged, counted on the front they came from
    for _ in range(10):
        assert get(mongrel2, "/json")[0] == 200
    settles("requests_dispatched_total", 10, front=FRONT)
    settles("requests_acknowledged_total", 10, front=FRONT)

    # in flight at the handler that has it, by its routing id
    post = raw_connection(mongrel2)
    try:
        post.sendall(b"POST /sleep?ms=8000 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        wait_until(lambda: sum(h.in_flight() for h in handlers) == 1, 5, "the POST to run on a handler")
        victim, = [h for h in handlers if h.in_flight() == 1]
        other, = [h for h in handlers if h is not victim]
        settles("requests_in_flight", 1, handler=stack.routing_id(victim))
        assert metric("requests_in_flight", handler=stack.routing_id(other)) == 0
        settles("free_credits", capacity - 1)

        # one leaves gracefully, the other is killed with the POST: refused, 503
        assert other.terminate() == 0
        settles("handlers_left_total", 1)
        assert metric("handlers") == 1
        victim.process.kill()
        victim.process.wait()
        received = read_until_close(post, timeout=DEAD_AFTER + 3)
    finally:
        post.close()
    assert parse_head(received.partition(b"\r\n\r\n")[0])[0] == 503, received[:300]
    settles("requests_refused_total", 1, front=FRONT)
    settles("handlers", 0)
    # the one that said BYE went silent too, and is not counted dead
    wait_until(lambda: metric("handlers_leaving") == 0, DEAD_AFTER + SETTLE, "the leaving handler to be forgotten")
    assert metric("handlers_dead_total") == 1
    assert metric("requests_repeated_total", front=FRONT) == 0

    # with no handler, a request waits at the dispatcher; a handler joins and takes it
    with raw_connection(mongrel2) as waiting:
        waiting.sendall(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n")
        settles("requests_waiting", 1)
        stack.start_handlers(1)
        assert Reader(waiting).response()[0] == 200
    settles("requests_waiting", 0)
    assert metric("handlers") == 1 and metric("handlers_joined_total") == 3
    assert metric("requests_dispatched_total", front=FRONT) == 12  # 10 GETs, the POST, this GET

    assert started - 30 < dispatcher.metrics().value("process_start_time_seconds") <= started
    assert dispatcher.terminate() == 0  # the exporter's thread keeps no process alive
