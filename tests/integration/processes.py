"""The real mongrel2 (via its container entrypoint), real handler processes and a real
Gunicorn, on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from support import Metrics, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
HUBS = ["gevent", "eventlet"]
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def scrape(port: int) -> Metrics:
    return Metrics(_NO_PROXY.open(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode())


class Mongrel2:
    IDLE_TIMEOUT = 3  # seconds; mongrel2's reaper closes connections idle longer (+ 2 ticks of 1 s)

    def __init__(self, tmp: Path, **extra_env: str):
        self.port, self.requests_port, self.responses_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests_endpoint = f"tcp://127.0.0.1:{self.requests_port}"
        self.responses_endpoint = f"tcp://127.0.0.1:{self.responses_port}"
        self.log = open(tmp / "mongrel2.log", "wb")  # noqa: SIM115 (open while it runs; closed in stop)
        env = dict(os.environ, M2_PORT=str(self.port), M2_BIND_ADDR="127.0.0.1",
                   M2_REQUESTS_SPEC=self.requests_endpoint, M2_RESPONSES_SPEC=self.responses_endpoint,
                   M2_RUN_DIR=str(tmp / "m2run"), M2_STATIC_DIR=str(ROOT / "mongrel2" / "static"),
                   M2_ACCESS_LOG="/dev/null", M2_ERROR_LOG=os.environ.get("M2_ERROR_LOG", "/dev/null"),
                   M2_IDLE_TIMEOUT=str(self.IDLE_TIMEOUT), **extra_env)
        self.process = subprocess.Popen(["sh", str(ROOT / "mongrel2" / "entrypoint.sh")],
                                        env=env, stdout=self.log, stderr=self.log)
        wait_until(lambda: urllib.request.urlopen(self.url + "/static/health.txt", timeout=1).status == 200,
                   15, "mongrel2 to serve /static/health.txt")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


class _Process:
    """A process of ours with its output in a log file."""

    process: subprocess.Popen
    log_path: Path

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def log_entries(self) -> list[dict]:
        return [json.loads(line) for line in self.output().splitlines() if line.startswith("{")]

    def terminate(self, timeout: float = 15) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()


class HandlerProcess(_Process):
    """`python -m m2stack.run_<hub>`, its metrics on a port of its own."""

    def __init__(self, hub: str, mongrel2: Mongrel2 | None, tmp: Path, *,
                 requests_endpoint: str | None = None, responses_endpoint: str | None = None,
                 **extra_env: str):
        self.hub = hub
        self.heartbeat = tmp / f"heartbeat-{hub}-{time.monotonic_ns()}"
        self.log_path = tmp / f"handler-{hub}-{time.monotonic_ns()}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.metrics_port = free_port()
        env = dict(os.environ,
                   M2_REQUESTS_ENDPOINT=requests_endpoint or mongrel2.requests_endpoint,
                   M2_RESPONSES_ENDPOINT=responses_endpoint or mongrel2.responses_endpoint,
                   HANDLER_HEARTBEAT_FILE=str(self.heartbeat), HANDLER_HEARTBEAT_INTERVAL="0.5",
                   METRICS_PORT=str(self.metrics_port),
                   # the package, and this folder for the test's own WSGI apps (APP=...)
                   PYTHONPATH=os.pathsep.join([str(ROOT / "services"), str(HERE)]))
        env.update(extra_env)
        self.process = subprocess.Popen([sys.executable, "-m", f"m2stack.run_{hub}"],
                                        env=env, stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def handler_id(self) -> str:
        return f"{socket.gethostname()}:{self.process.pid}"

    def wait_connected(self, timeout: float = 15, tick=lambda: None) -> None:
        """`tick` lets a test's own bound sockets process their commands meanwhile."""
        wait_until(lambda: tick() or self.heartbeat.exists() or self.process.poll() is not None,
                   timeout, "the handler to connect")
        assert self.process.poll() is None, self.output()

    def metrics(self) -> Metrics:
        return scrape(self.metrics_port)

    def in_flight(self) -> float:
        return self.metrics().value("m2stack_in_flight_requests")



class Gunicorn:
    """The WSGI image's command line (services/gunicorn.conf.py, m2stack.run_wsgi), on loopback."""

    def __init__(self, tmp: Path, *, workers: int, **extra_env: str):
        self.port, self.metrics_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"gunicorn-{time.monotonic_ns()}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        multiproc = tmp / f"prometheus-{time.monotonic_ns()}"
        env = dict(os.environ, PORT=str(self.port), WEB_CONCURRENCY=str(workers),
                   GUNICORN_WORKER_CLASS="gevent", METRICS_PORT=str(self.metrics_port),
                   PROMETHEUS_MULTIPROC_DIR=str(multiproc),
                   PYTHONPATH=os.pathsep.join([str(ROOT / "services"), str(HERE)]))
        env.update(extra_env)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", str(ROOT / "services" / "gunicorn.conf.py"),
             "m2stack.run_wsgi:application"],
            cwd=tmp, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)  # its own process group: workers and metrics child go with it
        try:
            wait_until(lambda: self.process.poll() is not None or
                       _NO_PROXY.open(self.url + "/healthz", timeout=1).status == 200,
                       30, "gunicorn to answer /healthz")
            wait_until(lambda: self.process.poll() is not None or scrape(self.metrics_port), 15,
                       "the master's metrics server")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.output()[-3000:]}") from None
        assert self.process.poll() is None, self.output()[-3000:]

    def metrics(self) -> Metrics:
        return scrape(self.metrics_port)

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 20) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # the group we started: master, workers, metrics
        except ProcessLookupError:
            pass
        self.process.wait()
        self.log.close()


class DispatcherProcess(_Process):
    """`python -m m2stack.run_dispatcher` in front of one mongrel2; handlers join it with
    `HandlerProcess(..., HANDLER_DISPATCHER=dispatcher.endpoint)`. Its metrics on a port of
    its own (`metrics()`)."""

    def __init__(self, mongrel2: Mongrel2, tmp: Path, **extra_env: str):
        self.port = free_port()
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.metrics_port = int(extra_env.setdefault("DISPATCH_METRICS_PORT", str(free_port())))
        self.heartbeat = tmp / f"dispatcher-heartbeat-{time.monotonic_ns()}"
        self.log_path = tmp / f"dispatcher-{time.monotonic_ns()}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        env = dict(os.environ, M2_REQUESTS_ENDPOINT=mongrel2.requests_endpoint,
                   M2_RESPONSES_ENDPOINT=mongrel2.responses_endpoint,
                   DISPATCH_BIND=self.endpoint, DISPATCH_HEARTBEAT_FILE=str(self.heartbeat),
                   PYTHONPATH=str(ROOT / "services"))
        env.update(extra_env)
        self.process = subprocess.Popen([sys.executable, "-m", "m2stack.run_dispatcher"],
                                        env=env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: self.heartbeat.exists() or self.process.poll() is not None, 15,
                   "the dispatcher to start")
        assert self.process.poll() is None, self.output()

    def metrics(self) -> Metrics:
        return scrape(self.metrics_port)

