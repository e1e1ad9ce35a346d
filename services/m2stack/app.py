"""The app layer: routes, request and response objects, handler classes.

It knows nothing about Mongrel2, WSGI or the hub. A front door builds a
`Request` with `Request.from_raw`, calls `App.handle`, and gets back a final
`Response` (status, complete headers, body) that it only has to write out.
`App.handle` never raises: every failure becomes a JSON error response.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import socket
import time
from http import HTTPStatus
from http.cookies import SimpleCookie
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl, unquote_to_bytes

import msgspec

from . import metrics

log = logging.getLogger("m2stack.app")

SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_BAD_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_json_encode = msgspec.json.Encoder().encode
_json_decoder = msgspec.json.Decoder()


def reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class HTTPError(Exception):
    """Raise from a handler to answer with `status` and a JSON error body."""

    def __init__(self, status: int, message: str, *, details: Any = None,
                 headers: Iterable[tuple[str, str]] = ()):
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details
        self.headers = list(headers)


def _strict_unquote(raw: bytes, what: str) -> str:
    """Percent-decode and UTF-8-decode, refusing what a lenient decoder would guess at."""
    if _BAD_PERCENT.search(raw):
        raise HTTPError(400, f"invalid percent-encoding in {what}")
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPError(400, f"invalid UTF-8 in {what}") from None


def _parse_query(raw: bytes) -> dict[str, list[str]]:
    if _BAD_PERCENT.search(raw):
        raise HTTPError(400, "invalid percent-encoding in query string")
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True,
                          encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise HTTPError(400, "invalid UTF-8 in query string") from None
    query: dict[str, list[str]] = {}
    for name, value in pairs:
        query.setdefault(name, []).append(value)
    return query


class Request:
    """One HTTP request, as every front door hands it to the app."""

    __slots__ = ("method", "path", "query", "headers", "body", "version",
                 "remote_addr", "request_id", "error", "_cookies")

    def __init__(self, method: str, path: str, query: dict[str, list[str]],
                 headers: dict[str, str], body: bytes, *, version: str = "HTTP/1.1",
                 remote_addr: str = "", request_id: str = ""):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers  # lower-case names; repeated headers joined with ", "
        self.body = body
        self.version = version
        self.remote_addr = remote_addr
        self.request_id = request_id or new_request_id(headers.get("x-request-id"))
        self.error: HTTPError | None = None  # set when the wire form could not be decoded
        self._cookies: dict[str, str] | None = None

    @classmethod
    def from_raw(cls, method: str, raw_path: bytes, raw_query: bytes,
                 headers: dict[str, str], body: bytes, **kwargs: Any) -> "Request":
        """Build from wire bytes. Undecodable path or query is not raised here: it is
        kept in `error`, and `App.handle` answers it with a 400 like any other error."""
        try:
            path = _strict_unquote(raw_path, "path")
            query = _parse_query(raw_query) if raw_query else {}
        except HTTPError as exc:
            request = cls(method, "", {}, headers, body, **kwargs)
            request.error = exc
            return request
        return cls(method, path, query, headers, body, **kwargs)

    def argument(self, name: str, default: str | None = None) -> str | None:
        """The last value of a query argument (Brubeck's get_argument)."""
        values = self.query.get(name)
        return values[-1] if values else default

    def int_argument(self, name: str, default: int, *, minimum: int, maximum: int) -> int:
        """A query argument that must be an integer in [minimum, maximum], else 400."""
        raw = self.argument(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw, 10)
        except ValueError:
            raise HTTPError(400, f"query argument '{name}' must be an integer",
                            details={"argument": name, "value": raw[:64]}) from None
        if not minimum <= value <= maximum:
            raise HTTPError(400, f"query argument '{name}' must be between {minimum} and {maximum}",
                            details={"argument": name, "value": value})
        return value

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    @property
    def cookies(self) -> dict[str, str]:
        if self._cookies is None:
            jar = SimpleCookie()
            try:
                jar.load(self.headers.get("cookie", ""))
            except Exception:  # a garbled Cookie header means no cookies, not a 500
                jar = SimpleCookie()
            self._cookies = {name: morsel.value for name, morsel in jar.items()}
        return self._cookies

    def json(self) -> Any:
        """The body decoded as JSON; 415 for another content type, 400 if malformed."""
        content_type = self.headers.get("content-type", "")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            raise HTTPError(415, "expected Content-Type: application/json",
                            details={"content_type": content_type[:100]})
        try:
            return _json_decoder.decode(self.body)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # msgspec raises the latter for bad UTF-8
            raise HTTPError(400, "malformed JSON body", details=str(exc)) from None

    @property
    def wants_close(self) -> bool:
        """True when the client asked for the connection to end after this response."""
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" not in connection
        return "close" in connection


def new_request_id(offered: str | None = None) -> str:
    """Keep a well-formed client/proxy X-Request-Id so ids follow a request; else mint one."""
    if offered and _REQUEST_ID.match(offered):
        return offered
    return secrets.token_hex(8)


class Response:
    """Status, headers and body. Helpers on `Handler` build the common ones."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, body: bytes = b"", status: int = 200,
                 content_type: str | None = "text/plain; charset=utf-8",
                 headers: Iterable[tuple[str, str]] = ()):
        self.status = status
        self.body = body
        self.headers: list[tuple[str, str]] = []
        if content_type:
            self.headers.append(("Content-Type", content_type))
        for name, value in headers:
            self.set_header(name, value, replace=False)

    def set_header(self, name: str, value: str, *, replace: bool = True) -> None:
        """Add a header; CR, LF and NUL are refused so no input can split a response."""
        value = str(value)
        if not _HEADER_NAME.match(name) or any(c in value for c in "\r\n\0"):
            raise ValueError(f"refusing unsafe response header {name!r}")
        if replace:
            lowered = name.lower()
            self.headers = [(n, v) for n, v in self.headers if n.lower() != lowered]
        self.headers.append((name, value))

    def set_cookie(self, name: str, value: str, *, path: str = "/", max_age: int | None = None,
                   http_only: bool = True, same_site: str = "Lax", secure: bool = False) -> None:
        jar = SimpleCookie()
        jar[name] = value  # SimpleCookie quotes the value, so it cannot inject attributes
        morsel = jar[name]
        morsel["path"] = path
        morsel["samesite"] = same_site
        if max_age is not None:
            morsel["max-age"] = str(max_age)
        morsel["httponly"] = http_only
        morsel["secure"] = secure
        self.set_header("Set-Cookie", morsel.OutputString(), replace=False)

    @property
    def reason(self) -> str:
        return reason_phrase(self.status)


def json_response(data: Any, status: int = 200) -> Response:
    return Response(_json_encode(data), status, "application/json")


def error_response(status: int, message: str, request_id: str, details: Any = None,
                   headers: Iterable[tuple[str, str]] = ()) -> Response:
    error: dict[str, Any] = {"status": status, "message": message}
    if details is not None:
        error["details"] = details
    response = json_response({"error": error, "request_id": request_id}, status)
    for name, value in headers:
        response.set_header(name, value, replace=False)
    return response


class Handler:
    """Brubeck-style handler: one instance per request, one method per HTTP verb.

    Methods take the route's named parameters as keyword arguments and return a
    `Response` (or raise `HTTPError`). HEAD runs `get` and drops the body.
    """

    route_pattern = "unmatched"

    def __init__(self, app: "App", request: Request):
        self.app = app
        self.request = request

    @classmethod
    def allowed_methods(cls) -> list[str]:
        allowed = [m for m in SUPPORTED_METHODS if callable(getattr(cls, m.lower(), None))]
        if "GET" in allowed and "HEAD" not in allowed:
            allowed.insert(allowed.index("GET") + 1, "HEAD")
        return allowed

    def text(self, text: str, status: int = 200) -> Response:
        return Response(text.encode("utf-8"), status)

    def json(self, data: Any, status: int = 200) -> Response:
        return json_response(data, status)

    def html(self, html: str, status: int = 200) -> Response:
        return Response(html.encode("utf-8"), status, "text/html; charset=utf-8")


_PARAM = re.compile(r"\{(\w+)(?::(int|str|path))?\}")
_CONVERTERS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "str": (r"[^/]+", str),
    "int": (r"[0-9]{1,18}", int),
    "path": (r".+", str),
}


class Route:
    __slots__ = ("pattern", "regex", "converters", "handler")

    def __init__(self, pattern: str, handler: type[Handler]):
        self.pattern = pattern
        self.handler = handler
        self.converters: dict[str, Callable[[str], Any]] = {}
        regex, last = "", 0
        for match in _PARAM.finditer(pattern):
            name, kind = match.group(1), match.group(2) or "str"
            part, convert = _CONVERTERS[kind]
            regex += re.escape(pattern[last:match.start()]) + f"(?P<{name}>{part})"
            self.converters[name] = convert
            last = match.end()
        self.regex = re.compile(regex + re.escape(pattern[last:]) + r"\Z")

    def match(self, path: str) -> dict[str, Any] | None:
        found = self.regex.match(path)
        if found is None:
            return None
        return {name: self.converters[name](value) for name, value in found.groupdict().items()}


class App:
    """Routes requests to handlers and turns every outcome into a final response."""

    def __init__(self, *, hub: str = "none", front_door: str = "none",
                 handler_id: str | None = None):
        self.hub = hub
        self.front_door = front_door
        self.handler_id = handler_id or f"{socket.gethostname()}:{os.getpid()}"
        self._static: dict[str, Route] = {}
        self._dynamic: list[Route] = []

    def route(self, pattern: str) -> Callable[[type[Handler]], type[Handler]]:
        """Class decorator: `@app.route("/items/{item_id:int}")`."""
        def register(handler: type[Handler]) -> type[Handler]:
            route = Route(pattern, handler)
            handler.route_pattern = pattern  # a bounded metrics label, unlike raw paths
            if route.converters:
                self._dynamic.append(route)
            else:
                self._static[pattern] = route
            return handler
        return register

    def include(self, other: "App") -> None:
        """Take every route of another App (so one set of endpoints serves many apps)."""
        self._static.update(other._static)
        self._dynamic.extend(other._dynamic)

    def resolve(self, path: str) -> tuple[type[Handler], dict[str, Any]] | None:
        route = self._static.get(path)
        if route is not None:
            return route.handler, {}
        for route in self._dynamic:
            params = route.match(path)
            if params is not None:
                return route.handler, params
        return None

    def handle(self, request: Request) -> Response:
        """Run the request through its handler; never raises."""
        started = time.perf_counter()
        found = None if request.error else self.resolve(request.path)
        metrics.IN_FLIGHT.inc()
        try:
            response = self._dispatch(request, found)
        except HTTPError as exc:
            response = error_response(exc.status, exc.message, request.request_id,
                                      exc.details, exc.headers)
        except Exception:
            log.exception("unhandled error in handler",
                          extra={"request_id": request.request_id, "path": request.path,
                                 "method": request.method})
            response = error_response(500, "internal server error", request.request_id)
        finally:
            metrics.IN_FLIGHT.dec()
        route = found[0].route_pattern if found else "unmatched"
        metrics.observe(route, request.method if request.method in SUPPORTED_METHODS else "other",
                        response.status, started)
        return self.finish(request, response)

    def handle_within(self, request: Request, limit: float, timeout_class: type) -> Response:
        """`handle`, or 504 if it takes longer than `limit` seconds (0: no limit).

        `timeout_class` is the hub's (gevent.Timeout or eventlet.Timeout): the app stays
        hub-agnostic. Neither front door times a request out by itself: behind mongrel2
        a stuck request would hold its client until mongrel2's idle reaper.
        """
        if not limit:
            return self.handle(request)
        deadline = timeout_class(limit)
        try:
            with deadline:
                return self.handle(request)
        except timeout_class as fired:
            if fired is not deadline:
                raise
        log.warning("request timed out", extra={"request_id": request.request_id,
                                                "path": request.path[:200], "timeout": limit})
        metrics.REQUESTS.labels("deadline", request.method if request.method in SUPPORTED_METHODS
                                else "other", "504").inc()
        return self.finish(request, error_response(
            504, "the handler did not finish in time", request.request_id,
            details={"timeout_seconds": limit}))

    def finish(self, request: Request, response: Response) -> Response:
        """Add the headers every response carries; drop the body for HEAD."""
        headers = response.headers
        headers.append(("Content-Length", str(len(response.body))))
        headers.append(("X-Request-Id", request.request_id))
        headers.append(("X-Handler-Id", self.handler_id))
        headers.append(("X-Hub", self.hub))
        headers.append(("X-Front-Door", self.front_door))
        if request.method == "HEAD":
            response.body = b""
        return response

    def _dispatch(self, request: Request, found) -> Response:
        if request.error is not None:
            raise request.error
        if found is None:
            raise HTTPError(404, "no route for this path", details={"path": request.path[:200]})
        handler_class, params = found
        method = request.method
        verb = "get" if method == "HEAD" else method.lower()
        action = getattr(handler_class, verb, None) if method in SUPPORTED_METHODS else None
        if action is None:
            allowed = ", ".join(handler_class.allowed_methods())
            raise HTTPError(405, f"method {method[:20]!r} not allowed here",
                            details={"allowed": allowed}, headers=[("Allow", allowed)])
        response = action(handler_class(self, request), **params)
        if not isinstance(response, Response):
            raise TypeError(f"{handler_class.__name__}.{verb} returned {type(response).__name__},"
                            " not a Response")
        return response
