"""The app: routes requests to endpoints and turns every outcome into a final response.

It knows nothing about Mongrel2, WSGI or the hub. A front door builds a `Request` with
`Request.from_raw`, calls `App.handle` (or `handle_within`, with the hub's timer), and
gets back a final `Response` (status, complete headers, body) that it only writes out.
`App.handle` never raises: every failure becomes a JSON error response.

Who loads the app (m2stack.apps) sets what a deployment decides: whether responses carry
`Date` (not behind a WSGI server, which writes its own) and `X-Handler-Id`, and which
peers may say who the client was (`trusted_proxies`, app/forwarded.py).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Callable
from email.utils import formatdate
from types import SimpleNamespace
from typing import Any, cast

from m2stack import metrics
from m2stack.app.forwarded import TrustedProxies, client_of
from m2stack.app.request import Request
from m2stack.app.response import DeadlineExceeded, HTTPError, Response, StreamingResponse, error_response
from m2stack.app.routing import SUPPORTED_METHODS, Endpoint, Route, Router

log = logging.getLogger("m2stack.app")


class App:
    """An app is its routes plus who serves it: `hub_name` and `front_door` are names
    for the X-Hub / X-Front-Door headers and metrics; the app never calls a hub.
    `state` holds what the app's endpoints share (pools, clients): whoever builds the app
    puts them there."""

    def __init__(self, routes: Router | None = None, *, hub_name: str = "blocking",
                 front_door: str = "none", handler_id: str | None = None):
        self.routes = routes if routes is not None else Router()
        self.hub_name = hub_name
        self.front_door = front_door
        self.handler_id = handler_id or f"{socket.gethostname()}:{os.getpid()}"
        self.state = SimpleNamespace()
        self.hsts_max_age = 63_072_000  # two years, as browsers' preload lists expect; 0: none
        self.date_header = True       # RFC 9110 6.6.1: an origin server with a clock sends Date
        self.clock: Callable[[], float] = time.time  # what Date says
        # The Date value and the second it names: formatted once a second, not per response
        # (as nginx and uvicorn keep theirs); [_date_from, _date_until) is that second.
        self._date_text = ""
        self._date_from = self._date_until = 0.0
        self.handler_id_header = True  # X-Handler-Id: which process answered
        self.trusted_proxies = TrustedProxies()  # none: the connection's peer is the client
        self._error_answers: dict[type[Exception], Callable[[Any], HTTPError]] = {}

    @property
    def trusted_proxies(self) -> TrustedProxies:
        """Which peers may say who the client was (app/forwarded.py)."""
        return self._trusted_proxies

    @trusted_proxies.setter
    def trusted_proxies(self, trusted: TrustedProxies) -> None:
        self._trusted_proxies = trusted
        self._behind_proxies = bool(trusted)  # a plain bool: `handle` asks it on every request

    def answer_error(self, error: type[Exception], answer: Callable[[Any], HTTPError]) -> None:
        """Answer an `error` an endpoint lets through (one the app does not know, e.g. a
        database's) as the HTTPError `answer(exc)`, not as a 500."""
        self._error_answers[error] = answer

    def answer_for(self, error: type[Exception]) -> Callable[[Any], HTTPError] | None:
        """The answer an `error` raised by an endpoint would get (its own class's, else its
        nearest base's), or None: a 500."""
        return next((self._error_answers[cls] for cls in error.__mro__ if cls in self._error_answers), None)

    def route(self, pattern: str) -> Callable[[type[Endpoint]], type[Endpoint]]:
        """`@app.route(...)`: the same decorator as `Router.route`, on this app's routes."""
        return self.routes.route(pattern)

    def resolve(self, path: str) -> tuple[Route, dict[str, Any]] | None:
        return self.routes.resolve(path)

    def handle(self, request: Request) -> Response:
        """Run the request through its endpoint; never raises.

        The front door bounds the time: it raises `DeadlineExceeded` into this greenlet
        when the request runs out of it, and that becomes a 504 here."""
        started = time.perf_counter()
        if self._behind_proxies:
            request.remote_addr, request.scheme = client_of(
                request.peer_addr, request.scheme, request.headers, self._trusted_proxies)
        found = None if request.error else self.resolve(request.path)
        metrics.request_started()
        try:
            response = self._dispatch(request, found)
        except HTTPError as exc:
            response = error_response(exc.status, exc.message, request.request_id,
                                      exc.details, exc.headers)
        except DeadlineExceeded as exc:
            log.warning("request timed out", extra={"request_id": request.request_id,
                                                    "path": request.path[:200], "timeout": exc.limit})
            response = error_response(504, "the handler did not finish in time", request.request_id,
                                      details={"timeout_seconds": exc.limit})
        except Exception:
            log.exception("unhandled error in endpoint",
                          extra={"request_id": request.request_id, "path": request.path,
                                 "method": request.method})
            response = error_response(500, "internal server error", request.request_id)
        route = found[0].pattern if found else "unmatched"
        metrics.request_finished(route, request.method if request.method in SUPPORTED_METHODS else "other",
                                 response.status, started)
        return self.finish(request, response)

    def handle_within(self, request: Request, limit: float, timeout_class: Any) -> Response:
        """`handle` with a timer of its own: 504 after `limit` seconds (0: no limit).

        `timeout_class` is the hub's `Timeout` (passed in by the front door, so the app
        stays hub-agnostic), armed to raise `DeadlineExceeded`. The Mongrel2 door uses one
        watchdog for all its requests instead, which costs less than a timer each."""
        if not limit:
            return self.handle(request)
        with timeout_class(limit, DeadlineExceeded(limit)):
            return self.handle(request)

    def finish(self, request: Request, response: Response) -> Response:
        """Add the headers every response carries; drop the body for HEAD."""
        headers = response.headers
        if response.stream is None:
            headers.append(("Content-Length", str(len(response.body))))
        elif request.method == "HEAD":
            cast(StreamingResponse, response).discard()
        if self.date_header:
            now = self.clock()
            if not self._date_from <= now < self._date_until:  # a new second (or the clock went back)
                self._next_date(now)
            headers.append(("Date", self._date_text))
        headers.append(("X-Request-Id", request.request_id))
        if self.handler_id_header:
            headers.append(("X-Handler-Id", self.handler_id))
        headers.append(("X-Hub", self.hub_name))
        headers.append(("X-Front-Door", self.front_door))
        if request.scheme == "https" and self.hsts_max_age:
            # Only over TLS: a browser must learn "HTTPS only" from an answer it can trust.
            headers.append(("Strict-Transport-Security", f"max-age={self.hsts_max_age}"))
        if request.method == "HEAD":
            response.body = b""
        return response

    def _next_date(self, now: float) -> None:
        second = math.floor(now)
        self._date_text = http_date(second)
        self._date_from, self._date_until = second, second + 1

    def _dispatch(self, request: Request, found: tuple[Route, dict[str, Any]] | None) -> Response:
        if request.error is not None:
            raise request.error
        if found is None:
            raise HTTPError(404, "no route for this path", details={"path": request.path[:200]})
        route, params = found
        endpoint = route.endpoint
        method = request.method
        verb = "get" if method == "HEAD" else method.lower()
        action = getattr(endpoint, verb, None) if method in SUPPORTED_METHODS else None
        if action is None:
            allowed = ", ".join(endpoint.allowed_methods())
            raise HTTPError(405, f"method {method[:20]!r} not allowed here",
                            details={"allowed": allowed}, headers=[("Allow", allowed)])
        try:
            response = action(endpoint(self, request), **params)
        except tuple(self._error_answers) as exc:  # evaluated only when something is raised
            answer = next(self._error_answers[cls] for cls in type(exc).__mro__ if cls in self._error_answers)
            raise answer(exc) from exc
        if not isinstance(response, Response):
            raise TypeError(f"{endpoint.__name__}.{verb} returned {type(response).__name__},"
                            " not a Response")
        return response


_date_second = -1
_date_text = ""


def http_date(now: float | None = None) -> str:
    """The IMF-fixdate of `now` (default: the clock), e.g. `Fri, 04 Dec 2026 16:31:30 GMT`;
    formatted at most once a second."""
    global _date_second, _date_text
    second = int(time.time() if now is None else now)
    if second != _date_second:
        _date_text = formatdate(second, usegmt=True)
        _date_second = second
    return _date_text
