"""The WSGI front door (PEP 3333, the application side): the app as a WSGI callable.

Gunicorn (or any WSGI server) becomes a second front door to the same app: `WSGIAdapter`
builds the same `Request` as the Mongrel2 door (strict percent/UTF-8 decoding, bounded
body) and hands back `App.finish`'s final headers minus the hop-by-hop ones, which the
server owns. What Gunicorn loads is `m2stack.run_wsgi:application`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any
from urllib.parse import quote, urlsplit

from m2stack import httpspec
from m2stack.app import App, HTTPError, Request, Response, body_too_large
from m2stack.app.response import close_stream
from m2stack.doors.body import FileBody
from m2stack.hubs import AppHub

Environ = dict[str, Any]
_UNRESERVED = "/!$&'()*+,;=:@-._~"  # pchar minus '%': what quote() may leave as is in a path
# A body up to this size is read into memory; a larger one is spooled to a temporary file
# (/tmp, a tmpfs in the image) before the app runs, as mongrel2 does with its temp_store:
# the app's deadline then starts with the whole body there, whatever the client's speed,
# and the app reads it as a stream.
SPOOL_IN_MEMORY = 1 << 20
_READ = 65536

def _raw_target(environ: Environ) -> tuple[bytes, bytes]:
    """The path and query as the client sent them (still percent-encoded)."""
    query = environ.get("QUERY_STRING", "").encode("latin-1")
    raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw_uri and not environ.get("SCRIPT_NAME"):
        # Gunicorn's RAW_URI is the request target: origin form "/p?q", or absolute form.
        target = raw_uri.encode("latin-1")
        if not target.startswith(b"/"):
            target = urlsplit(target).path or b"/"  # absolute form, or "*"
        return target.split(b"?", 1)[0].split(b"#", 1)[0], query
    # PEP 3333 gives PATH_INFO already percent-decoded, as latin-1 characters of the raw
    # bytes. Quote it again so Request.from_raw's strict decoding sees the same bytes.
    path = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")).encode("latin-1")
    return quote(path, safe=_UNRESERVED).encode("ascii") or b"/", query


def _headers_from_environ(environ: Environ) -> dict[str, str]:
    headers = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:]
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            name = key
        else:
            continue
        if value == "":
            continue  # wsgiref and others set CONTENT_TYPE/LENGTH to "" when absent
        # Latin-1 is how PEP 3333 carries header bytes; the app layer wants text.
        headers[name.lower().replace("_", "-")] = value.encode("latin-1").decode("utf-8", "replace")
    return headers


def _read_body(environ: Environ, limit: int) -> bytes | FileBody:
    """Read the declared body, refusing more than `limit` bytes without reading them: the
    bytes, or a file positioned at its start (the caller closes it) for a large one."""
    stream = environ["wsgi.input"]
    declared = environ.get("CONTENT_LENGTH", "")
    if declared:
        if not declared.isdigit():
            raise HTTPError(400, "invalid Content-Length", details={"content_length": declared[:40]})
        length = int(declared)
        if length > limit:
            raise body_too_large(limit, length)
    elif environ.get("wsgi.input_terminated"):
        length = -1  # chunked: the server ends the stream at the end of the body
    else:
        return b""
    chunks: list[bytes] = []
    spool: IO[bytes] | None = None
    size = 0
    try:
        while length < 0 or size < length:
            want = (length - size) if length >= 0 else (limit + 1 - size)
            chunk = stream.read(min(want, _READ))
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise body_too_large(limit)
            if spool is None and size > SPOOL_IN_MEMORY:
                spool = tempfile.TemporaryFile()  # noqa: SIM115 (closed with the request)
                spool.writelines(chunks)
                chunks.clear()
            if spool is None:
                chunks.append(chunk)
            else:
                spool.write(chunk)
        if length >= 0 and size < length:
            raise HTTPError(400, "request body shorter than Content-Length",
                            details={"content_length": length, "received": size})
    except BaseException:
        if spool is not None:
            spool.close()
        raise
    if spool is None:
        return b"".join(chunks)
    spool.seek(0)
    # time.sleep is the worker's hub's (Gunicorn's worker patched it): a turn for others.
    return FileBody(spool, size, lambda: time.sleep(0))


def build_request(environ: Environ, max_body: int) -> Request:
    """A WSGI environ to the app's Request; undecodable input becomes request.error (400/413)."""
    raw_path, raw_query = _raw_target(environ)
    headers = _headers_from_environ(environ)
    kwargs = {"version": environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
              "remote_addr": environ.get("REMOTE_ADDR", ""),
              "scheme": "https" if environ.get("wsgi.url_scheme") == "https" else "http"}
    method = environ.get("REQUEST_METHOD", "GET")
    try:
        body = _read_body(environ, max_body)
    except HTTPError as exc:
        request = Request.from_raw(method, raw_path, raw_query, headers, b"", **kwargs)
        request.error = request.error or exc
        return request
    return Request.from_raw(method, raw_path, raw_query, headers, body, **kwargs)


class WSGIAdapter:
    """The app as a PEP 3333 application.

    `request_timeout` (seconds, 0 for none) answers 504 like the Mongrel2 front door
    does, with the hub's Timeout (the blocking hub's never fires).
    """

    def __init__(self, app: App, hub: AppHub, *, max_body: int, request_timeout: float = 0):
        self.app = app
        self.hub = hub
        self.max_body = max_body
        self.request_timeout = request_timeout

    def handle(self, request: Request) -> Response:
        return self.app.handle_within(request, self.request_timeout, self.hub.Timeout)

    def __call__(self, environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = build_request(environ, self.max_body)
        try:
            response = self.handle(request)
        finally:
            request.close_body()  # a spooled body's file
        headers = [(name, value) for name, value in response.headers
                   if name.lower() not in httpspec.HOP_BY_HOP]
        start_response(f"{response.status} {response.reason}", headers)
        if response.stream is not None:
            # A streamed body goes to the server as it is (Gunicorn chunks it, and calls
            # close(), which reaches the producer, when it stops reading).
            return _Closing(response.stream)
        return [response.body]


class _Closing:
    """An iterable body whose close() closes the producer (PEP 3333)."""

    __slots__ = ("chunks",)

    def __init__(self, chunks: Iterable[bytes]):
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)

    def close(self) -> None:
        close_stream(self.chunks)
