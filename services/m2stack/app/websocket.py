"""WebSocket endpoints, for any front door that speaks WebSocket (today: the Mongrel2 door).

    @routes.route("/ws/echo")
    class Echo(WebSocketEndpoint):
        def on_message(self, message):           # str for text, bytes for binary
            self.connection.send(message)

An endpoint is registered on a `Router` like any other. One instance per event, like
HTTP endpoints per request: behind Mongrel2 the frames of one client are round-robined
over every handler process, so nothing may be kept on `self` between events. What must
outlive an event lives in a component on `app.state` (the demo's chat room).

Events, and where they run:

- `on_open()`: in the handler that answered the handshake. That handler owns the
  connection: the `connection` object it got is the one to keep (e.g. in a room).
- `on_message(message)`: in whichever handler the message reached.
- `on_close(code, reason)`: where the client's close frame arrived; the door has answered
  it and closes the connection afterwards.
- `on_disconnect(app, key)` (a classmethod): where the front's notice that a connection
  went away arrived; for every WebSocket endpoint class, for every connection that goes
  away (plain HTTP ones too, possibly twice): it must be cheap and idempotent.

A front door with no WebSocket (Gunicorn's WSGI) serves the endpoint's `get`: 400 JSON.
"""

from __future__ import annotations

from typing import Any

from m2stack.app.request import Request
from m2stack.app.response import HTTPError, Response
from m2stack.app.routing import Endpoint, Serving

DEFAULT_MAX_MESSAGE = 1 << 20  # bytes; larger messages are refused with close code 1009


class WebSocketConnection:
    """One client's WebSocket, as a door hands it to the app. `key` names the connection
    the same way in every handler process (so it can travel in a notice)."""

    key: str = ""
    request: Request | None = None  # the handshake's request: path, query, headers

    def send_text(self, text: str) -> bool:
        """Queue a text message; False when the connection is known to be gone."""
        raise NotImplementedError

    def send_binary(self, data: bytes) -> bool:
        raise NotImplementedError

    def send(self, message: str | bytes) -> bool:
        return self.send_text(message) if isinstance(message, str) else self.send_binary(message)

    def send_many(self, messages: list[str | bytes]) -> bool:
        """Several messages in one write. Behind Mongrel2 1.12 this matters: it drops a
        connection with 16 writes not yet delivered to the client (src/connection.h:47)."""
        return all([self.send(message) for message in messages])

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame, then close the connection."""
        raise NotImplementedError


class WebSocketEndpoint(Endpoint):
    """Override the `on_*` events; `self.connection` is the client's connection."""

    max_message: int = DEFAULT_MAX_MESSAGE

    def __init__(self, app: Serving, request: Request, connection: WebSocketConnection | None = None):
        super().__init__(app, request)
        self.connection: Any = connection

    def on_open(self) -> None:
        pass

    def on_message(self, message: str | bytes) -> None:
        pass

    def on_close(self, code: int, reason: str) -> None:
        pass

    @classmethod
    def on_disconnect(cls, app: Serving, key: str) -> None:
        pass

    def get(self) -> Response:
        """A plain GET (no handshake, or a door with no WebSocket)."""
        raise HTTPError(400, "this is a WebSocket endpoint: open it with a WebSocket handshake"
                             " through the Mongrel2 front door",
                        details={"path": self.request.path[:200], "front_door": self.app.front_door})


def is_websocket_endpoint(endpoint: object) -> bool:
    return isinstance(endpoint, type) and issubclass(endpoint, WebSocketEndpoint)
