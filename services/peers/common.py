"""What both peer launchers share: the worker count and the Prometheus endpoint.

Metrics are served on METRICS_PORT (default 9100, 0: off) like the Mongrel2 handler's and
Gunicorn's: with one worker process, by that worker from its own registry (as a handler
does); with several, prometheus_client's multiprocess mode merges every worker's files and
a child of the server's main process serves the sum (as under Gunicorn).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

MULTIPROCESS_DIR = "/dev/shm/prometheus"  # a tmpfs in every container: the root fs stays read-only


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def available_cpus() -> int:
    """CPUs this process may use: its affinity, capped by the cgroup quota (compose `cpus:`)."""
    cpus = len(os.sched_getaffinity(0))
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:  # cgroup v2: "max 100000" or "150000 100000"
            quota, period = f.read().split()[:2]
        if quota != "max":
            cpus = min(cpus, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        try:  # cgroup v1
            with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
                quota_us = int(f.read())
            with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
                period_us = int(f.read())
            if quota_us > 0:
                cpus = min(cpus, math.ceil(quota_us / period_us))
        except (OSError, ValueError):
            pass
    return max(1, cpus)


def worker_count() -> int:
    """WEB_CONCURRENCY, else one worker process per usable CPU (Gunicorn's rule here)."""
    return max(1, env_int("WEB_CONCURRENCY", 0) or available_cpus())


def metrics_port() -> int:
    return env_int("METRICS_PORT", 9100)


def prepare_metrics(workers: int) -> None:
    """In the launcher, before the server starts: with several workers, multiprocess mode
    (set in the environment the workers inherit) and the merging child."""
    if not metrics_port() or workers == 1:
        return
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = MULTIPROCESS_DIR
    os.makedirs(MULTIPROCESS_DIR, exist_ok=True)
    for name in os.listdir(MULTIPROCESS_DIR):  # files of a previous run of this container
        os.unlink(os.path.join(MULTIPROCESS_DIR, name))
    subprocess.Popen([sys.executable, "-m", "peers.exporter", str(metrics_port())])


def serve_metrics_in_worker() -> None:
    """In the (only) worker: its own registry on METRICS_PORT; nothing in multiprocess mode."""
    port = metrics_port()
    if port and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import start_http_server

        start_http_server(port)
