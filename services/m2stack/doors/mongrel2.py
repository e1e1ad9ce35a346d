"""The Mongrel2 front door: the receive loop that feeds an app, generic over the hub.

`serve(hub, app, settings)` runs it until SIGTERM/SIGINT; the entry points
(m2stack.run_gevent, m2stack.run_eventlet) pick the hub and the app.

Requests arrive on a PULL socket connected to mongrel2's PUSH; responses leave on
an XPUB socket connected to mongrel2's SUB. XPUB (a PUB that also reports
subscriptions) lets us wait until mongrel2 has subscribed before pulling any
request, so the first responses are not dropped by the slow-joiner race.

Shutdown (SIGTERM/SIGINT): disconnect the PULL socket so mongrel2 stops routing
to us, drain what was already queued here, finish in-flight greenlets within the
grace period, exit 0.
"""

from __future__ import annotations

import logging
import signal
import time
from typing import Any

from m2stack import metrics
from m2stack.app import App, Request, Response, error_response
from m2stack.hubs import Hub
from m2stack.protocol import http
from m2stack.protocol import mongrel2 as protocol
from m2stack.settings import HandlerSettings

log = logging.getLogger("m2stack.doors.mongrel2")

IDLE_WAKEUP = 0.25  # seconds: how often an idle loop looks at the stop flag


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
    return Request.from_raw(
        message.method,
        str(meta.get("PATH", message.path)).encode("utf-8", "surrogateescape"),
        str(raw_query).encode("utf-8", "surrogateescape"),
        _headers_for_app(meta),
        message.body,
        version=str(meta.get("VERSION", "HTTP/1.1")),
        remote_addr=str(meta.get("REMOTE_ADDR", "")),
    )


class Mongrel2Door:
    """One handler process: a receive loop on one hub, serving one app."""

    def __init__(self, hub: Hub, app: App, settings: HandlerSettings):
        self.hub = hub
        self.app = app
        self.settings = settings
        self.stopping = False
        zmq = hub.zmq
        self.context = zmq.Context()
        self.responses = self.context.socket(zmq.XPUB)
        self.responses.setsockopt(zmq.LINGER, 2000)  # flush replies on exit, bounded
        self.requests = self.context.socket(zmq.PULL)
        self.requests.setsockopt(zmq.RCVHWM, settings.receive_hwm)
        self.requests.setsockopt(zmq.LINGER, 0)
        self.pool = hub.make_pool(settings.max_in_flight)
        self.served = 0

    # -- one request -------------------------------------------------------------

    def handle_message(self, raw: bytes) -> None:
        try:
            message = protocol.parse_request(raw)
        except protocol.ProtocolError as exc:
            log.warning("dropped malformed message", extra={"error": str(exc), "size": len(raw)})
            return
        if message.is_control:
            return  # e.g. {"type": "disconnect"}: nothing is waiting for an answer
        request = build_request(message)
        started = time.perf_counter()
        response = self.app.handle_within(request, self.settings.request_timeout, self.hub.Timeout)
        close = request.wants_close
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
        self.send(message, wire, close=close)
        self.served += 1
        if self.settings.access_log:
            log.info("request", extra={
                "request_id": request.request_id, "conn_id": message.conn_id.decode(),
                "method": request.method, "path": request.path[:200], "status": response.status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2)})

    def send(self, message: protocol.Mongrel2Request, wire: bytes, *, close: bool) -> None:
        for frame in protocol.frame_response(message.sender, (message.conn_id,), wire):
            self.responses.send(frame)
        if close:
            for frame in protocol.frame_close(message.sender, (message.conn_id,)):
                self.responses.send(frame)

    # -- the loop ------------------------------------------------------------------

    def connect(self) -> bool:
        """Connect the reply socket, wait for mongrel2's subscription, then start pulling."""
        self.responses.connect(self.settings.responses_endpoint)
        next_notice = time.monotonic() + 5
        # b"\x01" + topic arrives when mongrel2's SUB has subscribed to us.
        while self.hub.receive(self.responses, IDLE_WAKEUP) is None:
            if self.stopping:
                return False
            if time.monotonic() > next_notice:
                next_notice += 5
                log.info("waiting for mongrel2", extra={"endpoint": self.settings.responses_endpoint})
        self.requests.connect(self.settings.requests_endpoint)
        log.info("connected to mongrel2", extra={"requests": self.settings.requests_endpoint,
                                                 "responses": self.settings.responses_endpoint})
        return True

    def run(self) -> int:
        if self.connect():
            self.hub.spawn_background(self.heartbeat)
            while not self.stopping:
                raw = self.hub.receive(self.requests, IDLE_WAKEUP)
                if raw is not None:
                    self.hub.spawn(self.pool, self.handle_message, raw)
                    self.drain_ready()
        return self.shutdown()

    def drain_ready(self) -> None:
        """Take every message already queued before going back to the hub: fewer wake-ups."""
        zmq = self.hub.zmq
        while True:
            try:
                raw = self.requests.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.hub.spawn(self.pool, self.handle_message, raw)

    def shutdown(self) -> int:
        zmq = self.hub.zmq
        log.info("stopping: disconnecting from mongrel2", extra={"in_flight": self.hub.in_flight(self.pool)})
        try:
            self.requests.disconnect(self.settings.requests_endpoint)
        except zmq.ZMQError:
            pass  # never connected
        # Whatever reached our queue before the disconnect is still ours to answer.
        deadline = time.monotonic() + self.settings.shutdown_grace
        quiet_since = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - quiet_since < self.settings.drain_quiet:
            try:
                raw = self.requests.recv(zmq.NOBLOCK)
            except zmq.Again:
                self.hub.sleep(0.01)
                continue
            quiet_since = time.monotonic()
            self.hub.spawn(self.pool, self.handle_message, raw)
        finished = self.hub.join(self.pool, max(0.0, deadline - time.monotonic()))
        if not finished:
            log.warning("grace period over with requests in flight",
                        extra={"in_flight": self.hub.in_flight(self.pool)})
        self.requests.close()
        self.responses.close()  # LINGER lets queued replies go out
        self.context.term()
        log.info("stopped", extra={"served": self.served, "clean": finished})
        return 0

    def heartbeat(self) -> None:
        """Prove the hub is turning: the container healthcheck reads this file's age."""
        interval = self.settings.heartbeat_interval
        while not self.stopping:
            started = time.monotonic()
            try:
                with open(self.settings.heartbeat_file, "w") as f:
                    f.write(f"{time.time():.3f}\n")
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
