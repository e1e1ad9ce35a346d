"""A smoke test of the stack under Compose v1 (`docker-compose` 1.29), while hosts still
have it: the Makefile and the end-to-end tests use Compose v2, this keeps v1 working.

Skipped (also under CI=true) when no v1 is installed: v1 is end-of-life, its absence is
not a broken machine.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from support import free_port

ROOT = Path(__file__).resolve().parents[2]
V1 = os.environ.get("COMPOSE_V1", "docker-compose")

pytestmark = [pytest.mark.docker, pytest.mark.timeout(400)]


def v1_or_skip() -> str:
    path = shutil.which(V1)
    version = ""
    if path:
        version = subprocess.run([path, "version", "--short"], capture_output=True, text=True).stdout.strip()
    if not version.startswith("1."):
        pytest.skip(f"no Compose v1 here ({V1}: {version or 'not found'})")
    return path


def labelled(kind: str, project: str) -> list[str]:
    command = ["docker", kind, "ls", "-q", "--filter", f"label=com.docker.compose.project={project}"]
    if kind == "container":
        command = ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()


def test_stack_up_serves_and_goes_down_under_compose_v1():
    compose = v1_or_skip()
    project = "m2v1smoke" + secrets.token_hex(3)
    port = free_port()
    env = dict(os.environ, HTTP_PUBLISH=f"127.0.0.1:{port}", DB_PASSWORD=secrets.token_hex(16))
    base = [compose, "-p", project, "-f", "docker-compose.yml"]

    def run(*args: str, timeout: float = 240) -> None:
        subprocess.run([*base, *args], cwd=ROOT, env=env, check=True, timeout=timeout,
                       stdout=subprocess.DEVNULL)

    began = time.monotonic()
    try:
        run("up", "-d", "--scale", "handler=2")
        # v1 has no `up --wait`.
        subprocess.run(["scripts/wait-healthy.sh", project, "180"], cwd=ROOT, check=True, timeout=200)
        healthy = time.monotonic() - began
        session = requests.Session()
        session.trust_env = False
        handlers = set()
        for _ in range(20):
            response = session.get(f"http://127.0.0.1:{port}/json", timeout=10)
            assert response.status_code == 200 and response.json() == {"message": "Hello, World!"}
            handlers.add(response.headers["X-Handler-Id"])
        assert len(handlers) == 2
        assert session.get(f"http://127.0.0.1:{port}/db", timeout=10).status_code == 200
        names = subprocess.run(["docker", "ps", "--format", "{{.Names}}", "--filter",
                                f"label=com.docker.compose.project={project}"],
                               capture_output=True, text=True, check=True).stdout.split()
        assert f"{project}_handler_1" in names   # v1's names (v2: project-handler-1)
        print(f"[measured] Compose v1: 2 handlers healthy in {healthy:.1f}s, 20 requests over both")
    finally:
        run("down", "--volumes", "--remove-orphans")
    for kind in ("container", "network", "volume"):
        assert labelled(kind, project) == [], f"{kind}s left"
