"""WSGI in both directions (PEP 3333).

1. `WSGIAdapter(app)`: the app as a WSGI callable, so Gunicorn (or any WSGI server)
   is a second front door to the same endpoints. `application` is what the Gunicorn
   images load (`m2stack.wsgi:application`).
2. `WSGIHandlerApp(wsgi_callable)`: the other way round, any WSGI application (Flask,
   Django, ...) served by the Mongrel2 front door. It is an `App` whose dispatch calls
   the WSGI callable, so server.py drives it like the demo app. `app_from_env` picks it
   when `APP=package.module:callable` is set.

Both directions build the same `Request` (strict percent/UTF-8 decoding, bounded body)
and end in `App.finish`, so every response carries the same final headers
(Content-Length, X-Request-Id, X-Handler-Id, X-Hub, X-Front-Door).
"""

from __future__ import annotations

import functools
import importlib
import io
import logging
import os
import sys
from typing import Any, Callable, Iterable
from urllib.parse import quote, urlencode, urlsplit

from .app import App, Handler, HTTPError, Request, Response
from .hubs import load as load_hub
from .settings import Settings

log = logging.getLogger("m2stack.wsgi")

DEFAULT_MAX_BODY = 20480  # mongrel2's limits.content_length default: one limit for both doors
# RFC 9110 section 7.6.1 plus Transfer-Encoding and Content-Length, which the server owns.
# PEP 3333 forbids an application to send hop-by-hop headers.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                        "te", "trailer", "trailers", "transfer-encoding", "upgrade",
                        "proxy-connection"})
_UNRESERVED = "/!$&'()*+,;=:@-._~"  # pchar minus '%': what quote() may leave as is in a path

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


def max_body_from_env() -> int:
    raw = os.environ.get("MAX_CONTENT_LENGTH", "")
    try:
        value = int(raw) if raw else DEFAULT_MAX_BODY
    except ValueError:
        raise SystemExit(f"setting MAX_CONTENT_LENGTH must be an integer, got {raw!r}") from None
    if value < 0:
        raise SystemExit("setting MAX_CONTENT_LENGTH must not be negative")
    return value


# ---- 1. the app as a WSGI callable ------------------------------------------------------

def _raw_target(environ: dict) -> tuple[bytes, bytes]:
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


def _headers_from_environ(environ: dict) -> dict[str, str]:
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


def _read_body(environ: dict, limit: int) -> bytes:
    """Read the declared body, refusing more than `limit` bytes without reading them."""
    stream = environ["wsgi.input"]
    declared = environ.get("CONTENT_LENGTH", "")
    if declared:
        if not declared.isdigit():
            raise HTTPError(400, "invalid Content-Length", details={"content_length": declared[:40]})
        length = int(declared)
        if length > limit:
            raise HTTPError(413, "request body too large", details={"limit": limit, "length": length})
    elif environ.get("wsgi.input_terminated"):
        length = -1  # chunked: the server ends the stream at the end of the body
    else:
        return b""
    chunks, size = [], 0
    while length < 0 or size < length:
        want = (length - size) if length >= 0 else (limit + 1 - size)
        chunk = stream.read(min(want, 65536))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, "request body too large", details={"limit": limit})
    if length >= 0 and size < length:
        raise HTTPError(400, "request body shorter than Content-Length",
                        details={"content_length": length, "received": size})
    return b"".join(chunks)


def build_request(environ: dict, max_body: int) -> Request:
    """A WSGI environ to the app's Request; undecodable input becomes request.error (400/413)."""
    raw_path, raw_query = _raw_target(environ)
    headers = _headers_from_environ(environ)
    kwargs = {"version": environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
              "remote_addr": environ.get("REMOTE_ADDR", "")}
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
    does, using the hub's Timeout (`hubs.load(app.hub)`; without a hub it never fires).
    """

    def __init__(self, app: App, *, max_body: int = DEFAULT_MAX_BODY, request_timeout: float = 0):
        self.app = app
        self.max_body = max_body
        self.request_timeout = request_timeout
        self.hub = load_hub(app.hub)

    def handle(self, request: Request) -> Response:
        return self.app.handle_within(request, self.request_timeout, self.hub.Timeout)

    def __call__(self, environ: dict, start_response: Callable) -> list[bytes]:
        response = self.handle(build_request(environ, self.max_body))
        headers = [(name, value) for name, value in response.headers
                   if name.lower() not in HOP_BY_HOP]
        start_response(f"{response.status} {response.reason}", headers)
        return [response.body]


def running_hub() -> str:
    """The hub this process really runs on (what Gunicorn's worker class monkey-patched)."""
    gevent_monkey = sys.modules.get("gevent.monkey")
    if gevent_monkey is not None and gevent_monkey.is_module_patched("socket"):
        return "gevent"
    eventlet_patcher = sys.modules.get("eventlet.patcher")
    if eventlet_patcher is not None and eventlet_patcher.is_monkey_patched("socket"):
        return "eventlet"
    return os.environ.get("HUB", "sync")


@functools.lru_cache(maxsize=None)
def _default_adapter() -> WSGIAdapter:
    from . import logs
    from .demo import create_app
    from . import metrics
    logs.setup(os.environ.get("LOG_LEVEL", "INFO").upper())  # the app's JSON lines; Gunicorn keeps its own
    hub = running_hub()
    if hub in ("gevent", "eventlet"):
        metrics.HUB.labels(hub, "wsgi", load_hub(hub).versions()[hub]).set(1)
    return WSGIAdapter(create_app(hub=hub, front_door="wsgi"), max_body=max_body_from_env(),
                       request_timeout=Settings.from_env().request_timeout)


def application(environ: dict, start_response: Callable) -> list[bytes]:
    """What Gunicorn loads. Built on the first request, in the worker, after its hub
    patched the process (so X-Hub is right even with `preload_app`)."""
    return _default_adapter()(environ, start_response)


# ---- 2. any WSGI application behind Mongrel2 -------------------------------------------

def _environ_for(request: Request, hub: str) -> dict[str, Any]:
    host = request.headers.get("host", "")
    name, colon, port = host.rpartition(":")
    if not (colon and port.isdigit()):  # no port, or an IPv6 literal without one
        name, port = host, "80"
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
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(request.body),
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,   # greenlets: many requests at once in one process
        "wsgi.multiprocess": True,  # and many handler processes
        "wsgi.run_once": False,
        "m2stack.hub": hub,
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
    environ["CONTENT_LENGTH"] = str(len(request.body))  # what wsgi.input really holds
    return environ


class WSGIHandler(Handler):
    """The one "route" of a WSGIHandlerApp: every method goes to the WSGI callable."""

    route_pattern = "wsgi"  # the metrics label of every request served this way

    def get(self) -> Response:
        return self.app.call_wsgi(self.request)

    post = put = patch = delete = options = get


class WSGIHandlerApp(App):
    """An `App` that serves a WSGI callable: the Mongrel2 front door can run any WSGI app.

    Routing is the WSGI app's (every path resolves to it); what it raises becomes the
    same 500 JSON as ours. The body is collected in full: Mongrel2 gets one message per
    response.
    """

    def __init__(self, wsgi_app: WSGIApp, **kwargs: Any):
        super().__init__(**kwargs)
        self.wsgi_app = wsgi_app

    def resolve(self, path: str) -> tuple[type[Handler], dict[str, Any]]:
        return WSGIHandler, {}

    def call_wsgi(self, request: Request) -> Response:
        started: list[Any] = []
        written: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info=None):
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

        result = self.wsgi_app(_environ_for(request, self.hub), start_response)
        try:
            for chunk in result:
                if chunk:
                    written.append(chunk)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if not started:
            raise RuntimeError("the WSGI application never called start_response")
        status, headers = started
        response = Response(b"".join(written), int(status.split(" ", 1)[0]), content_type=None)
        for name, value in headers:
            lowered = name.lower()
            if lowered in HOP_BY_HOP:
                continue
            if lowered == "content-length" and request.method != "HEAD":
                continue  # App.finish sets the length of what is really sent
            response.set_header(name, value, replace=False)
        return response

    def finish(self, request: Request, response: Response) -> Response:
        # A HEAD answer keeps the length the app declared (that of the GET body).
        declared = [v for n, v in response.headers if n.lower() == "content-length"]
        response.headers = [(n, v) for n, v in response.headers if n.lower() != "content-length"]
        response = super().finish(request, response)
        if request.method == "HEAD" and declared:
            response.set_header("Content-Length", declared[-1])
        return response


def load_callable(spec: str) -> Any:
    """`package.module:attribute` (dots allowed in the attribute) to the object."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise SystemExit(f"APP must look like package.module:callable, got {spec!r}")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target


def app_from_env(*, hub: str, front_door: str) -> App:
    """The app a Mongrel2 handler serves: `APP=package.module:callable` (a WSGI
    application), else the demo app."""
    spec = os.environ.get("APP", "")
    if not spec:
        from .demo import create_app
        return create_app(hub=hub, front_door=front_door)
    return WSGIHandlerApp(load_callable(spec), hub=hub, front_door=front_door)
