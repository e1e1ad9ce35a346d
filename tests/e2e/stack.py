"""Drive a real `docker compose` project from a test: up, scale, inspect, scrape, down.

Each Stack is its own compose project (its own containers, networks, volumes)
published on its own loopback port, so stacks never collide with `make up`. Which
files make a variant comes from the one table, loadtest/comparison/variants.py.
"""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import re
import secrets
import shlex
import signal
import statistics
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import requests

from comparison.variants import VARIANTS, Variant
from support import Metrics, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = shlex.split(os.environ.get("COMPOSE", "docker compose"))

# The demo app behind our two front doors on our two hubs, in the table's order (every
# Mongrel2 one before every WSGI one): not the ceiling (no app), not the peers (other
# servers or hubs, for comparisons), not mongrel2's knobs (measured only), not another
# app (example-flask, the notes example).
# Behind Mongrel2 these are the bare shape (mongrel2 round-robins to the handlers); the
# dispatcher's variants, the default shape, have their own module (test_dispatch.py): what
# they promise differs. test_shapes.py holds `dispatched` to what the files give.
DISPATCH = [name for name, v in VARIANTS.items() if v.dispatched and v.app == "demo"]
DEMO = [name for name, v in VARIANTS.items()
        if v.front_door in ("mongrel2", "wsgi") and v.hub in ("gevent", "eventlet")
        and v.app == "demo" and name not in DISPATCH and not v.knob]
MONGREL2 = [name for name in DEMO if VARIANTS[name].front_door == "mongrel2"]
WSGI = [name for name in DEMO if VARIANTS[name].front_door == "wsgi"]
METRICS_PORT = 9100  # every app container, internal network only
# Compose project names start with this: two checkouts running the suite at once on one
# engine set different ones, or their stacks would be each other's.
PROJECT_PREFIX = os.environ.get("E2E_PROJECT_PREFIX", "m2e2e")

# The session's shared demo stacks (conftest.py `demo_stack`): enough processes for the
# kill and scale tests, mongrel2's reaper and the app's deadline short enough to wait for.
IDLE_TIMEOUT = 8        # M2_IDLE_TIMEOUT: mongrel2's reaper bound
REQUEST_TIMEOUT = 4     # HANDLER_REQUEST_TIMEOUT: the app answers 504 after this
DEMO_STACK = {"processes": {"mongrel2": 4, "wsgi": 2},
              "env": {"M2_IDLE_TIMEOUT": str(IDLE_TIMEOUT), "HANDLER_REQUEST_TIMEOUT": str(REQUEST_TIMEOUT)}}
SHARED = {"argnames": "demo_stack", "indirect": True, "scope": "session"}

SCRAPE = ("import urllib.request; print(urllib.request.build_opener(urllib.request.ProxyHandler({}))"
          f".open('http://127.0.0.1:{METRICS_PORT}/metrics', timeout=5).read().decode())")


def hold_off_swarm_leave() -> IO[str] | None:
    """SWARM_LEAVE_LOCK held shared until the returned file is closed (None: not set).

    `docker swarm leave` breaks the name resolution of every container on a bridge network
    that exists at that moment (Docker 20.10: `db` no longer resolves, for good), and
    `make test` runs the Swarm suite, which leaves the swarms it made, beside e2e stacks:
    its leaves take this lock exclusively, so they happen between stacks."""
    path = os.environ.get("SWARM_LEAVE_LOCK")
    if not path:
        return None
    lock = open(path, "a")  # noqa: SIM115 - held for the stack's life, closed by Stacks.down
    fcntl.flock(lock, fcntl.LOCK_SH)
    return lock


class Stack:
    def __init__(self, variant: Variant, purpose: str, *, env: dict[str, str] | None = None,
                 extra_files: tuple[str, ...] = ()):
        self.variant = variant
        self.name = variant.name
        self.hub = variant.hub
        self.front_door = variant.front_door
        self.app_service = variant.app_service
        self.project = f"{PROJECT_PREFIX}-{purpose}-{variant.name}"
        self.files = [*variant.files, *extra_files]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Like `make env`: a random database password per stack, none committed.
        self.env = dict(os.environ, HTTP_PUBLISH=f"127.0.0.1:{self.port}",
                        DB_PASSWORD=secrets.token_hex(16))
        self.env.update(env or {})
        self.processes = 0
        self.http = requests.Session()

    # -- compose -------------------------------------------------------------------------

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        command = [*COMPOSE, "-p", self.project]
        for file in self.files:
            command += ["-f", str(ROOT / file)]
        result = subprocess.run([*command, *args], cwd=ROOT, env=self.env, capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
        return result

    def up(self, processes: int = 1, timeout: float = 180) -> None:
        """`processes` app processes: that many handler containers behind Mongrel2, or
        that many Gunicorn workers in the one WSGI container."""
        self.processes = processes
        if self.variant.scaled:
            self.compose("up", "-d", "--scale", f"{self.app_service}={processes}")
        else:
            self.env[self.variant.workers_env] = str(processes)
            self.compose("up", "-d")
        self.wait_healthy(timeout)

    def scale(self, handlers: int) -> None:
        assert self.variant.scaled, f"{self.name} runs one container: nothing to scale"
        self.compose("up", "-d", "--no-recreate", "--scale", f"{self.app_service}={handlers}")

    def wait_healthy(self, timeout: float = 180) -> None:
        result = subprocess.run([str(ROOT / "scripts" / "wait-healthy.sh"), self.project, str(int(timeout))],
                                capture_output=True, text=True, timeout=timeout + 30)
        assert result.returncode == 0, result.stderr[-3000:]
        probe = "/static/health.txt" if self.front_door == "mongrel2" else "/healthz"
        wait_until(lambda: self.http.get(self.url + probe, timeout=2).ok, 30,
                   f"{self.front_door} to answer on the published port")

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "20", check=False)

    # -- HTTP ------------------------------------------------------------------------------

    def get(self, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return self.http.get(self.url + path, **kwargs)

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return self.http.request(method, self.url + path, **kwargs)

    # -- docker ------------------------------------------------------------------------------

    def container_ids(self, service: str | None = None, all_states: bool = False) -> list[str]:
        command = ["docker", "ps", "-q", "--no-trunc", "--filter",
                   f"label=com.docker.compose.project={self.project}"]
        if all_states:
            command.insert(2, "-a")
        if service:
            command += ["--filter", f"label=com.docker.compose.service={service}"]
        return sorted(subprocess.run(command, capture_output=True, text=True, check=True).stdout.split())

    def app_ids(self) -> list[str]:
        """The running containers of the app service; never empty on a stack that is up."""
        ids = self.container_ids(self.app_service)
        assert ids, f"no running {self.app_service} container in {self.project}"
        return ids

    def inspect(self, container_id: str) -> dict:
        out = subprocess.run(["docker", "inspect", container_id], capture_output=True, text=True, check=True)
        return json.loads(out.stdout)[0]

    def resources(self, kind: str) -> list[str]:
        """Names of the project's networks or volumes still present."""
        out = subprocess.run(["docker", kind, "ls", "-q", "--filter",
                              f"label=com.docker.compose.project={self.project}"],
                             capture_output=True, text=True, check=True)
        return out.stdout.split()

    def network(self, name: str) -> str:
        return f"{self.project}_{name}"

    def back_ip(self, container_id: str) -> str:
        return self.inspect(container_id)["NetworkSettings"]["Networks"][self.network("back")]["IPAddress"]

    def logs(self, service: str = "") -> str:
        return self.compose("logs", "--no-color", *([service] if service else []), check=False).stdout

    def container_logs(self, container_id: str) -> str:
        """stdout and stderr of one container, as one text."""
        result = subprocess.run(["docker", "logs", container_id], capture_output=True, text=True)
        return result.stdout + result.stderr

    # -- what the app says about itself ---------------------------------------------------------

    def handler_id_pattern(self) -> re.Pattern:
        """X-Handler-Id is `hostname:pid`; a container's hostname is its id's first 12
        characters. A Mongrel2 handler is PID 1 of its container; under Gunicorn a worker
        answers, never the master (PID 1)."""
        hosts = "|".join(cid[:12] for cid in self.app_ids())
        pid = "1" if self.front_door == "mongrel2" else r"(?!1\Z)[1-9][0-9]*"
        return re.compile(rf"(?:{hosts}):{pid}\Z")

    def scrape(self, container_id: str) -> Metrics:
        """The /metrics page of one app container (Gunicorn: its workers merged)."""
        out = subprocess.run(["docker", "exec", container_id, "python3", "-c", SCRAPE],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr[-2000:]
        return Metrics(out.stdout)

    def metric(self, name: str, **labels: str) -> float:
        """One metric summed over every app container."""
        return sum(self.scrape(cid).value(name, **labels) for cid in self.app_ids())


# ---- a gauge sampled while something happens ---------------------------------------------------

# Runs in a throwaway container on the stack's internal network: one line per round,
# the gauge of every URL ("nan" if unreadable), until its stdin closes.
WATCH = r"""
import select, sys, urllib.request
name, urls = sys.argv[1], sys.argv[2:]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
def value(url):
    try:
        text = opener.open(url, timeout=2).read().decode()
    except OSError:
        return "nan"
    return repr(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                    if line.startswith((name + " ", name + "{"))))
while True:
    print(" ".join(value(url) for url in urls), flush=True)
    if select.select([sys.stdin], [], [], 0.01)[0]:
        break
"""


class GaugeWatch:
    """Samples a gauge (default: requests in flight) of some app containers about every
    20 ms while a test acts, so the test can wait on a state of the app instead of
    sleeping, and read the peak afterwards."""

    def __init__(self, stack: Stack, container_ids: list[str] | None = None,
                 name: str = "m2stack_in_flight_requests"):
        self.ids = list(container_ids or stack.app_ids())
        urls = [f"http://{stack.back_ip(cid)}:{METRICS_PORT}/metrics" for cid in self.ids]
        image = stack.inspect(self.ids[0])["Config"]["Image"]  # any image with python3 will do
        self.process = subprocess.Popen(
            ["docker", "run", "--rm", "-i", "--network", stack.network("back"), "--read-only",
             "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--entrypoint", "python3",
             image, "-c", WATCH, name, *urls],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.samples: list[tuple[float, dict[str, float | None]]] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            self.wait(lambda values: None not in values.values(), 60, "the gauge watcher's first reading")
        except BaseException:
            self.stop()
            raise

    def _read(self) -> None:
        for line in self.process.stdout:
            values = [None if raw == "nan" else float(raw) for raw in line.split()]
            with self._changed:
                self.samples.append((time.monotonic(), dict(zip(self.ids, values, strict=True))))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait(self, predicate, timeout: float, what: str) -> dict[str, float | None]:
        """The first sample from now on for which `predicate(values by container)` holds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            seen = len(self.samples)
            while True:
                for _, values in self.samples[seen:]:
                    if predicate(values):
                        return values
                seen = len(self.samples)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.process.poll() is not None and not self._reader.is_alive()):
                    last = self.samples[-1][1] if self.samples else None
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                                         f"last sample {last}; {self._stderr()}")
                self._changed.wait(remaining)

    def peak(self, container_id: str | None = None) -> float:
        """The highest reading (of one container, or of their sum)."""
        def total(values):
            if container_id is not None:
                return values.get(container_id) or 0.0
            return sum(v or 0.0 for v in values.values())
        with self._changed:
            return max((total(values) for _, values in self.samples), default=0.0)

    def _stderr(self) -> str:
        if self.process.poll() is None:
            return "watcher running"
        return f"watcher exited {self.process.returncode}: {self.process.stderr.read()[-1000:]}"

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
                self.process.wait(15)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self._reader.join(5)

    def __enter__(self) -> GaugeWatch:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def kill_9(pid: int) -> None:
    """SIGKILL from the host, like the OOM killer: `docker kill` would count as a manual
    stop and the restart policy would leave the container down."""
    if os.geteuid() == 0:
        os.kill(pid, signal.SIGKILL)
    else:
        subprocess.run(["sudo", "-n", "kill", "-9", str(pid)], check=True)


# ---- a small, bounded, steady load from plain HTTP clients, recording every outcome -------------

CLOSED = "closed"    # the server closed the connection without an answer
REFUSED = "refused"  # nothing accepted the connection
HUNG = "hung"        # no answer within the client's timeout


@dataclass
class Outcome:
    result: int | str      # HTTP status, or CLOSED / REFUSED / HUNG / the exception's class name
    seconds: float
    started: float
    detail: str = ""
    client: int = -1       # which of the load's clients sent it (each sends one at a time)
    response: requests.Response | None = None   # kept when the status is not 200

    @property
    def ended(self) -> float:
        return self.started + self.seconds


def classify(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return HUNG
    # requests wraps urllib3, which wraps the socket's own error (as a cause or an argument).
    seen, todo = set(), [exc]
    while todo:
        error = todo.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)):
            return CLOSED
        if isinstance(error, ConnectionRefusedError):
            return REFUSED
        todo += [e for e in (error.__cause__, error.__context__, *error.args) if isinstance(e, BaseException)]
    return type(exc).__name__


@dataclass
class Load:
    url: str
    clients: int = 8
    timeout: float = 30.0          # a request still waiting after this counts as hung
    pause: float = 0.005
    method: str = "GET"
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, args=(index,), daemon=True)
                         for index in range(self.clients)]

    def _client(self, index: int) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            started = time.monotonic()
            detail, kept = "", None
            try:
                response = session.request(self.method, self.url, timeout=self.timeout)
                result: int | str = response.status_code
                if result != 200:
                    kept = response
                    session = requests.Session()  # it may have closed the connection
            except requests.RequestException as exc:
                result, detail = classify(exc), repr(exc)[:300]
                session = requests.Session()  # a broken connection: start afresh
            with self._lock:
                self.outcomes.append(Outcome(result, time.monotonic() - started, started, detail, index, kept))
            time.sleep(self.pause)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)

    def snapshot(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)

    @property
    def counts(self) -> Counter:
        return Counter(o.result for o in self.snapshot())

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.snapshot() if o.result != 200]

    @property
    def slowest(self) -> float:
        return max((o.seconds for o in self.snapshot()), default=0.0)

    def started_before(self, moment: float) -> list[Outcome]:
        return [o for o in self.snapshot() if o.started <= moment]

    def started_after(self, moment: float) -> list[Outcome]:
        return [o for o in self.snapshot() if o.started > moment]

    def all_past(self, moment: float) -> bool:
        """True once every client has started a request after `moment`: each sends one at
        a time, so every request in flight at `moment` has its outcome by then."""
        return len({o.client for o in self.started_after(moment)}) == self.clients


def report(what: str, **figures) -> None:
    print(f"\n[measured] {what}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


def wait_outcomes(load: Load, count: int, what: str, timeout: float = 30) -> None:
    """Until `count` more requests of the load have finished (the load is being served)."""
    target = len(load.snapshot()) + count
    wait_until(lambda: len(load.snapshot()) >= target, timeout, f"{count} requests {what}")


# ---- one of 4 handlers starved of CPU --------------------------------------------------------

def p99(seconds: list[float]) -> float:
    return statistics.quantiles(seconds, n=100)[98] if len(seconds) >= 100 else max(seconds)


def _measure(stack: Stack, seconds: float, shares: bool = False) -> tuple[list[float], Counter, int]:
    with Load(stack.url + "/sleep?ms=20", clients=16, timeout=10, pause=0) as load:
        time.sleep(seconds)
    served_by: Counter = Counter()
    for _ in range(200 if shares else 0):
        served_by[stack.get("/json", timeout=15).headers["X-Handler-Id"].split(":")[0]] += 1
    return [o.seconds for o in load.outcomes], served_by, len(load.failures)


# 4 s of 16 clients on /sleep?ms=20: 1,600-2,100 requests all fast, as many with one
# handler starved behind the dispatcher (the p99: its 16-20 slowest), 580-650 under
# round-robin, where a quarter of them wait out the starved handler's CPU quota period and
# the p99 lands inside that quarter. Both effects are there from the first second on; a
# longer window only repeats them (8 s windows measured the same ratios).
STARVED_SECONDS = 4


def starved_handler(stack: Stack, seconds: float = STARVED_SECONDS) -> dict:
    """All fast for `seconds`, then one of the handlers at 0.02 CPU for as long: the
    latencies of both runs, its share of 200 requests sent after, the failures."""
    handlers = stack.app_ids()
    fast, _, failed_fast = _measure(stack, seconds)
    slow_one = handlers[0]
    subprocess.run(["docker", "update", "--cpus", "0.02", slow_one], check=True, capture_output=True)
    try:
        time.sleep(1)
        starved, served_by, failed_starved = _measure(stack, seconds, shares=True)
    finally:
        subprocess.run(["docker", "update", "--cpus", "1", slow_one], check=True, capture_output=True)
    return {"fast": fast, "starved": starved, "share": served_by[slow_one[:12]] / sum(served_by.values()),
            "served_by": dict(served_by), "failed": failed_fast + failed_starved}


def starved_figures(run: dict) -> dict:
    return {"p99_all_fast_ms": round(p99(run["fast"]) * 1000, 1),
            "p99_one_starved_ms": round(p99(run["starved"]) * 1000, 1),
            "median_all_fast_ms": round(statistics.median(run["fast"]) * 1000, 1),
            "median_one_starved_ms": round(statistics.median(run["starved"]) * 1000, 1),
            "requests_all_fast": len(run["fast"]), "requests_one_starved": len(run["starved"]),
            "starved_share": round(run["share"], 3), "failed": run["failed"]}
