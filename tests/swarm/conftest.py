"""The Swarm tests: a single-node swarm of their own (made when the engine is in none, and
left again; on a swarm the engine is already in, only their own stack, removed after).

The engine's swarm state before the tests is recorded here and checked after them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from swarmlib import docker, has_network, swarm_state

from support import missing, require

HERE = Path(__file__).resolve().parent
# Docker probes every task each second here (5 s by default, docker-compose.yml): Swarm puts a
# task in DNS and moves a rolling update on only once it is healthy.
os.environ.setdefault("HEALTHCHECK_INTERVAL", "1s")
SWARM_TIMEOUT = 600  # per test; the first one also brings the stack up


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.docker)
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(SWARM_TIMEOUT))


@pytest.fixture(scope="session")
def engine_before():
    """The engine's swarm state as the tests found it."""
    require("docker", "the Swarm tests run a stack on Docker Swarm")
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        missing("the Docker daemon is not reachable")
    state = swarm_state()
    if state == "active":
        if docker("info", "--format", "{{.Swarm.ControlAvailable}}") != "true":
            missing("this engine is a swarm worker: the Swarm tests need a manager")
        if len(docker("node", "ls", "-q").split()) > 1:
            missing("this engine is in a multi-node swarm: the Swarm tests inspect every task "
                    "locally, so they need a single-node swarm or none")
    elif state != "inactive":
        missing(f"the engine's swarm state is {state!r}")
    return {"state": state, "gwbridge": has_network("docker_gwbridge")}
