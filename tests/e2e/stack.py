"""Drive a real `docker compose` project from a test: up, scale, inspect, down.

Each Stack is its own compose project (its own containers, networks, volumes)
published on its own loopback port, so stacks never collide with `make up`.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
import time
from pathlib import Path

import requests

from support import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = shlex.split(os.environ.get("COMPOSE", "docker compose"))

# Compose files per variant, relative to the repository root.
VARIANTS: dict[str, list[str]] = {
    "mongrel2-gevent": ["docker-compose.yml"],
    "mongrel2-eventlet": ["docker-compose.yml", "compose/eventlet.yml"],
    "wsgi-gevent": ["docker-compose.yml", "compose/wsgi.yml"],
    "wsgi-eventlet": ["docker-compose.yml", "compose/wsgi-eventlet.yml"],
}
# The Mongrel2 front door only (scaling handlers, /static/, mongrel2 itself).
MONGREL2_VARIANTS = {name: files for name, files in VARIANTS.items() if name.startswith("mongrel2-")}
WSGI_FILES = ("compose/wsgi.yml", "compose/wsgi-eventlet.yml")


class Stack:
    def __init__(self, name: str, files: list[str], env: dict[str, str] | None = None):
        self.project = f"m2e2e-{name}"
        self.files = files
        # A WSGI stack has one `wsgi` service (Gunicorn) where mongrel2 + handlers would be.
        self.front_door = "wsgi" if any(f in WSGI_FILES for f in files) else "mongrel2"
        self.app_service = "wsgi" if self.front_door == "wsgi" else "handler"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Like `make env`: a random database password per stack, none committed.
        self.env = dict(os.environ, HTTP_PUBLISH=f"127.0.0.1:{self.port}",
                        DB_PASSWORD=secrets.token_hex(16))
        self.env.update(env or {})
        self.http = requests.Session()

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        command = [*COMPOSE, "-p", self.project]
        for file in self.files:
            command += ["-f", str(ROOT / file)]
        result = subprocess.run([*command, *args], cwd=ROOT, env=self.env, capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
        return result

    def up(self, handlers: int = 1, timeout: float = 180) -> None:
        """`handlers` Mongrel2 handlers; a WSGI stack has no handler to scale (its one
        container runs WEB_CONCURRENCY Gunicorn workers)."""
        scale = ["--scale", f"handler={handlers}"] if self.front_door == "mongrel2" else []
        self.compose("up", "-d", *scale)
        self.wait_healthy(timeout)

    def scale(self, handlers: int) -> None:
        self.compose("up", "-d", "--no-recreate", "--scale", f"handler={handlers}")

    def wait_healthy(self, timeout: float = 180) -> None:
        result = subprocess.run([str(ROOT / "scripts" / "wait-healthy.sh"), self.project, str(int(timeout))],
                                capture_output=True, text=True, timeout=timeout + 30)
        assert result.returncode == 0, result.stderr[-3000:]
        probe = "/static/health.txt" if self.front_door == "mongrel2" else "/healthz"
        wait_until(lambda: self.http.get(self.url + probe, timeout=2).ok, 30,
                   f"{self.front_door} to answer on the published port")

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "20", check=False)

    def get(self, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return self.http.get(self.url + path, **kwargs)

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return self.http.request(method, self.url + path, **kwargs)

    def container_ids(self, service: str | None = None, all_states: bool = False) -> list[str]:
        command = ["docker", "ps", "-q", "--no-trunc", "--filter",
                   f"label=com.docker.compose.project={self.project}"]
        if all_states:
            command.insert(2, "-a")
        if service:
            command += ["--filter", f"label=com.docker.compose.service={service}"]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()

    def inspect(self, container_id: str) -> dict:
        out = subprocess.run(["docker", "inspect", container_id], capture_output=True, text=True, check=True)
        return json.loads(out.stdout)[0]

    def resources(self, kind: str) -> list[str]:
        """Names of the project's networks or volumes still present."""
        out = subprocess.run(["docker", kind, "ls", "-q", "--filter",
                              f"label=com.docker.compose.project={self.project}"],
                             capture_output=True, text=True, check=True)
        return out.stdout.split()

    def logs(self, service: str = "") -> str:
        return self.compose("logs", "--no-color", *([service] if service else []), check=False).stdout


def wait_for(check, timeout: float, what: str) -> None:
    wait_until(check, timeout, what, interval=0.2)


def elapsed_since(start: float) -> float:
    return time.monotonic() - start
