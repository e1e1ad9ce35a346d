"""The dispatcher's Prometheus metrics, in the text format, with no metrics library.

The dispatcher's image carries pyzmq and msgspec only, and the format is a few lines of
text (prometheus.io, "Exposition formats", 0.0.4). `render` writes the core's counts and
state in the dispatcher's loop at each heartbeat (once a second); `Exporter` serves the
latest text from a thread of its own. A scrape never reads the core, so it never waits
for the loop, never slows it, and never sees a state half updated.

docs/dispatcher.md ("Metrics") says what each metric means.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, cast

from m2stack.dispatch.core import Counters, Dispatcher

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "m2stack_dispatcher_"
# Seconds without a new text (the loop publishes one a second) after which a scrape gets
# 503: a stuck loop shows as a target down (alert DispatcherDown), not as figures frozen.
STALE_AFTER = 10.0

# Each front's counts: (metric, help, the Counters field).
FRONT_COUNTERS = (
    ("requests_dispatched_total", "Requests handed to a handler (a repeated one again), by front.", "dispatched"),
    ("requests_acknowledged_total", "Requests whose handler said their reply went to mongrel2, by front.",
     "acknowledged"),
    ("requests_repeated_total", "Requests handed to another handler because theirs was taken for dead, by front.",
     "retried"),
    ("requests_refused_total", "Requests answered 503 by the dispatcher: their handler was taken for dead and "
     "their method is not safe to repeat, by front.", "refused"),
    ("connections_closed_total", "Connections the dispatcher closed itself (their holder taken for dead, "
     "pipelined too deep, a WebSocket frame nobody holds), by front.", "closed"),
    ("requests_dropped_total", "Requests never served: behind a reply that closed their connection, a client "
     "gone, or pipelined too deep, by front.", "dropped"),
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _family(lines: list[str], name: str, kind: str, help_text: str,
            samples: Iterable[tuple[str, float | int]]) -> None:
    """One metric: its HELP and TYPE, then a line per sample ('' or '{label="value"}', value)."""
    lines.append(f"# HELP {PREFIX}{name} {help_text}")
    lines.append(f"# TYPE {PREFIX}{name} {kind}")
    lines.extend(f"{PREFIX}{name}{labels} {value}" for labels, value in samples)


def render(core: Dispatcher, *, started: float, default_front: str) -> bytes:
    """The exposition text of `core` now. `started`: the process's start (Unix time);
    `default_front`: the name of the front whose address is "" (one ipc:// front)."""
    handlers = core.handlers.values()
    counts = core.handler_counts
    lines: list[str] = []
    _family(lines, "handlers", "gauge", "Handlers taking requests (joined, not leaving).",
            [("", sum(not h.leaving for h in handlers))])
    _family(lines, "handlers_leaving", "gauge", "Handlers that said BYE (a graceful stop) and are not gone yet.",
            [("", sum(h.leaving for h in handlers))])
    _family(lines, "handlers_joined_total", "counter", "Handlers that joined (HELLO from a new routing id).",
            [("", counts.joined)])
    _family(lines, "handlers_left_total", "counter", "Handlers that said BYE (a graceful stop).",
            [("", counts.left)])
    _family(lines, "handlers_dead_total", "counter",
            "Handlers taken for dead: silent longer than DISPATCH_DEAD_AFTER, or unreachable.",
            [("", counts.dead)])
    _family(lines, "requests_in_flight", "gauge",
            "Requests handed to a handler and not yet acknowledged, by handler (its routing id, in hex).",
            sorted((f'{{handler="{h.routing_id.hex()}"}}', sum(not i.finished for i in h.items.values()))
                   for h in handlers))
    _family(lines, "free_credits", "gauge", "Requests the handlers taking requests would take now.",
            [("", core.free_credits)])
    _family(lines, "requests_waiting", "gauge", "Requests held by the dispatcher for want of a free credit.",
            [("", len(core.waiting))])
    _family(lines, "max_waiting", "gauge",
            "DISPATCH_MAX_WAITING: requests waiting at most; past it, they wait in mongrel2.",
            [("", core.max_waiting)])
    _family(lines, "fronts", "gauge", "Mongrel2 fronts the dispatcher has counted requests of.",
            [("", len(core.fronts))])
    fronts: list[tuple[str, Counters]] = sorted(((_escape(front or default_front), c) for front, c in
                                                 core.fronts.items()), key=lambda pair: pair[0])
    for name, help_text, field in FRONT_COUNTERS:
        _family(lines, name, "counter", help_text,
                [(f'{{front="{front}"}}', getattr(c, field)) for front, c in fronts])
    lines.append("# HELP process_start_time_seconds Start time of the process since the Unix epoch in seconds.")
    lines.append("# TYPE process_start_time_seconds gauge")
    lines.append(f"process_start_time_seconds {started:.3f}")
    return ("\n".join(lines) + "\n").encode()


class _Server(HTTPServer):
    body: bytes = b""
    published: float = 0.0   # time.monotonic() of the body
    stale_after: float = STALE_AFTER


class _Handler(BaseHTTPRequestHandler):
    timeout = 3  # seconds: one slow client delays a scrape that long at most (one thread serves)
    # http.server answers a request line it cannot read HTTP/0.9-style, a body with no
    # status line: every answer here has one.
    default_request_version = "HTTP/1.0"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._answer(with_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(with_body=False)

    def _answer(self, *, with_body: bool) -> None:
        if self.path.partition("?")[0] != "/metrics":
            self.send_error(404, "not found: the metrics are at /metrics")
            return
        server = cast(_Server, self.server)
        body, age = server.body, time.monotonic() - server.published
        if age > server.stale_after:
            self.send_error(503, f"the dispatcher's loop has published no metrics for {age:.0f} s")
            return
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def __getattr__(self, name: str) -> Callable[[], None]:
        if name.startswith("do_"):  # any other method
            return self._not_allowed
        raise AttributeError(name)

    def _not_allowed(self) -> None:
        self.send_error(405, f"method {self.command} not allowed: GET /metrics")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Every error (http.server's own 400s for bad request lines too) as JSON."""
        body = json.dumps({"error": {"status": code, "message": message or self.responses[code][0]}}).encode()
        self.close_connection = True
        self.send_response(code, None)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if code == 405:
            self.send_header("Allow", "GET, HEAD")
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # a line per scrape is noise; the dispatcher logs JSON only


class Exporter:
    """GET /metrics on `port` (0: any free port, see `.port`), answered from a thread with
    the latest `publish`ed text (503 when none came for `stale_after` seconds). Bound at
    construction: a port in use fails at start."""

    def __init__(self, port: int, host: str = "", stale_after: float = STALE_AFTER):
        self.server = _Server((host, port), _Handler)
        self.server.stale_after = stale_after
        self.port: int = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="metrics", daemon=True)

    def publish(self, body: bytes) -> None:
        self.server.body = body  # one reference swapped: a scrape sees the old text or the new
        self.server.published = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()
        self.server.server_close()
