"""A WSGI application with no framework at all (PEP 3333 only), served behind Mongrel2 by
the process-level tests with APP=wsgi_apps:app."""

from __future__ import annotations

import json

CLOSED = []  # how many response iterables the server closed (PEP 3333: it must)


class Chunks:
    """A response iterable with close(), in several chunks, one of them empty."""

    def __init__(self, chunks: list[bytes]):
        self.chunks = chunks

    def __iter__(self):
        return iter(self.chunks)

    def close(self) -> None:
        CLOSED.append(1)


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/env"):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        seen = {key: environ.get(key) for key in (
            "REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE", "CONTENT_LENGTH",
            "SERVER_PROTOCOL", "HTTP_X_CUSTOM", "HTTP_COOKIE", "m2stack.hub")}
        seen["body"] = environ["wsgi.input"].read(length).decode("utf-8")
        body = json.dumps(seen, sort_keys=True).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/cookies":
        start_response("201 Created", [("Content-Type", "text/plain"), ("Set-Cookie", "a=1; Path=/"),
                                       ("Set-Cookie", "b=2; HttpOnly")])
        return Chunks([b"two ", b"", b"cookies"])
    if path == "/closed":
        body = str(len(CLOSED)).encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    if path == "/boom":
        raise RuntimeError("the WSGI app fails on purpose")
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"nothing here\n"]
