"""End-to-end: real containers from docker compose, real HTTP clients on loopback."""

import pytest

from stack import VARIANTS, Stack
from support import require


@pytest.fixture(scope="session")
def docker_available():
    require("docker", "the end-to-end tests run the stack in Docker")
    import subprocess
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        from support import IN_CI
        message = "the Docker daemon is not reachable"
        if IN_CI:
            pytest.fail(message + " (CI=true: missing tools fail, they never skip)", pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="module", params=list(VARIANTS))
def stack(request, docker_available):
    """A running stack per variant, with 3 handlers, shared by a module's tests."""
    stack = Stack(request.param, VARIANTS[request.param])
    stack.variant = request.param
    try:
        stack.up(handlers=3)
        yield stack
    finally:
        stack.down()
