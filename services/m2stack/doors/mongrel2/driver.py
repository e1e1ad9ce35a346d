"""The Mongrel2 front door: the receive loop that feeds an app, generic over the hub.

`serve(hub, app, settings)` runs it until SIGTERM/SIGINT; the entry points
(m2stack.run_gevent, m2stack.run_eventlet) pick the hub and the app.

Requests arrive on a PULL socket connected to each front's PUSH, or, with
HANDLER_DISPATCHER set, from the dispatcher (doors/dispatched.py), which is told when each
reply went out; either way each reply leaves on the XPUB socket of the front that sent
the request (doors/fronts.py: fronts are found by DNS, and pulled from only once they have
subscribed to their replies).

Shutdown (SIGTERM/SIGINT): take what is queued here, then disconnect from every front's
PUSH so mongrel2 stops routing to us (libzmq drops a disconnected pipe's queue, hence that
order), or tell the dispatcher BYE and serve what it sent until it answers; finish
in-flight greenlets within the grace period, exit 0.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from typing import Any

import msgspec

from m2stack import logs, metrics
from m2stack.app import App, DeadlineExceeded, HTTPError, Request, Response, error_response
from m2stack.doors.mongrel2.dispatched import DispatcherLink
from m2stack.doors.mongrel2.fronts import IDLE_WAKEUP, Front, Fronts
from m2stack.doors.mongrel2.streaming import Streams
from m2stack.doors.mongrel2.uploads import DONE, START, Uploads
from m2stack.doors.mongrel2.websocket import WebSockets
from m2stack.hubs import Hub
from m2stack.protocol import dispatch as acks  # the dispatcher's verbs
from m2stack.protocol import http
from m2stack.protocol import mongrel2 as protocol
from m2stack.settings import HandlerSettings

log = logging.getLogger("m2stack.doors.mongrel2")

# Headers decoded in C when mongrel2 sends them as JSON (its default here); what msgspec
# refuses (control characters, bytes that are not UTF-8) the pure parser handles.
_decode_headers = msgspec.json.Decoder(dict[str, str | list[str]]).decode
# Messages that are not HTTP requests: control notices and WebSocket messages.
_NOT_HTTP = frozenset({"JSON", "WEBSOCKET_HANDSHAKE", "WEBSOCKET"})

def _headers_for_app(raw: dict[str, str | list[str]]) -> dict[str, str]:
    """Client headers only (mongrel2's are upper-case), repeated ones joined per RFC 9110."""
    headers = {}
    for name, value in raw.items():
        if name.isupper():
            continue
        if isinstance(value, list):
            value = ("; " if name == "cookie" else ", ").join(value)
        headers[name] = value
    return headers


def build_request(message: protocol.Mongrel2Request) -> Request:
    """Mongrel2's message to the app's Request (percent-decoding is the app's job)."""
    meta = message.headers
    raw_query = meta.get("QUERY", "")
    request = Request.from_raw(
        message.method,
        str(meta.get("PATH", message.path)).encode("utf-8", "surrogateescape"),
        str(raw_query).encode("utf-8", "surrogateescape"),
        _headers_for_app(meta),
        message.body,
        version=str(meta.get("VERSION", "HTTP/1.1")),
        remote_addr=str(meta.get("REMOTE_ADDR", "")),
        scheme="https" if meta.get("URL_SCHEME") == "https" else "http",  # set by mongrel2 itself
    )
    if conflicting_lengths(meta) and request.error is None:
        request.error = HTTPError(400, "conflicting Content-Length values",
                                  details={"content_length": meta["content-length"]})
    return request


def conflicting_lengths(meta: dict[str, str | list[str]]) -> bool:
    """Two Content-Length headers that differ (a repeated header arrives as a list).
    Mongrel2 takes the first and parses the rest as a new request; a proxy that takes the
    last would see another body: RFC 9112 says reject and close (request smuggling)."""
    lengths = meta.get("content-length")
    return isinstance(lengths, list) and len({value.strip() for value in lengths}) > 1


class Mongrel2Door:
    """One handler process: a receive loop on one hub, serving one app."""

    def __init__(self, hub: Hub, app: App, settings: HandlerSettings):
        self.hub = hub
        self.app = app
        self.settings = settings
        self.stopping = False
        self.context = hub.zmq.Context()
        self.link = DispatcherLink(hub, self.context, settings, self.dispatched) if settings.dispatcher else None
        if self.link is not None:
            self.fronts = Fronts(hub, self.context, settings, None)
        else:
            self.fronts = Fronts(hub, self.context, settings, self.dispatch,
                                 self.serve_here if settings.serve_inline else None)
        self.pool = hub.make_pool(settings.max_in_flight)
        # greenlet -> its request's perf_counter deadline, in the order the requests started
        self.deadlines: dict[Any, float] = {}
        # Access lines in batches (logs.AccessLog), when enabled and INFO is logged at all.
        wanted = settings.access_log and logging.getLogger("m2stack.access").isEnabledFor(logging.INFO)
        self.access_log = logs.AccessLog() if wanted else None
        self.served = 0
        self.websockets = WebSockets(self, app)
        self.streams = Streams(self)
        self.uploads = Uploads(settings)

    # -- one request -------------------------------------------------------------

    def dispatch(self, raw: bytes, front: Front) -> None:
        self.hub.spawn(self.pool, self.handle_message, raw, front)  # blocks while the pool is full

    def serve_here(self, raw: bytes, front: Front, on_block: Callable[[], None]) -> bool:
        """Serve in the receiving greenlet (hubs/handoff.py); False if the request waited."""
        return self.hub.serve_here(self.pool, on_block, self.handle_message, raw, front)

    def dispatched(self, raw: bytes, ticket: bytes | None) -> None:
        """A message from the dispatcher; `ticket` (its request id) is acknowledged when done.
        Requests take a place in the pool (the dispatcher's credits match its size);
        connection messages (disconnect notices, WebSocket frames) never wait for one."""
        if ticket is None:
            self.hub.spawn_background(self.handle_dispatched, raw, None)
        else:
            self.hub.spawn(self.pool, self.handle_dispatched, raw, ticket)

    def handle_dispatched(self, raw: bytes, ticket: bytes | None) -> None:
        verb: bytes | None = acks.DONE
        try:
            verb = self.handle_message(raw, None, ticket)
        finally:
            if ticket is not None and verb is not None and self.link is not None:
                self.link.acknowledge(verb, ticket)

    def cleared(self, ticket: bytes | None) -> bool:
        """May this request's reply go out (doors/dispatched.py, the fence)?"""
        if ticket is None or self.link is None or self.link.cleared(ticket):
            return True
        log.warning("reply withheld: the dispatcher gave this request to another handler",
                    extra={"ticket": ticket.decode()})
        return False

    def hold(self, ticket: bytes) -> bool:
        """A streamed reply's head is about to go out: the dispatcher must never repeat it.
        False: the dispatcher already has (the fence), so nothing may be sent."""
        if not self.cleared(ticket):
            return False
        if self.link is not None:
            self.link.acknowledge(acks.HOLD, ticket)
        return True

    def handle_message(self, raw: bytes, front: Front | None, ticket: bytes | None = None) -> bytes | None:
        """Serve one message; how the dispatcher is to take it (DONE, CLOSE or KEEP; None:
        not at all, the dispatcher forgot it)."""
        try:
            message = protocol.parse_request(raw, _decode_headers)
        except protocol.ProtocolError as exc:
            log.warning("dropped malformed message", extra={"error": str(exc), "size": len(raw)})
            return acks.DONE
        if front is None:
            front = self.fronts.front_for(message.sender)
            if front is None:
                log.warning("no front subscribed for this request's mongrel2: dropped",
                            extra={"sender": message.sender[:40].decode("ascii", "replace")})
                return acks.CLOSE
        method = message.headers["METHOD"]  # a str: parse_request checked
        if method in _NOT_HTTP:
            return self.handle_other(message, method, front)
        refused = None
        if START in message.headers or DONE in message.headers:
            try:
                taken = self.uploads.take(message)  # doors/mongrel2_uploads.py
            except HTTPError as exc:
                refused = exc
            else:
                if taken is None:
                    return acks.DONE  # mongrel2's "upload started" notice
                message = taken
        request = build_request(message)
        if refused is not None:
            request.error = refused
        started = time.perf_counter()
        response = self.handle_in_time(request, started)
        close = request.wants_close or conflicting_lengths(message.headers) or refused is not None
        status = response.status
        if response.stream is not None:
            status, closed = self.streams.send(front, message, request, response, close=close, ticket=ticket)
            if closed is None:
                return None
            close = closed
        else:
            if close:
                response.headers.append(("Connection", "close"))
            elif request.version == "HTTP/1.0":
                response.headers.append(("Connection", "keep-alive"))
            try:
                wire = response_bytes(response)
            except protocol.ProtocolError:  # e.g. a header an endpoint set that cannot be sent
                log.exception("unsendable response", extra={"request_id": request.request_id})
                response = self.app.finish(request, error_response(
                    500, "internal server error", request.request_id))
                wire = response_bytes(response)
                status = response.status
            if not self.cleared(ticket):
                return None
            self.send(front, message, wire, close=close)
        self.served += 1
        if self.access_log is not None:
            self.access_log.write({
                "request_id": request.request_id, "conn_id": message.conn_id.decode(),
                "method": request.method, "path": request.path[:200], "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2)})
        return acks.CLOSE if close else acks.DONE

    def handle_other(self, message: protocol.Mongrel2Request, method: str, front: Front) -> bytes:
        """Mongrel2's control notices (JSON) and WebSocket messages (doors/mongrel2_websocket.py)."""
        if method == "JSON":
            if message.is_disconnect:
                self.websockets.disconnected(message)
                self.streams.disconnected(message)
            return acks.DONE  # nothing is waiting for an answer
        open_socket = self.websockets.handle(message, method, front, build_request(message))
        return acks.KEEP if open_socket else acks.CLOSE

    def handle_in_time(self, request: Request, started: float) -> Response:
        """`app.handle`, registered with the deadline watchdog while it runs."""
        limit = self.settings.request_timeout
        if not limit:
            return self.app.handle(request)
        me = self.hub.current()
        self.deadlines[me] = started + limit
        try:
            return self.app.handle(request)
        finally:
            self.deadlines.pop(me, None)  # the watchdog drops the ones it interrupts

    def watch_deadlines(self) -> None:
        """One timer for every request instead of one each: requests are registered in
        the order they started, and all share one limit, so the overdue ones come first."""
        limit = self.settings.request_timeout
        tick = min(0.1, limit / 10)
        while not self.stopping or self.deadlines:
            now = time.perf_counter()
            for greenlet, deadline in list(self.deadlines.items()):
                if deadline > now:
                    break
                self.deadlines.pop(greenlet, None)  # interrupted once
                self.hub.interrupt(greenlet, DeadlineExceeded(limit))
            self.hub.sleep(tick)

    def flush_access_log(self) -> None:
        while not self.stopping:
            self.hub.sleep(0.25)
            if self.access_log is not None:
                self.access_log.flush()

    def send(self, front: Front, message: protocol.Mongrel2Request, wire: bytes, *, close: bool) -> None:
        if not self.fronts.subscribed_to(front, message.sender) and not self.fronts.wait_subscribed(
                front, message.sender):
            log.warning("reply dropped: its mongrel2 is not subscribed", extra={"front": front.name})
            return
        send, responses = self.hub.send, front.responses
        for frame in protocol.frame_response(message.sender, (message.conn_id,), wire):
            send(responses, frame)
        if close:
            for frame in protocol.frame_close(message.sender, (message.conn_id,)):
                send(responses, frame)

    # -- the loop ------------------------------------------------------------------

    def run(self) -> int:
        """Each front's greenlets receive and dispatch (doors/fronts.py); this one waits."""
        self.hub.spawn_background(self.fronts.watch)
        if self.link is not None:
            self.link.start()
        self.hub.spawn_background(self.heartbeat)
        if self.settings.request_timeout:
            self.hub.spawn_background(self.watch_deadlines)
        if self.access_log is not None:
            self.hub.spawn_background(self.flush_access_log)
        if self.settings.websocket_keepalive and self.websockets.endpoints:
            self.hub.spawn_background(self.websockets.keep_alive)
        while not self.stopping:
            self.hub.sleep(IDLE_WAKEUP)
        return self.shutdown()

    def shutdown(self) -> int:
        log.info("stopping: no new requests", extra={"in_flight": self.hub.in_flight(self.pool)})
        deadline = time.monotonic() + self.settings.shutdown_grace
        if self.link is not None:
            self.link.leave(self.settings.shutdown_grace)
            self.websockets.going_away()
        else:
            self.fronts.stop_pulling()
            self.websockets.going_away()
            # stop_pulling took what was queued here before each disconnect; anything still
            # in flight to us (a PUSH that beat the disconnect) is drained until it goes quiet.
            quiet_since = time.monotonic()
            while time.monotonic() < deadline and time.monotonic() - quiet_since < self.settings.drain_quiet:
                if self.fronts.drain():
                    quiet_since = time.monotonic()
                else:
                    self.hub.sleep(0.01)
        finished = self.hub.join(self.pool, max(0.0, deadline - time.monotonic()))
        if not finished:
            log.warning("grace period over with requests in flight",
                        extra={"in_flight": self.hub.in_flight(self.pool)})
        self.fronts.close()  # LINGER lets queued replies go out
        if self.link is not None:
            self.link.close()
        if self.access_log is not None:
            self.access_log.flush()
        self.context.term()
        log.info("stopped", extra={"served": self.served, "clean": finished})
        return 0

    def heartbeat(self) -> None:
        """Prove the hub is turning and a front is subscribed: the container healthcheck
        reads this file's age."""
        interval = self.settings.heartbeat_interval
        while not self.stopping:
            started = time.monotonic()
            if self.fronts.subscribed:
                try:
                    with open(self.settings.heartbeat_file, "w") as f:
                        f.write(f"{time.time():.3f} fronts={len(self.fronts.by_address)} "
                                f"subscribed={self.fronts.subscribed}\n")
                except OSError as exc:
                    log.warning("cannot write heartbeat", extra={"error": str(exc)})
            self.hub.sleep(interval)
            lag = time.monotonic() - started - interval
            metrics.LOOP_LAG.set(lag)
            if lag > 1.0:
                log.warning("event loop lag", extra={"lag_seconds": round(lag, 3)})

    def request_stop(self, signum: int, _frame: Any) -> None:
        # Only set a flag: the loop sees it within IDLE_WAKEUP. No hub calls
        # here, because a signal handler may run inside the hub itself.
        self.stopping = True


def response_bytes(response: Response) -> bytes:
    # Always an HTTP/1.1 status line: valid for 1.0 clients too (RFC 9110 section 2.5).
    return http.render_http_response(response.status, response.reason, response.headers,
                                     response.body)


def serve(hub: Hub, app: App, settings: HandlerSettings) -> int:
    """Serve `app` until SIGTERM or SIGINT, then drain; the exit status."""
    door = Mongrel2Door(hub, app, settings)
    signal.signal(signal.SIGTERM, door.request_stop)
    signal.signal(signal.SIGINT, door.request_stop)
    return door.run()
