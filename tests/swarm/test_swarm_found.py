"""On an engine already in a swarm, `make swarm-up` and `make swarm-down` touch only their
stack. Its own module, so the main swarm tests' stack (test_swarm.py) is gone first."""

from __future__ import annotations

import json
import time

import pytest
from swarmlib import Swarm, docker, has_network, leave_swarm, log, swarm_state

STACK_ENV = {"M2_IDLE_TIMEOUT": "8", "HANDLER_REQUEST_TIMEOUT": "5"}


def test_a_swarm_found_is_left_as_found(engine_before):
    """On an engine already in a swarm (made here by the test, with the database node
    chosen by its user), swarm-up neither inits nor labels, and swarm-down removes only
    the stack: the swarm and the user's label stay."""
    if engine_before["state"] != "inactive":
        pytest.skip("the engine was in a swarm already: the other tests covered that case")
    docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    stack = Swarm(1, 1, STACK_ENV)
    try:
        docker("node", "update", "--label-add", "m2stack.db=true", docker("info", "--format", "{{.Swarm.NodeID}}"))
        began = time.monotonic()
        output = stack.make("swarm-up")
        up = time.monotonic() - began
        assert "creating a single-node" not in output and "labelling this one" not in output, output
        assert stack.burst(10)["ok"] == 10
        stack.make("swarm-down", timeout=240)
        assert swarm_state() == "active"
        labels = json.loads(docker("node", "inspect", "self", "--format", "{{json .Spec.Labels}}"))
        assert labels == {"m2stack.db": "true"}, labels
        assert docker("service", "ls", "-q") == ""
        assert stack.name + "_db_password" not in docker("secret", "ls", "--format", "{{.Name}}").split()
        log(f"on a swarm found: swarm-up {up:.1f}s (no init, no label), swarm-down left the swarm and its labels")
    finally:
        leave_swarm()
        time.sleep(1)
        label = f"label=com.docker.stack.namespace={stack.name}"
        for volume in docker("volume", "ls", "-q", "--filter", label).split():
            docker("volume", "rm", volume, check=False)
        if not engine_before["gwbridge"] and has_network("docker_gwbridge"):
            docker("network", "rm", "docker_gwbridge", check=False)
    assert swarm_state() == "inactive"
