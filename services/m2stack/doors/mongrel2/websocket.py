"""WebSockets through Mongrel2 1.12: its WEBSOCKET_HANDSHAKE and WEBSOCKET messages.

Mongrel2 computes the accept key but writes nothing to the client, unmasks and joins the
frames itself, and answers no ping and no close. So here: the 101, pongs, the close
handshake and the checks mongrel2 leaves out (reserved bits and opcodes: 1002; UTF-8 of
text: 1007; the endpoint's size limit: 1009), then the endpoint's events
(m2stack.app.websocket). Replies go out on the XPUB of the front the message came from.
What mongrel2 does, with its source lines: docs/streaming.md, "WebSockets".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, cast

from m2stack.app import App, Request
from m2stack.app.websocket import WebSocketConnection, WebSocketEndpoint, is_websocket_endpoint
from m2stack.doors.mongrel2.core import refuse_handshake
from m2stack.doors.mongrel2.fronts import Front, Fronts
from m2stack.hubs import Hub
from m2stack.protocol import mongrel2 as protocol
from m2stack.protocol import tnetstring
from m2stack.protocol import websocket as ws

log = logging.getLogger("m2stack.doors.websocket")
COALESCE = 0.002  # seconds: one connection's writes within this leave as one message


_KEEPALIVE_BODY = tnetstring.dumps([b"ctl", {"keep-alive": True}])


def keepalive_message(sender: bytes, conn_id: bytes) -> bytes:
    """Mongrel2's extended reply: one target (a second one would not be processed)."""
    target = b"X " + conn_id
    return b"%b %d:%b, %b" % (sender, len(target), target, _KEEPALIVE_BODY)


# outbox(connection, wire): WebSockets.outbox, which coalesces one connection's writes
Outbox = Callable[["Mongrel2WebSocket", bytes], None]


class Mongrel2WebSocket(WebSocketConnection):
    """One client connection, written to through the front its message came from."""

    __slots__ = ("outbox", "front", "sender", "conn_id", "key", "request", "closed")

    def __init__(self, outbox: Outbox, front: Front, sender: bytes, conn_id: bytes,
                 request: Request | None):
        self.outbox, self.front, self.sender, self.conn_id = outbox, front, sender, conn_id
        self.key = f"{sender.decode('ascii', 'replace')}:{conn_id.decode('ascii')}"
        self.request = request
        self.closed = False

    def write(self, wire: bytes) -> bool:
        """Queue bytes for the client (b"": close it), through the outbox."""
        if self.closed or self.front.closed:
            return False
        self.outbox(self, wire)
        return True

    def send_text(self, text: str) -> bool:
        return self.write(ws.build_frame(ws.TEXT, text.encode("utf-8")))

    def send_binary(self, data: bytes) -> bool:
        return self.write(ws.build_frame(ws.BINARY, bytes(data)))

    def send_many(self, messages: list[str | bytes]) -> bool:
        return self.write(b"".join(
            ws.build_frame(ws.TEXT, m.encode("utf-8")) if isinstance(m, str) else ws.build_frame(ws.BINARY, m)
            for m in messages))

    def close(self, code: int = ws.NORMAL, reason: str = "") -> None:
        if self.closed:
            return
        self.write(ws.close_frame(code, reason[:100]))
        self.write(b"")  # an empty body: mongrel2 closes the connection
        self.closed = True


class WebSockets:
    """The WebSocket part of one Mongrel2 door."""

    def __init__(self, hub: Hub, app: App, fronts: Fronts):
        self.hub = hub
        self.app = app
        self.fronts = fronts
        self.endpoints = [cast(type[WebSocketEndpoint], route.endpoint) for route in app.routes.routes
                          if is_websocket_endpoint(route.endpoint)]
        self.owned: dict[str, Mongrel2WebSocket] = {}  # the handshakes this process answered
        self.pending: dict[tuple[str, bytes, bytes], list[bytes]] = {}

    # -- writes, coalesced per connection ---------------------------------------------

    def outbox(self, connection: Mongrel2WebSocket, wire: bytes) -> None:
        """Mongrel2 1.12 drops a connection, and discards what is queued for it, once 16
        writes to it are undelivered (src/connection.h:47, connection.c:135): a client that
        sends a burst of 50 small messages to /ws/echo was dropped after 2 to 60 replies.
        So the writes this process makes to one connection within COALESCE seconds leave
        as one message (frames concatenated; a close after them)."""
        key = (connection.front.address, connection.sender, connection.conn_id)
        queued = self.pending.get(key)
        if queued is not None:
            queued.append(wire)
            return
        self.pending[key] = [wire]
        self.hub.spawn_background(self.flush, key, connection.front)

    def flush(self, key: tuple[str, bytes, bytes], front: Front) -> None:
        self.hub.sleep(COALESCE)
        parts = self.pending.pop(key, [])
        _, sender, conn_id = key
        close = b"" in parts
        if close:
            parts = parts[:parts.index(b"")]
        try:
            self.fronts.send(front, sender, conn_id, b"".join(parts), close)
        except self.hub.zmq.ZMQError:
            pass  # the front went away: so did its connections

    def endpoint_for(self, path: str) -> type[WebSocketEndpoint] | None:
        found = self.app.resolve(path)
        if found is None or not is_websocket_endpoint(found[0].endpoint):
            return None
        endpoint: type[WebSocketEndpoint] = found[0].endpoint  # type: ignore[assignment]
        return endpoint

    def handle(self, message: protocol.Mongrel2Request, method: str, front: Front,
               request: Request) -> bool:
        """True when the connection stays open as a WebSocket of this handler."""
        if method == "WEBSOCKET":
            self.frame(message, front, request)
            return True
        return self.handshake(message, front, request)

    def handshake(self, message: protocol.Mongrel2Request, front: Front, request: Request) -> bool:
        connection = Mongrel2WebSocket(self.outbox, front, message.sender, message.conn_id, request)
        endpoint = self.endpoint_for(request.path) if request.error is None else None
        refusal = refuse_handshake(self.app, request, endpoint is not None)
        if refusal is not None:
            connection.write(refusal)
            connection.write(b"")
            return False
        accept = ws.accept_key(request.headers["sec-websocket-key"])
        if message.body.strip() != accept.encode("ascii"):
            log.warning("mongrel2's accept key differs from ours",
                        extra={"theirs": message.body[:60].decode("ascii", "replace"), "ours": accept})
        extra = [("X-Handler-Id", self.app.handler_id)] if self.app.handler_id_header else []
        connection.write(ws.handshake_response(accept, extra))
        self.owned[connection.key] = connection
        assert endpoint is not None
        self.run(connection, endpoint(self.app, request, connection).on_open)
        return True

    def frame(self, message: protocol.Mongrel2Request, front: Front, request: Request) -> None:
        connection = self.owned.get(f"{message.sender.decode('ascii', 'replace')}:"
                                    f"{message.conn_id.decode('ascii')}")
        if connection is None:
            connection = Mongrel2WebSocket(self.outbox, front, message.sender, message.conn_id, request)
        endpoint = self.endpoint_for(request.path)
        if endpoint is None:  # a frame for a path that has no endpoint: never answered with a 101
            connection.close(ws.POLICY_VIOLATION, "no WebSocket endpoint here")
            return
        flags = message.headers.get("FLAGS", "")
        try:
            event = ws.message_from_mongrel2(ws.parse_flags(flags if isinstance(flags, str) else ""),
                                             message.body, max_message=endpoint.max_message)
        except ws.WebSocketError as exc:
            log.info("refused a WebSocket frame", extra={"conn_id": message.conn_id.decode(),
                                                         "code": exc.code, "error": str(exc)})
            connection.close(exc.code, str(exc))
            self.forget(connection.key)
            return
        opcode = event.opcode
        if opcode == ws.PING:
            connection.write(ws.build_frame(ws.PONG, bytes(event.data)))  # type: ignore[arg-type]
        elif opcode == ws.PONG:
            pass
        elif opcode == ws.CLOSE:
            self.run(connection, endpoint(self.app, request, connection).on_close, event.code, event.reason)
            connection.close(event.code if event.code != ws.NO_STATUS else ws.NORMAL)
            self.forget(connection.key)
        else:
            self.run(connection, endpoint(self.app, request, connection).on_message, event.data)

    def disconnected(self, message: protocol.Mongrel2Request) -> None:
        """Mongrel2's disconnect notice: for any connection, at any handler, maybe twice."""
        key = f"{message.sender.decode('ascii', 'replace')}:{message.conn_id.decode('ascii')}"
        self.forget(key)
        for endpoint in self.endpoints:
            try:
                endpoint.on_disconnect(self.app, key)
            except Exception:
                log.exception("error in on_disconnect", extra={"endpoint": endpoint.__name__})

    def forget(self, key: str) -> None:
        connection = self.owned.pop(key, None)
        if connection is not None:
            connection.closed = True

    def run(self, connection: Mongrel2WebSocket, event: Any, *args: Any) -> None:
        """One endpoint event; an error in it closes the connection with 1011."""
        try:
            event(*args)
        except Exception:
            log.exception("error in a WebSocket endpoint", extra={"conn_id": connection.conn_id.decode()})
            connection.close(ws.INTERNAL_ERROR, "internal error")
            self.forget(connection.key)

    def keep_alive(self) -> None:
        """An extended control message (`X` before the id, body `["ctl", {"keep-alive":
        true}]`, src/handler_parser.rl and handler.c `handler_process_control_request`) per
        owned connection, which refreshes the connection's idle clock in mongrel2 the way
        a client read does (every HANDLER_WS_KEEPALIVE seconds)."""
        for connection in list(self.owned.values()):
            if connection.front.closed:
                continue
            try:
                self.hub.send(connection.front.responses, keepalive_message(
                    connection.sender, connection.conn_id))
            except self.hub.zmq.ZMQError:
                pass

    def going_away(self) -> None:
        """At shutdown: a close frame (1001) to every client this process owns."""
        self.close_all(ws.GOING_AWAY, "server shutting down")

    def close_all(self, code: int, reason: str) -> None:
        """A close frame to every client this process owns, and forget them."""
        for connection in list(self.owned.values()):
            connection.close(code, reason)
        self.owned.clear()

    def restarting(self) -> None:
        """The dispatcher forgot this handler (WHO): it routes these sockets' frames here no
        more (a new one knows nothing of them), so their clients are told to reconnect."""
        self.close_all(ws.SERVICE_RESTART, "dispatcher restarted")
