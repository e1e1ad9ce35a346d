"""One variant's stack: its own compose project, published on a free loopback port.

Every variant gets the same CPU and memory limits per service and the same number of app
processes: HANDLERS containers of one process (Mongrel2), or one container of HANDLERS
workers with HANDLERS times the CPU (WSGI). Pinned (the default), every server container
of the variant shares the servers' cpuset, and the generator has the other.
"""

from __future__ import annotations

import os
import secrets
import shlex
import socket
import subprocess
import time
import urllib.error
import urllib.request

from .settings import ROOT, Settings
from .variants import Variant

COMPOSE = shlex.split(os.environ.get("COMPOSE", "docker compose"))
LOADTEST_FILE = "compose/loadtest.yml"
GENERATOR_SERVICES = ("locust-master", "locust-worker")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url: str, method: str = "GET", body: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int | str, bytes]:
    """(status, body); the exception's name in place of a status when there is no answer."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, urllib.error.URLError) as exc:
        return type(exc).__name__, b""


class Stack:
    def __init__(self, variant: Variant, settings: Settings):
        self.name = variant.name
        self.variant = variant
        self.settings = settings
        self.project = f"{os.environ.get('COMPARE_PROJECT_PREFIX') or 'm2cmp'}-{variant.name}"
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
            "GENERATOR_CPUSET": settings.generator_cpuset,  # compose/loadtest.yml's services
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
        result = subprocess.run([*command, *args], check=False, cwd=ROOT, env={**self.env, **(env or {})},
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"compose {' '.join(args)} failed ({result.returncode}):\n"
                               f"{result.stderr[-3000:]}")
        return result

    def up(self) -> None:
        self.down()  # leftovers of an interrupted run of the same project
        scale = ["--scale", f"{self.variant.app_service}={self.settings.handlers}"] \
            if self.variant.scaled else []
        # The variant's files only: the Locust services start per run (generators.py), and
        # the variant's own profiles decide which services exist (the WSGI overlays).
        self.compose("up", "-d", *scale, timeout=600, generator=False)
        if self.settings.server_cpuset:  # every container up now is a server's
            subprocess.run(["docker", "update", "--cpuset-cpus", self.settings.server_cpuset,
                            *self.compose("ps", "-q", generator=False).stdout.split()],
                           check=True, capture_output=True, timeout=60)
        wait = subprocess.run([str(ROOT / "scripts" / "wait-healthy.sh"), self.project, "240"],
                              check=False, capture_output=True, text=True, timeout=300)
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

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "200", check=False).stdout
