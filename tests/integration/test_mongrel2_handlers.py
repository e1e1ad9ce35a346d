"""A real mongrel2 in front of real handler processes, for each hub."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

from m2stack import protocol


def get(url: str, path: str, method: str = "GET", body: bytes | None = None,
        headers: dict | None = None, timeout: float = 10):
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_json_and_plaintext(mongrel2, handler):
    status, headers, body = get(mongrel2.url, "/json")
    assert status == 200
    assert json.loads(body) == {"message": "Hello, World!"}
    assert headers["X-Hub"] == handler.hub
    assert headers["X-Front-Door"] == "mongrel2"
    status, headers, body = get(mongrel2.url, "/plaintext")
    assert (status, body) == (200, b"Hello, World!")
    assert headers["Content-Type"].startswith("text/plain")


def test_handler_exception_is_500_and_next_request_works(mongrel2, handler):
    status, headers, body = get(mongrel2.url, "/error")
    assert status == 500
    error = json.loads(body)
    assert error["error"]["status"] == 500
    assert error["request_id"] == headers["X-Request-Id"]
    assert get(mongrel2.url, "/json")[0] == 200
    assert "this endpoint fails on purpose" in handler.output()  # logged with its traceback


def test_200_concurrent_sleeps_overlap(mongrel2, handler):
    """One process, 200 requests each waiting 500 ms: only overlap fits in 2 seconds."""
    barrier = threading.Barrier(200)

    def one(_):
        barrier.wait()
        return get(mongrel2.url, "/sleep?ms=500", timeout=10)[0]

    started = time.monotonic()
    with ThreadPoolExecutor(200) as pool:
        statuses = list(pool.map(one, range(200)))
    elapsed = time.monotonic() - started
    assert statuses == [200] * 200
    assert elapsed < 2.0, f"200 x 500 ms took {elapsed:.2f}s: requests did not overlap"


def test_keep_alive_and_connection_close(mongrel2, handler):
    parts = urlsplit(mongrel2.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    for _ in range(3):  # three requests on one connection
        conn.request("GET", "/json")
        response = conn.getresponse()
        assert response.status == 200
        response.read()
    conn.close()
    # Connection: close and plain HTTP/1.0 must end the connection (mongrel2 leaves it to us).
    for request in (b"GET /json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                    b"GET /json HTTP/1.0\r\n\r\n"):
        with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
            sock.sendall(request)
            received = b""
            while chunk := sock.recv(65536):  # returns b"" only when the server closes
                received += chunk
        assert received.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Connection: close" in received


@pytest.mark.parametrize("path, status", [
    ("/no/such/route", 404),
    ("/sleep?ms=abc", 400),
    ("/sleep?ms=-1", 400),
    ("/sleep?ms=99999999999", 400),
    ("/json?x=%C3", 400),
    ("/caf%C3", 400),
])
def test_bad_requests_get_json_4xx(mongrel2, handler, path, status):
    got, headers, body = get(mongrel2.url, path)
    assert got == status, body
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"]["status"] == status


def test_mongrel2_refuses_what_its_http_parser_cannot_read(mongrel2, handler):
    """Malformed query syntax never reaches the handler: mongrel2 answers 400 itself."""
    assert get(mongrel2.url, "/json?x=%zz")[0] == 400
    assert get(mongrel2.url, "/caf%zz")[0] == 400
    assert get(mongrel2.url, "/json")[0] == 200


def test_head_and_405(mongrel2, handler):
    status, headers, body = get(mongrel2.url, "/json", method="HEAD")
    assert status == 200 and body == b""
    assert int(headers["Content-Length"]) == len(b'{"message":"Hello, World!"}')
    status, headers, body = get(mongrel2.url, "/json", method="DELETE")
    assert status == 405
    assert headers["Allow"] == "GET, HEAD"


def test_sigterm_finishes_in_flight_requests_then_exits_0(mongrel2, handler):
    results = []
    worker = threading.Thread(target=lambda: results.append(get(mongrel2.url, "/sleep?ms=1500")))
    worker.start()
    time.sleep(0.5)  # the request is in flight in the handler
    assert handler.terminate() == 0
    worker.join(5)
    assert results and results[0][0] == 200, results
    assert '"stopped"' in handler.output()


@pytest.mark.parametrize("hub", ["gevent", "eventlet"])
def test_malformed_messages_are_dropped_and_the_loop_keeps_serving(hub, tmp_path):
    """Act as mongrel2 ourselves: bind PUSH and SUB, feed garbage, then a real request."""
    import zmq

    from processes import HandlerProcess
    from support import free_port

    context = zmq.Context()
    push, sub = context.socket(zmq.PUSH), context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    push_endpoint = f"tcp://127.0.0.1:{free_port()}"
    sub_endpoint = f"tcp://127.0.0.1:{free_port()}"
    push.bind(push_endpoint)
    sub.bind(sub_endpoint)
    process = HandlerProcess(hub, None, tmp_path, requests_endpoint=push_endpoint,
                             responses_endpoint=sub_endpoint)
    try:
        # libzmq attaches peers to a socket only when its owner touches it: poll meanwhile.
        process.wait_connected(tick=lambda: sub.poll(0))
        for garbage in (b"", b"\x00\xff garbage", b"uuid 1 / 5:abc", b"uuid x / 2:{},0:,",
                        b"uuid 1 / 9999999999:x,0:,"):
            push.send(garbage)
        headers = {"METHOD": "GET", "PATH": "/json", "VERSION": "HTTP/1.1", "URI": "/json",
                   "PATTERN": "/", "host": "localhost"}
        push.send(protocol.encode_request(b"server-uuid", 42, "/json", headers, b""))
        assert sub.poll(5000), process.output()
        sender, ids, body = protocol.parse_response(sub.recv())
        assert (sender, ids) == (b"server-uuid", [b"42"])
        assert body.startswith(b"HTTP/1.1 200 OK\r\n")
        assert process.output().count("dropped malformed message") == 5
    finally:
        process.stop()
        context.destroy(linger=0)


def test_request_over_the_deadline_gets_504_and_the_handler_keeps_serving(mongrel2, tmp_path):
    from processes import HandlerProcess

    for hub in ("gevent", "eventlet"):
        process = HandlerProcess(hub, mongrel2, tmp_path, HANDLER_REQUEST_TIMEOUT="1")
        try:
            process.wait_connected()
            started = time.monotonic()
            status, headers, body = get(mongrel2.url, "/sleep?ms=5000")
            elapsed = time.monotonic() - started
            assert status == 504, body
            assert json.loads(body)["error"]["details"] == {"timeout_seconds": 1.0}
            assert 0.9 < elapsed < 3, elapsed
            assert get(mongrel2.url, "/json")[0] == 200
        finally:
            process.stop()


def test_metrics_endpoint_counts_requests(mongrel2, tmp_path):
    from processes import HandlerProcess
    from support import free_port

    for hub in ("gevent", "eventlet"):
        port = free_port()
        process = HandlerProcess(hub, mongrel2, tmp_path, METRICS_PORT=str(port))
        try:
            process.wait_connected()
            for _ in range(3):
                assert get(mongrel2.url, "/json")[0] == 200
            assert get(mongrel2.url, "/nope")[0] == 404
            status, _, body = get(f"http://127.0.0.1:{port}", "/metrics")
            text = body.decode()
            assert status == 200
            assert 'm2stack_requests_total{method="GET",route="/json",status="200"} 3.0' in text
            assert 'm2stack_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
            assert f'm2stack_hub_info{{front_door="mongrel2",hub="{hub}"' in text
            assert "m2stack_event_loop_lag_seconds" in text
            assert "m2stack_in_flight_requests" in text
        finally:
            process.stop()


def test_mongrel2_closes_a_connection_whose_handler_never_answers(mongrel2):
    """A handler that takes a request and dies: the client is not held forever."""
    import zmq

    context = zmq.Context()
    black_hole = context.socket(zmq.PULL)  # swallows requests, never answers
    black_hole.connect(mongrel2.requests_endpoint)
    try:
        time.sleep(0.3)
        parts = urlsplit(mongrel2.url)
        started = time.monotonic()
        with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
            sock.sendall(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n")
            assert black_hole.poll(5000), "mongrel2 did not route the request to the black hole"
            black_hole.recv()
            assert sock.recv(65536) == b""  # closed by mongrel2's reaper, no response
        waited = time.monotonic() - started
        bound = mongrel2.IDLE_TIMEOUT + 2 + 1  # min_ping + 2 reaper ticks + slack
        print(f"\n[measured] request lost in a silent handler: connection closed after {waited:.2f}s")
        assert waited < bound, f"client waited {waited:.1f}s, bound {bound}s"
    finally:
        context.destroy(linger=0)
