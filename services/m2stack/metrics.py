"""Prometheus metrics, shared by every front door.

The Mongrel2 handler serves them on its own internal port (METRICS_PORT); under
Gunicorn, PROMETHEUS_MULTIPROC_DIR switches prometheus_client to multiprocess
mode so one scrape sees every worker.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

REQUESTS = Counter("m2stack_requests_total", "Requests answered, by route and status.",
                   ["route", "method", "status"])
LATENCY = Histogram("m2stack_request_duration_seconds", "Time in the app per request, by route.",
                    ["route"], buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
IN_FLIGHT = Gauge("m2stack_in_flight_requests", "Requests being handled (one greenlet each).",
                  multiprocess_mode="livesum")
LOOP_LAG = Gauge("m2stack_event_loop_lag_seconds",
                 "How late the hub woke a greenlet that asked to sleep (last heartbeat).",
                 multiprocess_mode="max")
HUB = Gauge("m2stack_hub_info", "The hub and front door of this process (value 1).",
            ["hub", "front_door", "version"], multiprocess_mode="max")


# The labelled children, looked up once per label set: `labels()` costs more than the
# update itself. Bounded: routes are patterns and methods a fixed set.
_request_counters: dict[tuple[str, str, int], Any] = {}
_latency_histograms: dict[str, Any] = {}


def observe(route: str, method: str, status: int, started: float) -> None:
    key = (route, method, status)
    counter = _request_counters.get(key)
    if counter is None:
        counter = _request_counters[key] = REQUESTS.labels(route, method, str(status))
    counter.inc()
    histogram = _latency_histograms.get(route)
    if histogram is None:
        histogram = _latency_histograms[route] = LATENCY.labels(route)
    histogram.observe(time.perf_counter() - started)


def serve(port: int) -> None:
    """Expose /metrics on an internal port (a background thread: a greenlet once patched)."""
    start_http_server(port)


def exposition() -> bytes:
    """The text format, merging every Gunicorn worker in multiprocess mode."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()


def watch_loop_lag(interval: float = 1.0) -> None:
    """For processes without the Mongrel2 heartbeat (Gunicorn workers): a background
    thread, which the hub's monkey-patching turns into a greenlet, measures how late
    the hub wakes it."""
    import threading

    def watch() -> None:
        while True:
            started = time.monotonic()
            time.sleep(interval)
            LOOP_LAG.set(max(0.0, time.monotonic() - started - interval))

    threading.Thread(target=watch, name="loop-lag", daemon=True).start()
