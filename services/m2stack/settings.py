"""Settings from the environment, read once at start-up (12-factor style)."""

from __future__ import annotations

import os
from dataclasses import dataclass


def env_number(name: str, default, kind=int):
    """An int (or float) setting; a clear exit at start-up instead of a traceback."""
    raw = os.environ.get(name, "")
    try:
        return kind(raw) if raw else default
    except ValueError:
        raise SystemExit(f"setting {name} must be {'an integer' if kind is int else 'a number'}, "
                         f"got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    # Mongrel2's handler sockets: it binds both, handlers connect.
    requests_endpoint: str      # mongrel2's PUSH (Handler send_spec)
    responses_endpoint: str     # mongrel2's SUB (Handler recv_spec)
    max_in_flight: int          # greenlets per process; when full the loop stops pulling
    receive_hwm: int            # small, so little is queued in a handler that dies
    shutdown_grace: float       # seconds to finish in-flight work on SIGTERM
    drain_quiet: float          # after disconnecting, stop draining after this much silence
    heartbeat_file: str         # written by the loop, read by the container healthcheck
    heartbeat_interval: float
    log_level: str
    request_timeout: float      # a request still running after this gets 504 (0: no limit)
    metrics_port: int           # Prometheus /metrics on this internal port (0: off)
    access_log: bool            # one JSON line per request, with request id and conn id

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            requests_endpoint=os.environ.get("M2_REQUESTS_ENDPOINT", "tcp://127.0.0.1:9997"),
            responses_endpoint=os.environ.get("M2_RESPONSES_ENDPOINT", "tcp://127.0.0.1:9996"),
            max_in_flight=env_number("HANDLER_MAX_IN_FLIGHT", 10_000),
            receive_hwm=env_number("HANDLER_RECEIVE_HWM", 100),
            shutdown_grace=env_number("HANDLER_SHUTDOWN_GRACE", 10.0, float),
            drain_quiet=env_number("HANDLER_DRAIN_QUIET", 0.3, float),
            heartbeat_file=os.environ.get("HANDLER_HEARTBEAT_FILE", "/tmp/handler-heartbeat"),
            heartbeat_interval=env_number("HANDLER_HEARTBEAT_INTERVAL", 2.0, float),
            log_level=os.environ.get("LOG_LEVEL", "INFO").upper(),
            request_timeout=env_number("HANDLER_REQUEST_TIMEOUT", 10.0, float),
            metrics_port=env_number("METRICS_PORT", 9100),
            access_log=os.environ.get("ACCESS_LOG", "true").lower() in ("1", "true", "yes", "on"),
        )
