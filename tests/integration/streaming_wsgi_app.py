"""WSGI apps that stream, served by a handler as APP=streaming_wsgi_app:app (test_streaming.py)."""

import time

PARTS = [b"part %d\n" % i for i in range(5)]


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    for i, part in enumerate(PARTS):
        if i:
            time.sleep(0.3)
        yield part


def declared(environ, start_response):
    """The same parts over time, with their total length declared up front: still streamed."""
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(sum(map(len, PARTS))))])
    for i, part in enumerate(PARTS):
        if i:
            time.sleep(0.3)
        yield part
