"""Three Swarm nodes on this machine (scripts/multinode.sh) and the stack on them.

Each node is a dockerd of its own; `Node.docker(...)` talks to one. Nothing here touches
the host daemon's swarm: the host daemon only runs the registry the nodes pull from.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "multinode.sh"
BASE = os.environ.get("MULTINODE_DIR", "/tmp/m2stack-multinode")
NET = os.environ.get("MULTINODE_NET", "10.241.0")
REGISTRY_PORT = int(os.environ.get("MULTINODE_REGISTRY_PORT", "5041"))
PUSH_TO = f"127.0.0.1:{REGISTRY_PORT}"   # the host daemon pushes here (loopback: no TLS needed)
PULL_FROM = f"{NET}.1:{REGISTRY_PORT}"   # the nodes pull from the same registry here
STACK = "m2mn"
NODES = (1, 2, 3)


def run(*args: str, env: dict | None = None, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return result


def script(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run("bash", str(SCRIPT), *args, check=check)


@dataclass(frozen=True)
class Node:
    number: int

    @property
    def name(self) -> str:      # its hostname, which Swarm takes as the node's name
        return f"m2mn-n{self.number}"

    @property
    def address(self) -> str:
        return f"{NET}.{10 + self.number}"

    @property
    def host(self) -> str:
        return f"unix://{BASE}/n{self.number}/docker.sock"

    def docker(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        return run("docker", "-H", self.host, *args, check=check, timeout=timeout).stdout.strip()

    def env(self, **extra: str) -> dict:
        """The environment that points the Docker CLI (and make swarm-up) at this node."""
        return {**os.environ, "DOCKER_HOST": self.host, **extra}

    def alive(self) -> bool:
        return run("docker", "-H", self.host, "info", check=False, timeout=10).returncode == 0


def nodes() -> list[Node]:
    return [Node(n) for n in NODES]


def tasks(manager: Node, service: str) -> list[dict]:
    """The service's tasks Swarm wants running: node, state, error."""
    out = manager.docker("service", "ps", "--no-trunc", "--filter", "desired-state=running",
                         "--format", "{{json .}}", f"{STACK}_{service}")
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def running_on(manager: Node, service: str) -> list[str]:
    """The node of each running task of the service, sorted."""
    return sorted(t["Node"] for t in tasks(manager, service) if t["CurrentState"].startswith("Running"))


def node_states(manager: Node) -> dict[str, tuple[str, str, str]]:
    """name -> (status, availability, manager status) as the manager sees them."""
    out = manager.docker("node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.Availability}} {{.ManagerStatus}}")
    states = {}
    for line in out.splitlines():
        name, status, availability, *role = line.split()
        states[name] = (status, availability, role[0] if role else "")
    return states


def wait_for(check, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except AssertionError as exc:  # a manager busy electing a leader answers with an error
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def containers_by_id(node: Node) -> dict[str, str]:
    """Short container id (a task's hostname, hence its X-Handler-Id) -> service name."""
    out = node.docker("ps", "--format", '{{.ID}} {{.Label "com.docker.swarm.service.name"}}')
    return dict(line.split(maxsplit=1) for line in out.splitlines() if " " in line)
