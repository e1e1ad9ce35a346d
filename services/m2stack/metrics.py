"""Prometheus metrics, shared by every front door.

The Mongrel2 handler serves them on its own internal port (METRICS_PORT); under
Gunicorn, PROMETHEUS_MULTIPROC_DIR switches prometheus_client to multiprocess
mode so one scrape sees every worker.
"""

from __future__ import annotations

import bisect
import itertools
import os
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
BUCKETS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)
_REQUESTS_HELP = "Requests answered, by route and status."
_LATENCY_HELP = "Time in the app per request, by route."
_IN_FLIGHT_HELP = "Requests being handled (one greenlet each)."

LOOP_LAG = Gauge("m2stack_event_loop_lag_seconds",
                 "How late the hub woke a greenlet that asked to sleep (last heartbeat).",
                 multiprocess_mode="max")
HANDOFF_LOST = Gauge("m2stack_handoff_lost",
                     "1 once serving where received stopped (its greenlet trace hook was replaced).",
                     multiprocess_mode="max")
HUB = Gauge("m2stack_hub_info", "The hub and front door of this process (value 1).",
            ["hub", "front_door", "version"], multiprocess_mode="max")


class RequestMetrics:
    """Per-request counts in plain dicts, turned into Prometheus families when scraped.

    A handler is one process on one OS thread (its greenlets never run at once), so no
    lock is needed, where prometheus_client's own metrics take one on every update (five
    a request). Under Gunicorn, whose workers share their counts through files, the
    prometheus_client metrics below are used instead."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, int], int] = {}
        self.histograms: dict[str, list[float]] = {}  # route -> a count per bucket, +Inf, sum
        self.in_flight = 0

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        histogram = self.histograms.get(route)
        if histogram is None:
            histogram = self.histograms[route] = [0.0] * (len(BUCKETS) + 2)
        histogram[bisect.bisect_left(BUCKETS, seconds)] += 1
        histogram[-1] += seconds

    def collect(self) -> Iterator[Any]:
        requests = CounterMetricFamily("m2stack_requests", _REQUESTS_HELP, labels=["route", "method", "status"])
        for (route, method, status), count in list(self.counts.items()):
            requests.add_metric([route, method, str(status)], count)
        latency = HistogramMetricFamily("m2stack_request_duration_seconds", _LATENCY_HELP, labels=["route"])
        for route, histogram in list(self.histograms.items()):
            cumulative = list(itertools.accumulate(histogram[:-1]))
            latency.add_metric([route], [(floatToGoString(b), c) for b, c in zip(BUCKETS, cumulative[:-1], strict=True)]
                               + [("+Inf", cumulative[-1])], histogram[-1])
        yield requests
        yield latency
        yield GaugeMetricFamily("m2stack_in_flight_requests", _IN_FLIGHT_HELP, value=self.in_flight)


if MULTIPROCESS:
    _REQUESTS = Counter("m2stack_requests_total", _REQUESTS_HELP, ["route", "method", "status"])
    _LATENCY = Histogram("m2stack_request_duration_seconds", _LATENCY_HELP, ["route"], buckets=BUCKETS)
    _IN_FLIGHT = Gauge("m2stack_in_flight_requests", _IN_FLIGHT_HELP, multiprocess_mode="livesum")
else:
    _REQUEST_METRICS = RequestMetrics()
    REGISTRY.register(_REQUEST_METRICS)  # type: ignore[arg-type]

# The labelled children, looked up once per label set: `labels()` costs more than the
# update itself. Bounded: routes are patterns and methods a fixed set.
_request_counters: dict[tuple[str, str, int], Any] = {}
_latency_histograms: dict[str, Any] = {}


def request_started() -> None:
    if MULTIPROCESS:
        _IN_FLIGHT.inc()
    else:
        _REQUEST_METRICS.in_flight += 1


def streams_open(delta: int) -> None:
    """A streamed body still being sent counts as in flight (front doors call this)."""
    if MULTIPROCESS:
        _IN_FLIGHT.inc(delta)
    else:
        _REQUEST_METRICS.in_flight += delta


def request_finished(route: str, method: str, status: int, started: float) -> None:
    """Count a request answered with `status`; `started` is its time.perf_counter()."""
    seconds = time.perf_counter() - started
    if not MULTIPROCESS:
        _REQUEST_METRICS.in_flight -= 1
        _REQUEST_METRICS.observe(route, method, status, seconds)
        return
    _IN_FLIGHT.dec()
    key = (route, method, status)
    counter = _request_counters.get(key)
    if counter is None:
        counter = _request_counters[key] = _REQUESTS.labels(route, method, str(status))
    counter.inc()
    histogram = _latency_histograms.get(route)
    if histogram is None:
        histogram = _latency_histograms[route] = _LATENCY.labels(route)
    histogram.observe(seconds)


def serve(port: int) -> None:
    """Expose /metrics on an internal port (a background thread: a greenlet once patched)."""
    start_http_server(port)


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
