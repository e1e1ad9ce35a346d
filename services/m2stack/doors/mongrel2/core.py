"""The Mongrel2 door's decisions, with no socket and no hub (as dispatch/core.py is the
dispatcher's): a message in, the app's `Request` out; a `Response` in, the bytes to send
and whether to close the connection after them.

The Connection policy is written once here (`render`), as are the framing of
a streamed body (`StreamBody`) and the WebSocket handshake's answer; driver.py and the
feature parts (streaming.py, websocket.py, uploads.py) do the I/O around them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from functools import partial

import msgspec

from m2stack.app import App, BodySource, HTTPError, Request, Response, body_too_large, error_response
from m2stack.protocol import http
from m2stack.protocol import mongrel2 as protocol
from m2stack.protocol import websocket as ws

log = logging.getLogger("m2stack.doors.mongrel2")

# Headers decoded in C when mongrel2 sends them as JSON (its default here); what msgspec
# refuses (control characters, bytes that are not UTF-8) the pure parser handles.
decode_headers = msgspec.json.Decoder(dict[str, str | list[str]]).decode
# Messages that are not HTTP requests: control notices and WebSocket messages.
NOT_HTTP = frozenset({"JSON", "WEBSOCKET_HANDSHAKE", "WEBSOCKET"})
UPLOAD_START = "x-mongrel2-upload-start"
UPLOAD_DONE = "x-mongrel2-upload-done"
# mongrel2's `upload.stream = 1` sends a large body as a series of messages, the first with
# the request's headers and its first bytes, each marked with this (upper-case: mongrel2's
# own) header. Not supported (docs/streaming.md, "Streamed uploads"): refused with 501.
UPLOAD_STREAM = "UPLOAD_STREAM"

# How a message ended, for the intake that handed it in (dispatched.py acknowledges by it).
SERVED, CLOSED, KEPT_OPEN, WITHHELD = 0, 1, 2, 3

LAST_CHUNK = b"0\r\n\r\n"

# take_upload(message): the message and its body from mongrel2's file, None for the notice
# that an upload started, or HTTPError (uploads.py `Uploads.take`)
TakeUpload = Callable[[protocol.Mongrel2Request], "tuple[protocol.Mongrel2Request, BodySource] | None"]


# parse(raw): one message from mongrel2 (ProtocolError if malformed); a partial, not a
# function, so the hot path pays no extra Python frame for it.
parse = partial(protocol.parse_request, fast_json=decode_headers)


def headers_for_app(raw: dict[str, str | list[str]]) -> dict[str, str]:
    """Client headers only (mongrel2's are upper-case), repeated ones joined per RFC 9110."""
    headers = {}
    for name, value in raw.items():
        if name.isupper():
            continue
        if isinstance(value, list):
            value = ("; " if name == "cookie" else ", ").join(value)
        headers[name] = value
    return headers


def build_request(message: protocol.Mongrel2Request, body: BodySource | None = None) -> Request:
    """Mongrel2's message to the app's Request (percent-decoding is the app's job); `body`:
    its body when not in the message (an upload's file)."""
    meta = message.headers
    raw_query = meta.get("QUERY", "")
    request = Request.from_raw(
        message.method,
        str(meta.get("PATH", message.path)).encode("utf-8", "surrogateescape"),
        str(raw_query).encode("utf-8", "surrogateescape"),
        headers_for_app(meta),
        message.body if body is None else body,
        version=str(meta.get("VERSION", "HTTP/1.1")),
        remote_addr=str(meta.get("REMOTE_ADDR", "")),
        scheme="https" if meta.get("URL_SCHEME") == "https" else "http",  # set by mongrel2 itself
    )
    if "content-length" in meta and conflicting_lengths(meta) and request.error is None:
        request.error = HTTPError(400, "conflicting Content-Length values",
                                  details={"content_length": meta["content-length"]})
    return request


def conflicting_lengths(meta: dict[str, str | list[str]]) -> bool:
    """Two Content-Length headers that differ (a repeated header arrives as a list).
    Mongrel2 takes the first and parses the rest as a new request; a proxy that takes the
    last would see another body: RFC 9112 says reject and close (request smuggling)."""
    lengths = meta.get("content-length")
    return isinstance(lengths, list) and len({value.strip() for value in lengths}) > 1


def request_for(message: protocol.Mongrel2Request, take_upload: TakeUpload,
                max_body: int) -> tuple[Request, bool] | None:
    """The app's request for an HTTP message, and whether the connection closes after its
    answer whatever the client asked (a smuggling attempt, a refused body); None for
    mongrel2's upload-start notice, which nothing answers unless it is refused (a body over
    `max_body`, MAX_REQUEST_BODY_BYTES: 413). `take_upload`: uploads.py."""
    meta = message.headers
    refused: HTTPError | None = None
    body: BodySource | None = None
    if UPLOAD_STREAM in meta:
        refused = HTTPError(501, "streamed uploads (mongrel2's upload.stream) are not supported: "
                                 "configure upload.temp_store (M2_UPLOAD_DIR) instead")
    elif UPLOAD_START in meta or UPLOAD_DONE in meta:
        try:
            taken = take_upload(message)
        except HTTPError as exc:
            refused = exc
        else:
            if taken is None:
                return None
            message, body = taken
            meta = message.headers
    elif len(message.body) > max_body:  # under mongrel2's limits.content_length, over ours
        refused = body_too_large(max_body, len(message.body))
    if refused is not None:
        request = build_request(message)
        request.error = refused
        return request, True
    request = build_request(message, body)
    return request, request.wants_close or ("content-length" in meta and conflicting_lengths(meta))


# -- a response to bytes ---------------------------------------------------------------

def render(response: Response, *, close: bool, version: str) -> bytes:
    """A response's bytes, with the one Connection policy: say close when closing; say
    keep-alive to an HTTP/1.0 client that keeps the connection (1.1 keeps it by default).
    Always an HTTP/1.1 status line: valid for 1.0 clients too (RFC 9110 section 2.5)."""
    if close:
        response.headers.append(("Connection", "close"))
    elif version == "HTTP/1.0":
        response.headers.append(("Connection", "keep-alive"))
    return http.render_http_response(response.status, response.reason, response.headers, response.body)


def reply_bytes(app: App, request: Request, response: Response, *, close: bool) -> tuple[int, bytes]:
    """The status and bytes of a whole response; a 500 if it cannot be sent as it is (e.g.
    a header an endpoint set that cannot be rendered)."""
    try:
        return response.status, render(response, close=close, version=request.version)
    except protocol.ProtocolError:
        log.exception("unsendable response", extra={"request_id": request.request_id})
        return internal_error(app, request, close=close)


def internal_error(app: App, request: Request, *, close: bool) -> tuple[int, bytes]:
    problem = app.finish(request, error_response(500, "internal server error", request.request_id))
    return problem.status, render(problem, close=close, version=request.version)


# -- a streamed response -----------------------------------------------------------------

def first_chunk(chunks: Iterator[bytes]) -> bytes | None:
    """The first non-empty chunk, or None if there is none."""
    for chunk in chunks:
        if chunk:
            return chunk
    return None


class StreamBody:
    """How a streamed response is framed: its head, then each chunk as it goes on the wire.
    A declared Content-Length is kept and enforced (no framing); otherwise chunked for
    HTTP/1.1, close-delimited for HTTP/1.0."""

    __slots__ = ("head", "chunked", "close", "left", "ended")

    def __init__(self, response: Response, *, close: bool, version: str):
        declared = [v for n, v in response.headers if n.lower() == "content-length"]
        length = int(declared[-1]) if declared and declared[-1].strip().isdigit() else None
        self.chunked = version != "HTTP/1.0" and length is None
        headers = [(n, v) for n, v in response.headers if n.lower() not in ("content-length", "connection")]
        if length is not None:
            headers.append(("Content-Length", str(length)))
        elif self.chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        else:
            close = True  # the end of the body is the end of the connection
        self.close = close
        head = Response(b"", response.status, None)
        head.headers = headers
        self.head = render(head, close=close, version=version)
        self.left = length  # bytes the declared length still allows
        self.ended = ""     # why the body stopped early ("": it did not)

    def wire(self, chunk: bytes) -> bytes:
        """A chunk's bytes on the wire (b"" for an empty one); a chunk past the declared
        length is cut there, and the body ends."""
        if self.left is not None:
            if len(chunk) > self.left:
                chunk = chunk[:self.left]
                self.ended = "longer than its Content-Length"
            self.left -= len(chunk)
        if not chunk:
            return b""
        return b"%x\r\n%b\r\n" % (len(chunk), chunk) if self.chunked else bytes(chunk)

    def stop(self, why: str) -> None:
        """The body ends early: the connection must close (a client cannot tell a cut body
        from a whole one otherwise)."""
        self.ended = why
        self.close = True

    def end(self) -> bytes:
        """What closes a whole body: the last chunk when chunked."""
        if not self.ended and self.left:
            self.stop("shorter than its Content-Length")
        if self.ended:
            self.close = True
            return b""
        return LAST_CHUNK if self.chunked else b""


# -- a WebSocket handshake ---------------------------------------------------------------

def refuse_handshake(app: App, request: Request, found: bool) -> bytes | None:
    """The answer that refuses a WebSocket handshake (the connection closes after it), or
    None to accept it. `found`: an endpoint serves the path."""
    version = request.headers.get("sec-websocket-version", "")
    if not found:
        problem = error_response(404, "no WebSocket endpoint at this path", request.request_id,
                                 details={"path": request.path[:200]})
    elif version.strip() != "13" or not ws.valid_client_key(request.headers.get("sec-websocket-key", "")):
        problem = error_response(400, "bad WebSocket handshake", request.request_id,
                                 details={"sec-websocket-version": version[:20]},
                                 headers=[("Sec-WebSocket-Version", "13")])
    else:
        return None
    return render(app.finish(request, problem), close=True, version=request.version)
