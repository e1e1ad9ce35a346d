#!/usr/bin/env python3
"""`make compare`: every variant under the same load, one after another, and a report.

For each variant: bring the stack up as its own compose project (published on a free
loopback port), the same CPU and memory limits per service and the same number of handler
processes; then for each scenario: check that the variant has the endpoints (a 404 makes
the scenario "n/a" for that variant, not a crash), warm up, measure (Locust headless, or
wrk for the wrk-* scenarios) while sampling every container's CPU and memory from its
cgroup, and keep the raw files. The stack is torn down after the variant, also on Ctrl-C.

    VARIANTS=mongrel2-gevent,ceiling SCENARIOS=plaintext,json DURATION=10 make compare

Settings (environment): VARIANTS, SCENARIOS, DURATION, WARMUP (seconds), USERS,
USERS_<SCENARIO> (e.g. USERS_SLEEP=5000), SPAWN_RATE, HANDLERS, LOCUST_WORKERS,
HANDLER_CPUS, MONGREL2_CPUS, DB_CPUS, LOCUST_CPUS, WRK_THREADS, WRK_CONNECTIONS, ACCESS_LOG,
REPORT_DIR, COMPARE_PROJECT_PREFIX (compose projects are <prefix>-<variant>, default m2cmp).
Output: reports/<timestamp>/ (report.md, *.png, results.json, results.csv, settings.json,
machine.json, raw/).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import platform
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scenarios import SCENARIOS, Scenario, probes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = shlex.split(os.environ.get("COMPOSE", "docker compose"))
LOADTEST_FILE = "compose/loadtest.yml"
GENERATOR_SERVICES = ("locust-master", "locust-worker")


# ---- the variants: one table -----------------------------------------------------------

@dataclass(frozen=True)
class Variant:
    description: str
    files: tuple[str, ...]                  # compose files, relative to the repository root
    target: str = "http://mongrel2:6767"    # base URL the load generator uses (compose network)
    handler_service: str = "handler"        # the service whose processes run the app
    # Mongrel2 variants run HANDLERS containers of one process each (--scale); a WSGI
    # variant runs one container with HANDLERS worker processes (workers_env=HANDLERS).
    workers_env: str | None = None
    cpus_env: str = "HANDLER_CPUS"          # compose variable of the handler's CPU limit

    @property
    def scaled(self) -> bool:
        return self.workers_env is None


VARIANTS: dict[str, Variant] = {
    "mongrel2-gevent": Variant("Mongrel2 + gevent handlers", ("docker-compose.yml",)),
    "mongrel2-eventlet": Variant("Mongrel2 + eventlet handlers",
                                 ("docker-compose.yml", "compose/eventlet.yml")),
    "wsgi-gevent": Variant("Gunicorn, gevent worker", ("docker-compose.yml", "compose/wsgi.yml"),
                           target="http://wsgi:6767", handler_service="wsgi",
                           workers_env="WEB_CONCURRENCY", cpus_env="WSGI_CPUS"),
    "wsgi-eventlet": Variant("Gunicorn, eventlet worker",
                             ("docker-compose.yml", "compose/wsgi-eventlet.yml"),
                             target="http://wsgi:6767", handler_service="wsgi",
                             workers_env="WEB_CONCURRENCY", cpus_env="WSGI_CPUS"),
    "ceiling": Variant("Mongrel2 + the ceiling handler (blocking pyzmq, no hub, no app)",
                       ("docker-compose.yml", "compose/ceiling.yml")),
}


# ---- settings --------------------------------------------------------------------------

def _seconds(raw: str) -> int:
    """'30', '30s', '2m', '1m30s' -> seconds."""
    raw = raw.strip()
    if raw.isdigit():
        return int(raw)
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", raw)
    if not raw or not parts:
        raise SystemExit(f"not a duration: {raw!r} (use 30, 30s, 2m, 1m30s)")
    h, m, s = (int(p or 0) for p in parts.groups())
    return h * 3600 + m * 60 + s


def _names(raw: str, known: dict, what: str) -> list[str]:
    names = [n.strip() for n in raw.split(",") if n.strip()] or list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)}; known: {', '.join(known)}")
    return names


@dataclass
class Settings:
    variants: list[str]
    scenarios: list[str]
    duration: int
    warmup: int
    users: int
    spawn_rate: int | None
    handlers: int
    locust_workers: int
    handler_cpus: str
    mongrel2_cpus: str
    db_cpus: str
    locust_cpus: str
    wrk_threads: int
    wrk_connections: int | None
    access_log: str
    report_dir: str
    users_per_scenario: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env=os.environ) -> "Settings":
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        get = lambda name, default: env.get(name, "").strip() or default  # noqa: E731
        settings = cls(
            variants=_names(env.get("VARIANTS", ""), VARIANTS, "variant"),
            scenarios=_names(env.get("SCENARIOS", ""), SCENARIOS, "scenario"),
            duration=_seconds(get("DURATION", "30")),
            warmup=_seconds(get("WARMUP", "5")),
            users=int(get("USERS", "64")),
            spawn_rate=int(get("SPAWN_RATE", "0")) or None,
            handlers=int(get("HANDLERS", "1")),
            locust_workers=int(get("LOCUST_WORKERS", "1")),
            handler_cpus=get("HANDLER_CPUS", "1.0"),
            mongrel2_cpus=get("MONGREL2_CPUS", "1.0"),
            db_cpus=get("DB_CPUS", "1.0"),
            locust_cpus=get("LOCUST_CPUS", "1.0"),
            wrk_threads=int(get("WRK_THREADS", "2")),
            wrk_connections=int(get("WRK_CONNECTIONS", "0")) or None,
            access_log=get("ACCESS_LOG", "false"),
            report_dir=get("REPORT_DIR", str(ROOT / "reports" / stamp)),
        )
        for name in settings.scenarios:
            override = env.get("USERS_" + name.upper().replace("-", "_"), "").strip()
            if override:
                settings.users_per_scenario[name] = int(override)
        if settings.duration < 1 or settings.users < 1 or settings.handlers < 1:
            raise SystemExit("DURATION, USERS and HANDLERS must be at least 1")
        return settings

    def users_for(self, scenario: Scenario) -> int:
        return self.users_per_scenario.get(scenario.name) or scenario.users or self.users


# ---- containers: CPU and memory from the cgroups -------------------------------------

_CGROUP_ROOTS = ("/sys/fs/cgroup/cpuacct/docker", "/sys/fs/cgroup/cpu,cpuacct/docker",
                 "/sys/fs/cgroup/docker", "/sys/fs/cgroup/system.slice")


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def cgroup_cpu_seconds(container_id: str) -> float | None:
    """Cumulative CPU time of a running container, read by the host (cgroup v1 or v2)."""
    for root in _CGROUP_ROOTS[:2]:
        raw = _read(f"{root}/{container_id}/cpuacct.usage")
        if raw:
            return int(raw) / 1e9
    for path in (f"/sys/fs/cgroup/docker/{container_id}/cpu.stat",
                 f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat"):
        raw = _read(path)
        if raw:
            for line in raw.splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
    return None


def cgroup_memory_bytes(container_id: str) -> int | None:
    """Memory in use as `docker stats` counts it: usage minus inactive page cache."""
    for base, usage_file, inactive_key in (
            (f"/sys/fs/cgroup/memory/docker/{container_id}", "memory.usage_in_bytes", "total_inactive_file"),
            (f"/sys/fs/cgroup/docker/{container_id}", "memory.current", "inactive_file"),
            (f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope", "memory.current", "inactive_file")):
        usage = _read(f"{base}/{usage_file}")
        if usage is None:
            continue
        inactive = 0
        for line in (_read(f"{base}/memory.stat") or "").splitlines():
            key, _, value = line.partition(" ")
            if key == inactive_key:
                inactive = int(value)
        return max(0, int(usage) - inactive)
    return None


def _docker_stats(ids: list[str]) -> dict[str, tuple[float, int]]:
    """Fallback when the cgroup files are not readable: {id: (cpu fraction, memory bytes)}."""
    units = {"B": 1, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3, "kB": 1000, "MB": 1e6, "GB": 1e9}
    out = subprocess.run(["docker", "stats", "--no-stream", "--format",
                          "{{.ID}} {{.CPUPerc}} {{.MemUsage}}", *ids],
                         capture_output=True, text=True, timeout=30).stdout
    stats = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        match = re.fullmatch(r"([\d.]+)([A-Za-z]+)", parts[2])
        memory = int(float(match.group(1)) * units.get(match.group(2), 1)) if match else 0
        stats[parts[0]] = (float(parts[1].rstrip("%") or 0) / 100, memory)
    return stats


class Sampler:
    """Samples every running container of a compose project in a thread.

    CPU: cumulative cgroup time, so a run's CPU is the last reading minus the first
    (containers that appear during the run start from zero). Memory: the peak of the
    readings. Without readable cgroups it integrates `docker stats` (coarser).
    """

    def __init__(self, project: str, interval: float = 0.25):
        self.project = project
        self.interval = interval
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.peak_memory: dict[str, int] = {}
        self.service: dict[str, str] = {}
        self.source = "cgroup"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._listed_at = 0.0
        self._ids: list[str] = []

    def _list(self) -> list[str]:
        out = subprocess.run(["docker", "ps", "--no-trunc", "--filter",
                              f"label=com.docker.compose.project={self.project}", "--format",
                              '{{.ID}} {{.Label "com.docker.compose.service"}}'],
                             capture_output=True, text=True, timeout=30).stdout
        ids = []
        for line in out.splitlines():
            cid, _, service = line.partition(" ")
            self.service[cid] = service
            ids.append(cid)
        return ids

    def sample(self, initial: bool = False) -> None:
        now = time.monotonic()
        if initial or now - self._listed_at > 1.0:
            self._ids, self._listed_at = self._list(), now
        missing = []
        for cid in self._ids:
            cpu = cgroup_cpu_seconds(cid) if self.source == "cgroup" else None
            memory = cgroup_memory_bytes(cid)
            if cpu is None:
                if self.source == "cgroup" and not initial:
                    continue  # the container ended between `docker ps` and the read
                missing.append(cid)
                continue
            if cid not in self.first:
                self.first[cid] = cpu if initial else 0.0
            self.last[cid] = cpu
            if memory is not None:
                self.peak_memory[cid] = max(self.peak_memory.get(cid, 0), memory)
        if missing:  # integrate docker stats' CPU fraction over the time since the last call
            self.source = "docker stats"  # cgroups not readable here: coarser, from now on
            started = time.monotonic()
            for cid, (fraction, memory) in _docker_stats(missing).items():
                full = next((c for c in missing if c.startswith(cid)), cid)
                self.first.setdefault(full, 0.0)
                elapsed = getattr(self, "_stats_at", None)
                step = (started - elapsed) if elapsed else 0.0
                self.last[full] = self.last.get(full, 0.0) + fraction * step
                self.peak_memory[full] = max(self.peak_memory.get(full, 0), memory)
            self._stats_at = started

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except Exception as exc:  # a container vanishing mid-read must not end sampling
                print(f"  (sampler: {exc})", file=sys.stderr)

    def __enter__(self) -> "Sampler":
        self.sample(initial=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)
        try:
            self.sample()
        except Exception:
            pass

    def cpu_by_service(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for cid, last in self.last.items():
            service = self.service.get(cid, "?")
            totals[service] = totals.get(service, 0.0) + max(0.0, last - self.first.get(cid, 0.0))
        return totals

    def peak_memory_by_container(self, service: str) -> list[int]:
        return [peak for cid, peak in self.peak_memory.items() if self.service.get(cid) == service]


# ---- one variant's stack -----------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    def __init__(self, name: str, variant: Variant, settings: Settings):
        self.name = name
        self.variant = variant
        self.settings = settings
        self.project = f"{os.environ.get('COMPARE_PROJECT_PREFIX') or 'm2cmp'}-{name}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ)
        self.env.update({
            "HTTP_PUBLISH": f"127.0.0.1:{self.port}",
            "LOCUST_PUBLISH": "127.0.0.1:",       # a free host port: never collides with the UI
            "LOAD_TARGET": variant.target,
            "HANDLER_CPUS": settings.handler_cpus,
            "MONGREL2_CPUS": settings.mongrel2_cpus,
            "LOCUST_CPUS": settings.locust_cpus,
            "ACCESS_LOG": settings.access_log,
            "DB_CPUS": settings.db_cpus,
            # A throwaway stack: its own database password unless one is given.
            "DB_PASSWORD": os.environ.get("DB_PASSWORD") or secrets.token_hex(16),
        })
        if not variant.scaled:  # one container, HANDLERS processes, as many CPUs as N handlers
            self.env[variant.workers_env] = str(settings.handlers)
            self.env[variant.cpus_env] = f"{float(settings.handler_cpus) * settings.handlers:g}"
        self.files = [*variant.files, LOADTEST_FILE]

    def compose(self, *args: str, timeout: float = 300, check: bool = True,
                env: dict[str, str] | None = None, generator: bool = True) -> subprocess.CompletedProcess:
        """Compose on this project; generator=False leaves compose/loadtest.yml out."""
        command = [*COMPOSE, "-p", self.project]
        for file in (self.files if generator else self.variant.files):
            command += ["-f", str(ROOT / file)]
        result = subprocess.run([*command, *args], cwd=ROOT, env={**self.env, **(env or {})},
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"compose {' '.join(args)} failed ({result.returncode}):\n"
                               f"{result.stderr[-3000:]}")
        return result

    def up(self) -> None:
        self.down()  # leftovers of an interrupted run of the same project
        scale = ["--scale", f"{self.variant.handler_service}={self.settings.handlers}"] \
            if self.variant.scaled else []
        # The variant's files only: the Locust services start per run (run_locust), and the
        # variant's own profiles decide which services exist (the WSGI overlays).
        self.compose("up", "-d", *scale, timeout=600, generator=False)
        wait = subprocess.run([str(ROOT / "scripts" / "wait-healthy.sh"), self.project, "240"],
                              capture_output=True, text=True, timeout=300)
        if wait.returncode != 0:
            raise RuntimeError(f"stack not healthy:\n{wait.stderr[-3000:]}")
        deadline = time.monotonic() + 60
        while True:  # healthy containers; now the whole path answers through the published port
            status, _ = http(self.url + "/plaintext", timeout=5)
            if status == 200:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"GET /plaintext through {self.url} answered {status}")
            time.sleep(0.5)

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "10",
                     check=False, timeout=180)

    def ids(self, service: str) -> list[str]:
        return self.compose("ps", "-q", service).stdout.split()


def http(url: str, method: str = "GET", body: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int | str, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, urllib.error.URLError) as exc:
        return type(exc).__name__, b""


# ---- load generators ---------------------------------------------------------------------

def run_locust(stack: Stack, scenario: Scenario, users: int, duration: int, dest: Path) -> dict:
    settings = stack.settings
    workers = settings.locust_workers
    spawn = settings.spawn_rate or users
    args = (f"--headless -u {users} -r {spawn} -t {duration}s --csv /out/locust "
            f"--expect-workers {workers} --expect-workers-max-wait 60 --only-summary")
    env = {"SCENARIO": scenario.name, "LOCUST_MASTER_ARGS": args}
    stack.compose("up", "-d", "--no-deps", "--force-recreate", "--scale", f"locust-worker={workers}",
                  *GENERATOR_SERVICES, env=env, timeout=300)
    master, = stack.ids("locust-master")
    worker_ids = stack.ids("locust-worker")
    limit = duration + 180 + users / spawn
    try:
        code = subprocess.run(["docker", "wait", master], capture_output=True, text=True,
                              timeout=limit).stdout.strip()
    except subprocess.TimeoutExpired:
        code = "timeout"
        subprocess.run(["docker", "kill", master], capture_output=True)
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["docker", "cp", f"{master}:/out/.", str(dest)], capture_output=True)
    logs = ""
    for cid in [master, *worker_ids]:
        part = subprocess.run(["docker", "logs", cid], capture_output=True, text=True)
        logs += f"==== {cid[:12]}\n{part.stdout}{part.stderr}"
    (dest / "locust.log").write_text(logs)
    stats = parse_locust_csv(dest / "locust_stats.csv")
    stats["exit_code"] = code
    stats["generator_cpu_warning"] = "CPU usage" in logs or "cpu threshold" in logs.lower()
    if not stats.get("requests") and code != "0":
        raise RuntimeError(f"locust exited {code} with no results; see {dest / 'locust.log'}:\n"
                           + logs[-2000:])
    return stats


def parse_locust_csv(path: Path) -> dict:
    if not path.exists():
        return {}
    rows = list(csv.DictReader(path.open()))
    endpoints, total = [], {}
    for row in rows:
        item = {
            "name": row["Name"], "method": row["Type"],
            "requests": int(row["Request Count"]), "failures": int(row["Failure Count"]),
            "rps": float(row["Requests/s"]), "avg_ms": float(row["Average Response Time"]),
            "p50_ms": _num(row.get("50%")), "p95_ms": _num(row.get("95%")),
            "p99_ms": _num(row.get("99%")), "max_ms": _num(row.get("Max Response Time")),
        }
        if row["Name"] == "Aggregated":
            total = item
        else:
            endpoints.append(item)
    return {**{k: v for k, v in total.items() if k not in ("name", "method")},
            "endpoints": endpoints}


def _num(raw: str | None) -> float | None:
    try:
        return float(raw) if raw not in (None, "", "N/A") else None
    except ValueError:
        return None


def run_wrk(stack: Stack, scenario: Scenario, users: int, duration: int, dest: Path) -> dict:
    settings = stack.settings
    connections = settings.wrk_connections or users
    threads = max(1, min(settings.wrk_threads, connections))
    request = scenario.requests[0]
    command = ["run", "--rm", "--no-deps", "-T", "--entrypoint", "wrk", "locust-worker",
               "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--timeout", "10s",
               "-s", "/app/loadtest/wrk_report.lua", stack.variant.target + request.path]
    result = stack.compose(*command, check=False, timeout=duration + 120)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "wrk.log").write_text(result.stdout + result.stderr)
    line = next((l for l in result.stdout.splitlines() if l.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary ({result.returncode}):\n"
                           f"{(result.stdout + result.stderr)[-2000:]}")
    raw = json.loads(line[len("WRK_JSON "):])
    failures = sum(raw[k] for k in ("errors_connect", "errors_read", "errors_write",
                                    "errors_status", "errors_timeout"))
    return {"requests": raw["requests"], "failures": failures,
            "rps": raw["requests"] / raw["duration_s"] if raw["duration_s"] else 0.0,
            "avg_ms": raw["avg_ms"], "p50_ms": raw["p50_ms"], "p95_ms": raw["p95_ms"],
            "p99_ms": raw["p99_ms"], "max_ms": raw["max_ms"], "wrk": raw, "endpoints": [],
            "exit_code": str(result.returncode), "generator_cpu_warning": False}


GENERATORS = {"locust": run_locust, "wrk": run_wrk}


# ---- one scenario on one variant -------------------------------------------------------

def check_endpoints(stack: Stack, scenario: Scenario) -> str | None:
    """None when the variant serves every endpoint of the scenario, else why not."""
    for request in probes(scenario):
        body = request.body.encode() if request.body is not None else None
        status, content = http(stack.url + request.path, request.method, body, request.headers,
                               timeout=30)
        if status in (404, 405, 501) and status not in request.expect:
            return f"{request.method} {request.path.split('?')[0]} answered {status} on this variant"
        if not isinstance(status, int):
            return f"{request.method} {request.path.split('?')[0]} failed: {status}"
    return None


def run_scenario(stack: Stack, scenario: Scenario, raw_dir: Path, progress: "Progress") -> dict:
    settings = stack.settings
    users = settings.users_for(scenario)
    row = {"variant": stack.name, "scenario": scenario.name, "generator": scenario.generator,
           "users": users, "duration_s": settings.duration, "handlers": settings.handlers}
    missing = check_endpoints(stack, scenario)
    if missing:
        progress.skip(stack.name, scenario.name, missing)
        return {**row, "status": "n/a", "note": missing}
    generate = GENERATORS[scenario.generator]
    if settings.warmup:
        progress.step(stack.name, scenario.name, f"warming up {settings.warmup}s")
        generate(stack, scenario, users, settings.warmup, raw_dir / "warmup")
    progress.step(stack.name, scenario.name, f"measuring {settings.duration}s, {users} users")
    started = time.monotonic()
    with Sampler(stack.project) as sampler:
        stats = generate(stack, scenario, users, settings.duration, raw_dir)
    wall = time.monotonic() - started
    cpu = sampler.cpu_by_service()
    # The generator's work is in the workers (and the wrk container, a locust-worker run);
    # the master only coordinates, and its CPU stays in cpu_by_service_s.
    generator_cpu = cpu.get("locust-worker", 0.0)
    server_cpu = sum(v for k, v in cpu.items() if k not in GENERATOR_SERVICES)
    processes_per_container = 1 if stack.variant.scaled else settings.handlers
    handler_peaks = sampler.peak_memory_by_container(stack.variant.handler_service)
    requests = stats.get("requests") or 0
    generator_limit = float(settings.locust_cpus) * (settings.locust_workers
                                                     if scenario.generator == "locust" else 1)
    row.update({k: v for k, v in stats.items() if k != "endpoints"})
    row.update({
        "status": "ok",
        "note": "",
        "server_cpu_s": round(server_cpu, 3),
        "cpu_s_per_1k": round(server_cpu / requests * 1000, 4) if requests else None,
        # the app processes alone (no mongrel2, no database): the price of hub + app
        "handler_cpu_s_per_1k": round(cpu.get(stack.variant.handler_service, 0.0) / requests * 1000, 4)
        if requests else None,
        "cpu_by_service_s": {k: round(v, 3) for k, v in sorted(cpu.items())},
        "generator_cpu_s": round(generator_cpu, 3),
        # busy cores while measuring (the generator idles before and after its run)
        "generator_cores": round(generator_cpu / settings.duration, 3),
        "generator_cpu_limit": generator_limit,
        "peak_mib_per_handler_process": round(max(handler_peaks) / 2 ** 20 / processes_per_container, 1)
        if handler_peaks else None,
        "peak_mib_by_service": {
            service: round(max(sampler.peak_memory_by_container(service)) / 2 ** 20, 1)
            for service in sorted(set(sampler.service.values()))
            if sampler.peak_memory_by_container(service)},
        "wall_s": round(wall, 1),
        "sampling": sampler.source,
        "endpoints": stats.get("endpoints", []),
    })
    if row["failures"]:
        row["note"] = f"{row['failures']} failed requests"
    if stats.get("generator_cpu_warning"):
        row["note"] = (row["note"] + "; " if row["note"] else "") + "Locust warned: generator CPU-bound"
    progress.done(stack.name, scenario.name, row)
    return row


# ---- progress -------------------------------------------------------------------------------

class Progress:
    VARIANT_OVERHEAD = 40   # seconds: up, health, down
    RUN_OVERHEAD = 12       # seconds per generator run: containers start, workers connect

    def __init__(self, settings: Settings):
        self.settings = settings
        self.total_runs = len(settings.variants) * len(settings.scenarios)
        self.runs_done = 0
        self.variants_done = 0
        self.started = time.monotonic()

    def remaining(self) -> str:
        s = self.settings
        per_run = s.duration + self.RUN_OVERHEAD + (s.warmup + self.RUN_OVERHEAD if s.warmup else 0)
        left = (self.total_runs - self.runs_done) * per_run \
            + (len(s.variants) - self.variants_done) * self.VARIANT_OVERHEAD
        return f"about {left // 60}m{left % 60:02d}s left"

    def line(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)

    def variant(self, name: str, index: int, text: str) -> None:
        self.line(f"{name} ({index}/{len(self.settings.variants)}): {text}; {self.remaining()}")

    def step(self, variant: str, scenario: str, text: str) -> None:
        index = self.settings.scenarios.index(scenario) + 1
        self.line(f"{variant} · {scenario} ({index}/{len(self.settings.scenarios)}): {text}; "
                  f"{self.remaining()}")

    def done(self, variant: str, scenario: str, row: dict) -> None:
        self.runs_done += 1
        self.line(f"{variant} · {scenario}: {row['rps']:.0f} req/s, p99 {_fmt(row['p99_ms'])} ms, "
                  f"{row['failures']} failures, server {_fmt(row['cpu_s_per_1k'], 3)} CPU-s/1k req, "
                  f"generator {row['generator_cores']:.2f} cores")

    def skip(self, variant: str, scenario: str, why: str) -> None:
        self.runs_done += 1
        self.line(f"{variant} · {scenario}: n/a ({why})")


def _summary(exc: BaseException) -> str:
    """The first line of an error and its last meaningful line (where the cause usually is)."""
    lines = [l.strip() for l in str(exc).splitlines() if l.strip()]
    if not lines:
        return type(exc).__name__
    text = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    return text.replace("|", "/")[:300]


def _fmt(value, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


# ---- the report -----------------------------------------------------------------------------

def machine_description() -> dict:
    def run(*command: str) -> str:
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    cpuinfo = _read("/proc/cpuinfo") or ""
    model = next((l.split(":", 1)[1].strip() for l in cpuinfo.splitlines()
                  if l.startswith("model name")), platform.processor())
    meminfo = _read("/proc/meminfo") or ""
    mem_kib = next((int(l.split()[1]) for l in meminfo.splitlines() if l.startswith("MemTotal")), 0)
    return {
        "started": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kib / 2 ** 20, 1),
        "kernel": platform.release(),
        "os": run("sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"),
        "docker": run("docker", "version", "--format", "{{.Server.Version}}"),
        "compose": run(*COMPOSE, "version", "--short"),
        "cgroup": run("docker", "info", "--format", "{{.CgroupDriver}} v{{.CgroupVersion}}"),
        "load_average_at_start": os.getloadavg(),
        "git_commit": run("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"),
        "git_dirty": bool(run("git", "-C", str(ROOT), "status", "--porcelain")),
        "python": platform.python_version(),
    }


def write_results(out: Path, rows: list[dict]) -> None:
    (out / "results.json").write_text(json.dumps(rows, indent=2, default=str))
    columns = ["variant", "scenario", "status", "generator", "users", "handlers", "duration_s",
               "requests", "failures", "rps", "p50_ms", "p95_ms", "p99_ms", "avg_ms", "max_ms",
               "server_cpu_s", "cpu_s_per_1k", "peak_mib_per_handler_process", "handler_cpu_s_per_1k",
               "generator_cpu_s", "generator_cores", "generator_cpu_limit", "note"]
    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_charts(out: Path, rows: list[dict], scenarios: list[str]) -> list[str]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    measured = [s for s in scenarios if any(r["scenario"] == s and r["status"] == "ok" for r in rows)]
    if not measured:
        return []
    cols = min(3, len(measured))
    nrows = (len(measured) + cols - 1) // cols
    charts = []
    for kind in ("throughput", "latency"):
        fig, axes = plt.subplots(nrows, cols, figsize=(5.5 * cols, 3.6 * nrows), squeeze=False)
        for ax, scenario in zip(axes.flat, measured):
            ok = [r for r in rows if r["scenario"] == scenario and r["status"] == "ok"]
            names = [r["variant"] for r in ok]
            if kind == "throughput":
                values = [r["rps"] for r in ok]
                bars = ax.barh(names, values, color="tab:blue")
                ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values], padding=3, fontsize=8)
                ax.invert_yaxis()  # the table's order, top down
                ax.set_xlabel("requests/s")
                ax.margins(x=0.2)
            else:
                width = 0.27
                for i, (key, color) in enumerate((("p50_ms", "tab:green"), ("p95_ms", "tab:orange"),
                                                  ("p99_ms", "tab:red"))):
                    ax.bar([x + (i - 1) * width for x in range(len(ok))],
                           [r.get(key) or 0 for r in ok], width, label=key[:3], color=color)
                ax.set_xticks(range(len(ok)), names, rotation=20, ha="right", fontsize=8)
                ax.set_ylabel("ms")
                ax.legend(fontsize=8)
            ax.set_title(scenario)
        for ax in list(axes.flat)[len(measured):]:
            ax.set_visible(False)
        title = "Throughput per variant" if kind == "throughput" else "Latency percentiles per variant"
        fig.suptitle(title)
        fig.tight_layout()
        name = f"{kind}.png"
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        charts.append(name)
    return charts


def write_report(out: Path, settings: Settings, machine: dict, rows: list[dict],
                 charts: list[str], interrupted: bool) -> None:
    lines = [f"# Load-test comparison, {machine['started']}", ""]
    if interrupted:
        lines += ["**Interrupted: the tables hold only what finished.**", ""]
    lines += [
        f"Same profile for every variant: {settings.duration} s measured after {settings.warmup} s "
        f"of warm-up; {settings.users} Locust users unless the scenario says otherwise, "
        f"{settings.locust_workers} Locust worker(s) at {settings.locust_cpus} CPU each; "
        f"{settings.handlers} handler process(es) at {settings.handler_cpus} CPU each, "
        f"mongrel2 at {settings.mongrel2_cpus} CPU, database at {settings.db_cpus} CPU; access log {settings.access_log}.",
        f"Machine: {machine['cpu_model']}, {machine['cpus']} CPUs, {machine['memory_gib']} GiB, "
        f"Docker {machine['docker']}, commit {machine['git_commit']}"
        f"{' (dirty)' if machine['git_dirty'] else ''}. The load generator runs on the same machine.",
        "",
        "Columns: **vs best** is the variant's requests/s over the best in that table; "
        "**CPU-s/1k** is the CPU time of every server container (mongrel2, handlers, database) "
        "per 1,000 requests, **handler CPU-s/1k** the same for the app processes alone (the "
        "price of hub and app, without mongrel2 and the database); **MiB/proc** is the peak memory of one handler process; "
        "**gen. cores** is the CPU the load generator's workers used per second measured, next "
        "to their limit: near the limit, the generator and not the server was the bottleneck "
        "(it includes each worker's start, about 0.5 CPU-s, so short runs overstate it).",
        "",
    ]
    for name in settings.scenarios:
        scenario = SCENARIOS[name]
        scenario_rows = [r for r in rows if r["scenario"] == name]
        if not scenario_rows:
            continue
        ok = [r for r in scenario_rows if r["status"] == "ok"]
        best = max((r["rps"] for r in ok), default=0) or None
        lines += [f"## {name}", "", scenario.description + f" ({scenario.generator}).", "",
                  "| variant | req/s | vs best | p50 ms | p95 ms | p99 ms | requests | failures "
                  "| CPU-s/1k | handler CPU-s/1k | MiB/proc | gen. cores | notes |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in scenario_rows:
            if r["status"] != "ok":
                lines.append(f"| {r['variant']} | {r['status']} | | | | | | | | | | | {r['note']} |")
                continue
            ratio = f"{r['rps'] / best:.2f}" if best else "–"
            lines.append(
                f"| {r['variant']} | {_fmt(r['rps'])} | {ratio} | {_fmt(r['p50_ms'])} "
                f"| {_fmt(r['p95_ms'])} | {_fmt(r['p99_ms'])} | {_fmt(r['requests'])} "
                f"| {_fmt(r['failures'])} | {_fmt(r['cpu_s_per_1k'], 3)} "
                f"| {_fmt(r.get('handler_cpu_s_per_1k'), 3)} "
                f"| {_fmt(r['peak_mib_per_handler_process'], 1)} "
                f"| {r['generator_cores']:.2f} / {r['generator_cpu_limit']:g} | {r['note']} |")
        lines.append("")
    if charts:
        lines += ["## Charts", ""] + [f"![{c}]({c})" for c in charts] + [""]
    lines += ["## Settings", "", "```json", json.dumps(asdict(settings), indent=2), "```", "",
              "## Machine", "", "```json", json.dumps(machine, indent=2), "```", "",
              "Raw data: `results.json`, `results.csv`, and per variant and scenario "
              "`raw/<variant>/<scenario>/` (Locust's CSV files and logs, or wrk's output).", ""]
    (out / "report.md").write_text("\n".join(lines))


# ---- main -------------------------------------------------------------------------------------

def main() -> int:
    settings = Settings.from_env()
    out = Path(settings.report_dir)
    (out / "raw").mkdir(parents=True, exist_ok=True)
    machine = machine_description()
    (out / "settings.json").write_text(json.dumps(asdict(settings), indent=2))
    (out / "machine.json").write_text(json.dumps(machine, indent=2))
    progress = Progress(settings)
    progress.line(f"compare: {len(settings.variants)} variant(s) x {len(settings.scenarios)} "
                  f"scenario(s) -> {out}")

    def on_term(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored

    rows: list[dict] = []
    interrupted = errors = False
    try:
        for index, name in enumerate(settings.variants, 1):
            variant = VARIANTS[name]
            absent = [f for f in variant.files if not (ROOT / f).exists()]
            if absent:
                why = f"variant not available here: {', '.join(absent)} missing"
                for scenario in settings.scenarios:
                    progress.skip(name, scenario, why)
                    rows.append({"variant": name, "scenario": scenario, "status": "n/a", "note": why})
                progress.variants_done += 1
                continue
            stack = Stack(name, variant, settings)
            try:
                progress.variant(name, index, f"starting ({variant.description}, "
                                              f"{settings.handlers} handler process(es))")
                stack.up()
                for scenario in settings.scenarios:
                    try:
                        rows.append(run_scenario(stack, SCENARIOS[scenario],
                                                 out / "raw" / name / scenario, progress))
                    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
                        errors = True
                        progress.skip(name, scenario, f"error: {str(exc)[:500]}")
                        rows.append({"variant": name, "scenario": scenario, "status": "error",
                                     "note": _summary(exc)})
                    write_results(out, rows)
            except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
                errors = True
                progress.line(f"{name}: error: {exc}")
                done = {r["scenario"] for r in rows if r["variant"] == name}
                for scenario in settings.scenarios:
                    if scenario not in done:
                        progress.runs_done += 1
                        rows.append({"variant": name, "scenario": scenario, "status": "error",
                                     "note": _summary(exc)})
                (out / "raw" / name).mkdir(parents=True, exist_ok=True)
                (out / "raw" / name / "compose.log").write_text(stack.compose(
                    "logs", "--no-color", "--tail", "200", check=False).stdout)
            finally:
                progress.line(f"{name}: tearing down")
                stack.down()
                progress.variants_done += 1
    except KeyboardInterrupt:
        interrupted = True
        progress.line("interrupted: stacks removed, writing what was measured")
    finally:
        write_results(out, rows)
        charts = write_charts(out, rows, settings.scenarios)
        write_report(out, settings, machine, rows, charts, interrupted)
        progress.line(f"report: {out / 'report.md'}")
    return 130 if interrupted else 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
