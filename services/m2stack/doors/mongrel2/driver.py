"""The Mongrel2 door's I/O: one handler process, a receive loop feeding an app, generic
over the hub. Every decision is core.py's; this file receives, calls the app, sends.

`serve(hub, app, settings)` runs it until SIGTERM/SIGINT; the entry points
(m2stack.run_gevent, m2stack.run_eventlet) pick the hub and the app. Requests come in
through one intake, pulled from the fronts (pull.py) or taken from the dispatcher
(dispatched.py, HANDLER_DISPATCHER); either way each reply leaves on the XPUB socket of
the front that sent the request (fronts.py).

Shutdown (SIGTERM/SIGINT): the intake leaves (no new requests; what is on its way is
served), in-flight greenlets finish within the grace period, exit 0.
"""

from __future__ import annotations

import logging
import signal
import time
from typing import Any, Protocol

from m2stack import logs, metrics
from m2stack.app import App, DeadlineExceeded, Request, Response
from m2stack.doors.mongrel2 import core
from m2stack.doors.mongrel2.core import CLOSED, KEPT_OPEN, NOT_HTTP, SERVED, WITHHELD
from m2stack.doors.mongrel2.dispatched import DispatchedIntake
from m2stack.doors.mongrel2.fronts import IDLE_WAKEUP, Front, Fronts
from m2stack.doors.mongrel2.pull import PullIntake
from m2stack.doors.mongrel2.streaming import Streams
from m2stack.doors.mongrel2.uploads import Uploads
from m2stack.doors.mongrel2.websocket import WebSockets
from m2stack.hubs import Hub
from m2stack.protocol import mongrel2 as protocol
from m2stack.settings import HandlerSettings

log = logging.getLogger("m2stack.doors.mongrel2")


class Intake(Protocol):
    """Where requests come from: pull.py or dispatched.py. Each hands every message to
    `Mongrel2Door.handle` and is asked, per request with a ticket (the dispatcher's),
    whether its reply may go out; a request pulled here has none, and nobody else can
    answer it."""

    def start(self) -> None: ...

    def check(self) -> None:
        """Called at each heartbeat."""

    def reply(self, front: Front, sender: bytes, conn_id: bytes, data: bytes, close: bool) -> None:
        """A whole reply to mongrel2 (Fronts.reply), now or with the intake's next batch."""

    def may_reply(self, ticket: bytes | None) -> bool: ...

    def hold(self, ticket: bytes | None) -> bool:
        """A streamed reply's head is about to go out (it may not be repeated from then on)."""

    def leave(self, deadline: float) -> object:
        """Take no new request; serve what is on its way, until `deadline` at the latest."""

    def close(self) -> None: ...


class Mongrel2Door:
    """One handler process: a receive loop on one hub, serving one app."""

    def __init__(self, hub: Hub, app: App, settings: HandlerSettings):
        self.hub = hub
        self.app = app
        self.settings = settings
        self.stopping = False
        self.context = hub.zmq.Context()
        self.pool = hub.make_pool(settings.max_in_flight)
        self.fronts = Fronts(hub, self.context, settings)
        self.intake: Intake
        if settings.dispatcher:
            self.intake = DispatchedIntake(hub, settings, self.fronts, self.pool, self.handle,
                                           forgotten=lambda: self.websockets.restarting())
        else:
            self.intake = PullIntake(hub, settings, self.fronts, self.pool, self.handle)
        # greenlet -> its request's perf_counter deadline, in the order the requests started
        self.deadlines: dict[Any, float] = {}
        # Access lines in batches (logs.AccessLog), when enabled and INFO is logged at all.
        wanted = settings.access_log and logging.getLogger("m2stack.access").isEnabledFor(logging.INFO)
        self.access_log = logs.AccessLog() if wanted else None
        self.served = 0
        self.websockets = WebSockets(hub, app, self.fronts)
        self.streams = Streams(hub, app, settings, self.fronts)
        self.uploads = Uploads(settings, lambda: hub.sleep(0))

    # -- one message -------------------------------------------------------------------

    def handle(self, raw: bytes, front: Front, ticket: bytes | None) -> int:
        """Serve one message from `front`; how it ended (core.SERVED, CLOSED, KEPT_OPEN or
        WITHHELD). `ticket`: the dispatcher's request id, if it came from the dispatcher."""
        try:
            message = core.parse(raw)
        except protocol.ProtocolError as exc:
            log.warning("dropped malformed message", extra={"error": str(exc), "size": len(raw)})
            return SERVED
        method = message.headers["METHOD"]  # a str: parse_request checked
        if method in NOT_HTTP:
            return self.handle_other(message, method, front)
        taken = core.request_for(message, self.uploads.take, self.settings.max_body)
        if taken is None:
            return SERVED  # mongrel2's "upload started" notice
        request, close = taken
        try:
            started = time.perf_counter()
            response = self.handle_in_time(request, started)
        finally:
            request.close_body()  # an upload's file: its space is freed now
        if response.stream is not None:
            streamed = self.streams.send(front, message, request, response, close,
                                         lambda: self.intake.hold(ticket))
            if streamed is None:
                return WITHHELD
            status, close = streamed
        else:
            status, wire = core.reply_bytes(self.app, request, response, close=close)
            if ticket is not None and not self.intake.may_reply(ticket):  # no ticket: pulled here
                return WITHHELD
            self.intake.reply(front, message.sender, message.conn_id, wire, close)
        self.served += 1
        if self.access_log is not None:
            self.access_log.write({
                "request_id": request.request_id, "conn_id": message.conn_id.decode(),
                "client": request.remote_addr, "scheme": request.scheme,  # after trusted proxies
                "method": request.method, "path": request.path[:200], "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2)})
        return CLOSED if close else SERVED

    def handle_other(self, message: protocol.Mongrel2Request, method: str, front: Front) -> int:
        """Mongrel2's control notices (JSON) and WebSocket messages (websocket.py)."""
        if method == "JSON":
            if message.is_disconnect:
                self.websockets.disconnected(message)
                self.streams.disconnected(message)
            return SERVED  # nothing is waiting for an answer
        open_socket = self.websockets.handle(message, method, front, core.build_request(message))
        return KEPT_OPEN if open_socket else CLOSED

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

    # -- the background greenlets ------------------------------------------------------------

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

    def keep_websockets_alive(self) -> None:
        while not self.stopping:
            self.hub.sleep(self.settings.websocket_keepalive)
            self.websockets.keep_alive()

    def heartbeat(self) -> None:
        """Prove the hub is turning and a front is subscribed: the container healthcheck
        reads this file's age."""
        interval = self.settings.heartbeat_interval
        while not self.stopping:
            started = time.monotonic()
            self.intake.check()
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

    # -- the loop ------------------------------------------------------------------

    def run(self) -> int:
        """The intake's greenlets receive and serve; this one waits."""
        self.hub.spawn_background(self.fronts.watch)
        self.intake.start()
        self.hub.spawn_background(self.heartbeat)
        if self.settings.request_timeout:
            self.hub.spawn_background(self.watch_deadlines)
        if self.access_log is not None:
            self.hub.spawn_background(self.flush_access_log)
        if self.settings.websocket_keepalive and self.websockets.endpoints:
            self.hub.spawn_background(self.keep_websockets_alive)
        while not self.stopping:
            self.hub.sleep(IDLE_WAKEUP)
        return self.shutdown()

    def shutdown(self) -> int:
        log.info("stopping: no new requests", extra={"in_flight": self.hub.in_flight(self.pool)})
        deadline = time.monotonic() + self.settings.shutdown_grace
        self.intake.leave(deadline)
        self.websockets.going_away()
        finished = self.hub.join(self.pool, max(0.0, deadline - time.monotonic()))
        if not finished:
            log.warning("grace period over with requests in flight",
                        extra={"in_flight": self.hub.in_flight(self.pool)})
        self.fronts.close()  # LINGER lets queued replies go out
        self.intake.close()
        if self.access_log is not None:
            self.access_log.flush()
        self.context.term()
        log.info("stopped", extra={"served": self.served, "clean": finished})
        return 0

    def request_stop(self, signum: int, _frame: Any) -> None:
        # Only set a flag: the loop sees it within IDLE_WAKEUP. No hub calls
        # here, because a signal handler may run inside the hub itself.
        self.stopping = True


def serve(hub: Hub, app: App, settings: HandlerSettings) -> int:
    """Serve `app` until SIGTERM or SIGINT, then drain; the exit status."""
    door = Mongrel2Door(hub, app, settings)
    signal.signal(signal.SIGTERM, door.request_stop)
    signal.signal(signal.SIGINT, door.request_stop)
    return door.run()
