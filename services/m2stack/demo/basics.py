"""The demo's basic endpoints: plaintext, json, sleep, healthz, error, echo, redirect."""

from __future__ import annotations

import time
from urllib.parse import quote

from m2stack.app import Endpoint, HTTPError, Response, Router

MAX_SLEEP_MS = 30_000  # above the 10 s request timeout on purpose: shows the 504

routes = Router()


@routes.route("/plaintext")
class Plaintext(Endpoint):
    def get(self) -> Response:
        return self.text("Hello, World!")


@routes.route("/json")
class Json(Endpoint):
    def get(self) -> Response:
        return self.json({"message": "Hello, World!"})


@routes.route("/sleep")
class Sleep(Endpoint):
    """A cooperative wait: time.sleep is monkey-patched by the hub, so others run meanwhile."""

    def get(self) -> Response:
        ms = self.request.int_argument("ms", 100, minimum=0, maximum=MAX_SLEEP_MS)
        time.sleep(ms / 1000)
        return self.json({"slept_ms": ms})

    def post(self) -> Response:
        """The same wait for a method that is not safe to repeat (what the dispatcher does
        with a POST whose handler dies, docs/dispatcher.md)."""
        return self.get()


@routes.route("/healthz")
class Healthz(Endpoint):
    def get(self) -> Response:
        return self.json({"status": "ok", "hub": self.app.hub_name, "handler_id": self.app.handler_id})


@routes.route("/error")
class Error(Endpoint):
    """Raises on purpose: shows (and tests) that a handler crash is a 500, not a hung client."""

    def get(self) -> Response:
        raise RuntimeError("this endpoint fails on purpose")


@routes.route("/echo")
class Echo(Endpoint):
    """Echoes a JSON body back: exercises body handling, 400 and 415 through every door.
    `?ms=N` waits N ms first: a slow request whose answer still names its sender."""

    def post(self) -> Response:
        received = self.request.json()
        ms = self.request.int_argument("ms", 0, minimum=0, maximum=MAX_SLEEP_MS)
        if ms:
            time.sleep(ms / 1000)
        return self.json({"received": received})


@routes.route("/redirect")
class Redirect(Endpoint):
    """Input that ends up in a response header: a local path only, never CR/LF.

    Refusing here gives the client a 400 it can act on; Response.set_header would
    also refuse, but as a 500, because by then it is the server's mistake.
    """

    def get(self) -> Response:
        target = self.request.argument("to", "/")
        if not target.startswith("/") or target.startswith("//") or \
                any(ord(c) < 0x20 or c == "\x7f" or c == "\\" for c in target):
            raise HTTPError(400, "'to' must be a local path without control characters",
                            details={"argument": "to"})
        location = quote(target, safe="/?=&%#:;@!$'()*+,~-._")  # headers are ASCII
        response = self.json({"location": location}, status=302)
        response.set_header("Location", location)
        return response
