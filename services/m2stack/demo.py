"""The demo app: every variant (Mongrel2 + gevent/eventlet, Gunicorn) serves these routes.

`create_app` is the one factory every front door calls, so no endpoint is
written twice.
"""

from __future__ import annotations

import time

from .app import App, Handler, HTTPError, Response

MAX_SLEEP_MS = 30_000  # above the 10 s request timeout on purpose: shows the 504

routes = App()


@routes.route("/plaintext")
class Plaintext(Handler):
    def get(self) -> Response:
        return self.text("Hello, World!")


@routes.route("/json")
class Json(Handler):
    def get(self) -> Response:
        return self.json({"message": "Hello, World!"})


@routes.route("/sleep")
class Sleep(Handler):
    """A cooperative wait: time.sleep is monkey-patched by the hub, so others run meanwhile."""

    def get(self) -> Response:
        ms = self.request.int_argument("ms", 100, minimum=0, maximum=MAX_SLEEP_MS)
        time.sleep(ms / 1000)
        return self.json({"slept_ms": ms})


@routes.route("/healthz")
class Healthz(Handler):
    def get(self) -> Response:
        return self.json({"status": "ok", "hub": self.app.hub, "handler_id": self.app.handler_id})


@routes.route("/error")
class Error(Handler):
    """Raises on purpose: shows (and tests) that a handler crash is a 500, not a hung client."""

    def get(self) -> Response:
        raise RuntimeError("this endpoint fails on purpose")


@routes.route("/echo")
class Echo(Handler):
    """Echoes a JSON body back: exercises body handling, 400 and 415 through every door."""

    def post(self) -> Response:
        return self.json({"received": self.request.json()})


def create_app(*, hub: str, front_door: str) -> App:
    app = App(hub=hub, front_door=front_door)
    app.include(routes)
    return app


__all__ = ["create_app", "HTTPError"]
