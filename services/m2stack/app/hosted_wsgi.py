"""Any WSGI application (Flask, Django, ...) as an `App` (PEP 3333, the server side).

`HostedWSGIApp(wsgi_callable)` is an App whose one endpoint calls the WSGI callable, so
a front door drives it like any other app: the same Request (strict percent/UTF-8
decoding, bounded body) and the same final headers from `App.finish`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any, cast
from urllib.parse import quote, urlencode

from m2stack import httpspec
from m2stack.app.application import App
from m2stack.app.request import Request
from m2stack.app.response import Response, StreamingResponse
from m2stack.app.routing import Endpoint, Route

StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def environ_for(request: Request, hub_name: str) -> dict[str, Any]:
    host = request.headers.get("host", "")
    name, colon, port = host.rpartition(":")
    if not (colon and port.isdigit()):  # no port, or an IPv6 literal without one
        name, port = host, "443" if request.scheme == "https" else "80"
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        # PEP 3333 "native strings": the UTF-8 bytes of the decoded path, as latin-1.
        "PATH_INFO": request.path.encode("utf-8").decode("latin-1"),
        # The app layer keeps the parsed query, not its raw form: re-encode it (values in
        # order per name; names in order of first appearance).
        "QUERY_STRING": urlencode([(k, v) for k, vs in request.query.items() for v in vs],
                                  quote_via=quote),
        "SERVER_NAME": name or "localhost",
        "SERVER_PORT": port or "80",
        "SERVER_PROTOCOL": request.version,
        "REMOTE_ADDR": request.remote_addr,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": request.scheme,
        "wsgi.input": request.body_file,  # streamed: a large upload is never whole in memory
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,   # greenlets: many requests at once in one process
        "wsgi.multiprocess": True,  # and many handler processes
        "wsgi.run_once": False,
        "m2stack.hub": hub_name,
        "m2stack.request_id": request.request_id,
    }
    for name, value in request.headers.items():
        if "_" in name:
            continue  # "x_user" and "x-user" would collide in the environ: drop the ambiguous one
        value = value.encode("utf-8").decode("latin-1")
        if name == "content-type":
            environ["CONTENT_TYPE"] = value
        elif name == "content-length":
            environ["CONTENT_LENGTH"] = value
        else:
            environ["HTTP_" + name.upper().replace("-", "_")] = value
    # What wsgi.input really holds, and only when there is a body (or the client declared
    # one), as a WSGI server does: apps tell "no body" from "empty body" by its absence.
    size = request.body_size
    if size is not None and (size or "content-length" in request.headers):
        environ["CONTENT_LENGTH"] = str(size)
    else:
        environ.pop("CONTENT_LENGTH", None)
    return environ


class WSGIEndpoint(Endpoint):
    """The one endpoint of a HostedWSGIApp: every method goes to the WSGI callable."""

    def get(self) -> Response:
        return cast(HostedWSGIApp, self.app).call_wsgi(self.request)

    post = put = patch = delete = options = get


class HostedWSGIApp(App):
    """An `App` that serves a WSGI callable, so the Mongrel2 front door can run any WSGI app.

    Routing is the WSGI app's (every path resolves to it); what it raises becomes the
    same 500 JSON as ours. As Gunicorn serves it: a body handed over whole (a list or a
    tuple) is sent in one message; any other iterable may be produced over time, so it
    is streamed (a StreamingResponse: chunked, or with the Content-Length the app
    declared), its headers sent with its first non-empty chunk as PEP 3333 says, each
    later chunk as it comes, whatever headers the app declared. `Date` is the server's.
    """

    def __init__(self, wsgi_app: WSGIApp, **kwargs: Any):
        super().__init__(**kwargs)
        self.wsgi_app = wsgi_app

    def resolve(self, path: str) -> tuple[Route, dict[str, Any]]:
        return _EVERY_PATH, {}

    def call_wsgi(self, request: Request) -> Response:
        started: list[Any] = []
        written: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], object]:
            if exc_info is not None:
                try:
                    if started and written:
                        raise exc_info[1].with_traceback(exc_info[2])
                finally:
                    exc_info = None
            elif started:
                raise AssertionError("start_response called twice without exc_info")
            started[:] = [status, headers]
            return written.append

        result = self.wsgi_app(environ_for(request, self.hub_name), start_response)
        streamed: Generator[bytes, None, None] | None = None
        if isinstance(result, (list, tuple)):  # handed over whole: one message
            collected: Iterable[bytes] = result
        else:
            # Anything else may be produced over time: headers go with its first non-empty
            # chunk (PEP 3333), so an error before it is still our 500.
            chunks = iter(result)
            try:
                first = _first_chunk(chunks)
            except BaseException:
                _close(result)
                raise
            if first is None:
                _close(result)
                collected = ()
            else:
                streamed = _stream(written, first, chunks, result)
                collected = ()
        if streamed is None:
            try:
                for chunk in collected:
                    if chunk:
                        written.append(chunk)
            finally:
                _close(result)
        if not started:
            if streamed is not None:
                streamed.close()
            raise RuntimeError("the WSGI application never called start_response")
        status, headers = started
        code = int(status.split(" ", 1)[0])
        response = (Response(b"".join(written), code, content_type=None) if streamed is None
                    else StreamingResponse(streamed, code, content_type=None))
        for name, value in headers:
            lowered = name.lower()
            if lowered in httpspec.HOP_BY_HOP or lowered == "date":
                continue  # the server's own (App.finish or the WSGI server writes Date)
            if lowered == "content-length" and request.method != "HEAD" and streamed is None:
                continue  # App.finish sets the length of what is really sent
            response.set_header(name, value, replace=False)
        return response

    def finish(self, request: Request, response: Response) -> Response:
        # A HEAD answer keeps the length the app declared (that of the GET body).
        declared = [v for n, v in response.headers if n.lower() == "content-length"]
        response.headers = [(n, v) for n, v in response.headers if n.lower() != "content-length"]
        response = super().finish(request, response)
        if declared and (request.method == "HEAD" or response.stream is not None):
            response.set_header("Content-Length", declared[-1])  # a streamed body keeps it
        return response


def _first_chunk(chunks: Iterator[bytes]) -> bytes | None:
    for chunk in chunks:
        if chunk:
            return chunk
    return None


def _stream(written: list[bytes], first: bytes, chunks: Iterator[bytes],
            result: Any) -> Generator[bytes, None, None]:
    """What the WSGI app wrote, its first chunk, the rest; its close() at the end, always."""
    try:
        while written:
            yield written.pop(0)
        yield first
        for chunk in chunks:
            if written:  # write() calls made while producing
                yield from written
                written.clear()
            if chunk:
                yield chunk
        yield from written
    finally:
        _close(result)


def _close(result: Any) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        close()


# Every path resolves to the WSGI app; "wsgi" is the metrics label of its requests.
_EVERY_PATH = Route("wsgi", WSGIEndpoint)
