"""Drive the stack on a single-node Docker Swarm from a test: make swarm-up / swarm-down,
inspect services and tasks, scale, and run the in-network client (client.py).

What the compose files say and what Swarm runs are compared in one shape (`Spec`), from
three sources: `docker compose config` (the compose file), the generated stack file, and
`docker service inspect` (what Swarm actually honours).
"""

from __future__ import annotations

import calendar
import json
import os
import shlex
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = shlex.split(os.environ.get("COMPOSE", "docker compose"))
CLIENT = (Path(__file__).resolve().parent / "client.py").read_text()
CLIENT_IMAGE = "m2stack/handler:gevent"   # has python3; the client needs the stdlib only
HTTP_PORT = 6767

# What compose/swarm.yml changes on purpose in the services' environment (docs/swarm.md);
# any other difference between the compose file and the stack is drift.
SWARM_ENV = {
    "db": {"DB_PASSWORD_FILE": "/run/secrets/db_password"},
    "handler": {"M2_REQUESTS_ENDPOINT": "tcp://tasks.mongrel2:9997",
                "M2_RESPONSES_ENDPOINT": "tcp://tasks.mongrel2:9996",
                "DB_PASSWORD_FILE": "/run/secrets/db_password"},
    "dispatcher": {"M2_REQUESTS_ENDPOINT": "tcp://tasks.mongrel2:9997",
                   "M2_RESPONSES_ENDPOINT": "tcp://tasks.mongrel2:9996"},
}


def log(message: str) -> None:
    print(f"[measured] {message}", file=sys.stderr, flush=True)


def run(*command: str, check: bool = True, timeout: float = 180, env: dict[str, str] | None = None,
        input: str | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                            env=env, input=input)
    if check and result.returncode != 0:
        raise AssertionError(f"{shlex.join(command)} -> {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def docker(*args: str, check: bool = True, timeout: float = 180) -> str:
    return run("docker", *args, check=check, timeout=timeout).stdout.strip()


def docker_time(stamp: str) -> float:
    """Docker's RFC 3339 UTC time with nanoseconds ("2026-12-01T19:15:29.123456789Z") as epoch seconds."""
    base, _, fraction = stamp.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) + float(f"0.{fraction or 0}")


def http_get(url: str, timeout: float = 5) -> bytes:
    """A GET to a loopback address, never through a proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as response:
        return response.read()


def task_running_since(task: str) -> float:
    """When Swarm marked the task running: for an image with a healthcheck, once healthy."""
    task_info = json.loads(docker("inspect", "--type", "task", task))[0]
    assert task_info["Status"]["State"] == "running", task_info["Status"]
    return docker_time(task_info["Status"]["Timestamp"])


def swarm_state() -> str:
    return docker("info", "--format", "{{.Swarm.LocalNodeState}}")


def leave_swarm() -> None:
    """`docker swarm leave --force`, holding SWARM_LEAVE_LOCK exclusively when it is set:
    a leave breaks the name resolution of every container on a bridge network that exists
    at that moment (Docker 20.10), so `make test` makes it wait until no e2e stack is up
    (tests/e2e/conftest.py holds that lock shared for each stack's life)."""
    path = os.environ.get("SWARM_LEAVE_LOCK")
    if not path:
        docker("swarm", "leave", "--force", check=False)
        return
    import fcntl
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        docker("swarm", "leave", "--force", check=False)


def has_network(name: str) -> bool:
    return bool(docker("network", "ls", "-q", "--filter", f"name=^{name}$"))


# ---- the one shape the three sources are compared in ----------------------------------

@dataclass(frozen=True)
class Spec:
    image: str
    env: tuple[tuple[str, str], ...]
    cpus: float | None
    memory: int | None
    pids: int | None
    read_only: bool
    cap_drop: tuple[str, ...]
    tmpfs: tuple[str, ...]
    volumes: tuple[str, ...]   # named volumes, as source:target
    networks: tuple[str, ...]
    stop_grace: str | None


def _seconds(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if isinstance(value, int):  # nanoseconds (service inspect)
        return f"{value / 1e9:g}s"
    return value


def _named_volumes(volumes: Any) -> tuple[str, ...]:
    return tuple(sorted(f"{v['source']}:{v['target']}" for v in volumes or () if v.get("type") == "volume"))


def from_compose(config: dict[str, Any], *, swarm_env: dict[str, dict[str, str]] | None = None) -> dict[str, Spec]:
    """The compose file's services (`docker compose config --format json`), with the
    documented Swarm changes applied: those env overrides, and no *PASSWORD variable. A
    service of scale 0 (the bare shape's dispatcher) runs no container: none is listed."""
    swarm_env = SWARM_ENV if swarm_env is None else swarm_env
    specs = {}
    for name, s in config["services"].items():
        if s.get("scale") == 0:
            continue
        # None: a variable passed only when set (`APP:`), and it was not: the container has none.
        env = {k: v for k, v in (s.get("environment") or {}).items() if not k.endswith("PASSWORD") and v is not None}
        env.update(swarm_env.get(name, {}))
        specs[name] = Spec(
            image=s["image"], env=tuple(sorted(env.items())),
            cpus=float(s["cpus"]) if s.get("cpus") is not None else None,
            memory=int(s["mem_limit"]) if s.get("mem_limit") is not None else None,
            pids=int(s["pids_limit"]) if s.get("pids_limit") is not None else None,
            read_only=bool(s.get("read_only")), cap_drop=tuple(sorted(s.get("cap_drop") or ())),
            tmpfs=tuple(sorted([t.split(":")[0] for t in s.get("tmpfs") or ()]
                               + (["/dev/shm"] if s.get("shm_size") else []))),
            volumes=_named_volumes(s.get("volumes")),
            networks=tuple(sorted(s.get("networks") or ())), stop_grace=s.get("stop_grace_period"))
    return specs


def from_stack_file(stack: dict[str, Any], *, registry: str = "") -> dict[str, Spec]:
    specs = {}
    for name, s in stack["services"].items():
        limits = s.get("deploy", {}).get("resources", {}).get("limits", {})
        image = s["image"]
        if registry:
            assert image.startswith(registry + "/"), image
            image = image[len(registry) + 1:]
        specs[name] = Spec(
            image=image, env=tuple(sorted((s.get("environment") or {}).items())),
            cpus=float(limits["cpus"]) if "cpus" in limits else None,
            memory=int(limits["memory"]) if "memory" in limits else None,
            pids=limits.get("pids"), read_only=bool(s.get("read_only")),
            cap_drop=tuple(sorted(s.get("cap_drop") or ())),
            tmpfs=tuple(sorted(v["target"] for v in s.get("volumes") or () if v.get("type") == "tmpfs")),
            volumes=_named_volumes(s.get("volumes")),
            networks=tuple(sorted(s.get("networks") or ())), stop_grace=s.get("stop_grace_period"))
    return specs


def from_services(stack: str, *, registry: str = "") -> dict[str, Spec]:
    """What Swarm runs: `docker service inspect` of every service of the stack."""
    ids = docker("service", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={stack}").split()
    specs = {}
    networks = {n["Id"]: n["Name"] for n in json.loads(docker("network", "inspect", *docker(
        "network", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={stack}").split()))}
    for service in json.loads(docker("service", "inspect", *ids)):
        task = service["Spec"]["TaskTemplate"]
        container = task["ContainerSpec"]
        limits = task.get("Resources", {}).get("Limits", {})
        name = service["Spec"]["Name"][len(stack) + 1:]
        image = container["Image"].split("@")[0]
        if registry:
            assert image.startswith(registry + "/"), image
            image = image[len(registry) + 1:]
        specs[name] = Spec(
            image=image, env=tuple(sorted(tuple(e.split("=", 1)) for e in container.get("Env", ()))),
            cpus=limits["NanoCPUs"] / 1e9 if limits.get("NanoCPUs") else None,
            memory=limits.get("MemoryBytes"), pids=limits.get("Pids"),
            read_only=bool(container.get("ReadOnly")),
            cap_drop=tuple(sorted(container.get("CapabilityDrop") or ())),
            tmpfs=tuple(sorted(m["Target"] for m in container.get("Mounts", ()) if m["Type"] == "tmpfs")),
            volumes=tuple(sorted(f"{m['Source'][len(stack) + 1:]}:{m['Target']}"
                                 for m in container.get("Mounts", ()) if m["Type"] == "volume")),
            networks=tuple(sorted(networks[n["Target"]][len(stack) + 1:] for n in task.get("Networks", ()))),
            stop_grace=_seconds(container.get("StopGracePeriod")))
    return specs


def compose_config(*files: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    args = [arg for f in files for arg in ("-f", f)]
    return json.loads(run(*COMPOSE, "-p", "m2swarmcheck", *args, "config", "--format", "json", env=env).stdout)


# ---- a stack on the swarm -------------------------------------------------------------

class Swarm:
    """One stack, deployed with `make swarm-up` and removed with `make swarm-down`."""

    def __init__(self, fronts: int, handlers: int, extra_env: dict[str, str]):
        self.name = "m2sw" + uuid.uuid4().hex[:6]
        self.fronts, self.handlers = fronts, handlers
        self.env = dict(os.environ, SWARM_STACK=self.name, FRONTS=str(fronts), HANDLERS=str(handlers),
                        SWARM_PUBLISH="random", **extra_env)
        self.env.pop("MAKEFLAGS", None)
        self.down_done = False
        self.clients: list[str] = []

    def make(self, target: str, timeout: float = 420, **variables: str) -> str:
        command = ["make", "--no-print-directory", target, *(f"{k}={v}" for k, v in variables.items())]
        result = run(*command, env=self.env, timeout=timeout, check=False)
        output = result.stdout + result.stderr
        if result.returncode != 0:
            raise AssertionError(f"{shlex.join(command)} failed ({result.returncode}):\n{output[-4000:]}")
        return output

    def service(self, name: str) -> str:
        return f"{self.name}_{name}"

    def containers(self, service: str) -> list[dict[str, Any]]:
        """Running containers of a service: id, front-network address, start time."""
        ids = docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={self.service(service)}").split()
        if not ids:
            return []
        found = []
        for c in json.loads(docker("inspect", *ids)):
            nets = c["NetworkSettings"]["Networks"]
            front = nets.get(f"{self.name}_front", {}).get("IPAddress")
            found.append({"id": c["Id"], "hostname": c["Config"]["Hostname"], "front": front,
                          "started": c["State"]["StartedAt"], "image": c["Config"]["Image"],
                          "task": c["Config"]["Labels"].get("com.docker.swarm.task.id")})
        return found

    def wait_replicas(self, service: str, n: int, timeout: float = 180) -> float:
        """Until exactly n containers run and Swarm reports n/n with no update running."""
        began = time.monotonic()
        name = self.service(service)
        while True:
            replicas = docker("service", "ls", "--filter", f"name={name}", "--format", "{{.Replicas}}").split()[0]
            update = docker("service", "inspect", "--format",
                            "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}", name)
            settled = update not in ("updating", "rollback_started")
            if replicas == f"{n}/{n}" and len(self.containers(service)) == n and settled:
                return time.monotonic() - began
            if time.monotonic() - began > timeout:
                raise AssertionError(f"{name}: {replicas} (update: {update or 'none'}) after {timeout}s, wanted {n}")
            time.sleep(0.5)

    def wait_update_started(self, service: str, since: float, timeout: float = 60) -> None:
        """Until Swarm has begun an update of `service` started after `since` (wall clock)."""
        name = self.service(service)
        deadline = time.monotonic() + timeout
        while True:
            stamp = json.loads(docker("service", "inspect", name))[0].get("UpdateStatus", {}).get("StartedAt")
            if stamp and docker_time(stamp) >= since - 1:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}: no update started after {timeout}s (last: {stamp or 'none'})")
            time.sleep(0.2)

    def client_command(self, *args: str) -> list[str]:
        name = f"{self.name}-client-{uuid.uuid4().hex[:6]}"
        self.clients.append(name)
        return ["docker", "run", "--rm", "-i", "--name", name, "--label", f"m2stack.test-client={self.name}",
                "--network", f"{self.name}_front", "--read-only", "--cap-drop", "ALL",
                "--entrypoint", "python3", CLIENT_IMAGE, "-c", CLIENT, *args]

    def burst(self, n: int) -> dict[str, Any]:
        out = run(*self.client_command("burst", "tasks.mongrel2", str(HTTP_PORT), str(n)), timeout=120).stdout
        return json.loads(out)

    def load(self, concurrency: int, ms: int = 0) -> Load:
        """`concurrency` workers per front; `ms`: each request answered after that long."""
        return Load(self.client_command("load", "tasks.mongrel2", str(HTTP_PORT), str(concurrency), str(ms)))

    def remove_clients(self) -> None:
        ids = docker("ps", "-aq", "--filter", f"label=m2stack.test-client={self.name}").split()
        if ids:
            docker("rm", "-f", *ids, check=False)


class Load:
    """client.py in load mode, in its own container, until stop(); its progress lines can
    be waited on (`wait`) instead of sleeping."""

    def __init__(self, command: list[str]):
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        self.started = time.time()
        self.lines: list[str] = []
        self.latest: dict[str, Any] | None = None
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line)
                if line.startswith('{"progress"'):
                    self.latest = json.loads(line)["progress"]
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait(self, predicate, timeout: float, what: str) -> dict[str, Any]:
        """Until a progress line satisfies `predicate`; that progress."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if self.latest is not None and predicate(self.latest):
                    return self.latest
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._reader.is_alive():
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last progress: "
                                         f"{json.dumps(self.latest)[:1500]}")
                self._changed.wait(min(remaining, 1.0))

    def flowing(self, count: int = 100, timeout: float = 60) -> dict[str, Any]:
        """Until `count` more requests have been answered."""
        start = self.latest["ok"] if self.latest else 0
        return self.wait(lambda p: p["ok"] >= start + count, timeout, f"{count} requests answered")

    def settled_since(self, moment: float, timeout: float = 60) -> dict[str, Any]:
        """Until every request in flight at `moment` (wall clock) has its outcome: served,
        or failed (a lost one is closed after M2_IDLE_TIMEOUT)."""
        return self.wait(lambda p: p["time"] > moment and (p["oldest_in_flight"] is None
                                                          or p["oldest_in_flight"] > moment),
                         timeout, "every request in flight at that moment to end")

    def stop(self, timeout: float = 60) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write("stop\n")
        self.process.stdin.flush()
        self.process.wait(timeout)
        self._reader.join(10)
        if self.process.returncode != 0:
            err = self.process.stderr.read() if self.process.stderr else ""
            raise AssertionError(f"load client failed ({self.process.returncode}): {err[-2000:]}")
        return json.loads(self.lines[-1])

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def summary(report: dict[str, Any]) -> str:
    fronts = ", ".join(f"{address}: {s['ok']} ok / {s['failed']} failed, {len(s['handlers'])} handlers"
                       for address, s in sorted(report["fronts"].items()))
    return (f"{report['ok'] + report['failed']} requests, {report['failed']} failed, "
            f"{report['mismatched']} to the wrong client; {fronts}")


def in_background(target, *args) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread
