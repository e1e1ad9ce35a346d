"""WSGI, both ways, as processes on loopback: any WSGI app behind the real mongrel2
(APP=module:callable) on each hub, and the WSGI front door under a real Gunicorn."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from processes import Gunicorn
from support import require_module, wait_until


def request(url: str, path: str, method: str = "GET", body: bytes | None = None,
            headers: dict | None = None, timeout: float = 10):
    """(status, [(name, value)] with repeats kept, body)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        conn.close()


def header(headers, name: str) -> list[str]:
    return [value for key, value in headers if key.lower() == name.lower()]


# ---- any WSGI app behind Mongrel2 ------------------------------------------------------------

def test_a_plain_wsgi_app_behind_mongrel2(mongrel2, start_handler, hub):
    handler = start_handler(APP="wsgi_apps:app")
    status, headers, body = request(mongrel2.url, "/env/caf%C3%A9?b=2&a=1", "POST", b'{"x": 1}',
                                    {"Content-Type": "application/json", "X-Custom": "yes", "Cookie": "k=v"})
    assert status == 200, body
    assert json.loads(body) == {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/env/caf\xc3\xa9", "QUERY_STRING": "b=2&a=1",
        "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": "8", "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_X_CUSTOM": "yes", "HTTP_COOKIE": "k=v", "m2stack.hub": hub, "body": '{"x": 1}'}
    assert header(headers, "Content-Length") == [str(len(body))]
    assert header(headers, "X-Hub") == [hub] and header(headers, "X-Front-Door") == ["mongrel2"]
    assert header(headers, "X-Handler-Id") == [handler.handler_id]

    status, headers, body = request(mongrel2.url, "/cookies")
    assert (status, body) == (201, b"two cookies")
    assert header(headers, "Set-Cookie") == ["a=1; Path=/", "b=2; HttpOnly"]
    assert request(mongrel2.url, "/closed")[2] == b"1"  # the server closed the iterable

    status, headers, body = request(mongrel2.url, "/nothing")
    assert (status, body) == (404, b"nothing here\n")  # the app's own 404
    assert header(headers, "Content-Type") == ["text/plain"]

    status, headers, body = request(mongrel2.url, "/boom")
    assert status == 500 and json.loads(body) == {
        "error": {"status": 500, "message": "internal server error"},
        "request_id": header(headers, "X-Request-Id")[0]}
    assert "the WSGI app fails on purpose" in handler.output()
    assert request(mongrel2.url, "/cookies")[0] == 201  # and it keeps serving


def test_the_flask_example_behind_mongrel2(mongrel2, start_handler, hub):
    require_module("flask", "the example app (services/examples) is a Flask app")
    handler = start_handler(APP="examples.flask_app:app")
    status, headers, body = request(mongrel2.url, "/")
    assert (status, body) == (200, b"Hello from Flask behind Mongrel2!\n")
    assert header(headers, "X-Handler-Id") == [handler.handler_id]
    status, _, body = request(mongrel2.url, "/whoami?tag=a&tag=b", headers={"User-Agent": "it/1"})
    assert json.loads(body) == {"path": "/whoami", "args": {"tag": ["a", "b"]}, "cookies": {},
                                "hub": hub, "user_agent": "it/1"}
    status, headers, _ = request(mongrel2.url, "/login")
    assert header(headers, "Set-Cookie") == ["session=abc123; HttpOnly; Path=/; SameSite=Lax",
                                             "theme=dark; Path=/"]
    assert request(mongrel2.url, "/items/99")[0] == 404


# ---- the WSGI front door under Gunicorn -----------------------------------------------------------
# The test image's lock carries Gunicorn with the gevent worker only (the eventlet worker
# needs gunicorn<26, in the wsgi-eventlet image): this is the gevent WSGI image's command.

@pytest.fixture
def gunicorn(tmp_path):
    require_module("gunicorn", "the WSGI door runs under Gunicorn")
    require_module("gevent", "Gunicorn's gevent worker")
    server = Gunicorn(tmp_path, workers=2, HANDLER_REQUEST_TIMEOUT="1")
    yield server
    server.stop()


def worker_pids(master: int) -> set[int]:
    """The master's children that serve requests (its metrics server is a child too)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == master and b"gunicorn_metrics" not in cmdline:
            pids.add(int(entry.name))
    return pids


JSON_200 = {"route": "/json", "method": "GET", "status": "200"}


def test_gunicorn_serves_the_demo_with_the_wsgi_doors_headers(gunicorn):
    status, headers, body = request(gunicorn.url, "/json")
    assert (status, body) == (200, b'{"message":"Hello, World!"}')
    assert header(headers, "X-Front-Door") == ["wsgi"] and header(headers, "X-Hub") == ["gevent"]
    host, _, pid = header(headers, "X-Handler-Id")[0].partition(":")
    workers = worker_pids(gunicorn.process.pid)
    assert host == socket.gethostname() and int(pid) in workers and len(workers) == 2, (pid, workers)
    status, headers, body = request(gunicorn.url, "/no/such/path")
    assert status == 404 and json.loads(body)["error"]["message"] == "no route for this path"


def test_gunicorns_master_merges_the_metrics_of_both_workers(gunicorn):
    before = gunicorn.metrics().value("m2stack_requests_total", **JSON_200)

    def a_round() -> list[str]:
        """8 connections at once; the workers that answered them."""
        answers: list[tuple] = []
        clients = [threading.Thread(target=lambda: answers.append(
            request(gunicorn.url, "/json", headers={"Connection": "close"})[:2])) for _ in range(8)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(10)
        assert len(answers) == len(clients) and all(status == 200 for status, _ in answers), answers
        return [header(headers, "X-Handler-Id")[0] for _, headers in answers]

    served_by = set(a_round())
    sent = 8
    if len(served_by) == 1:
        # Both workers accept from one listening socket, and the kernel hands a connection to
        # whichever is awake: on a busy machine one can take them all (400 in a row seen).
        # Stopped, it cannot, so the next round goes to the other.
        only = int(next(iter(served_by)).partition(":")[2])
        os.kill(only, signal.SIGSTOP)
        try:
            served_by.update(a_round())
            sent += 8
        finally:
            os.kill(only, signal.SIGCONT)
    assert len(served_by) == 2, f"{sent} requests, all answered by {served_by}"
    metrics = gunicorn.metrics()
    assert metrics.value("m2stack_requests_total", **JSON_200) - before == sent
    assert metrics.value("m2stack_hub_info", front_door="wsgi", hub="gevent") == 1.0


def test_gunicorn_answers_504_after_the_request_timeout(gunicorn):
    started = time.monotonic()
    status, _, body = request(gunicorn.url, "/sleep?ms=5000")
    elapsed = time.monotonic() - started
    assert status == 504 and json.loads(body)["error"]["details"] == {"timeout_seconds": 1.0}
    assert 0.9 < elapsed < 3, elapsed
    assert request(gunicorn.url, "/json")[0] == 200


def test_gunicorn_sigterm_finishes_in_flight_requests_then_exits_0(gunicorn):
    results = []
    worker = threading.Thread(target=lambda: results.append(request(gunicorn.url, "/sleep?ms=800")))
    worker.start()
    wait_until(lambda: gunicorn.metrics().value("m2stack_in_flight_requests") == 1, 5,
               "the request to be in flight in a worker")
    assert gunicorn.terminate() == 0, gunicorn.output()[-2000:]
    worker.join(5)
    assert results and results[0][0] == 200 and json.loads(results[0][2]) == {"slept_ms": 800}, results
    with pytest.raises(OSError):  # and it no longer listens
        request(gunicorn.url, "/json", timeout=2)
