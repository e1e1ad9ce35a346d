"""A WSGI app that streams, served by a handler as APP=streaming_wsgi_app:app (test_streaming.py)."""

import time


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    for i in range(5):
        if i:
            time.sleep(0.3)
        yield b"part %d\n" % i
