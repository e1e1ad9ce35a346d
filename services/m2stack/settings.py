"""Every setting of every process, read from the environment once at start-up (12-factor).

Each group is a msgspec Struct whose field names ARE the environment variables, so one
`load(Kind)` converts and checks them all (types, bounds) and a bad value stops the
process with a message naming the variable. Unset and empty variables take the default.
Booleans are true/false or 1/0.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, TypeVar

import msgspec
from msgspec import Meta, field

S = TypeVar("S", bound=msgspec.Struct)

# One request body limit for both front doors (100 MiB); the app reads a body as a stream,
# so it bounds disk (mongrel2's temp file, Gunicorn's spool), not a handler's memory.
MAX_REQUEST_BODY_BYTES = 104_857_600

Positive = Annotated[int, Meta(ge=1)]
NonNegative = Annotated[int, Meta(ge=0)]
Seconds = Annotated[float, Meta(ge=0)]
Port = Annotated[int, Meta(ge=0, le=65535)]


class SettingsError(SystemExit):
    """A clear exit at start-up instead of a traceback."""


# Names no longer read, and what replaced them: set, they stop the process with a message
# rather than be ignored (a limit silently not applied would be the worst outcome).
RENAMED = {
    "MAX_CONTENT_LENGTH": "MAX_REQUEST_BODY_BYTES",   # the WSGI door's limit
    "HANDLER_MAX_UPLOAD": "MAX_REQUEST_BODY_BYTES",   # the Mongrel2 door's limit
}


def load(kind: type[S], environ: Mapping[str, str] | None = None) -> S:
    environ = os.environ if environ is None else environ
    names = {f.encode_name for f in msgspec.structs.fields(kind)}
    for old, new in RENAMED.items():
        if new in names and environ.get(old, "").strip():
            raise SettingsError(f"{old} is no longer read: set {new} instead (one request body "
                                "limit for both front doors, in bytes)")
    values = {name: value for name, value in environ.items() if name in names and value.strip()}
    # NAME_FILE names a file holding NAME's value (a Swarm or Compose secret), so a secret
    # never sits in an environment; a trailing newline is not part of it.
    for name in sorted(names):
        path = environ.get(f"{name}_FILE", "").strip()
        if not path:
            continue
        if name in values:
            raise SettingsError(f"{name} and {name}_FILE are both set: use one")
        try:
            with open(path, encoding="utf-8") as secret:
                values[name] = secret.read().rstrip("\r\n")
        except OSError as exc:
            raise SettingsError(f"setting {name}_FILE={path!r}: {exc.strerror}") from None
    try:
        return msgspec.convert(values, kind, strict=False)
    except msgspec.ValidationError as exc:
        reason, _, where = str(exc).partition(" - at `$.")
        name = where.rstrip("`") or "?"
        raise SettingsError(f"setting {name}={values.get(name, '')!r}: {reason}") from None


class AppSettings(msgspec.Struct, frozen=True):
    """What app a process serves and what every response says (m2stack.apps), whichever
    front door serves it."""

    # package.module:attr: an m2stack App, a factory taking a m2stack.startup.Startup, or a
    # WSGI callable (docs/apps.md says how they are told apart).
    app: str = field(default="m2stack.demo:create_app", name="APP")
    # X-Handler-Id (hostname:pid) on every response: which process answered, for the
    # stack's tests, benchmarks and operators; false where even that should not leave.
    handler_id_header: bool = field(default=True, name="HANDLER_ID_HEADER")
    # Peers (addresses, CIDR networks, comma-separated; * for any) whose X-Forwarded-For,
    # X-Forwarded-Proto and Forwarded headers name the client. "": none, the peer is the client.
    forwarded_allow_ips: str = field(default="", name="FORWARDED_ALLOW_IPS")


class FrontSettings(msgspec.Struct, frozen=True):
    """How a process finds and keeps its mongrel2s: a handler, or the dispatcher."""

    # Mongrel2's handler sockets: it binds both, handlers (or the dispatcher) connect.
    requests_endpoint: str = field(default="tcp://127.0.0.1:9997", name="M2_REQUESTS_ENDPOINT")
    responses_endpoint: str = field(default="tcp://127.0.0.1:9996", name="M2_RESPONSES_ENDPOINT")
    # Seconds between DNS look-ups of the front name (the host of the endpoints above; e.g.
    # tasks.mongrel2 in Swarm): new fronts are connected, gone ones dropped. 0: look up once.
    fronts_refresh: Seconds = field(default=5.0, name="M2_FRONTS_REFRESH")
    # An idle ZeroMQ connection is probed after this many seconds (TCP keepalive), well
    # under the ~900 s after which overlays, NAT and VIPs forget it.
    keepalive_idle: Annotated[int, Meta(ge=1)] = field(default=60, name="M2_KEEPALIVE_IDLE")
    # ZMTP heartbeat: libzmq pings each peer this often and drops it after 3 missed (0: off).
    peer_heartbeat: Seconds = field(default=10.0, name="M2_PEER_HEARTBEAT")


class HandlerSettings(FrontSettings, frozen=True):
    """A Mongrel2 handler process (the Mongrel2 front door and its healthcheck)."""

    # Greenlets per process; when all are busy the loop stops pulling (back-pressure).
    max_in_flight: Positive = field(default=10_000, name="HANDLER_MAX_IN_FLIGHT")
    # Small, so little is queued in a handler that dies.
    receive_hwm: NonNegative = field(default=100, name="HANDLER_RECEIVE_HWM")
    # Serve each request in the greenlet that received it, handing receiving on to a new
    # one only if the request waits (hubs/handoff.py); false: a greenlet per request.
    serve_inline: bool = field(default=True, name="HANDLER_SERVE_INLINE")
    shutdown_grace: Seconds = field(default=10.0, name="HANDLER_SHUTDOWN_GRACE")
    # After disconnecting, stop draining the receive queue after this much silence.
    drain_quiet: Seconds = field(default=0.3, name="HANDLER_DRAIN_QUIET")
    # Written by a greenlet on the hub, read by the container healthcheck.
    heartbeat_file: str = field(default="/tmp/handler-heartbeat", name="HANDLER_HEARTBEAT_FILE")
    heartbeat_interval: Annotated[float, Meta(gt=0)] = field(default=2.0, name="HANDLER_HEARTBEAT_INTERVAL")
    # A request still running after this gets 504 (0: no limit).
    request_timeout: Seconds = field(default=10.0, name="HANDLER_REQUEST_TIMEOUT")
    # The dispatcher (docs/dispatcher.md), e.g. tcp://dispatcher:9995: requests come from it,
    # not from mongrel2's PUSH, and are acknowledged. "": pull from mongrel2 directly.
    dispatcher: str = field(default="", name="HANDLER_DISPATCHER")
    # How often this handler tells the dispatcher it is alive (it declares a handler silent
    # for DISPATCH_DEAD_AFTER dead): well under that bound.
    dispatch_beat: Annotated[float, Meta(gt=0)] = field(default=0.2, name="HANDLER_DISPATCH_BEAT")
    # A reply waits for the dispatcher's word when its last answer to a beat is older than
    # this (a stall): keep it under DISPATCH_DEAD_AFTER, so no reply races a repeat.
    dispatch_fence: Annotated[float, Meta(gt=0)] = field(default=0.5, name="HANDLER_DISPATCH_FENCE")
    # Seconds between the keep-alive notes a handler sends mongrel2 for each WebSocket it
    # owns: mongrel2's reaper (limits.min_ping, M2_IDLE_TIMEOUT) counts only what the client
    # sends, so a client that only listens would be dropped. Keep it under that. 0: off.
    websocket_keepalive: Seconds = field(default=5.0, name="HANDLER_WS_KEEPALIVE")
    # Streamed responses (doors/mongrel2/streaming.py `Stream`): mongrel2 1.12 drops a connection
    # with more than 16 undelivered messages, so chunks are coalesced into messages of at
    # most HANDLER_STREAM_MESSAGE_BYTES, at most one per HANDLER_STREAM_PACE seconds per
    # connection (a ceiling of bytes/pace per stream; docs/streaming.md).
    stream_message_bytes: Annotated[int, Meta(ge=1024)] = field(default=262_144, name="HANDLER_STREAM_MESSAGE_BYTES")
    stream_pace: Seconds = field(default=0.01, name="HANDLER_STREAM_PACE")
    # A stream still running after this is ended (0: never). With N handlers mongrel2's
    # disconnect notice may reach another process: this bounds a producer nobody reads.
    stream_timeout: Seconds = field(default=3600.0, name="HANDLER_STREAM_TIMEOUT")
    # Where mongrel2 writes bodies over its limits.content_length (its upload.temp_store:
    # M2_UPLOAD_DIR, a directory shared with it on the same host). "": uploads refused.
    upload_dir: str = field(default="", name="HANDLER_UPLOAD_DIR")
    # The largest request body, in bytes: 413 JSON above it (WSGISettings reads the same).
    max_body: NonNegative = field(default=MAX_REQUEST_BODY_BYTES, name="MAX_REQUEST_BODY_BYTES")
    metrics_port: Port = field(default=9100, name="METRICS_PORT")   # 0: off
    access_log: bool = field(default=True, name="ACCESS_LOG")
    log_level: str = field(default="INFO", name="LOG_LEVEL")
    # SCHED_BATCH for the process: ZeroMQ's I/O thread, woken by every send, then no
    # longer preempts the hub's thread, so replies queued meanwhile leave in one write.
    batch_scheduling: bool = field(default=True, name="HANDLER_SCHED_BATCH")


class DispatcherSettings(FrontSettings, frozen=True):
    """The dispatcher between mongrel2 and the handlers (m2stack.dispatch); it finds the
    fronts as a handler does."""

    # Where handlers connect.
    bind: str = field(default="tcp://*:9995", name="DISPATCH_BIND")
    # A handler silent this long is dead: what it had is repeated (if safe) or answered 503.
    dead_after: Annotated[float, Meta(gt=0)] = field(default=1.0, name="DISPATCH_DEAD_AFTER")
    # Methods whose requests are repeated on another handler when theirs dies. RFC 9110
    # makes PUT and DELETE idempotent too: add them when your app keeps that promise.
    retry_methods: str = field(default="GET,HEAD,OPTIONS", name="DISPATCH_RETRY_METHODS")
    # Requests the dispatcher holds while no handler has a free credit (lost if it crashes);
    # past it, they wait in mongrel2. Above 0 so disconnect notices are read meanwhile.
    max_waiting: Positive = field(default=100, name="DISPATCH_MAX_WAITING")
    # Messages taken from one mongrel2 per turn of the loop (fairness between fronts).
    batch: Positive = field(default=256, name="DISPATCH_BATCH")
    heartbeat_file: str = field(default="/tmp/dispatcher-heartbeat", name="DISPATCH_HEARTBEAT_FILE")
    # Prometheus /metrics (its own exporter, dispatch/exporter.py), internal network only. 0: off.
    metrics_port: Port = field(default=9101, name="DISPATCH_METRICS_PORT")
    log_level: str = field(default="INFO", name="LOG_LEVEL")
    batch_scheduling: bool = field(default=True, name="HANDLER_SCHED_BATCH")


class WSGISettings(msgspec.Struct, frozen=True):
    """The WSGI front door inside each Gunicorn worker."""

    # The largest request body, in bytes: 413 JSON above it (HandlerSettings reads the same).
    max_body: NonNegative = field(default=MAX_REQUEST_BODY_BYTES, name="MAX_REQUEST_BODY_BYTES")
    request_timeout: Seconds = field(default=10.0, name="HANDLER_REQUEST_TIMEOUT")
    log_level: str = field(default="INFO", name="LOG_LEVEL")


class GunicornSettings(msgspec.Struct, frozen=True):
    """services/gunicorn.conf.py."""

    worker_class: str = field(default="gevent", name="GUNICORN_WORKER_CLASS")
    workers: Positive | None = field(default=None, name="WEB_CONCURRENCY")  # None: one per CPU
    worker_connections: Positive = field(default=1000, name="WORKER_CONNECTIONS")
    keepalive: Positive = field(default=5, name="GUNICORN_KEEPALIVE")
    graceful_timeout: Positive = field(default=10, name="GUNICORN_GRACEFUL_TIMEOUT")
    port: Annotated[int, Meta(ge=1, le=65535)] = field(default=6767, name="PORT")
    metrics_port: Port = field(default=9100, name="METRICS_PORT")
    prometheus_dir: str = field(default="", name="PROMETHEUS_MULTIPROC_DIR")


class DatabaseSettings(msgspec.Struct, frozen=True):
    """The PostgreSQL pool of one process (m2stack.db)."""

    host: str = field(default="db", name="DB_HOST")
    port: Annotated[int, Meta(ge=1, le=65535)] = field(default=5432, name="DB_PORT")
    name: str = field(default="hello_world", name="DB_NAME")
    user: str = field(default="m2stack", name="DB_USER")
    password: str = field(default="", name="DB_PASSWORD")
    pool_size: Positive = field(default=20, name="DB_POOL_SIZE")         # connections, at most
    pool_timeout: Seconds = field(default=2.0, name="DB_POOL_TIMEOUT")   # wait for one, then 503
    connect_timeout: Seconds = field(default=3.0, name="DB_CONNECT_TIMEOUT")
    statement_timeout_ms: NonNegative = field(default=5000, name="DB_STATEMENT_TIMEOUT_MS")  # 0: none


class FanoutSettings(msgspec.Struct, frozen=True):
    """GET /fanout's targets: settings, never taken from the request (no SSRF)."""

    url: str = field(default="http://mongrel2:6767/static/sample.json", name="FANOUT_URL")
    slow_url: str = field(default="http://mongrel2:6767/sleep?ms={ms}", name="FANOUT_SLOW_URL")
    timeout: Annotated[float, Meta(gt=0)] = field(default=5.0, name="FANOUT_TIMEOUT")
